// Row-delta checkpoints in the service: commit-time checks of delta bases,
// base_steps, retention and deletion keeping bases, GC over real RocksDB,
// and bytes_added.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/row_delta.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/service/checkpoint_service.h"
#include "server/storage/rocksdb_store.h"
#include "tests/testing/service_test_util.h"
#include "tests/testing/store_test_util.h"

namespace ckpt::server {
namespace {

// Where a tensor entry sits: what a delta must match in its base.
struct Layout {
  DType dtype = DType::kFloat32;
  std::vector<int64_t> global_shape = {4, 2};
  Box box = Box{{0, 0}, {4, 2}};
};

using ::ckpt::server::testing::CheckpointServiceTest;
using ::ckpt::server::testing::kJob;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Makes tensor entries of real bytes and uploads their chunks for `job`.
class EntryMaker {
 public:
  EntryMaker(CheckpointService* service, std::string job)
      : service_(service), job_(std::move(job)) {}

  // A full entry whose bytes are all `fill`.
  TensorEntry Full(std::string name, char fill, const Layout& layout = {}) {
    TensorEntry entry = Bare(std::move(name), layout);
    entry.pieces.push_back(Upload(std::string(entry.ByteSize(), fill)));
    return entry;
  }

  // A row delta against `base_step` changing row 1 to `fill`.
  TensorEntry Delta(std::string name, int64_t base_step, char fill,
                    const Layout& layout = {}) {
    TensorEntry entry = Bare(std::move(name), layout);
    entry.delta_base_step = base_step;
    const std::string current(entry.ByteSize(), fill);
    const uint64_t rows[] = {1};
    absl::StatusOr<std::string> encoded =
        EncodeRowDelta(current, entry.RowBytes(), rows);
    EXPECT_TRUE(encoded.ok()) << encoded.status();
    entry.pieces.push_back(Upload(encoded.value_or("")));
    return entry;
  }

 private:
  static TensorEntry Bare(std::string name, const Layout& layout) {
    TensorEntry entry;
    entry.name = std::move(name);
    entry.dtype = layout.dtype;
    entry.global_shape = layout.global_shape;
    entry.box = layout.box;
    return entry;
  }

  ChunkRef Upload(const std::string& bytes) {
    absl::StatusOr<bool> put = service_->PutChunk(job_, Sha256(bytes), bytes);
    EXPECT_TRUE(put.ok()) << put.status();
    return ChunkRef{Sha256(bytes), bytes.size()};
  }

  CheckpointService* const service_;
  const std::string job_;
};

// Begins (job, step) for `world_size` ranks and commits rank `rank`'s shard
// of `tensors`.
absl::StatusOr<CommitResult> CommitTensors(CheckpointService& service,
                                           absl::string_view job, int64_t step,
                                           std::vector<TensorEntry> tensors,
                                           int32_t rank = 0,
                                           int32_t world_size = 1) {
  absl::StatusOr<BeginResult> begun =
      service.BeginCheckpoint(job, step, world_size, {}, absl::ZeroDuration());
  if (!begun.ok()) return begun.status();
  ShardManifest shard;
  shard.rank = rank;
  shard.tensors = std::move(tensors);
  return service.CommitShard(job, step, world_size, shard);
}

class DeltaCheckpointTest : public CheckpointServiceTest {
 protected:
  absl::StatusOr<CommitResult> Commit(int64_t step,
                                      std::vector<TensorEntry> tensors,
                                      int32_t rank = 0,
                                      int32_t world_size = 1) {
    return CommitTensors(service_, kJob, step, std::move(tensors), rank,
                         world_size);
  }

  // The status of committing `step` with `delta` as its only tensor.
  absl::Status CommitDelta(int64_t step, const TensorEntry& delta) {
    return Commit(step, {delta}).status();
  }

  EntryMaker make_{&service_, kJob};
};

// ------------------------------------------------------------ commit checks

TEST_F(DeltaCheckpointTest, DeltaAgainstAFullBaseCommits) {
  ASSERT_TRUE(Commit(1, {make_.Full("emb", 'a')}).ok());
  absl::StatusOr<CommitResult> delta = Commit(2, {make_.Delta("emb", 1, 'b')});
  ASSERT_TRUE(delta.ok()) << delta.status();
  EXPECT_TRUE(delta->checkpoint_committed);
  EXPECT_THAT(delta->record.base_steps, ElementsAre(1));
  EXPECT_THAT(Record(1).base_steps, ::testing::IsEmpty());
  absl::StatusOr<Checkpoint> stored = service_.GetManifest(kJob, 2);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_THAT(stored->record.base_steps, ElementsAre(1));
  EXPECT_EQ(stored->shards[0].tensors[0].delta_base_step, 1);
}

TEST_F(DeltaCheckpointTest, DeltaAgainstADeltaBaseCommits) {
  ASSERT_TRUE(Commit(1, {make_.Full("emb", 'a')}).ok());
  ASSERT_TRUE(CommitDelta(2, make_.Delta("emb", 1, 'b')).ok());
  absl::StatusOr<CommitResult> third = Commit(3, {make_.Delta("emb", 2, 'c')});
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_THAT(third->record.base_steps, ElementsAre(2));
}

TEST_F(DeltaCheckpointTest, DeltaWithoutItsBaseIsRefusedNamingTensorAndBase) {
  ASSERT_TRUE(Commit(1, {make_.Full("emb", 'a')}).ok());
  absl::Status status = CommitDelta(6, make_.Delta("emb", 4, 'b'));
  EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
  EXPECT_THAT(status.message(),
              HasSubstr("tensor 'emb' is a delta against step 4 of job "
                        "team/model, which is not a committed checkpoint"));
  EXPECT_THAT(status.message(), HasSubstr("save it in full"));
  // Nothing was recorded for the refused shard.
  EXPECT_THAT(Record(6).committed_ranks, ::testing::IsEmpty());
  EXPECT_THAT(Record(6).base_steps, ::testing::IsEmpty());
}

// A base that is pending (one of two ranks committed) or aborted.
TEST_F(DeltaCheckpointTest, BaseThatIsNotCommittedIsRefused) {
  ASSERT_TRUE(Commit(1, {make_.Full("emb", 'a')}, 0, 2).ok());
  ASSERT_TRUE(Commit(2, {make_.Full("emb", 'a')}, 0, 2).ok());
  ASSERT_TRUE(service_.AbortCheckpoint(kJob, 2, "test").ok());
  const std::pair<int64_t, std::string> cases[] = {
      {1, "which is pending, not committed"},
      {2, "which is aborted, not committed"}};
  for (const auto& [base, says] : cases) {
    SCOPED_TRACE(base);
    absl::Status status = CommitDelta(3, make_.Delta("emb", base, 'b'));
    EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
    EXPECT_THAT(status.message(), HasSubstr(says));
  }
}

TEST_F(DeltaCheckpointTest, BaseThatIsNotOlderIsRefused) {
  ASSERT_TRUE(Commit(7, {make_.Full("emb", 'a')}).ok());
  absl::Status newer = CommitDelta(5, make_.Delta("emb", 7, 'b'));
  EXPECT_TRUE(absl::IsFailedPrecondition(newer)) << newer;
  EXPECT_THAT(newer.message(), HasSubstr("not older than step 5"));
  absl::Status same = CommitDelta(8, make_.Delta("emb", 8, 'b'));
  EXPECT_TRUE(absl::IsFailedPrecondition(same)) << same;
  EXPECT_THAT(same.message(), HasSubstr("not older than step 8"));
}

TEST_F(DeltaCheckpointTest, BaseWithoutTheTensorIsRefused) {
  ASSERT_TRUE(Commit(1, {make_.Full("other", 'a')}).ok());
  absl::Status status = CommitDelta(2, make_.Delta("emb", 1, 'b'));
  EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("which has no tensor 'emb'"));
}

TEST_F(DeltaCheckpointTest, BaseWithAnotherDtypeShapeOrBoxIsRefused) {
  // A row-sharded base of 2 ranks; each delta is rank 0's commit of a
  // 2-rank checkpoint (so that the layout check, which runs first, finds no
  // gap yet).
  const Layout base_layout{DType::kFloat32, {8, 2}, Box{{0, 0}, {4, 2}}};
  const Layout bottom{DType::kFloat32, {8, 2}, Box{{4, 0}, {4, 2}}};
  ASSERT_TRUE(Commit(1, {make_.Full("emb", 'a', base_layout)}, 0, 2).ok());
  ASSERT_TRUE(Commit(1, {make_.Full("emb", 'z', bottom)}, 1, 2).ok());
  auto commit_delta = [&](int64_t step, const TensorEntry& delta) {
    return Commit(step, {delta}, 0, 2).status();
  };
  struct Case {
    std::string name;
    Layout layout;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"dtype",
       {DType::kInt32, {8, 2}, Box{{0, 0}, {4, 2}}},
       "not as this delta's int32 shape [8, 2] box [0, 0]+[4, 2]"},
      {"shape",
       {DType::kFloat32, {4, 2}, Box{{0, 0}, {4, 2}}},
       "not as this delta's float32 shape [4, 2]"},
      {"box",
       {DType::kFloat32, {8, 2}, Box{{2, 0}, {4, 2}}},
       "box [2, 0]+[4, 2]"},
  };
  int64_t step = 2;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    absl::Status status =
        commit_delta(step++, make_.Delta("emb", 1, 'b', c.layout));
    EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
    EXPECT_THAT(status.message(),
                HasSubstr("which holds it as float32 shape [8, 2] box "
                          "[0, 0]+[4, 2]"));
    EXPECT_THAT(status.message(), HasSubstr(c.says));
  }
  // The matching layout commits.
  EXPECT_TRUE(commit_delta(step, make_.Delta("emb", 1, 'b', base_layout)).ok());
}

TEST_F(DeltaCheckpointTest, BaseMatchesInAnyShardOfTheBase) {
  // Row-sharded base: rank 1 holds rows 4..7.
  const Layout top{DType::kFloat32, {8, 2}, Box{{0, 0}, {4, 2}}};
  const Layout bottom{DType::kFloat32, {8, 2}, Box{{4, 0}, {4, 2}}};
  ASSERT_TRUE(Commit(1, {make_.Full("emb", 'a', top)}, 0, 2).ok());
  ASSERT_TRUE(Commit(1, {make_.Full("emb", 'b', bottom)}, 1, 2).ok());
  // Rank 1 of a 2-rank checkpoint, matching the base's rank 1.
  EXPECT_TRUE(Commit(2, {make_.Delta("emb", 1, 'c', bottom)}, 1, 2).ok());
}

TEST_F(DeltaCheckpointTest, BaseStepsAreTheUnionOverRanks) {
  ASSERT_TRUE(Commit(1, {make_.Full("a", '1'), make_.Full("b", '1')}).ok());
  ASSERT_TRUE(Commit(2, {make_.Full("a", '2')}).ok());
  absl::StatusOr<CommitResult> rank0 =
      Commit(3, {make_.Delta("a", 2, '3'), make_.Full("c", '3')}, 0, 2);
  ASSERT_TRUE(rank0.ok()) << rank0.status();
  EXPECT_FALSE(rank0->checkpoint_committed);
  EXPECT_THAT(Record(3).base_steps, ElementsAre(2));
  absl::StatusOr<CommitResult> rank1 =
      Commit(3, {make_.Delta("b", 1, '3'), make_.Delta("a", 2, '3')}, 1, 2);
  ASSERT_TRUE(rank1.ok()) << rank1.status();
  EXPECT_TRUE(rank1->checkpoint_committed);
  EXPECT_THAT(rank1->record.base_steps, ElementsAre(1, 2));
  EXPECT_THAT(Record(3).base_steps, ElementsAre(1, 2));
}

TEST_F(DeltaCheckpointTest, RetriedIdenticalDeltaCommitIsIdempotent) {
  ASSERT_TRUE(Commit(1, {make_.Full("emb", 'a')}).ok());
  const TensorEntry delta = make_.Delta("emb", 1, 'b');
  ASSERT_TRUE(CommitDelta(2, delta).ok());
  ShardManifest shard;
  shard.tensors = {delta};
  absl::StatusOr<CommitResult> again = service_.CommitShard(kJob, 2, 1, shard);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->checkpoint_committed);
  EXPECT_THAT(again->record.base_steps, ElementsAre(1));
}

// ------------------------------------------------------- deletion, retention

TEST_F(DeltaCheckpointTest, DeletingABaseIsRefusedNamingItsDependents) {
  ASSERT_TRUE(Commit(1, {make_.Full("emb", 'a')}).ok());
  ASSERT_TRUE(CommitDelta(2, make_.Delta("emb", 1, 'b')).ok());
  ASSERT_TRUE(Commit(3, {make_.Delta("emb", 1, 'c')}, 0, 2).ok());  // pending
  absl::Status status = service_.DeleteCheckpoint(kJob, 1);
  EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
  EXPECT_THAT(status.message(),
              HasSubstr("step 1 of job team/model is the base of steps 2, 3 "
                        "(pending)"));
  EXPECT_THAT(status.message(), HasSubstr("delete those first"));
  EXPECT_THAT(VisibleSteps(), ElementsAre(1, 2));

  ASSERT_TRUE(service_.DeleteCheckpoint(kJob, 2).ok());
  status = service_.DeleteCheckpoint(kJob, 1);
  EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("is the base of step 3 (pending)"));
  // An aborted dependent no longer needs it.
  ASSERT_TRUE(service_.AbortCheckpoint(kJob, 3, "test").ok());
  EXPECT_TRUE(service_.DeleteCheckpoint(kJob, 1).ok());
}

TEST_F(DeltaCheckpointTest, RetentionAtCommitKeepsTheBaseOfTheNewDelta) {
  ASSERT_TRUE(Commit(1, {make_.Full("emb", 'a')}).ok());
  ASSERT_TRUE(service_.SetRetentionPolicy(kJob, testing::MaxToKeep(1)).ok());
  ASSERT_TRUE(CommitDelta(2, make_.Delta("emb", 1, 'b')).ok());
  ASSERT_TRUE(CommitDelta(3, make_.Delta("emb", 2, 'c')).ok());
  EXPECT_THAT(VisibleSteps(), ElementsAre(1, 2, 3));

  absl::StatusOr<std::vector<RetentionDecision>> dry =
      service_.Prune(kJob, std::nullopt, /*dry_run=*/true);
  ASSERT_TRUE(dry.ok()) << dry.status();
  ASSERT_EQ(dry->size(), 3u);
  EXPECT_TRUE((*dry)[0].keep);
  EXPECT_THAT((*dry)[0].reasons, ElementsAre("base of step 2"));
  EXPECT_THAT((*dry)[1].reasons, ElementsAre("base of step 3"));

  // A new full save releases the chain.
  ASSERT_TRUE(Commit(4, {make_.Full("emb", 'd')}).ok());
  EXPECT_THAT(VisibleSteps(), ElementsAre(4));
}

TEST_F(DeltaCheckpointTest, PendingDeltaKeepsItsBaseUnderRetention) {
  ASSERT_TRUE(Commit(1, {make_.Full("emb", 'a')}).ok());
  ASSERT_TRUE(service_.SetRetentionPolicy(kJob, testing::MaxToKeep(1)).ok());
  // Rank 0 of step 2 commits a delta against 1; rank 1 has not yet.
  ASSERT_TRUE(Commit(2, {make_.Delta("emb", 1, 'b')}, 0, 2).ok());
  ASSERT_TRUE(Commit(3, {make_.Full("emb", 'c')}).ok());
  EXPECT_THAT(VisibleSteps(), ElementsAre(1, 3));
  absl::StatusOr<std::vector<RetentionDecision>> dry =
      service_.Prune(kJob, std::nullopt, /*dry_run=*/true);
  ASSERT_TRUE(dry.ok()) << dry.status();
  EXPECT_THAT(dry->front().reasons, ElementsAre("base of pending step 2"));
  // A prune keeps it too.
  ASSERT_TRUE(service_.Prune(kJob, std::nullopt, /*dry_run=*/false).ok());
  EXPECT_THAT(VisibleSteps(), ElementsAre(1, 3));
}

// ------------------------------------------------------------ bytes_added

TEST_F(DeltaCheckpointTest, BytesAddedAccumulatesOnlyWhilePending) {
  ASSERT_TRUE(
      service_.BeginCheckpoint(kJob, 1, 1, {}, absl::ZeroDuration()).ok());
  ASSERT_TRUE(service_.AddBytesAdded(kJob, 1, 100).ok());
  ASSERT_TRUE(service_.AddBytesAdded(kJob, 1, 23).ok());
  EXPECT_EQ(Record(1).bytes_added, 123u);
  ASSERT_TRUE(service_.CommitShard(kJob, 1, 1, ShardManifest{}).ok());
  // Late or stray uploads change nothing and fail nothing.
  EXPECT_TRUE(service_.AddBytesAdded(kJob, 1, 50).ok());
  EXPECT_TRUE(service_.AddBytesAdded(kJob, 9, 50).ok());
  EXPECT_EQ(Record(1).bytes_added, 123u);
}

// ------------------------------------------------------------ GC, RocksDB

TEST(DeltaGarbageCollectionTest, GcKeepsTheBaseARetainedDeltaNeeds) {
  std::unique_ptr<::ckpt::testing::TempDir> dir =
      ::ckpt::server::testing::MakeTempDir();
  absl::StatusOr<std::unique_ptr<RocksDbStore>> store =
      RocksDbStore::Open(dir->path() + "/db");
  ASSERT_TRUE(store.ok()) << store.status();
  FakeClock clock;
  ServiceOptions options;
  options.chunk_hold = absl::Minutes(1);
  CheckpointService service(store->get(), store->get(), &clock, options);
  EntryMaker make(&service, kJob);

  ASSERT_TRUE(CommitTensors(service, kJob, 1, {make.Full("emb", 'a')}).ok());
  ASSERT_TRUE(service.SetRetentionPolicy(kJob, testing::MaxToKeep(1)).ok());
  ASSERT_TRUE(
      CommitTensors(service, kJob, 2, {make.Delta("emb", 1, 'b')}).ok());
  // An unreferenced chunk, to show that the collection does collect.
  const std::string stray = "stray bytes";
  ASSERT_TRUE(service.PutChunk(kJob, Sha256(stray), stray).ok());
  clock.Advance(absl::Hours(1));  // past every hold

  absl::StatusOr<GcReport> report = service.CollectGarbage({});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->chunks_deleted, 1u);
  EXPECT_THAT(service.ReadChunk(kJob, Sha256(stray)).status().code(),
              absl::StatusCode::kNotFound);
  for (int64_t step : {1, 2}) {
    SCOPED_TRACE(step);
    absl::StatusOr<Checkpoint> checkpoint = service.GetManifest(kJob, step);
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
    for (const ShardManifest& shard : checkpoint->shards) {
      for (const ChunkRef& ref : ReferencedChunks(shard)) {
        absl::StatusOr<std::string> bytes = service.ReadChunk(kJob, ref.id);
        ASSERT_TRUE(bytes.ok()) << bytes.status();
        EXPECT_EQ(bytes->size(), ref.size);
      }
    }
  }
  // The delta still applies onto its base's bytes.
  absl::StatusOr<Checkpoint> base = service.GetManifest(kJob, 1);
  absl::StatusOr<Checkpoint> delta = service.GetManifest(kJob, 2);
  ASSERT_TRUE(base.ok() && delta.ok());
  absl::StatusOr<std::string> base_bytes =
      service.ReadChunk(kJob, base->shards[0].tensors[0].pieces[0].id);
  absl::StatusOr<std::string> delta_bytes =
      service.ReadChunk(kJob, delta->shards[0].tensors[0].pieces[0].id);
  ASSERT_TRUE(base_bytes.ok() && delta_bytes.ok());
  absl::StatusOr<RowDeltaView> view = DecodeRowDelta(*delta_bytes);
  ASSERT_TRUE(view.ok()) << view.status();
  std::string restored = *base_bytes;
  ASSERT_TRUE(ApplyRowDelta(*view, absl::MakeSpan(restored)).ok());
  EXPECT_EQ(restored.substr(0, 8), std::string(8, 'a'));
  EXPECT_EQ(restored.substr(8, 8), std::string(8, 'b'));
}

}  // namespace
}  // namespace ckpt::server
