#include "server/service/checkpoint_service.h"

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/chunking.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/storage/fault_injecting_store.h"
#include "server/storage/memory_store.h"
#include "server/storage/store_wrappers.h"
#include "tests/testing/service_test_util.h"

namespace ckpt::server {
namespace {

using ::ckpt::server::testing::CheckpointServiceTest;
using ::ckpt::server::testing::kJob;
using ::ckpt::server::testing::MaxToKeep;
using ::ckpt::server::testing::ShardBuilder;
using ::ckpt::server::testing::WithLoss;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

// Runs `before_shards` (once) just before the next GetShards: what another
// call can do between GetManifest's read of the record and of its shards.
class BetweenReadsStore final : public MetadataStoreWrapper {
 public:
  using MetadataStoreWrapper::MetadataStoreWrapper;
  absl::StatusOr<std::vector<ShardManifest>> GetShards(absl::string_view job,
                                                       int64_t step) override {
    if (before_shards) std::exchange(before_shards, nullptr)();
    if (lose_shards) return std::vector<ShardManifest>();
    return MetadataStoreWrapper::GetShards(job, step);
  }
  std::function<void()> before_shards;
  bool lose_shards = false;  // as a damaged store would
};

// Found by the soak (T7/T10, seed 5109): a restore of a checkpoint that
// retention deleted at another job's commit, between GetManifest's two
// reads, was DATA_LOSS "has 0 stored shards", which reads as damage.
TEST(GetManifestRaceTest, ACheckpointDeletedBetweenItsReadsIsNotFound) {
  FakeClock clock;
  MemoryStore store;
  BetweenReadsStore metadata(&store);
  CheckpointService service(&store, &metadata, &clock);
  for (int64_t step : {1, 2}) {
    ASSERT_TRUE(SaveShard(service,
                          ShardBuilder{0, {{"w", absl::StrCat("s", step)}}},
                          step, 1, kJob, {})
                    .ok());
  }
  // By step, and the latest.
  for (const std::optional<int64_t> step :
       {std::optional<int64_t>(1), std::optional<int64_t>()}) {
    const int64_t deleted = step.value_or(2);
    metadata.before_shards = [&] {
      ASSERT_TRUE(service.DeleteCheckpoint(kJob, deleted).ok());
    };
    absl::StatusOr<Checkpoint> read = service.GetManifest(kJob, step);
    EXPECT_TRUE(absl::IsNotFound(read.status())) << read.status();
    EXPECT_THAT(read.status().message(),
                HasSubstr("was deleted while it was being read"));
  }
  // Shards missing under a record that is still there: damage, as before.
  ASSERT_TRUE(
      SaveShard(service, ShardBuilder{0, {{"w", "s3"}}}, 3, 1, kJob, {}).ok());
  metadata.lose_shards = true;
  absl::StatusOr<Checkpoint> damaged = service.GetManifest(kJob, 3);
  EXPECT_TRUE(absl::IsDataLoss(damaged.status())) << damaged.status();
  EXPECT_THAT(damaged.status().message(), HasSubstr("0 stored shards"));
}

TEST_F(CheckpointServiceTest, BeginIsIdempotentAcrossRanks) {
  CheckpointMetadata rank0_meta;
  rank0_meta.metrics["val_loss"] = 0.5;
  auto first =
      service_.BeginCheckpoint(kJob, 10, 2, rank0_meta, absl::ZeroDuration());
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->created);
  auto second = service_.BeginCheckpoint(kJob, 10, 2, {}, absl::ZeroDuration());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(second->created);
  EXPECT_EQ(second->record.state, CheckpointState::kPending);
  EXPECT_EQ(second->record.metadata.metrics.at("val_loss"), 0.5);
}

TEST_F(CheckpointServiceTest, BeginRejectsMalformedInput) {
  EXPECT_TRUE(absl::IsInvalidArgument(
      service_.BeginCheckpoint("no-tenant", 1, 1, {}, absl::ZeroDuration())
          .status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      service_.BeginCheckpoint(kJob, -1, 1, {}, absl::ZeroDuration())
          .status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      service_.BeginCheckpoint(kJob, 1, 0, {}, absl::ZeroDuration()).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      service_.BeginCheckpoint(kJob, 1, 1, {}, absl::Seconds(-1)).status()));
  // Nothing was created by the refused calls.
  EXPECT_TRUE(absl::IsNotFound(service_.ListCheckpoints(kJob, true).status()));
}

TEST_F(CheckpointServiceTest, BeginWithOtherWorldSizeIsRefused) {
  ASSERT_TRUE(
      service_.BeginCheckpoint(kJob, 1, 2, {}, absl::ZeroDuration()).ok());
  auto status =
      service_.BeginCheckpoint(kJob, 1, 3, {}, absl::ZeroDuration()).status();
  EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
}

TEST_F(CheckpointServiceTest, PutChunkRefusesHashMismatchAndStoresNothing) {
  const std::string bytes = "real bytes";
  const ChunkId claimed = Sha256("other bytes");
  auto put = service_.PutChunk(kJob, claimed, bytes);
  EXPECT_TRUE(absl::IsInvalidArgument(put.status())) << put.status();
  EXPECT_THAT(put.status().message(), HasSubstr("mismatch"));
  auto missing = service_.FindMissingChunks(kJob, {claimed, Sha256(bytes)});
  ASSERT_TRUE(missing.ok());
  EXPECT_THAT(*missing, ElementsAre(claimed, Sha256(bytes)));
  auto stats = service_.GetStats("");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->chunk_count, 0u);
}

TEST_F(CheckpointServiceTest, CheckpointIsVisibleOnlyWhenAllRanksCommit) {
  ShardBuilder rank0{0, {{"w", "0123456789abcdef0123"}}};
  ShardBuilder rank1{1, {{"w", "fedcba9876543210"}}};
  auto first = Save(rank0, 5, 2);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(first->checkpoint_committed);
  EXPECT_THAT(VisibleSteps(), IsEmpty());
  EXPECT_TRUE(absl::IsNotFound(service_.GetManifest(kJob, 5).status()));
  EXPECT_TRUE(
      absl::IsNotFound(service_.GetManifest(kJob, std::nullopt).status()));

  auto second = Save(rank1, 5, 2);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->checkpoint_committed);
  EXPECT_THAT(VisibleSteps(), ElementsAre(5));
  auto manifest = service_.GetManifest(kJob, std::nullopt);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->record.step, 5);
  EXPECT_EQ(manifest->record.logical_bytes, 36u);
  ASSERT_EQ(manifest->shards.size(), 2u);
  EXPECT_EQ(manifest->shards[0], rank0.Manifest());
  EXPECT_EQ(manifest->shards[1], rank1.Manifest());
}

TEST_F(CheckpointServiceTest, ChunksRoundTripThroughReadChunk) {
  ShardBuilder rank0{0, {{"w", "hello checkpoint world"}}};
  ASSERT_TRUE(Save(rank0, 1, 1).ok());
  auto manifest = service_.GetManifest(kJob, 1);
  ASSERT_TRUE(manifest.ok());
  std::string restored;
  for (const auto& piece : manifest->shards[0].tensors[0].pieces) {
    auto bytes = service_.ReadChunk(kJob, piece.id);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    restored += *bytes;
  }
  EXPECT_EQ(restored, "hello checkpoint world");
}

TEST_F(CheckpointServiceTest, CommitReferencingAnAbsentChunkIsRefused) {
  ASSERT_TRUE(
      service_.BeginCheckpoint(kJob, 3, 1, {}, absl::ZeroDuration()).ok());
  ShardBuilder never_uploaded{0, {{"w", "bytes that were never sent"}}};
  auto commit = service_.CommitShard(kJob, 3, 1, never_uploaded.Manifest());
  EXPECT_TRUE(absl::IsFailedPrecondition(commit.status())) << commit.status();
  EXPECT_THAT(commit.status().message(), HasSubstr("never uploaded"));
  EXPECT_THAT(VisibleSteps(), IsEmpty());
}

TEST_F(CheckpointServiceTest, CommitFromRankOutsideWorldSizeIsRefused) {
  ShardBuilder rank2{2, {{"w", "abc"}}};
  auto commit = Save(rank2, 1, 2);
  EXPECT_TRUE(absl::IsInvalidArgument(commit.status())) << commit.status();
  EXPECT_THAT(commit.status().message(), HasSubstr("outside world_size"));
}

TEST_F(CheckpointServiceTest, CommitWithoutBeginIsNotFound) {
  ShardBuilder rank0{0, {{"w", "abc"}}};
  ASSERT_TRUE(service_.PutChunk(kJob, Sha256("abc"), "abc").ok());
  auto commit = service_.CommitShard(kJob, 1, 1, rank0.Manifest());
  EXPECT_TRUE(absl::IsNotFound(commit.status())) << commit.status();
}

TEST_F(CheckpointServiceTest, RetriedCommitIsIdempotentButAConflictIsNot) {
  ShardBuilder rank0{0, {{"w", "first"}}};
  ASSERT_TRUE(Save(rank0, 1, 2).ok());
  auto again = Save(rank0, 1, 2);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->record.committed_ranks, std::vector<int32_t>{0});

  ShardBuilder conflicting{0, {{"w", "other"}}};
  auto conflict = Save(conflicting, 1, 2);
  EXPECT_TRUE(absl::IsFailedPrecondition(conflict.status()))
      << conflict.status();
}

TEST_F(CheckpointServiceTest, CommittedStepCannotBeBegunAgain) {
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", "x"}}}, 1, 1).ok());
  auto status =
      service_.BeginCheckpoint(kJob, 1, 1, {}, absl::ZeroDuration()).status();
  EXPECT_TRUE(absl::IsAlreadyExists(status)) << status;
}

TEST_F(CheckpointServiceTest, ExpiredLeaseAbortsPendingCheckpoint) {
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", "rank zero"}}}, 7, 2).ok());
  auto none = service_.ExpireLeases();
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, 0);

  clock_.Advance(absl::Minutes(11));
  auto expired = service_.ExpireLeases();
  ASSERT_TRUE(expired.ok()) << expired.status();
  EXPECT_EQ(*expired, 1);
  auto all = service_.ListCheckpoints(kJob, true);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].state, CheckpointState::kAborted);
  EXPECT_THAT((*all)[0].abort_reason, HasSubstr("lease expired"));
  EXPECT_THAT(VisibleSteps(), IsEmpty());

  // The late rank is told, and the shards of the attempt are gone.
  auto late = Save(ShardBuilder{1, {{"w", "rank one"}}}, 7, 2);
  // Its Begin starts a fresh attempt (a restarted job may re-save a step),
  // which cannot complete without rank 0.
  ASSERT_TRUE(late.ok()) << late.status();
  EXPECT_FALSE(late->checkpoint_committed);
  EXPECT_THAT(late->record.committed_ranks, ElementsAre(1));
  auto shards = store_.GetShards(kJob, 7);
  ASSERT_TRUE(shards.ok());
  for (const auto& shard : *shards) EXPECT_NE(shard.rank, 0);
}

TEST_F(CheckpointServiceTest, CommitRenewsTheLeaseByTheRequestedLength) {
  ASSERT_TRUE(service_.BeginCheckpoint(kJob, 1, 2, {}, absl::Seconds(20)).ok());
  clock_.Advance(absl::Seconds(15));
  ASSERT_TRUE(service_.PutChunk(kJob, Sha256("a"), "a").ok());
  auto first = service_.CommitShard(kJob, 1, 2,
                                    ShardBuilder{0, {{"w", "a"}}}.Manifest());
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->record.lease_expiry, clock_.Now() + absl::Seconds(20));
  clock_.Advance(absl::Seconds(21));
  auto expired = service_.ExpireLeases();
  ASSERT_TRUE(expired.ok());
  EXPECT_EQ(*expired, 1);
}

TEST_F(CheckpointServiceTest, CommitAfterLeaseEndIsAbortedEvenWithoutReaper) {
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", "a"}}}, 2, 2).ok());
  clock_.Advance(absl::Minutes(30));
  ASSERT_TRUE(service_.PutChunk(kJob, Sha256("b"), "b").ok());
  auto late = service_.CommitShard(kJob, 2, 2,
                                   ShardBuilder{1, {{"w", "b"}}}.Manifest());
  EXPECT_TRUE(absl::IsAborted(late.status())) << late.status();
  EXPECT_THAT(VisibleSteps(), IsEmpty());
}

TEST_F(CheckpointServiceTest, AbortedStepCanBeSavedAgain) {
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", "a"}}}, 4, 2).ok());
  ASSERT_TRUE(service_.AbortCheckpoint(kJob, 4, "test").ok());
  auto begun = service_.BeginCheckpoint(kJob, 4, 1, {}, absl::ZeroDuration());
  ASSERT_TRUE(begun.ok()) << begun.status();
  EXPECT_TRUE(begun->created);
  EXPECT_THAT(begun->record.committed_ranks, IsEmpty());
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", "fresh"}}}, 4, 1).ok());
  EXPECT_THAT(VisibleSteps(), ElementsAre(4));
}

TEST_F(CheckpointServiceTest, LatestIgnoresPendingCheckpoints) {
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", "one"}}}, 1, 1).ok());
  ASSERT_TRUE(
      service_.BeginCheckpoint(kJob, 2, 1, {}, absl::ZeroDuration()).ok());
  auto latest = service_.GetManifest(kJob, std::nullopt);
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(latest->record.step, 1);
}

TEST_F(CheckpointServiceTest, DeleteRemovesCommittedButNotPending) {
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", "one"}}}, 1, 1).ok());
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", "two"}}}, 2, 1).ok());
  ASSERT_TRUE(
      service_.BeginCheckpoint(kJob, 3, 1, {}, absl::ZeroDuration()).ok());
  ASSERT_TRUE(service_.DeleteCheckpoint(kJob, 1).ok());
  EXPECT_THAT(VisibleSteps(), ElementsAre(2));
  EXPECT_TRUE(absl::IsNotFound(service_.DeleteCheckpoint(kJob, 1)));
  EXPECT_TRUE(absl::IsFailedPrecondition(service_.DeleteCheckpoint(kJob, 3)));
}

TEST_F(CheckpointServiceTest, ReadChunkReportsCorruptionAsDataLoss) {
  const ChunkId id = Sha256("the real bytes");
  // Bypass the service's verification to simulate on-disk corruption.
  ASSERT_TRUE(store_.Put("team", id, "the REAL bytes").ok());
  auto read = service_.ReadChunk(kJob, id);
  EXPECT_TRUE(absl::IsDataLoss(read.status())) << read.status();
  EXPECT_TRUE(
      absl::IsNotFound(service_.ReadChunk(kJob, Sha256("absent")).status()));
}

TEST_F(CheckpointServiceTest, TenantsDoNotSeeEachOthersChunks) {
  ShardBuilder secret{0, {{"w", "secret weights"}}};
  secret.chunk_bytes = 64;  // one chunk
  ASSERT_TRUE(Save(secret, 1, 1, "alice/model").ok());
  const ChunkId id = Sha256("secret weights");
  auto missing_for_bob = service_.FindMissingChunks("bob/model", {id});
  ASSERT_TRUE(missing_for_bob.ok());
  EXPECT_THAT(*missing_for_bob, ElementsAre(id));
  EXPECT_TRUE(absl::IsNotFound(service_.ReadChunk("bob/model", id).status()));
  auto missing_for_alice = service_.FindMissingChunks("alice/other", {id});
  ASSERT_TRUE(missing_for_alice.ok());
  EXPECT_THAT(*missing_for_alice, IsEmpty());
}

TEST_F(CheckpointServiceTest, ReplicatedShardsAreStoredOnce) {
  const std::string replicated(64, 'r');
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", replicated}}}, 1, 2).ok());
  ASSERT_TRUE(Save(ShardBuilder{1, {{"w", replicated}}}, 1, 2).ok());
  auto stats = service_.GetStats(kJob);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->logical_bytes, 128u);
  EXPECT_EQ(stats->stored_bytes, 8u);  // one distinct 8-byte chunk
  EXPECT_EQ(stats->checkpoint_count, 1);
}

TEST_F(CheckpointServiceTest, FailedMetadataWriteLeavesCheckpointPending) {
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", "a"}}}, 1, 2).ok());
  ASSERT_TRUE(service_.PutChunk(kJob, Sha256("b"), "b").ok());
  faults_.FailNext(FaultInjectingStore::Op::kApply,
                   absl::UnavailableError("disk went away"));
  auto commit = service_.CommitShard(kJob, 1, 2,
                                     ShardBuilder{1, {{"w", "b"}}}.Manifest());
  EXPECT_TRUE(absl::IsUnavailable(commit.status())) << commit.status();
  EXPECT_THAT(VisibleSteps(), IsEmpty());
  // A retry succeeds and completes the checkpoint.
  auto retry = service_.CommitShard(kJob, 1, 2,
                                    ShardBuilder{1, {{"w", "b"}}}.Manifest());
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_TRUE(retry->checkpoint_committed);
}

TEST_F(CheckpointServiceTest, FailedSyncPreventsCommit) {
  ASSERT_TRUE(
      service_.BeginCheckpoint(kJob, 1, 1, {}, absl::ZeroDuration()).ok());
  ASSERT_TRUE(service_.PutChunk(kJob, Sha256("a"), "a").ok());
  faults_.FailNext(FaultInjectingStore::Op::kSync,
                   absl::ResourceExhaustedError("disk full"));
  auto commit = service_.CommitShard(kJob, 1, 1,
                                     ShardBuilder{0, {{"w", "a"}}}.Manifest());
  EXPECT_TRUE(absl::IsResourceExhausted(commit.status())) << commit.status();
  EXPECT_THAT(VisibleSteps(), IsEmpty());
}

TEST_F(CheckpointServiceTest, UnknownJobIsNotFound) {
  EXPECT_TRUE(
      absl::IsNotFound(service_.ListCheckpoints("a/b", false).status()));
  EXPECT_TRUE(absl::IsNotFound(service_.GetManifest("a/b", 1).status()));
  EXPECT_TRUE(absl::IsNotFound(service_.GetStats("a/b").status()));
}

// ---------------------------------------------------------------- retention

// Saves `step` with a one-byte tensor of its own.
#define SAVE_STEP(step, ...)                                                \
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", absl::StrCat("s", step)}}}, step, \
                   1 __VA_OPT__(, ) __VA_ARGS__)                            \
                  .ok())

TEST_F(CheckpointServiceTest, StoredPolicyIsAppliedAtEachCommit) {
  SAVE_STEP(1);
  auto deleted = service_.SetRetentionPolicy(kJob, MaxToKeep(2));
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_THAT(*deleted, IsEmpty());
  for (int step = 2; step <= 4; ++step) SAVE_STEP(step);
  EXPECT_THAT(VisibleSteps(), ElementsAre(3, 4));
  auto policy = service_.GetRetentionPolicy(kJob);
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_EQ(policy->policy, MaxToKeep(2));
}

TEST_F(CheckpointServiceTest, SettingAPolicyAppliesItAtOnce) {
  for (int step = 1; step <= 4; ++step) SAVE_STEP(step);
  auto deleted = service_.SetRetentionPolicy(kJob, MaxToKeep(1));
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_THAT(*deleted, ElementsAre(1, 2, 3));
  EXPECT_THAT(VisibleSteps(), ElementsAre(4));
}

TEST_F(CheckpointServiceTest,
       PolicyFromBeginAndEveryNHoursFromFirstCheckpoint) {
  RetentionPolicy policy = MaxToKeep(1);
  policy.keep_every = absl::Hours(2);
  ASSERT_TRUE(
      service_.BeginCheckpoint(kJob, 0, 1, {}, absl::ZeroDuration(), policy)
          .ok());
  SAVE_STEP(0);  // joins the pending step 0, uploads and commits
  for (int step = 1; step <= 5; ++step) {
    clock_.Advance(absl::Hours(1));
    SAVE_STEP(step);
  }
  // TF replay, clock start = step 0's time t0: 2 leaves at t2 - t0 = 2h
  // (preserved), 4 at t4 - t2 = 2h (preserved); 0, 1, 3 are deleted.
  EXPECT_THAT(VisibleSteps(), ElementsAre(2, 4, 5));
}

TEST_F(CheckpointServiceTest, ClockStartIsTheFirstCommitAndNeverChanges) {
  ASSERT_TRUE(
      service_.BeginCheckpoint(kJob, 1, 1, {}, absl::ZeroDuration()).ok());
  auto job = store_.GetJob(kJob);
  ASSERT_TRUE(job.ok() && job->has_value());
  EXPECT_FALSE((*job)->first_checkpoint_time.has_value());  // pending only
  const absl::Time first = clock_.Now() + absl::Hours(1);
  clock_.Set(first);
  SAVE_STEP(1);
  clock_.Advance(absl::Hours(1));
  SAVE_STEP(2);
  ASSERT_TRUE(service_.DeleteCheckpoint(kJob, 1).ok());
  clock_.Advance(absl::Hours(1));
  SAVE_STEP(3);
  job = store_.GetJob(kJob);
  ASSERT_TRUE(job.ok() && job->has_value());
  EXPECT_EQ((*job)->first_checkpoint_time, first);
}

TEST_F(CheckpointServiceTest, PinnedCheckpointsSurvivePolicyAndPrune) {
  SAVE_STEP(1);
  auto pinned = service_.PinCheckpoint(kJob, 1, true);
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  EXPECT_TRUE(pinned->pinned);
  ASSERT_TRUE(service_.SetRetentionPolicy(kJob, MaxToKeep(1)).ok());
  SAVE_STEP(2);
  SAVE_STEP(3);
  EXPECT_THAT(VisibleSteps(), ElementsAre(1, 3));
  auto records = service_.ListCheckpoints(kJob, false);
  ASSERT_TRUE(records.ok());
  EXPECT_TRUE((*records)[0].pinned);
  EXPECT_FALSE((*records)[1].pinned);
  ASSERT_TRUE(service_.Prune(kJob, MaxToKeep(1), false).ok());
  EXPECT_THAT(VisibleSteps(), ElementsAre(1, 3));

  // Unpinning deletes nothing by itself; the next prune does.
  ASSERT_TRUE(service_.PinCheckpoint(kJob, 1, false).ok());
  EXPECT_THAT(VisibleSteps(), ElementsAre(1, 3));
  ASSERT_TRUE(service_.Prune(kJob, std::nullopt, false).ok());
  EXPECT_THAT(VisibleSteps(), ElementsAre(3));
}

TEST_F(CheckpointServiceTest, PinRefusesPendingAndUnknown) {
  SAVE_STEP(1);
  ASSERT_TRUE(
      service_.BeginCheckpoint(kJob, 2, 1, {}, absl::ZeroDuration()).ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(
      service_.PinCheckpoint(kJob, 2, true).status()));
  EXPECT_TRUE(absl::IsNotFound(service_.PinCheckpoint(kJob, 9, true).status()));
  EXPECT_TRUE(
      absl::IsNotFound(service_.PinCheckpoint("a/b", 1, true).status()));
}

TEST_F(CheckpointServiceTest, PruneDryRunEqualsRealPrune) {
  const double losses[] = {5, 1, 4, 2, 3, 6, 7};
  for (int step = 0; step < 7; ++step) {
    clock_.Advance(absl::Minutes(30));
    SAVE_STEP(step, kJob, WithLoss(losses[step]));
  }
  ASSERT_TRUE(service_.PinCheckpoint(kJob, 0, true).ok());
  RetentionPolicy policy = MaxToKeep(2);
  policy.keep_best = RetentionPolicy::KeepBest{
      2, "loss", RetentionPolicy::KeepBest::Mode::kAuto};
  auto dry = service_.Prune(kJob, policy, /*dry_run=*/true);
  ASSERT_TRUE(dry.ok()) << dry.status();
  EXPECT_THAT(VisibleSteps(), ElementsAre(0, 1, 2, 3, 4, 5, 6));
  std::vector<int64_t> kept;
  for (const auto& decision : *dry) {
    EXPECT_FALSE(decision.reasons.empty()) << decision.step;
    if (decision.keep) kept.push_back(decision.step);
  }
  // Pinned 0, best losses 1 (step 1) and 2 (step 3), last two 5 and 6.
  EXPECT_THAT(kept, ElementsAre(0, 1, 3, 5, 6));
  auto real = service_.Prune(kJob, policy, /*dry_run=*/false);
  ASSERT_TRUE(real.ok()) << real.status();
  EXPECT_EQ(VisibleSteps(), kept);
  ASSERT_EQ(real->size(), dry->size());
  for (size_t i = 0; i < dry->size(); ++i) {
    EXPECT_EQ((*real)[i].step, (*dry)[i].step);
    EXPECT_EQ((*real)[i].keep, (*dry)[i].keep);
    EXPECT_EQ((*real)[i].reasons, (*dry)[i].reasons);
  }
}

TEST_F(CheckpointServiceTest, PruneOverrideDoesNotChangeTheStoredPolicy) {
  for (int step = 1; step <= 4; ++step) SAVE_STEP(step);
  auto none = service_.Prune(kJob, std::nullopt, false);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->size(), 4u);
  EXPECT_THAT(VisibleSteps(), ElementsAre(1, 2, 3, 4));
  ASSERT_TRUE(service_.Prune(kJob, MaxToKeep(2), false).ok());
  EXPECT_THAT(VisibleSteps(), ElementsAre(3, 4));
  auto stored = service_.GetRetentionPolicy(kJob);
  ASSERT_TRUE(stored.ok());
  EXPECT_FALSE(stored->policy.has_value());
}

TEST_F(CheckpointServiceTest, InvalidPolicyIsRejectedAndChangesNothing) {
  for (int step = 1; step <= 3; ++step) SAVE_STEP(step);
  ASSERT_TRUE(service_.SetRetentionPolicy(kJob, MaxToKeep(3)).ok());
  RetentionPolicy bad = MaxToKeep(0);
  EXPECT_TRUE(
      absl::IsInvalidArgument(service_.SetRetentionPolicy(kJob, bad).status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(service_.Prune(kJob, bad, true).status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(service_.Prune(kJob, bad, false).status()));
  RetentionPolicy vague;
  vague.keep_best = RetentionPolicy::KeepBest{
      1, "throughput", RetentionPolicy::KeepBest::Mode::kAuto};
  EXPECT_TRUE(absl::IsInvalidArgument(
      service_.SetRetentionPolicy(kJob, vague).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      service_.BeginCheckpoint(kJob, 4, 1, {}, absl::ZeroDuration(), bad)
          .status()));
  auto all = service_.ListCheckpoints(kJob, /*include_uncommitted=*/true);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 3u);
  EXPECT_EQ(service_.GetRetentionPolicy(kJob)->policy, MaxToKeep(3));
  EXPECT_TRUE(absl::IsInvalidArgument(
      service_.SetRetentionPolicy("no-slash", MaxToKeep(1)).status()));
  EXPECT_THAT(*service_.ListJobs(), SizeIs(1));
}

TEST_F(CheckpointServiceTest, NewestIsNeverDeletedEvenWhenWorst) {
  RetentionPolicy best;
  best.keep_best = RetentionPolicy::KeepBest{
      1, "loss", RetentionPolicy::KeepBest::Mode::kMin};
  SAVE_STEP(1, kJob, WithLoss(1));
  ASSERT_TRUE(service_.SetRetentionPolicy(kJob, best).ok());
  SAVE_STEP(2, kJob, WithLoss(2));
  SAVE_STEP(3, kJob, WithLoss(9));
  EXPECT_THAT(VisibleSteps(), ElementsAre(1, 3));
}

TEST_F(CheckpointServiceTest, PendingCheckpointsAreNeverCountedOrDeleted) {
  SAVE_STEP(1);
  ASSERT_TRUE(
      service_.BeginCheckpoint(kJob, 5, 1, {}, absl::ZeroDuration()).ok());
  ASSERT_TRUE(service_.SetRetentionPolicy(kJob, MaxToKeep(1)).ok());
  SAVE_STEP(2);
  EXPECT_THAT(VisibleSteps(), ElementsAre(2));
  auto dry = service_.Prune(kJob, MaxToKeep(1), true);
  ASSERT_TRUE(dry.ok());
  ASSERT_EQ(dry->size(), 1u);  // the pending one is not even listed
  auto all = service_.ListCheckpoints(kJob, /*include_uncommitted=*/true);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[1].state, CheckpointState::kPending);
}

#undef SAVE_STEP

}  // namespace
}  // namespace ckpt::server
