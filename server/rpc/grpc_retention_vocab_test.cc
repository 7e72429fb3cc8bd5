// restic's retention rules at the gRPC edge: the warnings fields, hostile
// values of RetentionPolicy fields 4-9 refused naming the field with
// nothing stored, the probe contract (an invalid policy is refused before
// the job is looked up), and the client refusing to send these rules to a
// server that predates them (a stand-in that, like such a server, ignores
// fields 4-9).
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ckpt/v1/ckpt.grpc.pb.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/rpc_test_fixture.h"

namespace ckpt::server {
namespace {

using ::testing::ElementsAre;
using testing::GrpcServiceTest;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing::kJob;
using testing::Tensor;

constexpr char kNoMetric[] =
    "keep_best decides nothing: no checkpoint has metric val_loss";

class GrpcRetentionVocabTest : public GrpcServiceTest {
 protected:
  // Saves steps first..n, step s dated s hours after 2026-01-01 00:00 UTC.
  void SaveSteps(int n, int first = 1) {
    client::TensorData tensors[] = {Tensor("t", bytes_)};
    for (int64_t step = first; step <= n; ++step) {
      client::SaveOptions options;
      options.metadata.writer_time =
          absl::FromUnixSeconds(1'767'225'600) + absl::Hours(step);
      if (step == 1) options.metadata.tags["release"] = "v1";
      ASSERT_TRUE(client_->SaveShard(kJob, step, tensors, options).ok());
    }
  }
  std::vector<int64_t> Steps() {
    auto listed = client_->ListCheckpoints(kJob);
    EXPECT_TRUE(listed.ok()) << listed.status();
    std::vector<int64_t> steps;
    for (const auto& record : listed.value_or(std::vector<CheckpointRecord>{}))
      steps.push_back(record.step);
    return steps;
  }
  const std::string bytes_ = "abc";
};

TEST_F(GrpcRetentionVocabTest, WarningsFieldsSayNoCheckpointHasTheMetric) {
  SaveSteps(3);
  v1::PruneCheckpointsRequest prune;
  prune.set_job(kJob);
  prune.set_dry_run(true);
  prune.mutable_policy()->set_max_to_keep(1);
  prune.mutable_policy()->mutable_keep_best()->set_k(1);
  prune.mutable_policy()->mutable_keep_best()->set_metric("val_loss");
  for (bool dry_run : {true, false}) {
    prune.set_dry_run(dry_run);
    grpc::ClientContext context;
    v1::PruneCheckpointsResponse response;
    ASSERT_TRUE(stub_->PruneCheckpoints(&context, prune, &response).ok());
    EXPECT_THAT(response.warnings(), ElementsAre(kNoMetric)) << dry_run;
    // keep_best decided nothing: max_to_keep did.
    EXPECT_FALSE(response.decisions(0).keep());
  }
  EXPECT_EQ(Steps(), (std::vector<int64_t>{3}));
  v1::SetRetentionPolicyRequest set;
  set.set_job(kJob);
  *set.mutable_policy() = prune.policy();
  grpc::ClientContext context;
  v1::SetRetentionPolicyResponse response;
  ASSERT_TRUE(stub_->SetRetentionPolicy(&context, set, &response).ok());
  EXPECT_THAT(response.warnings(), ElementsAre(kNoMetric));
  // Through the client library too.
  std::vector<std::string> warnings;
  RetentionPolicy policy;
  policy.max_to_keep = 2;
  ASSERT_TRUE(client_->SetRetentionPolicy(kJob, policy, &warnings).ok());
  EXPECT_THAT(warnings, IsEmpty());
  policy.keep_best = RetentionPolicy::KeepBest{
      1, "val_loss", RetentionPolicy::KeepBest::Mode::kMin};
  ASSERT_TRUE(client_->PruneCheckpoints(kJob, policy, true, &warnings).ok());
  EXPECT_THAT(warnings, ElementsAre(kNoMetric));
}

TEST_F(GrpcRetentionVocabTest, HostileValuesAreRefusedNamingTheField) {
  SaveSteps(3);
  RetentionPolicy stored;
  stored.max_to_keep = 5;
  ASSERT_TRUE(client_->SetRetentionPolicy(kJob, stored).ok());
  const size_t events = client_->ListEvents(kJob, 0)->size();
  struct Bad {
    std::string field;
    void (*set)(v1::RetentionPolicy*);
  };
  const std::vector<Bad> bad = {
      {"keep_within",
       [](v1::RetentionPolicy* p) { p->set_keep_within_micros(-1); }},
      {"keep_within",
       [](v1::RetentionPolicy* p) { p->set_keep_within_micros(0); }},
      {"keep_within",
       [](v1::RetentionPolicy* p) {
         p->set_keep_within_micros(std::numeric_limits<int64_t>::max());
       }},
      {"keep_hourly", [](v1::RetentionPolicy* p) { p->set_keep_hourly(-1); }},
      {"keep_daily", [](v1::RetentionPolicy* p) { p->set_keep_daily(0); }},
      {"keep_weekly",
       [](v1::RetentionPolicy* p) { p->set_keep_weekly(1 << 30); }},
      {"keep_monthly",
       [](v1::RetentionPolicy* p) {
         p->set_keep_monthly(std::numeric_limits<int32_t>::min());
       }},
      {"keep_tags", [](v1::RetentionPolicy* p) { p->add_keep_tags(""); }},
      {"keep_tags",
       [](v1::RetentionPolicy* p) {
         p->add_keep_tags(std::string(1 << 20, 'x'));
       }},
      {"keep_tags",
       [](v1::RetentionPolicy* p) { p->add_keep_tags("a\x1b[2Jb"); }},
      {"keep_tags",
       [](v1::RetentionPolicy* p) {
         for (int i = 0; i < 10000; ++i) p->add_keep_tags(absl::StrCat(i));
       }},
  };
  for (const Bad& b : bad) {
    v1::RetentionPolicy policy;
    b.set(&policy);
    SCOPED_TRACE(policy.ShortDebugString().substr(0, 100));
    v1::SetRetentionPolicyRequest set;
    set.set_job(kJob);
    *set.mutable_policy() = policy;
    grpc::ClientContext set_context;
    v1::SetRetentionPolicyResponse set_response;
    grpc::Status status =
        stub_->SetRetentionPolicy(&set_context, set, &set_response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr(b.field));
    EXPECT_LT(status.error_message().size(), 1000u);
    for (bool dry_run : {true, false}) {
      v1::PruneCheckpointsRequest prune;
      prune.set_job(kJob);
      prune.set_dry_run(dry_run);
      *prune.mutable_policy() = policy;
      grpc::ClientContext context;
      v1::PruneCheckpointsResponse response;
      status = stub_->PruneCheckpoints(&context, prune, &response);
      EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
      EXPECT_THAT(status.error_message(), HasSubstr(b.field));
    }
  }
  auto got = client_->GetRetentionPolicy(kJob);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, stored);
  EXPECT_EQ(client_->ListEvents(kJob, 0)->size(), events);
  EXPECT_EQ(Steps(), (std::vector<int64_t>{1, 2, 3}));
}

// The contract clients probe with: refused naming keep_within even for a
// job that does not exist.
TEST_F(GrpcRetentionVocabTest, InvalidPolicyIsRefusedBeforeTheJobIsLookedUp) {
  v1::PruneCheckpointsRequest prune;
  prune.set_job("nobody/never");
  prune.set_dry_run(true);
  prune.mutable_policy()->set_keep_within_micros(-1);
  grpc::ClientContext context;
  v1::PruneCheckpointsResponse response;
  grpc::Status status = stub_->PruneCheckpoints(&context, prune, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("keep_within"));
}

TEST_F(GrpcRetentionVocabTest, ResticRulesRoundTripAndDecide) {
  SaveSteps(4);
  // The server's clock after the writers' times: keep_within's window
  // ends at the newest checkpoint (it is capped at the clock only for
  // checkpoints dated in the future).
  clock_.Set(absl::FromUnixSeconds(1'767'225'600) + absl::Hours(30));
  RetentionPolicy policy;
  policy.max_to_keep = 1;
  policy.keep_tags = {"release"};
  policy.keep_within = absl::Minutes(90);
  policy.keep_daily = 1;
  auto deleted = client_->SetRetentionPolicy(kJob, policy);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  // 1: tagged; 3: within 90 minutes of 4; 4: newest.
  EXPECT_EQ(*deleted, (std::vector<int64_t>{2}));
  auto got = client_->GetRetentionPolicy(kJob);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, policy);
  // A checkpoint dated far in the future does not push the others out:
  // the window ends at the clock (4.5 h), not at step 5's time.
  ASSERT_TRUE(client_->SetRetentionPolicy(kJob, RetentionPolicy{}).ok());
  client::TensorData tensors[] = {Tensor("t", bytes_)};
  client::SaveOptions options;
  options.metadata.writer_time =
      absl::FromUnixSeconds(1'767'225'600) + absl::Hours(1000);
  ASSERT_TRUE(client_->SaveShard(kJob, 5, tensors, options).ok());
  clock_.Set(absl::FromUnixSeconds(1'767'225'600) + absl::Hours(4.5));
  RetentionPolicy within;
  within.max_to_keep = 1;
  within.keep_within = absl::Hours(2);
  auto capped = client_->SetRetentionPolicy(kJob, within);
  ASSERT_TRUE(capped.ok()) << capped.status();
  EXPECT_EQ(*capped, (std::vector<int64_t>{1}));  // 3 and 4 stay
}

// A tenant's default may use them: stored whole, shown whole, applied at
// the next commit of a job without its own.
TEST_F(GrpcRetentionVocabTest, ATenantDefaultTakesResticRules) {
  SaveSteps(3);
  RetentionPolicy policy;
  policy.max_to_keep = 1;
  policy.keep_tags = {"release"};
  policy.keep_weekly = 4;
  ASSERT_TRUE(client_->SetTenantDefaultPolicy("team", policy).ok());
  auto got = client_->GetTenantDefaultPolicy("team");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->policy, policy);
  auto applied = client_->GetRetentionPolicyInfo(kJob);
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->policy, policy);
  EXPECT_EQ(Steps(), (std::vector<int64_t>{1, 2, 3}));  // nothing at once
  // Steps 1-4 share one ISO week: keep_weekly keeps only 4, the tag 1.
  SaveSteps(4, /*first=*/4);
  EXPECT_EQ(Steps(), (std::vector<int64_t>{1, 4}));
}

// Like a server built before RetentionPolicy fields 4-9: it cannot see
// them, so a probe with a negative keep_within is an empty policy to it,
// and it would store and apply what remains of a policy.
class PreVocabularyServer final
    : public v1::CheckpointService::CallbackService {
 public:
  explicit PreVocabularyServer(grpc::StatusCode prune_answer)
      : prune_answer_(prune_answer) {}
  grpc::ServerUnaryReactor* PruneCheckpoints(
      grpc::CallbackServerContext* context,
      const v1::PruneCheckpointsRequest* request,
      v1::PruneCheckpointsResponse*) override {
    ++prunes_;
    if (!request->dry_run()) ++real_prunes_;
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status(prune_answer_, "as an old server"));
    return reactor;
  }
  grpc::ServerUnaryReactor* SetRetentionPolicy(
      grpc::CallbackServerContext* context,
      const v1::SetRetentionPolicyRequest*,
      v1::SetRetentionPolicyResponse*) override {
    ++sets_;
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  std::atomic<int> prunes_{0}, real_prunes_{0}, sets_{0};

 private:
  const grpc::StatusCode prune_answer_;
};

TEST(PreVocabularyServerTest, ClientRefusesToSendResticRulesToIt) {
  for (grpc::StatusCode answer :
       {grpc::StatusCode::OK, grpc::StatusCode::NOT_FOUND}) {
    PreVocabularyServer old(answer);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(&old);
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    ASSERT_GT(port, 0);
    auto client = client::Client::Connect(absl::StrCat("127.0.0.1:", port));
    ASSERT_TRUE(client.ok()) << client.status();
    RetentionPolicy tagged;
    tagged.max_to_keep = 1;
    tagged.keep_tags = {"release"};
    absl::Status set = (*client)->SetRetentionPolicy(kJob, tagged).status();
    EXPECT_EQ(set.code(), absl::StatusCode::kFailedPrecondition) << set;
    EXPECT_THAT(set.message(), HasSubstr("predates the retention rules"));
    EXPECT_THAT(set.message(), HasSubstr("Nothing was sent"));
    absl::Status prune =
        (*client)->PruneCheckpoints(kJob, tagged, /*dry_run=*/false).status();
    EXPECT_EQ(prune.code(), absl::StatusCode::kFailedPrecondition) << prune;
    client::SaveOptions save;
    save.retention_policy = tagged;
    const std::string bytes = "abc";
    client::TensorData tensors[] = {Tensor("t", bytes)};
    EXPECT_EQ((*client)->SaveShard(kJob, 1, tensors, save).status().code(),
              absl::StatusCode::kFailedPrecondition);
    // A tenant's default too (its probe names a job of that tenant).
    absl::Status tenant = (*client)->SetTenantDefaultPolicy("team", tagged);
    EXPECT_EQ(tenant.code(), absl::StatusCode::kFailedPrecondition) << tenant;
    EXPECT_EQ(old.sets_.load(), 0);
    EXPECT_EQ(old.real_prunes_.load(), 0);
    // A policy without them goes through as before.
    RetentionPolicy plain;
    plain.max_to_keep = 1;
    EXPECT_TRUE((*client)->SetRetentionPolicy(kJob, plain).ok());
    EXPECT_EQ(old.sets_.load(), 1);
    server->Shutdown();
  }
}

}  // namespace
}  // namespace ckpt::server
