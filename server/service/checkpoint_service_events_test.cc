// The job event history kept by CheckpointService: every kind is recorded,
// in order, in the same batch as the change it records (a failed batch
// leaves neither), and read back by ListEvents.
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/event.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/service/checkpoint_service.h"
#include "server/storage/fault_injecting_store.h"
#include "tests/testing/service_test_util.h"

namespace ckpt::server {
namespace {

using ::ckpt::server::testing::kJob;
using ::ckpt::server::testing::MaxToKeep;
using ::ckpt::server::testing::ShardBuilder;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using Op = FaultInjectingStore::Op;

class CheckpointServiceEventsTest
    : public ::ckpt::server::testing::CheckpointServiceTest {
 protected:
  std::vector<JobEvent> Events(absl::string_view job = kJob) {
    auto events = service_.ListEvents(job, 0);
    EXPECT_TRUE(events.ok()) << events.status();
    return events.ok() ? *std::move(events) : std::vector<JobEvent>();
  }

  // The history as "kind@step" ("kind" for job-level events), oldest first.
  std::vector<std::string> History(absl::string_view job = kJob) {
    std::vector<std::string> history;
    for (const JobEvent& event : Events(job)) {
      history.push_back(
          event.step.has_value()
              ? absl::StrCat(EventKindName(event.kind), "@", *event.step)
              : std::string(EventKindName(event.kind)));
    }
    return history;
  }

  // The detail of the only event of `kind` about `step`.
  std::string DetailOf(EventKind kind, std::optional<int64_t> step) {
    std::vector<std::string> details;
    for (const JobEvent& event : Events()) {
      if (event.kind == kind && event.step == step) {
        details.push_back(event.detail);
      }
    }
    EXPECT_EQ(details.size(), 1u) << EventKindName(kind);
    return details.empty() ? std::string() : details[0];
  }
};

TEST_F(CheckpointServiceEventsTest,
       CommitIsRecordedOnceWhenTheLastRankCommits) {
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", "rank0 bytes"}}}, 5, 2).ok());
  EXPECT_THAT(History(), IsEmpty());  // one rank of two: nothing visible yet
  clock_.Advance(absl::Minutes(1));
  const absl::Time commit_time = clock_.Now();
  ASSERT_TRUE(Save(ShardBuilder{1, {{"w", "rank1 bytes"}}}, 5, 2).ok());
  // A retried commit changes nothing and records nothing.
  ASSERT_TRUE(
      service_
          .CommitShard(kJob, 5, 2,
                       ShardBuilder{1, {{"w", "rank1 bytes"}}}.Manifest())
          .ok());

  std::vector<JobEvent> events = Events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].job, kJob);
  EXPECT_EQ(events[0].sequence, 1u);
  EXPECT_EQ(events[0].kind, EventKind::kCommitted);
  EXPECT_EQ(events[0].step, std::optional<int64_t>(5));
  EXPECT_EQ(events[0].time, commit_time);
  EXPECT_EQ(events[0].detail, "2 ranks, 22 bytes");
}

TEST_F(CheckpointServiceEventsTest, AbortsAreRecordedWithTheirReasons) {
  ASSERT_TRUE(
      service_.BeginCheckpoint(kJob, 1, 1, {}, absl::ZeroDuration()).ok());
  ASSERT_TRUE(
      service_.AbortCheckpoint(kJob, 1, "preempted by the scheduler").ok());
  ASSERT_TRUE(service_.AbortCheckpoint(kJob, 1, "again").ok());  // no-op

  // Lease expiry found by the reaper...
  ASSERT_TRUE(
      service_.BeginCheckpoint(kJob, 2, 2, {}, absl::ZeroDuration()).ok());
  clock_.Advance(absl::Minutes(11));
  auto expired = service_.ExpireLeases();
  ASSERT_TRUE(expired.ok()) << expired.status();
  EXPECT_EQ(*expired, 1);

  // ... and by a commit that arrives after the lease ended.
  ASSERT_TRUE(
      service_.BeginCheckpoint(kJob, 3, 1, {}, absl::ZeroDuration()).ok());
  ASSERT_TRUE(service_.PutChunk(kJob, Sha256("late"), "late").ok());
  clock_.Advance(absl::Minutes(11));
  EXPECT_TRUE(absl::IsAborted(
      service_
          .CommitShard(kJob, 3, 1, ShardBuilder{0, {{"w", "late"}}}.Manifest())
          .status()));

  EXPECT_THAT(History(), ElementsAre("aborted@1", "aborted@2", "aborted@3"));
  EXPECT_EQ(DetailOf(EventKind::kAborted, 1), "preempted by the scheduler");
  EXPECT_THAT(DetailOf(EventKind::kAborted, 2),
              AllOf(HasSubstr("lease expired"), HasSubstr("0 of 2 ranks")));
  EXPECT_THAT(DetailOf(EventKind::kAborted, 3), HasSubstr("lease expired"));
}

TEST_F(CheckpointServiceEventsTest, LongDetailsAreCutOnACharacterBoundary) {
  // 2-byte characters: the cut at 1021 bytes falls inside one.
  std::string reason;
  for (int i = 0; i < 2000; ++i) reason += "\xc3\xa9";  // U+00E9
  ASSERT_TRUE(
      service_.BeginCheckpoint(kJob, 1, 1, {}, absl::ZeroDuration()).ok());
  ASSERT_TRUE(service_.AbortCheckpoint(kJob, 1, reason).ok());
  const std::string detail = DetailOf(EventKind::kAborted, 1);
  ASSERT_LE(detail.size(), 1024u);
  EXPECT_GE(detail.size(), 1020u);
  ASSERT_TRUE(absl::EndsWith(detail, "..."));
  const std::string kept = detail.substr(0, detail.size() - 3);
  EXPECT_EQ(reason.substr(0, kept.size()), kept);
  EXPECT_EQ(kept.size() % 2, 0u) << "cut inside a character";
}

TEST_F(CheckpointServiceEventsTest, DeleteIsRecordedAndEarlierEventsStay) {
  ASSERT_TRUE(SaveStep(1).ok());
  ASSERT_TRUE(service_.PinCheckpoint(kJob, 1, true).ok());
  // A pin is overridden only with force, and the refusal leaves no event.
  const absl::Status refused = service_.DeleteCheckpoint(kJob, 1);
  EXPECT_TRUE(absl::IsFailedPrecondition(refused)) << refused;
  EXPECT_THAT(refused.message(), HasSubstr("is pinned"));
  EXPECT_THAT(History(), ElementsAre("committed@1", "pinned@1"));
  ASSERT_TRUE(service_.DeleteCheckpoint(kJob, 1, {}, /*force=*/true).ok());
  EXPECT_THAT(History(), ElementsAre("committed@1", "pinned@1", "deleted@1"));
  EXPECT_EQ(DetailOf(EventKind::kDeleted, 1),
            "was committed and pinned; the pin was overridden (force)");

  ASSERT_TRUE(
      service_.BeginCheckpoint(kJob, 2, 1, {}, absl::ZeroDuration()).ok());
  ASSERT_TRUE(service_.AbortCheckpoint(kJob, 2, "").ok());
  ASSERT_TRUE(service_.DeleteCheckpoint(kJob, 2).ok());
  EXPECT_EQ(DetailOf(EventKind::kAborted, 2), "aborted by client");
  EXPECT_EQ(DetailOf(EventKind::kDeleted, 2), "was aborted");
}

TEST_F(CheckpointServiceEventsTest, RetentionAtCommitRecordsWhyItPruned) {
  ASSERT_TRUE(SaveStep(1).ok());
  ASSERT_TRUE(service_.SetRetentionPolicy(kJob, MaxToKeep(2)).ok());
  ASSERT_TRUE(SaveStep(2).ok());
  ASSERT_TRUE(SaveStep(3).ok());
  // The commit comes before what it made the policy delete.
  EXPECT_THAT(History(), ElementsAre("committed@1", "policy_set", "committed@2",
                                     "committed@3", "pruned@1"));
  EXPECT_EQ(DetailOf(EventKind::kPolicySet, std::nullopt), "max_to_keep=2");
  EXPECT_EQ(DetailOf(EventKind::kPruned, 1),
            "retention at commit of step 3 (max_to_keep=2): not among the 2 "
            "most recent");
}

TEST_F(CheckpointServiceEventsTest, LateStepPrunedAtItsOwnCommitHasBothEvents) {
  ASSERT_TRUE(SaveStep(10).ok());
  ASSERT_TRUE(service_.SetRetentionPolicy(kJob, MaxToKeep(1)).ok());
  ASSERT_TRUE(SaveStep(5).ok());  // older than what the policy keeps
  EXPECT_THAT(History(), ElementsAre("committed@10", "policy_set",
                                     "committed@5", "pruned@5"));
}

TEST_F(CheckpointServiceEventsTest, SettingAPolicyRecordsItOnlyWhenItChanges) {
  for (int step = 1; step <= 3; ++step) ASSERT_TRUE(SaveStep(step).ok());
  auto deleted = service_.SetRetentionPolicy(kJob, MaxToKeep(1));
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_THAT(*deleted, ElementsAre(1, 2));
  // The same policy again deletes nothing new and is no event.
  ASSERT_TRUE(service_.SetRetentionPolicy(kJob, MaxToKeep(1)).ok());
  ASSERT_TRUE(service_.SetRetentionPolicy(kJob, RetentionPolicy{}).ok());
  EXPECT_THAT(History(),
              ElementsAre("committed@1", "committed@2", "committed@3",
                          "policy_set", "pruned@1", "pruned@2", "policy_set"));
  const std::vector<JobEvent> events = Events();
  EXPECT_EQ(events[3].detail, "max_to_keep=1");
  EXPECT_EQ(events[4].detail,
            "retention as the policy was set (max_to_keep=1): not among the 1 "
            "most recent");
  EXPECT_EQ(events[6].detail, "keep everything");
}

TEST_F(CheckpointServiceEventsTest, PolicyFromBeginIsRecordedWhenItChanges) {
  // Every rank of every save passes the writer's policy.
  for (int step = 1; step <= 3; ++step) {
    for (int rank = 0; rank < 2; ++rank) {
      ASSERT_TRUE(service_
                      .BeginCheckpoint(kJob, step, 2, {}, absl::ZeroDuration(),
                                       MaxToKeep(step < 3 ? 5 : 1))
                      .ok());
    }
  }
  EXPECT_THAT(History(), ElementsAre("policy_set", "policy_set"));
  const std::vector<JobEvent> events = Events();
  EXPECT_EQ(events[0].detail, "max_to_keep=5 (from BeginCheckpoint of step 1)");
  EXPECT_EQ(events[1].detail, "max_to_keep=1 (from BeginCheckpoint of step 3)");
}

TEST_F(CheckpointServiceEventsTest, PolicyFromBeginRecordsWhatItPrunes) {
  ASSERT_TRUE(SaveStep(1).ok());
  ASSERT_TRUE(SaveStep(2).ok());
  ASSERT_TRUE(
      service_
          .BeginCheckpoint(kJob, 3, 1, {}, absl::ZeroDuration(), MaxToKeep(1))
          .ok());
  EXPECT_THAT(History(), ElementsAre("committed@1", "committed@2", "policy_set",
                                     "pruned@1"));
  EXPECT_THAT(DetailOf(EventKind::kPruned, 1),
              HasSubstr("retention as BeginCheckpoint of step 3 set the "
                        "policy (max_to_keep=1)"));
}

TEST_F(CheckpointServiceEventsTest, PruneRecordsDeletionsButADryRunNothing) {
  for (int step = 1; step <= 4; ++step) ASSERT_TRUE(SaveStep(step).ok());
  ASSERT_TRUE(service_.Prune(kJob, MaxToKeep(1), /*dry_run=*/true).ok());
  EXPECT_EQ(Events().size(), 4u);
  ASSERT_TRUE(service_.Prune(kJob, MaxToKeep(3), /*dry_run=*/false).ok());
  ASSERT_TRUE(service_.SetRetentionPolicy(kJob, RetentionPolicy{}).ok());
  ASSERT_TRUE(service_.Prune(kJob, std::nullopt, /*dry_run=*/false).ok());
  EXPECT_THAT(History(),
              ElementsAre("committed@1", "committed@2", "committed@3",
                          "committed@4", "pruned@1", "policy_set"));
  EXPECT_EQ(DetailOf(EventKind::kPruned, 1),
            "prune with a one-off policy (max_to_keep=3): not among the 3 "
            "most recent");
}

TEST_F(CheckpointServiceEventsTest, PruneWithTheStoredPolicySaysSo) {
  for (int step = 1; step <= 3; ++step) ASSERT_TRUE(SaveStep(step).ok());
  ASSERT_TRUE(service_.PinCheckpoint(kJob, 1, true).ok());
  ASSERT_TRUE(service_.SetRetentionPolicy(kJob, MaxToKeep(1)).ok());
  ASSERT_TRUE(service_.PinCheckpoint(kJob, 1, false).ok());
  ASSERT_TRUE(service_.Prune(kJob, std::nullopt, /*dry_run=*/false).ok());
  EXPECT_THAT(History(), ElementsAre("committed@1", "committed@2",
                                     "committed@3", "pinned@1", "policy_set",
                                     "pruned@2", "unpinned@1", "pruned@1"));
  EXPECT_EQ(DetailOf(EventKind::kPruned, 1),
            "prune with the stored policy (max_to_keep=1): not among the 1 "
            "most recent");
}

TEST_F(CheckpointServiceEventsTest, PinsAreRecordedOnlyWhenTheyChange) {
  ASSERT_TRUE(SaveStep(1).ok());
  ASSERT_TRUE(service_.PinCheckpoint(kJob, 1, true).ok());
  ASSERT_TRUE(service_.PinCheckpoint(kJob, 1, true).ok());
  ASSERT_TRUE(service_.PinCheckpoint(kJob, 1, false).ok());
  ASSERT_TRUE(service_.PinCheckpoint(kJob, 1, false).ok());
  EXPECT_THAT(History(), ElementsAre("committed@1", "pinned@1", "unpinned@1"));
}

// The deprecated way, kept for older clients.
TEST_F(CheckpointServiceEventsTest, OnlyARestoringManifestReadIsRecorded) {
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", "a"}}}, 7, 2).ok());
  ASSERT_TRUE(Save(ShardBuilder{1, {{"w", "b"}}}, 7, 2).ok());
  ASSERT_TRUE(service_.GetManifest(kJob, std::nullopt).ok());  // `ckpt show`
  ASSERT_TRUE(service_.GetManifest(kJob, 7).ok());
  ASSERT_TRUE(service_.GetManifest(kJob, std::nullopt, 1).ok());
  // A resharded restore may use a rank beyond the saved world size.
  ASSERT_TRUE(service_.GetManifest(kJob, 7, 3).ok());
  EXPECT_THAT(History(),
              ElementsAre("committed@7", "restored@7", "restored@7"));
  std::vector<JobEvent> events = Events();
  EXPECT_EQ(events[1].detail, "rank 1");
  EXPECT_EQ(events[2].detail, "rank 3");

  EXPECT_TRUE(
      absl::IsInvalidArgument(service_.GetManifest(kJob, 7, -1).status()));
  EXPECT_TRUE(absl::IsNotFound(service_.GetManifest(kJob, 8, 0).status()));
  EXPECT_EQ(Events().size(), 3u);
}

TEST_F(CheckpointServiceEventsTest, ReportRestoreRecordsARestoredEvent) {
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", "a"}}}, 7, 2).ok());
  // Pending: nothing to have restored.
  EXPECT_TRUE(absl::IsNotFound(service_.ReportRestore(kJob, 7, 0)));
  ASSERT_TRUE(Save(ShardBuilder{1, {{"w", "b"}}}, 7, 2).ok());
  ASSERT_TRUE(service_.ReportRestore(kJob, 7, 1).ok());
  // A resharded restore may use a rank beyond the saved world size.
  ASSERT_TRUE(service_.ReportRestore(kJob, 7, 3).ok());
  EXPECT_THAT(History(),
              ElementsAre("committed@7", "restored@7", "restored@7"));
  EXPECT_EQ(Events()[1].detail, "rank 1");
  EXPECT_EQ(Events()[2].detail, "rank 3");

  // Refusals record nothing.
  const absl::Status negative = service_.ReportRestore(kJob, 7, -1);
  EXPECT_TRUE(absl::IsInvalidArgument(negative));
  EXPECT_THAT(negative.message(), HasSubstr("rank must be in [0, 65536)"));
  EXPECT_TRUE(absl::IsInvalidArgument(service_.ReportRestore(kJob, 7, 65536)));
  EXPECT_TRUE(absl::IsInvalidArgument(service_.ReportRestore(kJob, -7, 0)));
  EXPECT_TRUE(absl::IsInvalidArgument(service_.ReportRestore("bad", 7, 0)));
  EXPECT_THAT(service_.ReportRestore(kJob, 8, 0).message(),
              HasSubstr("has no checkpoint 8"));
  EXPECT_TRUE(absl::IsNotFound(service_.ReportRestore("team/other", 7, 0)));
  ASSERT_TRUE(service_.DeleteCheckpoint(kJob, 7).ok());
  EXPECT_TRUE(absl::IsNotFound(service_.ReportRestore(kJob, 7, 0)));
  EXPECT_THAT(History(), ElementsAre("committed@7", "restored@7", "restored@7",
                                     "deleted@7"));
}

TEST_F(CheckpointServiceEventsTest, AReportThatCannotBeWrittenSaysSo) {
  ASSERT_TRUE(SaveStep(1).ok());
  faults_.FailNext(Op::kApply, absl::ResourceExhaustedError("disk full"));
  EXPECT_TRUE(absl::IsResourceExhausted(service_.ReportRestore(kJob, 1, 0)));
  EXPECT_THAT(History(), ElementsAre("committed@1"));
}

TEST_F(CheckpointServiceEventsTest, AFailedRestoreRecordDoesNotFailTheRestore) {
  ASSERT_TRUE(SaveStep(1).ok());
  faults_.FailNext(Op::kApply, absl::ResourceExhaustedError("disk full"));
  auto manifest = service_.GetManifest(kJob, std::nullopt, 0);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->record.step, 1);
  EXPECT_THAT(History(), ElementsAre("committed@1"));
}

// Each change and its event are one batch: when the batch fails, neither
// happened, and the retry records the event once.
TEST_F(CheckpointServiceEventsTest, AFailedChangeRecordsNoEvent) {
  ASSERT_TRUE(
      service_.BeginCheckpoint(kJob, 1, 1, {}, absl::ZeroDuration()).ok());
  ASSERT_TRUE(service_.PutChunk(kJob, Sha256("a"), "a").ok());
  const ShardManifest shard = ShardBuilder{0, {{"w", "a"}}}.Manifest();
  faults_.FailNext(Op::kApply, absl::UnavailableError("disk went away"));
  EXPECT_TRUE(
      absl::IsUnavailable(service_.CommitShard(kJob, 1, 1, shard).status()));
  EXPECT_THAT(History(), IsEmpty());
  ASSERT_TRUE(service_.CommitShard(kJob, 1, 1, shard).ok());
  EXPECT_THAT(History(), ElementsAre("committed@1"));

  faults_.FailNext(Op::kApply, absl::UnavailableError("injected"));
  EXPECT_FALSE(service_.PinCheckpoint(kJob, 1, true).ok());
  faults_.FailNext(Op::kApply, absl::UnavailableError("injected"));
  EXPECT_FALSE(service_.SetRetentionPolicy(kJob, MaxToKeep(1)).ok());
  faults_.FailNext(Op::kApply, absl::UnavailableError("injected"));
  EXPECT_FALSE(service_.DeleteCheckpoint(kJob, 1).ok());
  ASSERT_TRUE(
      service_.BeginCheckpoint(kJob, 2, 1, {}, absl::ZeroDuration()).ok());
  faults_.FailNext(Op::kApply, absl::UnavailableError("injected"));
  EXPECT_FALSE(service_.AbortCheckpoint(kJob, 2, "stop").ok());
  EXPECT_THAT(History(), ElementsAre("committed@1"));
  EXPECT_THAT(VisibleSteps(), ElementsAre(1));

  ASSERT_TRUE(service_.DeleteCheckpoint(kJob, 1).ok());
  EXPECT_THAT(History(), ElementsAre("committed@1", "deleted@1"));
}

TEST_F(CheckpointServiceEventsTest, EachChangeWritesOneBatchWithItsEvents) {
  // One store write per operation: the change and its events together.
  auto writes_of = [&](auto&& operation) {
    const int before = faults_.calls(Op::kApply);
    EXPECT_TRUE(operation().ok());
    return faults_.calls(Op::kApply) - before;
  };
  ASSERT_TRUE(
      service_.BeginCheckpoint(kJob, 1, 1, {}, absl::ZeroDuration()).ok());
  ASSERT_TRUE(service_.PutChunk(kJob, Sha256("a"), "a").ok());
  ASSERT_TRUE(SaveStep(2).ok());
  EXPECT_EQ(writes_of([&] {
              return service_.CommitShard(
                  kJob, 1, 1, ShardBuilder{0, {{"w", "a"}}}.Manifest());
            }),
            1);
  EXPECT_EQ(writes_of([&] { return service_.PinCheckpoint(kJob, 1, true); }),
            1);
  EXPECT_EQ(writes_of([&] {
              return service_.SetRetentionPolicy(kJob, MaxToKeep(1));
            }),
            1);
  // Step 1 is pinned: deleting it takes force.
  EXPECT_EQ(writes_of([&] {
              return service_.DeleteCheckpoint(kJob, 1, {}, /*force=*/true);
            }),
            1);
  EXPECT_THAT(History(), ElementsAre("committed@2", "committed@1", "pinned@1",
                                     "policy_set", "deleted@1"));
}

TEST_F(CheckpointServiceEventsTest, ListEventsLimitsToTheNewestAndChecksInput) {
  for (int step = 1; step <= 4; ++step) ASSERT_TRUE(SaveStep(step).ok());
  auto last_two = service_.ListEvents(kJob, 2);
  ASSERT_TRUE(last_two.ok()) << last_two.status();
  ASSERT_EQ(last_two->size(), 2u);
  EXPECT_EQ((*last_two)[0].step, std::optional<int64_t>(3));
  EXPECT_EQ((*last_two)[1].step, std::optional<int64_t>(4));
  auto all = service_.ListEvents(kJob, 0);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 4u);
  auto more = service_.ListEvents(kJob, 1000000);
  ASSERT_TRUE(more.ok());
  EXPECT_EQ(more->size(), 4u);

  EXPECT_TRUE(absl::IsInvalidArgument(service_.ListEvents(kJob, -1).status()));
  EXPECT_TRUE(absl::IsNotFound(service_.ListEvents("team/none", 0).status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(service_.ListEvents("no-tenant", 0).status()));
}

}  // namespace
}  // namespace ckpt::server
