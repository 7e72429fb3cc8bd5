// CommitShard's layout check of sharded tensors (common/shard_layout.h)
// through the service: what it refuses, that a refusal leaves no trace, and
// when it reads the committed shards.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/service/checkpoint_service.h"
#include "tests/testing/service_test_util.h"

namespace ckpt::server {
namespace {

using ::ckpt::server::testing::CheckpointServiceTest;
using ::ckpt::server::testing::kJob;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A uint8 tensor `name` of `shape` of which the shard holds `offsets` /
// `lengths`; its bytes (one chunk) are `fill` repeated.
struct Part {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<int64_t> offsets;
  std::vector<int64_t> lengths;
  char fill = 'x';
};

class LayoutTest : public CheckpointServiceTest {
 protected:
  // `rank`'s shard of `parts`, their bytes uploaded through `service`.
  static absl::StatusOr<ShardManifest> UploadedShard(
      CheckpointService& service, int32_t rank,
      const std::vector<Part>& parts) {
    ShardManifest shard;
    shard.rank = rank;
    for (const Part& part : parts) {
      TensorEntry entry;
      entry.name = part.name;
      entry.dtype = DType::kUint8;
      entry.global_shape = part.shape;
      entry.box = Box{part.offsets, part.lengths};
      const std::string bytes(entry.ByteSize(), part.fill);
      if (!bytes.empty()) {
        auto put = service.PutChunk(kJob, Sha256(bytes), bytes);
        if (!put.ok()) return put.status();
        entry.pieces.push_back(ChunkRef{Sha256(bytes), bytes.size()});
      }
      shard.tensors.push_back(std::move(entry));
    }
    return shard;
  }

  // Uploads the parts' bytes and commits them as `rank`'s shard.
  absl::StatusOr<CommitResult> Commit(int32_t rank, int32_t world_size,
                                      const std::vector<Part>& parts,
                                      int64_t step = 1) {
    absl::StatusOr<ShardManifest> shard = UploadedShard(service_, rank, parts);
    if (!shard.ok()) return shard.status();
    return service_.CommitShard(kJob, step, world_size, *shard);
  }

  void Begin(int32_t world_size, int64_t step = 1) {
    ASSERT_TRUE(
        service_
            .BeginCheckpoint(kJob, step, world_size, {}, absl::ZeroDuration())
            .ok());
  }

  size_t EventCount() {
    auto events = service_.ListEvents(kJob, 0);
    EXPECT_TRUE(events.ok()) << events.status();
    return events.ok() ? events->size() : 0;
  }
};

TEST_F(LayoutTest, RowShardedTensorCommits) {
  Begin(2);
  ASSERT_TRUE(Commit(0, 2, {{"w", {10, 4}, {0, 0}, {5, 4}}}).ok());
  auto last = Commit(1, 2, {{"w", {10, 4}, {5, 0}, {5, 4}}});
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_TRUE(last->checkpoint_committed);
}

TEST_F(LayoutTest, OverlapIsRefusedLeavingNoTraceAndACorrectedShardCommits) {
  Begin(2);
  ASSERT_TRUE(Commit(0, 2, {{"model/0.weight", {10, 4}, {0, 0}, {6, 4}}}).ok());
  const size_t events = EventCount();
  auto refused = Commit(1, 2, {{"model/0.weight", {10, 4}, {5, 0}, {5, 4}}});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(),
              AllOf(HasSubstr("rank 1's manifest for checkpoint team/model@1"),
                    HasSubstr("tensor 'model/0.weight'"),
                    HasSubstr("rank 1's box [5:10, 0:4]"),
                    HasSubstr("rank 0's box [0:6, 0:4]"),
                    HasSubstr("may commit a corrected shard")));
  // Nothing stored, nothing recorded, still pending with rank 0 only.
  const CheckpointRecord record = Record(1);
  EXPECT_EQ(record.state, CheckpointState::kPending);
  EXPECT_THAT(record.committed_ranks, ElementsAre(0));
  EXPECT_EQ(EventCount(), events);
  EXPECT_TRUE(absl::IsNotFound(service_.GetManifest(kJob, 1).status()));
  // Rank 0 fixes nothing; rank 1 commits the right part.
  auto fixed = Commit(1, 2, {{"model/0.weight", {10, 4}, {6, 0}, {4, 4}}});
  ASSERT_TRUE(fixed.ok()) << fixed.status();
  EXPECT_TRUE(fixed->checkpoint_committed);
}

TEST_F(LayoutTest, GapIsRefusedAtTheLastCommitOnly) {
  Begin(3);
  ASSERT_TRUE(Commit(0, 3, {{"w", {9}, {0}, {3}}}).ok());
  ASSERT_TRUE(Commit(1, 3, {{"w", {9}, {6}, {3}}}).ok());
  auto refused = Commit(2, 3, {{"w", {9}, {3}, {2}}});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(),
              AllOf(HasSubstr("tensor 'w' (uint8 [9])"),
                    HasSubstr("leave 1 of its 9 elements uncovered"),
                    HasSubstr("e.g. index [5]")));
  EXPECT_EQ(Record(1).state, CheckpointState::kPending);
  EXPECT_THAT(Record(1).committed_ranks, ElementsAre(0, 1));
  ASSERT_TRUE(Commit(2, 3, {{"w", {9}, {3}, {3}}}).ok());
  EXPECT_EQ(Record(1).state, CheckpointState::kCommitted);
}

TEST_F(LayoutTest, DisagreeingShapesAreRefused) {
  Begin(2);
  ASSERT_TRUE(Commit(0, 2, {{"w", {8}, {0}, {4}}}).ok());
  auto refused = Commit(1, 2, {{"w", {9}, {4}, {5}}});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("must agree on both"));
}

TEST_F(LayoutTest, PerRankAndReplicatedTensorsAreNotChecked) {
  Begin(2);
  ASSERT_TRUE(Commit(0, 2,
                     {{"loader", {3}, {0}, {3}, 'a'},
                      {"emb", {4, 2}, {0, 0}, {4, 2}, 'r'}})
                  .ok());
  auto last = Commit(
      1, 2,
      {{"loader", {5}, {0}, {5}, 'b'}, {"emb", {4, 2}, {0, 0}, {4, 2}, 'r'}});
  ASSERT_TRUE(last.ok()) << last.status();
}

TEST_F(LayoutTest, ReadsCommittedShardsBackOnlyOncePerCheckpoint) {
  Begin(4);
  using Op = FaultInjectingStore::Op;
  const int reads = faults_.calls(Op::kGetShards);
  ASSERT_TRUE(Commit(0, 4, {{"rng", {2}, {0}, {2}}}).ok());
  ASSERT_TRUE(Commit(1, 4, {{"w", {4}, {0}, {2}}}).ok());
  ASSERT_TRUE(Commit(2, 4, {{"w", {4}, {2}, {2}}}).ok());
  // The first commit read the (no) shards back; the others used the
  // layout kept in memory.
  EXPECT_EQ(faults_.calls(Op::kGetShards), reads + 1);
  // A service started afresh over the same store reads them back once.
  CheckpointService restarted(&faults_, &faults_, &clock_, Options());
  absl::StatusOr<ShardManifest> overlapping =
      UploadedShard(restarted, 3, {{"w", {4}, {1}, {2}}});
  ASSERT_TRUE(overlapping.ok()) << overlapping.status();
  auto refused = restarted.CommitShard(kJob, 1, 4, *overlapping);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("rank 3's box [1:3]"));
  EXPECT_EQ(faults_.calls(Op::kGetShards), reads + 2);
}

TEST_F(LayoutTest, ShardsAnOlderServerStoredAgainstTheRuleBlameNoNewRank) {
  Begin(3);
  ASSERT_TRUE(Commit(0, 3, {{"w", {4}, {0}, {2}}}).ok());
  // Rank 1's overlapping shard, as a server without the check stored it.
  absl::StatusOr<ShardManifest> planted =
      UploadedShard(service_, 1, {{"w", {4}, {1}, {2}}});
  ASSERT_TRUE(planted.ok()) << planted.status();
  CheckpointRecord record = Record(1);
  record.committed_ranks = {0, 1};
  MetadataBatch batch;
  batch.PutShard(kJob, 1, *planted);
  batch.PutCheckpoint(record);
  ASSERT_TRUE(faults_.Apply(batch).ok());
  // A service started afresh reads the stored shards back: their fault is
  // not the committing rank's, and no shard of it could mend them.
  CheckpointService restarted(&faults_, &faults_, &clock_, Options());
  absl::StatusOr<ShardManifest> last =
      UploadedShard(restarted, 2, {{"w", {4}, {3}, {1}}});
  ASSERT_TRUE(last.ok()) << last.status();
  auto refused = restarted.CommitShard(kJob, 1, 3, *last);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition)
      << refused.status();
  EXPECT_THAT(refused.status().message(),
              AllOf(HasSubstr("shards already committed"),
                    HasSubstr("abort the checkpoint")));
}

TEST_F(LayoutTest, WholeBoxNextToPartsIsRefusedWhenItComes) {
  Begin(3);
  ASSERT_TRUE(Commit(0, 3, {{"w", {4}, {0}, {2}}}).ok());
  auto refused = Commit(1, 3, {{"w", {4}, {0}, {4}}});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(),
              AllOf(HasSubstr("rank 1's box [0:4] (the whole tensor)"),
                    HasSubstr("rank 0's box [0:2]")));
  EXPECT_EQ(Record(1).state, CheckpointState::kPending);
}

TEST_F(LayoutTest, AnAbortedAttemptsShardsDoNotCountForTheNext) {
  Begin(2);
  ASSERT_TRUE(Commit(0, 2, {{"w", {4}, {0}, {2}}}).ok());
  ASSERT_TRUE(service_.AbortCheckpoint(kJob, 1, "preempted").ok());
  // Begun afresh: rank 1's part overlaps what the aborted attempt's rank 0
  // held, which no longer counts.
  Begin(2);
  ASSERT_TRUE(Commit(1, 2, {{"w", {4}, {1}, {3}}}).ok());
  auto last = Commit(0, 2, {{"w", {4}, {0}, {1}}});
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_TRUE(last->checkpoint_committed);
}

TEST_F(LayoutTest, RetriedIdenticalCommitStaysOk) {
  Begin(2);
  ASSERT_TRUE(Commit(0, 2, {{"w", {4}, {0}, {2}}}).ok());
  ASSERT_TRUE(Commit(0, 2, {{"w", {4}, {0}, {2}}}).ok());
  ASSERT_TRUE(Commit(1, 2, {{"w", {4}, {2}, {2}}}).ok());
  ASSERT_TRUE(Commit(1, 2, {{"w", {4}, {2}, {2}}}).ok());
}

}  // namespace
}  // namespace ckpt::server
