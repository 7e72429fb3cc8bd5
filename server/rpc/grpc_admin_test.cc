// End-to-end tests of the gRPC edge's retention, verify, usage and event
// RPCs: a CheckpointServer on 127.0.0.1:0 over a MemoryStore, driven by the
// client library and the raw stub. Part of grpc_service_test (saves,
// restores, uploads and the server's lifecycle are in grpc_service_test.cc).

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ckpt/v1/ckpt.grpc.pb.h"
#include "client/client.h"
#include "common/sha256.h"
#include "common/wire_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/rpc_test_fixture.h"

namespace ckpt::server {
namespace {

using testing::CorruptChunk;
using testing::GrpcServiceTest;
using ::testing::HasSubstr;
using testing::kJob;
using testing::RandomBytes;
using testing::Tensor;

// ---------------------------------------------------------------- retention

std::vector<int64_t> Steps(const std::vector<CheckpointRecord>& records) {
  std::vector<int64_t> steps;
  steps.reserve(records.size());
  for (const auto& record : records) steps.push_back(record.step);
  return steps;
}

TEST_F(GrpcServiceTest, PolicySetGetAndEnforcedAtCommit) {
  const std::string bytes = "abc";
  client::TensorData tensors[] = {Tensor("t", bytes)};
  RetentionPolicy policy;
  policy.max_to_keep = 2;
  policy.keep_best = RetentionPolicy::KeepBest{
      1, "val_loss", RetentionPolicy::KeepBest::Mode::kMin};
  EXPECT_EQ(client_->SetRetentionPolicy("no-tenant", policy).status().code(),
            absl::StatusCode::kInvalidArgument);
  client::SaveOptions first;
  first.retention_policy = policy;  // set by the writer at Begin
  first.metadata.metrics["val_loss"] = 0.5;
  auto saved = client_->SaveShard(kJob, 1, tensors, first);
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(saved->retention_policy_ignored, "");
  auto got = client_->GetRetentionPolicy(kJob);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ(**got, policy);
  for (int64_t step = 2; step <= 4; ++step) {
    client::SaveOptions options;
    options.metadata.metrics["val_loss"] = 1.0 + static_cast<double>(step);
    ASSERT_TRUE(client_->SaveShard(kJob, step, tensors, options).ok());
  }
  auto listed = client_->ListCheckpoints(kJob);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(Steps(*listed), (std::vector<int64_t>{1, 3, 4}));  // 1 is best

  RetentionPolicy last_one;
  last_one.max_to_keep = 1;
  auto deleted = client_->SetRetentionPolicy(kJob, last_one);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, (std::vector<int64_t>{1, 3}));
  auto jobs = client_->ListJobs();
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  ASSERT_EQ(jobs->size(), 1u);
  EXPECT_EQ((*jobs)[0].job.retention_policy, last_one);
  EXPECT_EQ((*jobs)[0].job.policy_origin->source,
            PolicyOrigin::Source::kOperator);
  // The operator's policy is the job's now: the writer's is ignored, and
  // the save says why.
  saved = client_->SaveShard(kJob, 5, tensors, first);
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_NE(saved->retention_policy_ignored.find("an operator's"),
            std::string::npos)
      << saved->retention_policy_ignored;
  auto info = client_->GetRetentionPolicyInfo(kJob);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->policy, last_one);
  EXPECT_EQ(info->origin->principal, "anonymous");
}

TEST_F(GrpcServiceTest, InvalidPolicyIsInvalidArgumentAndChangesNothing) {
  const std::string bytes = "abc";
  client::TensorData tensors[] = {Tensor("t", bytes)};
  ASSERT_TRUE(client_->SaveShard(kJob, 1, tensors, {}).ok());
  RetentionPolicy bad;
  bad.max_to_keep = 0;
  EXPECT_EQ(client_->SetRetentionPolicy(kJob, bad).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->PruneCheckpoints(kJob, bad, false).status().code(),
            absl::StatusCode::kInvalidArgument);
  client::SaveOptions options;
  options.retention_policy = bad;
  EXPECT_EQ(client_->SaveShard(kJob, 2, tensors, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto got = client_->GetRetentionPolicy(kJob);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_FALSE(got->has_value());

  // An unknown metric mode on the wire is refused by the edge.
  grpc::ClientContext context;
  v1::SetRetentionPolicyRequest request;
  request.set_job(kJob);
  request.mutable_policy()->mutable_keep_best()->set_k(1);
  request.mutable_policy()->mutable_keep_best()->set_metric("loss");
  request.mutable_policy()->mutable_keep_best()->set_mode(
      static_cast<v1::MetricMode>(99));
  v1::SetRetentionPolicyResponse response;
  grpc::Status status = stub_->SetRetentionPolicy(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("SetRetentionPolicy"));
}

TEST_F(GrpcServiceTest, PinShowsInListingAndSurvivesPrune) {
  const std::string bytes = "abc";
  client::TensorData tensors[] = {Tensor("t", bytes)};
  for (int64_t step = 1; step <= 3; ++step) {
    ASSERT_TRUE(client_->SaveShard(kJob, step, tensors, {}).ok());
  }
  auto pinned = client_->PinCheckpoint(kJob, 1);
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  EXPECT_TRUE(pinned->pinned);
  EXPECT_EQ(client_->PinCheckpoint(kJob, 9).status().code(),
            absl::StatusCode::kNotFound);
  RetentionPolicy one;
  one.max_to_keep = 1;
  ASSERT_TRUE(client_->PruneCheckpoints(kJob, one, false).ok());
  auto listed = client_->ListCheckpoints(kJob);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(Steps(*listed), (std::vector<int64_t>{1, 3}));
  EXPECT_TRUE((*listed)[0].pinned);
  EXPECT_FALSE((*listed)[1].pinned);
  ASSERT_TRUE(client_->PinCheckpoint(kJob, 1, false).ok());
  ASSERT_TRUE(client_->PruneCheckpoints(kJob, one, false).ok());
  listed = client_->ListCheckpoints(kJob);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(Steps(*listed), (std::vector<int64_t>{3}));
}

TEST_F(GrpcServiceTest, PruneDryRunEqualsRealPrune) {
  const std::string bytes = "abc";
  client::TensorData tensors[] = {Tensor("t", bytes)};
  for (int64_t step = 1; step <= 6; ++step) {
    ASSERT_TRUE(client_->SaveShard(kJob, step, tensors, {}).ok());
  }
  ASSERT_TRUE(client_->PinCheckpoint(kJob, 2).ok());
  RetentionPolicy policy;
  policy.max_to_keep = 2;
  auto dry = client_->PruneCheckpoints(kJob, policy, /*dry_run=*/true);
  ASSERT_TRUE(dry.ok()) << dry.status();
  ASSERT_EQ(dry->size(), 6u);
  std::vector<int64_t> kept;
  for (const auto& decision : *dry) {
    EXPECT_FALSE(decision.reasons.empty());
    if (decision.keep) kept.push_back(decision.step);
  }
  EXPECT_EQ(kept, (std::vector<int64_t>{2, 5, 6}));
  auto before = client_->ListCheckpoints(kJob);
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->size(), 6u);  // the dry run deleted nothing
  auto real = client_->PruneCheckpoints(kJob, policy, /*dry_run=*/false);
  ASSERT_TRUE(real.ok()) << real.status();
  auto after = client_->ListCheckpoints(kJob);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(Steps(*after), kept);
  ASSERT_EQ(real->size(), dry->size());
  for (size_t i = 0; i < dry->size(); ++i) {
    EXPECT_EQ((*real)[i].keep, (*dry)[i].keep);
    EXPECT_EQ((*real)[i].reasons, (*dry)[i].reasons);
  }
}

// ------------------------------------------- verify, unique bytes, stats

TEST_F(GrpcServiceTest, VerifyCheckpointsStreamsTheReport) {
  const std::string a = RandomBytes(4 << 10, 1);
  const std::string b = RandomBytes(4 << 10, 2);
  ASSERT_TRUE(client_->SaveShard(kJob, 1, {Tensor("a", a)}, {}).ok());
  ASSERT_TRUE(
      client_->SaveShard(kJob, 2, {Tensor("a", a), Tensor("b", b)}, {}).ok());
  CorruptChunk(store_, "team", b);
  VerifyOptions options;
  options.read_data = true;
  int progress_calls = 0;
  auto report = client_->VerifyCheckpoints(
      options, [&](const VerifyProgress&) { ++progress_calls; });
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_GE(progress_calls, 1);
  ASSERT_EQ(report->damaged_chunks.size(), 1u);
  EXPECT_EQ(report->damaged_chunks[0].id, Sha256(b));
  EXPECT_EQ(report->damaged_chunks[0].checkpoints,
            (std::vector<CheckpointKey>{{kJob, 2}}));

  // Malformed requests are refused before any work, naming the RPC.
  v1::VerifyRequest request;
  request.set_job("no-tenant");
  grpc::ClientContext context;
  auto reader = stub_->VerifyCheckpoints(&context, request);
  v1::VerifyResponse response;
  EXPECT_FALSE(reader->Read(&response));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("VerifyCheckpoints"));
}

TEST_F(GrpcServiceTest, ListingCarriesUniqueBytesOnlyWhenAsked) {
  const std::string shared = RandomBytes(4 << 10, 3);
  const std::string own = RandomBytes(3 << 10, 4);
  ASSERT_TRUE(client_->SaveShard(kJob, 1, {Tensor("s", shared)}, {}).ok());
  ASSERT_TRUE(
      client_->SaveShard(kJob, 2, {Tensor("s", shared), Tensor("o", own)}, {})
          .ok());
  auto listed = client_->ListCheckpointsWithUniqueBytes(kJob);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].unique_bytes, std::optional<uint64_t>(0));
  EXPECT_EQ((*listed)[1].unique_bytes, std::optional<uint64_t>(own.size()));

  v1::ListCheckpointsRequest request;
  request.set_job(kJob);
  v1::ListCheckpointsResponse response;
  grpc::ClientContext context;
  ASSERT_TRUE(stub_->ListCheckpoints(&context, request, &response).ok());
  ASSERT_EQ(response.checkpoints_size(), 2);
  EXPECT_FALSE(response.checkpoints(1).has_unique_bytes());
}

TEST_F(GrpcServiceTest, StatsCarryJobAndTenantRows) {
  const std::string bytes = RandomBytes(4 << 10, 5);
  ASSERT_TRUE(client_->SaveShard(kJob, 1, {Tensor("w", bytes)}, {}).ok());
  ASSERT_TRUE(
      client_->SaveShard("team/copy", 1, {Tensor("w", bytes)}, {}).ok());
  auto stats = client_->GetStats("");
  ASSERT_TRUE(stats.ok()) << stats.status();
  ASSERT_EQ(stats->jobs.size(), 2u);
  EXPECT_EQ(stats->jobs[0].job, "team/copy");
  EXPECT_EQ(stats->jobs[1].logical_bytes, bytes.size());
  ASSERT_EQ(stats->tenants.size(), 1u);
  EXPECT_EQ(stats->tenants[0].tenant, "team");
  EXPECT_EQ(stats->tenants[0].job_count, 2);
  EXPECT_EQ(stats->tenants[0].logical_bytes, 2 * bytes.size());
  EXPECT_EQ(stats->tenants[0].stored_bytes, bytes.size());
}

TEST_F(GrpcServiceTest, EventsRecordSavesPinsRestoresAndDeletesInOrder) {
  const std::string bytes = "abc";
  client::TensorData tensors[] = {Tensor("t", bytes)};
  for (int64_t step = 1; step <= 3; ++step) {
    ASSERT_TRUE(client_->SaveShard(kJob, step, tensors, {}).ok());
  }
  ASSERT_TRUE(client_->PinCheckpoint(kJob, 3).ok());
  RetentionPolicy one;
  one.max_to_keep = 1;
  ASSERT_TRUE(client_->PruneCheckpoints(kJob, one, /*dry_run=*/true).ok());
  ASSERT_TRUE(client_->PruneCheckpoints(kJob, one, /*dry_run=*/false).ok());
  ASSERT_TRUE(client_->GetManifest(kJob, std::nullopt).ok());  // no event
  auto restored = client_->RestoreShard(kJob, std::nullopt, 0);
  ASSERT_TRUE(restored.ok()) << restored.status();
  // Pinned: refused, with no event, until the pin is overridden over the
  // wire (DeleteCheckpointRequest.force).
  EXPECT_TRUE(absl::IsFailedPrecondition(client_->DeleteCheckpoint(kJob, 3)));
  ASSERT_TRUE(client_->DeleteCheckpoint(kJob, 3, /*force=*/true).ok());

  auto events = client_->ListEvents(kJob);
  ASSERT_TRUE(events.ok()) << events.status();
  std::vector<std::string> history;
  for (const JobEvent& event : *events) {
    history.push_back(
        absl::StrCat(EventKindName(event.kind), "@", event.step.value_or(-1)));
    EXPECT_EQ(event.job, kJob);
    EXPECT_EQ(event.sequence, history.size());
  }
  EXPECT_THAT(history,
              ::testing::ElementsAre("committed@1", "committed@2",
                                     "committed@3", "pinned@3", "pruned@1",
                                     "pruned@2", "restored@3", "deleted@3"));
  EXPECT_THAT((*events)[4].detail,
              HasSubstr("prune with a one-off policy (max_to_keep=1): not "
                        "among the 1 most recent"));
  EXPECT_EQ((*events)[6].detail, "rank 0");
  EXPECT_EQ((*events)[7].detail,
            "was committed and pinned; the pin was overridden (force)");

  auto last = client_->ListEvents(kJob, 1);
  ASSERT_TRUE(last.ok()) << last.status();
  ASSERT_EQ(last->size(), 1u);
  EXPECT_EQ((*last)[0].kind, EventKind::kDeleted);
}

// A restore that fails or is refused leaves no `restored` event: the
// client reports a restore only once it succeeded.
TEST_F(GrpcServiceTest, ARefusedRestoreRecordsNoRestoredEvent) {
  const std::string bytes = "abc";
  client::TensorData tensors[] = {Tensor("t", bytes)};
  ASSERT_TRUE(client_->SaveShard(kJob, 1, tensors, {}).ok());
  // Rank 3 of a 1-rank checkpoint has nothing to restore.
  EXPECT_EQ(client_->RestoreShard(kJob, 1, 3).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A chunk gone bad.
  CorruptChunk(store_, "team", bytes);
  EXPECT_EQ(client_->RestoreShard(kJob, 1, 0).status().code(),
            absl::StatusCode::kDataLoss);
  auto events = client_->ListEvents(kJob);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].kind, EventKind::kCommitted);
}

TEST_F(GrpcServiceTest, ReportRestoreErrorsNameTheCallAndField) {
  const std::string bytes = "abc";
  client::TensorData tensors[] = {Tensor("t", bytes)};
  ASSERT_TRUE(client_->SaveShard(kJob, 1, tensors, {}).ok());
  absl::Status negative = client_->ReportRestore(kJob, 1, -1);
  EXPECT_EQ(negative.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(negative.message(),
              HasSubstr("ReportRestore: rank must be >= 0"));
  EXPECT_EQ(client_->ReportRestore(kJob, -1, 0).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->ReportRestore(kJob, 2, 0).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->ReportRestore("team/none", 1, 0).code(),
            absl::StatusCode::kNotFound);
  // More ranks than saved it: a resharded restore.
  ASSERT_TRUE(client_->ReportRestore(kJob, 1, 7).ok());
  auto events = client_->ListEvents(kJob);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[1].kind, EventKind::kRestored);
  EXPECT_EQ((*events)[1].detail, "rank 7");
}

TEST_F(GrpcServiceTest, ListEventsAndRestoringRankErrorsAreClear) {
  EXPECT_EQ(client_->ListEvents("team/none").status().code(),
            absl::StatusCode::kNotFound);
  const std::string bytes = "abc";
  client::TensorData tensors[] = {Tensor("t", bytes)};
  ASSERT_TRUE(client_->SaveShard(kJob, 1, tensors, {}).ok());
  auto negative = client_->ListEvents(kJob, -1);
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(negative.status().message(), HasSubstr("ListEvents: limit"));
  auto bad_rank = client_->GetManifest(kJob, 1, -2);
  EXPECT_EQ(bad_rank.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_rank.status().message(),
              HasSubstr("GetManifest: restoring_rank"));
}

}  // namespace
}  // namespace ckpt::server
