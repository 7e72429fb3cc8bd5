// Who owns a job's retention policy (issue 17), through CheckpointService on
// a fault-injecting memory store: an operator's policy is the job's, a
// writer's applies only while no operator's exists and is otherwise ignored
// with one `policy_ignored` event per distinct policy, the tenant's default,
// a policy set before the job's first save, origins inferred for old
// records, and the refusals that leave nothing behind.
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/event.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/service/checkpoint_service.h"
#include "server/service/job_events.h"
#include "server/storage/fault_injecting_store.h"
#include "tests/testing/service_test_util.h"

namespace ckpt::server {
namespace {

using ::ckpt::server::testing::kJob;
using ::ckpt::server::testing::MaxToKeep;
using ::ckpt::server::testing::ShardBuilder;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using Op = FaultInjectingStore::Op;
using Source = PolicyOrigin::Source;

const Actor kOperator{"ops", /*may_delete_history=*/true};
// A training job whose token may delete history (role admin), and one that
// is append-only (role writer).
const Actor kAdminTrainer{"trainer", /*may_delete_history=*/true};
const Actor kWriter{"trainer-writer", /*may_delete_history=*/false};

class PolicyOwnerTest : public ::ckpt::server::testing::CheckpointServiceTest {
 protected:
  // Saves `step` of `job` as `actor`, passing `policy` to its Begin as a
  // CheckpointManager does; returns what the Begin said it ignored.
  std::string SaveWith(int64_t step,
                       const std::optional<RetentionPolicy>& policy,
                       const Actor& actor, absl::string_view job = kJob) {
    auto begun = service_.BeginCheckpoint(job, step, 1, {},
                                          absl::ZeroDuration(), policy, actor);
    EXPECT_TRUE(begun.ok()) << begun.status();
    if (!begun.ok()) return "";
    const ShardBuilder builder{0, {{"w", absl::StrCat(job, step)}}};
    auto saved = ::ckpt::server::testing::SaveShard(service_, builder, step, 1,
                                                    job, {}, actor);
    EXPECT_TRUE(saved.ok()) << saved.status();
    return begun->retention_policy_ignored;
  }

  std::vector<JobEvent> EventsOf(EventKind kind, absl::string_view job = kJob) {
    std::vector<JobEvent> found;
    auto events = service_.ListEvents(job, 0);
    EXPECT_TRUE(events.ok()) << events.status();
    if (!events.ok()) return found;
    for (const JobEvent& event : *events) {
      if (event.kind == kind) found.push_back(event);
    }
    return found;
  }

  AppliedPolicy Applied(absl::string_view job = kJob) {
    auto applied = service_.GetRetentionPolicy(job);
    EXPECT_TRUE(applied.ok()) << applied.status();
    return applied.ok() ? *std::move(applied) : AppliedPolicy{};
  }
};

TEST_F(PolicyOwnerTest, AnOperatorsPolicySurvivesAWritersManager) {
  ASSERT_TRUE(SaveWith(1, std::nullopt, kAdminTrainer).empty());
  ASSERT_TRUE(service_.SetRetentionPolicy(kJob, MaxToKeep(10), kOperator).ok());
  clock_.Advance(absl::Minutes(1));
  for (int64_t step = 2; step <= 5; ++step) {
    const std::string ignored = SaveWith(step, MaxToKeep(1), kAdminTrainer);
    EXPECT_THAT(ignored,
                HasSubstr("the retention policy passed (max_to_keep=1) "
                          "was ignored: the job's policy is an "
                          "operator's (max_to_keep=10; set by "
                          "operator ops at "));
  }
  EXPECT_THAT(VisibleSteps(), ElementsAre(1, 2, 3, 4, 5));
  const AppliedPolicy applied = Applied();
  EXPECT_EQ(applied.policy, MaxToKeep(10));
  ASSERT_TRUE(applied.origin.has_value());
  EXPECT_EQ(applied.origin->source, Source::kOperator);
  EXPECT_EQ(applied.origin->principal, "ops");
  EXPECT_FALSE(applied.origin->inferred);
  EXPECT_THAT(EventsOf(EventKind::kPruned), IsEmpty());
  // One event for the four Begins that passed the same policy.
  const std::vector<JobEvent> ignored = EventsOf(EventKind::kPolicyIgnored);
  ASSERT_EQ(ignored.size(), 1u);
  EXPECT_EQ(ignored[0].principal, "trainer");
  EXPECT_FALSE(ignored[0].step.has_value());
  EXPECT_THAT(ignored[0].detail,
              HasSubstr("max_to_keep=1 from BeginCheckpoint of step 2: the "
                        "retention policy passed"));
}

TEST_F(PolicyOwnerTest, AWritersPolicyAppliesWhileNoOperatorsExists) {
  for (int64_t step = 1; step <= 4; ++step) {
    EXPECT_EQ(SaveWith(step, MaxToKeep(2), kAdminTrainer), "");
  }
  EXPECT_THAT(VisibleSteps(), ElementsAre(3, 4));
  AppliedPolicy applied = Applied();
  EXPECT_EQ(applied.policy, MaxToKeep(2));
  EXPECT_EQ(applied.origin->source, Source::kWriter);
  EXPECT_EQ(applied.origin->principal, "trainer");
  // A writer's policy replaces a writer's.
  EXPECT_EQ(SaveWith(5, MaxToKeep(3), kAdminTrainer), "");
  EXPECT_EQ(Applied().policy, MaxToKeep(3));
  // Then an operator takes the job over: the writer's policy no longer
  // applies, and its next save is told.
  ASSERT_TRUE(service_.SetRetentionPolicy(kJob, MaxToKeep(3), kOperator).ok());
  applied = Applied();
  EXPECT_EQ(applied.origin->source, Source::kOperator);
  EXPECT_EQ(EventsOf(EventKind::kPolicySet).size(), 3u);  // 2, 3, then ops'
  EXPECT_THAT(SaveWith(6, MaxToKeep(2), kAdminTrainer),
              HasSubstr("an operator's (max_to_keep=3;"));
  EXPECT_THAT(VisibleSteps(), ElementsAre(4, 5, 6));
}

TEST_F(PolicyOwnerTest, EachDistinctIgnoredPolicyIsOneEventAndMemoryIsBounded) {
  ASSERT_TRUE(service_.SetRetentionPolicy(kJob, MaxToKeep(50), kOperator).ok());
  int64_t step = 0;
  for (int round = 0; round < 2; ++round) {
    for (int keep = 1; keep <= 3; ++keep) {
      SaveWith(++step, MaxToKeep(keep), kAdminTrainer);
    }
  }
  EXPECT_EQ(EventsOf(EventKind::kPolicyIgnored).size(), 3u);
  // Twelve distinct policies: the job remembers the newest eight.
  for (int keep = 1; keep <= 12; ++keep) {
    SaveWith(++step, MaxToKeep(100 + keep), kAdminTrainer);
  }
  EXPECT_EQ(EventsOf(EventKind::kPolicyIgnored).size(), 15u);
  auto job = store_.GetJob(kJob);
  ASSERT_TRUE(job.ok() && job->has_value());
  EXPECT_EQ((*job)->ignored_policy_digests.size(), kMaxIgnoredPolicies);
  SaveWith(++step, MaxToKeep(112), kAdminTrainer);  // remembered
  EXPECT_EQ(EventsOf(EventKind::kPolicyIgnored).size(), 15u);
  SaveWith(++step, MaxToKeep(101), kAdminTrainer);  // forgotten: reported
  EXPECT_EQ(EventsOf(EventKind::kPolicyIgnored).size(), 16u);
  // A new operator's policy: what was ignored is reported once more.
  ASSERT_TRUE(service_.SetRetentionPolicy(kJob, MaxToKeep(60), kOperator).ok());
  SaveWith(++step, MaxToKeep(112), kAdminTrainer);
  EXPECT_EQ(EventsOf(EventKind::kPolicyIgnored).size(), 17u);
}

// Regression: a writer-role Begin that passed the stored policy applied it
// at once, deleting checkpoints, although a writer's commits never do.
TEST_F(PolicyOwnerTest, AnAppendOnlyBeginPassingTheStoredPolicyDeletesNothing) {
  ASSERT_TRUE(service_.SetRetentionPolicy(kJob, MaxToKeep(2), kOperator).ok());
  for (int64_t step = 1; step <= 4; ++step)
    SaveWith(step, std::nullopt, kWriter);
  ASSERT_THAT(VisibleSteps(), ElementsAre(1, 2, 3, 4));
  EXPECT_EQ(SaveWith(5, MaxToKeep(2), kWriter), "");
  EXPECT_THAT(VisibleSteps(), ElementsAre(1, 2, 3, 4, 5));
  EXPECT_THAT(EventsOf(EventKind::kPruned), IsEmpty());
  // An admin's prune applies it.
  ASSERT_TRUE(service_.Prune(kJob, std::nullopt, false, kOperator).ok());
  EXPECT_THAT(VisibleSteps(), ElementsAre(4, 5));
}

TEST_F(PolicyOwnerTest, AnAppendOnlyWritersPolicyIsNeverStored) {
  EXPECT_THAT(SaveWith(1, MaxToKeep(1), kWriter),
              HasSubstr("principal 'trainer-writer' is append-only (role "
                        "writer) and may not set one"));
  EXPECT_EQ(Applied().policy, std::nullopt);
  EXPECT_EQ(EventsOf(EventKind::kPolicyIgnored).size(), 1u);
  EXPECT_THAT(EventsOf(EventKind::kPolicySet), IsEmpty());
}

TEST_F(PolicyOwnerTest, APolicySetBeforeTheFirstSaveCreatesTheJob) {
  auto deleted =
      service_.SetRetentionPolicy("team/new", MaxToKeep(2), kOperator);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_THAT(*deleted, IsEmpty());
  auto jobs = service_.ListJobs();
  ASSERT_TRUE(jobs.ok());
  ASSERT_EQ(jobs->size(), 1u);
  EXPECT_EQ((*jobs)[0].job.name, "team/new");
  EXPECT_EQ((*jobs)[0].checkpoint_count, 0);
  EXPECT_EQ((*jobs)[0].job.retention_policy, MaxToKeep(2));
  EXPECT_EQ((*jobs)[0].job.policy_origin->principal, "ops");
  EXPECT_EQ(EventsOf(EventKind::kPolicySet, "team/new").size(), 1u);
  for (int64_t step = 1; step <= 3; ++step) {
    EXPECT_THAT(SaveWith(step, MaxToKeep(1), kAdminTrainer, "team/new"),
                HasSubstr("an operator's"));
  }
  EXPECT_THAT(VisibleSteps("team/new"), ElementsAre(2, 3));
  // Setting the same policy again changes nothing and records nothing.
  ASSERT_TRUE(
      service_.SetRetentionPolicy("team/new", MaxToKeep(2), kOperator).ok());
  EXPECT_EQ(EventsOf(EventKind::kPolicySet, "team/new").size(), 1u);
}

TEST_F(PolicyOwnerTest,
       ATenantDefaultAppliesAtTheNextCommitOfJobsWithoutTheirOwn) {
  for (int64_t step = 1; step <= 3; ++step) {
    SaveWith(step, std::nullopt, kAdminTrainer, "team/a");
    SaveWith(step, std::nullopt, kAdminTrainer, "team/b");
    SaveWith(step, std::nullopt, kAdminTrainer, "other/c");
    SaveWith(step, MaxToKeep(3), kAdminTrainer, "team/w");  // a writer's
  }
  ASSERT_TRUE(
      service_.SetRetentionPolicy("team/b", MaxToKeep(3), kOperator).ok());
  ASSERT_TRUE(
      service_.SetTenantDefaultPolicy("team", MaxToKeep(1), kOperator).ok());
  // Nothing at once, across the tenant.
  EXPECT_THAT(VisibleSteps("team/a"), ElementsAre(1, 2, 3));
  AppliedPolicy applied = Applied("team/a");
  EXPECT_EQ(applied.policy, MaxToKeep(1));
  EXPECT_EQ(applied.origin->source, Source::kTenantDefault);
  EXPECT_EQ(applied.origin->principal, "ops");
  auto dry =
      service_.Prune("team/a", std::nullopt, /*dry_run=*/true, kOperator);
  ASSERT_TRUE(dry.ok());
  EXPECT_EQ(dry->size(), 3u);
  EXPECT_FALSE((*dry)[0].keep);
  // At each job's next commit: its own operator's policy wins, a writer's
  // does not, another tenant's job is untouched.
  for (const char* job : {"team/a", "team/b", "other/c", "team/w"}) {
    SaveWith(4, std::nullopt, kAdminTrainer, job);
  }
  EXPECT_THAT(VisibleSteps("team/a"), ElementsAre(4));
  EXPECT_THAT(VisibleSteps("team/b"), ElementsAre(2, 3, 4));
  EXPECT_THAT(VisibleSteps("other/c"), ElementsAre(1, 2, 3, 4));
  EXPECT_THAT(VisibleSteps("team/w"), ElementsAre(4));
  EXPECT_THAT(EventsOf(EventKind::kPruned, "team/a")[0].detail,
              HasSubstr("(the tenant's default policy)"));
  // A writer's policy is ignored while the default applies.
  EXPECT_THAT(SaveWith(1, MaxToKeep(5), kAdminTrainer, "team/new"),
              HasSubstr("the job's policy is its tenant's default "
                        "(max_to_keep=1; set by tenant default ops at "));
  auto tenant = service_.GetTenantDefaultPolicy("team");
  ASSERT_TRUE(tenant.ok());
  EXPECT_EQ(tenant->policy, MaxToKeep(1));
  EXPECT_EQ(service_.GetTenantDefaultPolicy("other")->policy, std::nullopt);
}

TEST_F(PolicyOwnerTest, ClearingGivesTheJobBackToTheDefaultOrItsWriter) {
  for (int64_t step = 1; step <= 3; ++step) {
    SaveWith(step, std::nullopt, kAdminTrainer);
  }
  ASSERT_TRUE(service_.SetRetentionPolicy(kJob, MaxToKeep(3), kOperator).ok());
  ASSERT_TRUE(
      service_.SetTenantDefaultPolicy("team", MaxToKeep(1), kOperator).ok());
  ASSERT_TRUE(service_.ClearRetentionPolicy(kJob, kOperator).ok());
  // Nothing at once; the tenant's default from the next commit.
  EXPECT_THAT(VisibleSteps(), ElementsAre(1, 2, 3));
  EXPECT_EQ(Applied().origin->source, Source::kTenantDefault);
  const std::vector<JobEvent> set = EventsOf(EventKind::kPolicySet);
  ASSERT_EQ(set.size(), 2u);
  EXPECT_EQ(set[1].detail, "none (cleared)");
  EXPECT_EQ(set[1].principal, "ops");
  // Clearing again, or a tenant without a default, changes nothing.
  ASSERT_TRUE(service_.ClearRetentionPolicy(kJob, kOperator).ok());
  ASSERT_TRUE(service_.ClearTenantDefaultPolicy("other", kOperator).ok());
  EXPECT_EQ(EventsOf(EventKind::kPolicySet).size(), 2u);
  // Without the default, a writer's policy applies again.
  ASSERT_TRUE(service_.ClearTenantDefaultPolicy("team", kOperator).ok());
  EXPECT_EQ(Applied().policy, std::nullopt);
  EXPECT_EQ(SaveWith(4, MaxToKeep(2), kAdminTrainer), "");
  EXPECT_THAT(VisibleSteps(), ElementsAre(3, 4));
  EXPECT_TRUE(absl::IsNotFound(service_.ClearRetentionPolicy("team/none")));
  EXPECT_TRUE(absl::IsInvalidArgument(service_.ClearTenantDefaultPolicy("a/")));
}

TEST_F(PolicyOwnerTest, AnOldRecordsOriginIsInferredFromItsEvents) {
  const absl::Time then = absl::FromUnixSeconds(1700000000);
  MetadataBatch batch;
  for (const char* name : {"team/by-begin", "team/by-cli", "team/no-history",
                           "team/other-history"}) {
    JobRecord job = MakeJobRecord(name, then);
    job.retention_policy = MaxToKeep(2);
    batch.PutJob(job);
  }
  batch.AppendEvent(PolicySetEvent("team/by-begin", MaxToKeep(2), then, "bob",
                                   " (from BeginCheckpoint of step 7)"));
  batch.AppendEvent(
      PolicySetEvent("team/by-cli", MaxToKeep(2), then, "ann", ""));
  batch.AppendEvent(
      PolicySetEvent("team/other-history", MaxToKeep(9), then, "bob", ""));
  ASSERT_TRUE(store_.Apply(batch).ok());

  PolicyOrigin origin = *Applied("team/by-begin").origin;
  EXPECT_EQ(origin.source, Source::kWriter);
  EXPECT_EQ(origin.principal, "bob");
  EXPECT_EQ(origin.time, then);
  EXPECT_TRUE(origin.inferred);
  origin = *Applied("team/by-cli").origin;
  EXPECT_EQ(origin.source, Source::kOperator);
  EXPECT_EQ(origin.principal, "ann");
  for (const char* unknown : {"team/no-history", "team/other-history"}) {
    origin = *Applied(unknown).origin;
    EXPECT_EQ(origin.source, Source::kOperator) << unknown;
    EXPECT_EQ(origin.principal, "") << unknown;
    EXPECT_EQ(origin.time, std::nullopt) << unknown;
    EXPECT_TRUE(origin.inferred) << unknown;
  }
  // The writer's old policy gives way; the assumed operator's does not.
  EXPECT_EQ(SaveWith(1, MaxToKeep(4), kAdminTrainer, "team/by-begin"), "");
  EXPECT_NE(SaveWith(1, MaxToKeep(4), kAdminTrainer, "team/no-history"), "");
  EXPECT_FALSE(Applied("team/by-begin").origin->inferred);
}

TEST_F(PolicyOwnerTest, RefusalsLeaveNothingBehind) {
  ASSERT_TRUE(service_.SetRetentionPolicy(kJob, MaxToKeep(5), kOperator).ok());
  const auto events_before = service_.ListEvents(kJob, 0);
  ASSERT_TRUE(events_before.ok());
  for (const char* tenant : {"", "a/b", "a b", "\x01", "..x\xff"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(
        service_.SetTenantDefaultPolicy(tenant, MaxToKeep(1), kOperator)))
        << tenant;
  }
  EXPECT_TRUE(absl::IsInvalidArgument(
      service_.SetTenantDefaultPolicy(std::string(65, 'a'), MaxToKeep(1))));
  EXPECT_TRUE(absl::IsInvalidArgument(
      service_.SetTenantDefaultPolicy("team", MaxToKeep(-3))));
  EXPECT_EQ(*store_.GetTenant("team"), std::nullopt);
  EXPECT_TRUE(absl::IsInvalidArgument(
      service_.SetRetentionPolicy("team/x/", MaxToKeep(1)).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      service_.SetRetentionPolicy("team/y", MaxToKeep(0)).status()));
  EXPECT_EQ(service_.ListJobs()->size(), 1u);
  // A Begin whose batch fails records neither the event nor the memory of
  // the ignored policy: the next attempt reports it.
  faults_.FailNext(Op::kApply, absl::UnavailableError("injected"));
  EXPECT_FALSE(service_
                   .BeginCheckpoint(kJob, 1, 1, {}, absl::ZeroDuration(),
                                    MaxToKeep(1), kAdminTrainer)
                   .ok());
  EXPECT_EQ(service_.ListEvents(kJob, 0)->size(), events_before->size());
  EXPECT_NE(SaveWith(1, MaxToKeep(1), kAdminTrainer), "");
  EXPECT_EQ(EventsOf(EventKind::kPolicyIgnored).size(), 1u);
}

// restic's rules (RetentionPolicy fields 4-9) through the ownership paths:
// a tenant default that uses them applies at a commit, an operator's set
// on a job with checkpoints reports its warnings, and writers' policies
// that differ only in them are distinct ignored policies (the digest of
// RetentionPolicyText tells them apart, a comma inside a tag too).
TEST_F(PolicyOwnerTest, ResticRulesFlowThroughOwnership) {
  RetentionPolicy tagged = MaxToKeep(1);
  tagged.keep_tags = {"release"};
  ASSERT_TRUE(service_.SetTenantDefaultPolicy("team", tagged, kOperator).ok());
  EXPECT_EQ(service_.GetTenantDefaultPolicy("team")->policy, tagged);
  for (int64_t step = 1; step <= 4; ++step) {
    CheckpointMetadata meta;
    if (step == 2) meta.tags["release"] = "v1";
    ASSERT_TRUE(Save(ShardBuilder{0, {{"w", absl::StrCat("s", step)}}}, step, 1,
                     "team/a", meta)
                    .ok());
  }
  EXPECT_THAT(VisibleSteps("team/a"), ElementsAre(2, 4));

  RetentionPolicy best = MaxToKeep(5);
  best.keep_best = RetentionPolicy::KeepBest{
      1, "val_loss", RetentionPolicy::KeepBest::Mode::kMin};
  best.keep_daily = 3;
  std::vector<std::string> warnings;
  ASSERT_TRUE(
      service_.SetRetentionPolicy("team/a", best, kOperator, &warnings).ok());
  EXPECT_THAT(warnings, ElementsAre("keep_best decides nothing: no "
                                    "checkpoint has metric val_loss"));
  EXPECT_EQ(Applied("team/a").origin->source, Source::kOperator);
  EXPECT_EQ(Applied("team/a").policy, best);

  RetentionPolicy comma = MaxToKeep(2);
  comma.keep_tags = {"a,b"};
  RetentionPolicy two_tags = MaxToKeep(2);
  two_tags.keep_tags = {"a", "b"};
  RetentionPolicy daily = MaxToKeep(2);
  daily.keep_daily = 7;
  EXPECT_THAT(SaveWith(5, comma, kAdminTrainer, "team/a"),
              HasSubstr("keep_tags=\"a,b\") was ignored: the job's policy "
                        "is an operator's (max_to_keep=5 keep_best=1 by "
                        "val_loss (min) keep_daily=3;"));
  SaveWith(6, two_tags, kAdminTrainer, "team/a");
  SaveWith(7, daily, kAdminTrainer, "team/a");
  SaveWith(8, comma, kAdminTrainer, "team/a");
  EXPECT_EQ(EventsOf(EventKind::kPolicyIgnored, "team/a").size(), 3u);
  EXPECT_EQ(Applied("team/a").policy, best);
}

}  // namespace
}  // namespace ckpt::server
