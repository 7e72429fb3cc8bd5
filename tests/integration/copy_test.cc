// Copying checkpoints between two real ckpt-server processes through the
// client library (Client::Copy): everything a checkpoint is survives the
// copy and restores byte for byte, delta bases come along, events are
// recorded on both sides, refusals change nothing, a dry run predicts the
// copy, and a lying source is DATA_LOSS. The CLI's side (interruption and
// resume, careless use, tokens) is copy_cli_test.cc.
#include "client/copy.h"

#include <signal.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "client/transport/grpc_transport.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/copy_fixture.h"
#include "tests/testing/fake_transport.h"

namespace ckpt::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using Outcome = client::CopiedCheckpoint::Outcome;

class CopyTest : public TwoServersTest {
 protected:
  client::CopyRequest Request() const {
    client::CopyRequest request;
    request.job = kJob;
    request.source_label = from();
    request.target_label = to();
    return request;
  }

  static std::vector<int64_t> Steps(const client::CopyReport& report) {
    std::vector<int64_t> steps;
    for (const auto& entry : report.checkpoints) steps.push_back(entry.step);
    return steps;
  }

  // The `copied` events of `job` on `client`'s server, by step.
  static std::map<int64_t, JobEvent> CopiedEvents(client::Client& client,
                                                  const std::string& job) {
    std::map<int64_t, JobEvent> copied;
    auto events = client.ListEvents(job);
    EXPECT_TRUE(events.ok()) << events.status();
    if (!events.ok()) return copied;
    for (const JobEvent& event : *events) {
      if (event.kind == EventKind::kCopied && event.step.has_value()) {
        copied[*event.step] = event;
      }
    }
    return copied;
  }

  uint64_t StoredBytes(client::Client& client) {
    auto stats = client.GetStats("");
    EXPECT_TRUE(stats.ok()) << stats.status();
    return stats.ok() ? stats->stored_bytes : 0;
  }
};

TEST_F(CopyTest, EveryCheckpointArrivesWhole) {
  StartServers();
  MakeSourceJob();
  absl::StatusOr<client::CopyReport> report =
      client::Client::Copy(*source_, *target_, Request());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(Steps(*report), ElementsAre(100, 200, 300, 400));
  for (const client::CopiedCheckpoint& entry : report->checkpoints) {
    EXPECT_EQ(entry.outcome, Outcome::kCopied) << entry.step;
    EXPECT_EQ(entry.pinned, entry.step == 300);
    ExpectSameCheckpoint(entry.step);
    auto record = target_->GetManifest(kJob, entry.step);
    ASSERT_TRUE(record.ok());
    EXPECT_EQ(record->record.copied_from, (CopyPeer{from(), kJob, entry.step}));
  }
  EXPECT_THAT(report->checkpoints[1].base_steps, ElementsAre(100));
  EXPECT_THAT(report->checkpoints[3].base_steps, ElementsAre(300));

  // Only unique bytes crossed: what the source stores for the job is what
  // was sent and what the target stores now.
  const uint64_t unique = StoredBytes(*source_);
  EXPECT_EQ(report->bytes_sent, unique);
  EXPECT_EQ(StoredBytes(*target_), unique);

  // The policy came with the first copy.
  ASSERT_TRUE(report->policy_set.has_value());
  auto policy = target_->GetRetentionPolicy(kJob);
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_EQ(*policy, source_->GetRetentionPolicy(kJob).value());
  EXPECT_THAT(report->pruned_on_target, IsEmpty());

  // Both event logs record the copy; the source records no restore.
  EXPECT_EQ(report->source_report_error, "");
  const std::map<int64_t, JobEvent> arrived = CopiedEvents(*target_, kJob);
  const std::map<int64_t, JobEvent> left = CopiedEvents(*source_, kJob);
  for (int64_t step : {100, 200, 300, 400}) {
    ASSERT_TRUE(arrived.contains(step)) << step;
    EXPECT_THAT(arrived.at(step).detail, HasSubstr(from()));
    ASSERT_TRUE(left.contains(step)) << step;
    EXPECT_THAT(left.at(step).detail, HasSubstr(to()));
  }
  auto source_events = source_->ListEvents(kJob);
  ASSERT_TRUE(source_events.ok());
  for (const JobEvent& event : *source_events) {
    EXPECT_NE(event.kind, EventKind::kRestored);
  }

  // Copying again sends nothing and records nothing more.
  absl::StatusOr<client::CopyReport> again =
      client::Client::Copy(*source_, *target_, Request());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->bytes_sent, 0u);
  EXPECT_EQ(again->chunks_sent, 0u);
  for (const client::CopiedCheckpoint& entry : again->checkpoints) {
    EXPECT_EQ(entry.outcome, Outcome::kAlreadyThere) << entry.step;
  }
  EXPECT_EQ(CopiedEvents(*source_, kJob).size(), left.size());
  EXPECT_FALSE(again->policy_set.has_value());
}

TEST_F(CopyTest, AStepOfADeltaBringsItsBaseUnderAnotherJobName) {
  StartServers();
  MakeSourceJob();
  client::CopyRequest request = Request();
  request.steps = {400};
  request.target_job = "team/moved";
  absl::StatusOr<client::CopyReport> report =
      client::Client::Copy(*source_, *target_, request);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_THAT(Steps(*report), ElementsAre(300, 400));
  EXPECT_TRUE(report->checkpoints[0].as_delta_base);
  EXPECT_FALSE(report->checkpoints[1].as_delta_base);
  ExpectSameCheckpoint(300, "team/moved");
  ExpectSameCheckpoint(400, "team/moved");
  auto listed = target_->ListCheckpoints("team/moved");
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), 2u);

  // The rest later: only what the target lacks is sent.
  const uint64_t stored = StoredBytes(*target_);
  request.steps.clear();
  absl::StatusOr<client::CopyReport> rest =
      client::Client::Copy(*source_, *target_, request);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(rest->checkpoints[2].outcome, Outcome::kAlreadyThere);
  EXPECT_EQ(rest->checkpoints[3].outcome, Outcome::kAlreadyThere);
  EXPECT_EQ(stored + rest->bytes_sent, StoredBytes(*source_));
  ExpectSameCheckpoint(100, "team/moved");
  ExpectSameCheckpoint(200, "team/moved");
}

TEST_F(CopyTest, AStepTheTargetHoldsDifferentlyIsRefusedChangingNothing) {
  StartServers();
  MakeSourceJob();
  // The target's own step 200: other bytes.
  const std::string other = PatternBytes(4096, 77);
  client::SaveOptions options;
  ASSERT_TRUE(
      target_->SaveShard(kJob, 200, {Uint8Tensor("w", other)}, options).ok());
  auto events_before = target_->ListEvents(kJob);
  auto listed_before = target_->ListCheckpoints(kJob, true);
  const uint64_t stored_before = StoredBytes(*target_);
  ASSERT_TRUE(events_before.ok() && listed_before.ok());

  absl::StatusOr<client::CopyReport> report =
      client::Client::Copy(*source_, *target_, Request());
  ASSERT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition)
      << report.status();
  EXPECT_THAT(report.status().message(),
              HasSubstr("step 200 of team/model on the target"));
  EXPECT_THAT(report.status().message(), HasSubstr("Nothing was copied"));
  EXPECT_EQ(target_->ListEvents(kJob).value(), *events_before);
  EXPECT_EQ(target_->ListCheckpoints(kJob, true).value(), *listed_before);
  EXPECT_EQ(StoredBytes(*target_), stored_before);
  EXPECT_THAT(CopiedEvents(*source_, kJob), IsEmpty());
}

TEST_F(CopyTest, ADryRunPredictsTheCopyAndChangesNothing) {
  StartServers();
  MakeSourceJob();
  client::CopyRequest request = Request();
  request.dry_run = true;
  absl::StatusOr<client::CopyReport> plan =
      client::Client::Copy(*source_, *target_, request);
  ASSERT_TRUE(plan.ok()) << plan.status();
  for (const client::CopiedCheckpoint& entry : plan->checkpoints) {
    EXPECT_EQ(entry.outcome, Outcome::kWouldCopy);
  }
  EXPECT_TRUE(plan->policy_would_set.has_value());
  EXPECT_FALSE(plan->policy_set.has_value());
  auto jobs = target_->ListJobs();
  ASSERT_TRUE(jobs.ok());
  EXPECT_THAT(*jobs, IsEmpty());
  EXPECT_EQ(StoredBytes(*target_), 0u);
  EXPECT_THAT(CopiedEvents(*source_, kJob), IsEmpty());

  absl::StatusOr<client::CopyReport> copied =
      client::Client::Copy(*source_, *target_, Request());
  ASSERT_TRUE(copied.ok()) << copied.status();
  EXPECT_EQ(copied->bytes_sent, plan->bytes_sent);
  EXPECT_EQ(copied->chunks_sent, plan->chunks_sent);
  for (size_t i = 0; i < plan->checkpoints.size(); ++i) {
    EXPECT_EQ(copied->checkpoints[i].bytes_sent,
              plan->checkpoints[i].bytes_sent);
  }
}

// A copy interrupted between two ranks' commits left step 100 pending on
// the target with rank 0 committed (made here by hand, as that copy would
// have): the rerun joins it, recommits rank 0 unchanged, sends only rank
// 1's chunks and commits the checkpoint.
TEST_F(CopyTest, APendingCopyWithOneRankCommittedIsJoined) {
  StartServers();
  MakeSourceJob();
  auto source = client::ConnectGrpcTransport(from(), {});
  auto target = client::ConnectGrpcTransport(to(), {});
  ASSERT_TRUE(source.ok() && target.ok());
  auto checkpoint = (*source)->GetManifest(kJob, 100, std::nullopt);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  client::BeginOptions begin;
  begin.world_size = 2;
  begin.metadata = checkpoint->record.metadata;
  begin.metadata.writer_time = checkpoint->record.EffectiveTime();
  begin.copied_from = CopyPeer{from(), kJob, 100};
  ASSERT_TRUE((*target)->BeginCheckpoint(kJob, 100, begin).ok());
  const std::vector<ChunkRef> rank0 = ReferencedChunks(checkpoint->shards[0]);
  std::vector<std::string> buffers;
  std::vector<client::ChunkSink> sinks;
  buffers.reserve(rank0.size());
  for (const ChunkRef& ref : rank0) {
    buffers.emplace_back(ref.size, '\0');
    sinks.push_back({ref.id, ref.size, {buffers.back().data()}});
  }
  ASSERT_TRUE((*source)->ReadChunks(kJob, sinks, {}).ok());
  auto upload = (*target)->OpenUpload(kJob, 100);
  for (size_t i = 0; i < rank0.size(); ++i) {
    ASSERT_TRUE(upload->Add(rank0[i].id, buffers[i]).ok());
  }
  ASSERT_TRUE(upload->Close().ok());
  auto committed = (*target)->CommitShard(kJob, 100, 2, checkpoint->shards[0]);
  ASSERT_TRUE(committed.ok()) << committed.status();
  ASSERT_FALSE(committed->checkpoint_committed);
  const uint64_t stored = StoredBytes(*target_);

  client::CopyRequest request = Request();
  request.steps = {100};
  absl::StatusOr<client::CopyReport> report =
      client::Client::Copy(*source_, *target_, request);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_THAT(Steps(*report), ElementsAre(100));
  EXPECT_EQ(report->checkpoints[0].outcome, Outcome::kCopied);
  EXPECT_EQ(stored + report->bytes_sent, StoredBytes(*target_));
  uint64_t rank1_only = 0;
  for (const ChunkRef& ref : ReferencedChunks(checkpoint->shards[1])) {
    if (std::find_if(rank0.begin(), rank0.end(), [&](const ChunkRef& r) {
          return r.id == ref.id;
        }) == rank0.end()) {
      rank1_only += ref.size;
    }
  }
  EXPECT_EQ(report->bytes_sent, rank1_only);
  ExpectSameCheckpoint(100);
}

// A source server that stops sending in the middle of a copy: SIGSTOP
// after the first chunk is sent, so its connection stays open and later
// ReadChunks calls are accepted by its kernel but never answered. The
// copy fails with DEADLINE_EXCEEDED within the stall bound (1 s here)
// instead of hanging and renewing the target's lease forever; nothing is
// visible on the target, the pending copy's lease (3 s here) ends it, and
// a rerun once the source answers again copies the checkpoint whole.
TEST_F(CopyTest, AStalledSourceFailsTheCopyAndLetsTheTargetLeaseExpire) {
  client::ConnectOptions source_options;
  source_options.stream_stall_timeout = absl::Seconds(1);
  StartServers(
      {"--default-lease-seconds", "3", "--lease-check-interval", "0.2"}, {}, {},
      source_options);
  MakeSourceJob();
  client::CopyRequest request = Request();
  request.steps = {100};
  request.copy_policy = false;
  request.batch_bytes = kChunkBytes;  // a ReadChunks per chunk
  request.source_stall_timeout = absl::Seconds(1);
  bool stopped = false;
  auto stop_source = [&](const client::CopyProgress& progress) {
    if (!stopped && progress.bytes_done > 0) {
      ASSERT_TRUE(source_server_->Freeze().ok());
      stopped = true;
    }
  };
  const absl::Time start = absl::Now();
  absl::StatusOr<client::CopyReport> report =
      client::Client::Copy(*source_, *target_, request, stop_source);
  const absl::Duration took = absl::Now() - start;
  if (stopped) source_server_->Thaw();
  ASSERT_TRUE(stopped) << "the copy sent nothing";
  ASSERT_EQ(report.status().code(), absl::StatusCode::kDeadlineExceeded)
      << report.status();
  EXPECT_THAT(report.status().message(),
              HasSubstr("copy of step 100: reading chunks from the source: "));
  EXPECT_LT(took, absl::Seconds(30));
  auto listed = target_->ListCheckpoints(kJob);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_THAT(*listed, IsEmpty());

  // Nobody renews the pending copy: its lease ends it.
  CheckpointState state = CheckpointState::kPending;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(30);
       state == CheckpointState::kPending && absl::Now() < deadline;) {
    absl::SleepFor(absl::Milliseconds(100));
    auto all = target_->ListCheckpoints(kJob, /*include_uncommitted=*/true);
    ASSERT_TRUE(all.ok()) << all.status();
    ASSERT_EQ(all->size(), 1u);
    state = all->front().state;
  }
  EXPECT_EQ(state, CheckpointState::kAborted);

  report = client::Client::Copy(*source_, *target_, request);
  ASSERT_TRUE(report.ok()) << report.status();
  ExpectSameCheckpoint(100);
}

// Restores read with the same bound: a server stalled mid-restore fails
// it with DEADLINE_EXCEEDED naming the server, instead of hanging it.
TEST_F(CopyTest, ARestoreFromAStalledServerEndsWithinTheStallTimeout) {
  client::ConnectOptions source_options;
  source_options.stream_stall_timeout = absl::Seconds(1);
  source_options.shared_memory_restore = false;  // the ReadChunks stream
  StartServers({}, {}, {}, source_options);
  MakeSourceJob();
  auto manifest = source_->GetManifest(kJob, 100);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  ASSERT_TRUE(source_server_->Freeze().ok());
  const absl::Time start = absl::Now();
  auto restored = source_->RestoreShard(*manifest, 0);
  const absl::Duration took = absl::Now() - start;
  source_server_->Thaw();
  ASSERT_EQ(restored.status().code(), absl::StatusCode::kDeadlineExceeded)
      << restored.status();
  EXPECT_THAT(restored.status().message(),
              HasSubstr(absl::StrCat("ReadChunks: no chunk from the server at ",
                                     from(), " for 1s")));
  EXPECT_LT(took, absl::Seconds(30));
  // The server answers again: the same client restores.
  restored = source_->RestoreShard(*manifest, 0);
  EXPECT_TRUE(restored.ok()) << restored.status();
}

// A target that stops taking the upload (SIGSTOP once the copy has sent
// its first bytes): the upload's writes and its final status wait on the
// target, which its stall bound (1 s here) covers. The copy ends with
// DEADLINE_EXCEEDED naming the target instead of hanging on HTTP/2 flow
// control; nothing is visible there once it answers again.
TEST_F(CopyTest, AStalledTargetFailsTheCopyWithinTheStallTimeout) {
  client::ConnectOptions target_options;
  target_options.stream_stall_timeout = absl::Seconds(1);
  StartServers({}, target_options);
  MakeSourceJob();
  client::CopyRequest request = Request();
  request.steps = {100};
  request.copy_policy = false;
  bool stopped = false;
  auto stop_target = [&](const client::CopyProgress& progress) {
    if (!stopped && progress.bytes_done > 0) {
      ASSERT_TRUE(target_server_->Freeze().ok());
      stopped = true;
    }
  };
  const absl::Time start = absl::Now();
  absl::StatusOr<client::CopyReport> report =
      client::Client::Copy(*source_, *target_, request, stop_target);
  const absl::Duration took = absl::Now() - start;
  if (stopped) target_server_->Thaw();
  ASSERT_TRUE(stopped) << "the copy sent nothing";
  ASSERT_EQ(report.status().code(), absl::StatusCode::kDeadlineExceeded)
      << report.status();
  EXPECT_THAT(
      report.status().message(),
      HasSubstr(absl::StrCat("PutChunks: the server at ", to(),
                             " made no progress on the upload for 1s")));
  EXPECT_LT(took, absl::Seconds(30));
  auto listed = target_->ListCheckpoints(kJob);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_THAT(*listed, IsEmpty());
}

TEST(StallTimeoutTest, ANonPositiveBoundIsRefusedAtConnect) {
  for (absl::Duration bound : {absl::ZeroDuration(), absl::Seconds(-1)}) {
    client::ConnectOptions options;
    options.stream_stall_timeout = bound;
    auto connected = client::Client::Connect("127.0.0.1:1", options);
    EXPECT_EQ(connected.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(connected.status().message(),
                HasSubstr("stream_stall_timeout must be positive"));
  }
}

// A source server that is not to be trusted, played by an in-memory
// transport: it answers a chunk with other bytes, or its manifest names a
// chunk with another size than the chunk has. The copy stops with
// DATA_LOSS naming the source; the target stores none of the bytes and
// commits nothing.
class HostileSourceTest : public CopyTest {
 protected:
  void SetUp() override {
    CopyTest::SetUp();
    StartServers();
    auto fake = std::make_unique<FakeTransport>();
    fake_ = fake.get();
    hostile_ = client::Client::WithTransport(std::move(fake));
  }

  client::CopyRequest HostileRequest() const {
    client::CopyRequest request = Request();
    request.source_label = "hostile:1";
    request.copy_policy = false;  // the fake keeps no policies
    return request;
  }

  void ExpectTargetUntouched() {
    EXPECT_EQ(StoredBytes(*target_), 0u);
    auto listed = target_->ListCheckpoints(kJob);
    if (listed.ok()) {
      EXPECT_THAT(*listed, IsEmpty());
    }
  }

  FakeTransport* fake_ = nullptr;
  std::unique_ptr<client::Client> hostile_;
};

TEST_F(HostileSourceTest, AChunkAnsweredWithOtherBytesIsDataLoss) {
  const std::string bytes = PatternBytes(256 << 10, 5);
  client::SaveOptions options;
  options.chunk_bytes = 64 << 10;
  ASSERT_TRUE(
      hostile_->SaveShard(kJob, 1, {Uint8Tensor("w", bytes)}, options).ok());
  const ChunkId victim =
      Sha256(absl::string_view(bytes).substr(64 << 10, 64 << 10));
  fake_->AnswerWith(victim, victim, std::string(64 << 10, 'x'));

  absl::StatusOr<client::CopyReport> report =
      client::Client::Copy(*hostile_, *target_, HostileRequest());
  ASSERT_EQ(report.status().code(), absl::StatusCode::kDataLoss)
      << report.status();
  EXPECT_THAT(report.status().message(),
              HasSubstr("the source server answered chunk " + victim.ToHex()));
  ExpectTargetUntouched();
}

TEST_F(HostileSourceTest, AManifestNamingAChunkWithAnotherSizeIsDataLoss) {
  // A 64-byte chunk that the manifest says holds 100 bytes.
  const std::string bytes = PatternBytes(64, 6);
  const ChunkId id = Sha256(bytes);
  ASSERT_TRUE(fake_->BeginCheckpoint(kJob, 1, {}).ok());
  std::unique_ptr<client::ChunkUploadStream> upload =
      fake_->OpenUpload(kJob, 1);
  ASSERT_TRUE(upload->Add(id, bytes).ok());
  ASSERT_TRUE(upload->Close().ok());
  ShardManifest shard;
  TensorEntry& entry = shard.tensors.emplace_back();
  entry.name = "w";
  entry.global_shape = {100};
  entry.box = Box{{0}, {100}};
  entry.pieces.push_back(ChunkRef{id, 100});
  ASSERT_TRUE(fake_->CommitShard(kJob, 1, 1, shard).ok());

  absl::StatusOr<client::CopyReport> report =
      client::Client::Copy(*hostile_, *target_, HostileRequest());
  ASSERT_EQ(report.status().code(), absl::StatusCode::kDataLoss)
      << report.status();
  EXPECT_THAT(report.status().message(),
              HasSubstr("reading chunks from the source"));
  ExpectTargetUntouched();
}

}  // namespace
}  // namespace ckpt::testing
