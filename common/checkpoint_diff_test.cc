#include "common/checkpoint_diff.h"

#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/row_delta.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// A uint8 tensor [rows, row_bytes] held whole, one chunk per string of
// `chunks` (each a whole number of rows, as the tests choose).
TensorEntry Plain(std::string name, int64_t rows, int64_t row_bytes,
                  const std::vector<std::string>& chunks) {
  TensorEntry entry;
  entry.name = std::move(name);
  entry.global_shape = {rows, row_bytes};
  entry.box = Box{{0, 0}, {rows, row_bytes}};
  for (const std::string& chunk : chunks) {
    entry.pieces.push_back(ChunkRef{Sha256(chunk), chunk.size()});
  }
  return entry;
}

// A row delta of `changed` rows of `like`'s layout against `base_step`,
// one chunk whose bytes `seed` makes distinct.
TensorEntry Delta(const TensorEntry& like, int64_t base_step, uint64_t changed,
                  absl::string_view seed) {
  TensorEntry entry = like;
  entry.delta_base_step = base_step;
  const uint64_t size = RowDeltaBytes(
      static_cast<uint64_t>(like.box.lengths[0]), like.RowBytes(), changed);
  entry.pieces = {ChunkRef{Sha256(absl::StrCat(seed, size)), size}};
  return entry;
}

Checkpoint Make(int64_t step, std::vector<std::vector<TensorEntry>> ranks) {
  Checkpoint checkpoint;
  checkpoint.record.job = "team/model";
  checkpoint.record.step = step;
  checkpoint.record.state = CheckpointState::kCommitted;
  checkpoint.record.world_size = static_cast<int32_t>(ranks.size());
  for (size_t rank = 0; rank < ranks.size(); ++rank) {
    ShardManifest shard;
    shard.rank = static_cast<int32_t>(rank);
    shard.tensors = std::move(ranks[rank]);
    checkpoint.shards.push_back(std::move(shard));
  }
  return checkpoint;
}

const TensorDiff& Find(const CheckpointDiff& diff, absl::string_view name,
                       int32_t rank = 0) {
  for (const TensorDiff& tensor : diff.tensors) {
    if (tensor.name == name && tensor.rank == rank) return tensor;
  }
  ADD_FAILURE() << "no " << name << " of rank " << rank;
  static const TensorDiff kNone;
  return kNone;
}

const std::string k8a(8, 'a'), k8b(8, 'b'), k8c(8, 'c'), k8x(8, 'x');

TEST(CheckpointDiffTest, IdenticalCheckpointsAreTheSameThroughout) {
  const TensorEntry w = Plain("w", 3, 8, {k8a, k8b, k8c});
  Checkpoint a = Make(1, {{w}});
  a.record.metadata.metrics = {{"loss", 0.5}, {"nan", std::nan("")}};
  a.record.metadata.tags = {{"git", "abc"}};
  Checkpoint b = a;
  b.record.step = 2;
  const CheckpointDiff diff = DiffCheckpoints(a, b);
  ASSERT_EQ(diff.tensors.size(), 1u);
  EXPECT_EQ(diff.tensors[0].change, TensorChange::kSame);
  EXPECT_EQ(diff.tensors[0].chunks_differing, 0u);
  EXPECT_EQ(diff.tensors[0].new_bytes, 0u);
  EXPECT_THAT(diff.metrics, IsEmpty());  // NaN is NaN here
  EXPECT_THAT(diff.tags, IsEmpty());
  EXPECT_FALSE(diff.writer_time.has_value());
  EXPECT_EQ(diff.bytes_added, 0u);
  EXPECT_EQ(diff.chunks_added, 0u);
  EXPECT_EQ(diff.Count(TensorChange::kSame), 1);
  EXPECT_EQ(diff.a.step, 1);
  EXPECT_EQ(diff.b.step, 2);
}

TEST(CheckpointDiffTest, AChangedChunkIsCountedWhereItChanged) {
  const Checkpoint a = Make(1, {{Plain("w", 3, 8, {k8a, k8b, k8c})}});
  const Checkpoint b = Make(2, {{Plain("w", 3, 8, {k8a, k8x, k8c})}});
  const CheckpointDiff diff = DiffCheckpoints(a, b);
  const TensorDiff& w = Find(diff, "w");
  EXPECT_EQ(w.change, TensorChange::kChanged);
  EXPECT_EQ(w.chunks_differing, 1u);
  EXPECT_FALSE(w.dtype_changed || w.shape_changed || w.box_changed ||
               w.kind_changed);
  EXPECT_FALSE(w.rows_changed.has_value());  // no row record for full ones
  EXPECT_EQ(w.new_bytes, 8u);
  EXPECT_EQ(diff.bytes_added, 8u);
  EXPECT_EQ(diff.chunks_added, 1u);
  // Moved chunks are still differing positions, but add no bytes.
  const Checkpoint moved = Make(3, {{Plain("w", 3, 8, {k8c, k8b, k8a})}});
  const CheckpointDiff swapped = DiffCheckpoints(a, moved);
  EXPECT_EQ(Find(swapped, "w").chunks_differing, 2u);
  EXPECT_EQ(swapped.bytes_added, 0u);
}

TEST(CheckpointDiffTest, TensorsAreKeyedByNameAndRankInOrder) {
  const TensorEntry state0 = Plain("loader", 1, 8, {k8a});
  const TensorEntry state1 = Plain("loader", 1, 8, {k8b});
  const Checkpoint a = Make(1, {{state0, Plain("old", 1, 8, {k8c})},
                                {state1, Plain("z", 1, 8, {k8c})}});
  const Checkpoint b =
      Make(2, {{Plain("new", 2, 8, {k8x, k8x}), state0},
               {Plain("loader", 1, 8, {k8x}), Plain("z", 1, 8, {k8c})}});
  const CheckpointDiff diff = DiffCheckpoints(a, b);
  std::vector<std::string> got;
  for (const TensorDiff& t : diff.tensors) {
    got.push_back(
        absl::StrCat(t.name, "/", t.rank, " ", TensorChangeName(t.change)));
  }
  EXPECT_THAT(got, ElementsAre("loader/0 same", "loader/1 changed",
                               "new/0 added", "old/0 removed", "z/1 same"));
  const TensorDiff& added = Find(diff, "new");
  EXPECT_FALSE(added.a.has_value());
  ASSERT_TRUE(added.b.has_value());
  EXPECT_EQ(added.chunks_differing, 2u);
  EXPECT_EQ(added.new_bytes, 8u);  // one distinct chunk, twice
  const TensorDiff& removed = Find(diff, "old");
  EXPECT_TRUE(removed.a.has_value());
  EXPECT_FALSE(removed.b.has_value());
  EXPECT_EQ(diff.Count(TensorChange::kSame), 2);
  EXPECT_EQ(diff.Count(TensorChange::kChanged), 1);
  EXPECT_EQ(diff.Count(TensorChange::kAdded), 1);
  EXPECT_EQ(diff.Count(TensorChange::kRemoved), 1);
  // x is new once, however many entries hold it.
  EXPECT_EQ(diff.chunks_added, 1u);
  EXPECT_EQ(diff.bytes_added, 8u);
}

TEST(CheckpointDiffTest, SaysWhatOfTheLayoutChanged) {
  TensorEntry w = Plain("w", 2, 8, {k8a, k8b});
  TensorEntry wider = Plain("w", 2, 16, {k8a + k8a, k8b + k8b});
  TensorEntry halves = w;
  halves.dtype = DType::kFloat16;  // 2 rows of 4 halves
  TensorEntry part = w;
  part.global_shape = {4, 8};  // now a shard of a bigger tensor
  TensorEntry quantized = w;
  quantized.dtype = DType::kFloat32;
  quantized.quantization = Quantization{.bits = 4};
  quantized.pieces = {ChunkRef{Sha256("codes"), 5}};
  const Checkpoint a = Make(1, {{w}});
  struct Case {
    TensorEntry b;
    bool dtype, shape, box, kind;
  };
  for (const Case& c :
       std::vector<Case>{{wider, false, true, true, false},
                         {halves, true, false, false, false},
                         {part, false, true, false, false},
                         {quantized, true, false, false, true}}) {
    const CheckpointDiff diff = DiffCheckpoints(a, Make(2, {{c.b}}));
    const TensorDiff& t = Find(diff, "w");
    SCOPED_TRACE(absl::StrCat(DTypeName(c.b.dtype), " ", c.b.box.lengths[1]));
    EXPECT_EQ(t.change, TensorChange::kChanged);
    EXPECT_EQ(t.dtype_changed, c.dtype);
    EXPECT_EQ(t.shape_changed, c.shape);
    EXPECT_EQ(t.box_changed, c.box);
    EXPECT_EQ(t.kind_changed, c.kind);
  }
  // Laid out otherwise, a chunk that A's entry holds does not differ: the
  // same bytes, read as another dtype.
  const CheckpointDiff diff = DiffCheckpoints(a, Make(2, {{halves}}));
  EXPECT_EQ(Find(diff, "w").chunks_differing, 0u);
  const CheckpointDiff wide = DiffCheckpoints(a, Make(2, {{wider}}));
  EXPECT_EQ(Find(wide, "w").chunks_differing, 2u);  // neither held by A
  EXPECT_EQ(Find(DiffCheckpoints(a, Make(2, {{quantized}})), "w").b->kind,
            "quantized 4b");
}

TEST(CheckpointDiffTest, ADeltaAgainstAGivesTheRowsItReplaces) {
  const TensorEntry w = Plain("w", 100, 8, {std::string(800, 'a')});
  const Checkpoint a = Make(10, {{w}});
  const CheckpointDiff diff =
      DiffCheckpoints(a, Make(11, {{Delta(w, 10, 7, "d")}}));
  const TensorDiff& t = Find(diff, "w");
  EXPECT_EQ(t.change, TensorChange::kChanged);
  EXPECT_EQ(t.rows_changed, 7u);
  ASSERT_TRUE(t.b.has_value());
  EXPECT_EQ(t.b->delta_rows, 7u);
  EXPECT_EQ(t.b->total_rows, 100u);
  EXPECT_EQ(t.b->delta_base_step, 10);
  EXPECT_EQ(t.b->kind, "delta");
  EXPECT_TRUE(t.kind_changed);
  EXPECT_EQ(t.chunks_differing, 1u);
  EXPECT_EQ(t.new_bytes, RowDeltaBytes(100, 8, 7));
  EXPECT_EQ(diff.bytes_added, RowDeltaBytes(100, 8, 7));

  // No rows: A's values stored another way.
  const CheckpointDiff none_diff =
      DiffCheckpoints(a, Make(11, {{Delta(w, 10, 0, "e")}}));
  const TensorDiff& none = Find(none_diff, "w");
  EXPECT_EQ(none.change, TensorChange::kSame);
  EXPECT_EQ(none.rows_changed, 0u);
  EXPECT_FALSE(none.kind_changed);

  // Against another step: its rows say nothing of A.
  const CheckpointDiff other_diff =
      DiffCheckpoints(a, Make(12, {{Delta(w, 5, 3, "f")}}));
  const TensorDiff& other = Find(other_diff, "w");
  EXPECT_EQ(other.change, TensorChange::kChanged);
  EXPECT_FALSE(other.rows_changed.has_value());
  EXPECT_EQ(other.b->delta_rows, 3u);
  const CheckpointDiff zero_elsewhere =
      DiffCheckpoints(a, Make(12, {{Delta(w, 5, 0, "g")}}));
  EXPECT_EQ(Find(zero_elsewhere, "w").change, TensorChange::kChanged);
}

// A per-rank tensor whose ranks share a layout: each rank's delta applies
// onto its own rank's entry (the base rule), so each gives its rows.
TEST(CheckpointDiffTest, APerRankDeltaGivesRowsOverItsOwnRanksEntry) {
  const TensorEntry rank0 = Plain("state", 1, 8, {k8a});
  const TensorEntry rank1 = Plain("state", 1, 8, {k8b});
  const Checkpoint a = Make(10, {{rank0}, {rank1}});
  const CheckpointDiff diff = DiffCheckpoints(
      a, Make(11, {{Delta(rank0, 10, 0, "r0")}, {Delta(rank1, 10, 0, "r1")}}));
  EXPECT_EQ(Find(diff, "state", 0).change, TensorChange::kSame);
  EXPECT_EQ(Find(diff, "state", 1).change, TensorChange::kSame);
}

TEST(CheckpointDiffTest, MetricsTagsAndWriterTimeDifferencesAreListed) {
  Checkpoint a = Make(1, {});
  Checkpoint b = Make(2, {});
  a.record.metadata.metrics = {{"loss", 0.5}, {"acc", 0.1}, {"lr", 1e-3}};
  b.record.metadata.metrics = {{"loss", 0.25}, {"lr", 1e-3}, {"epoch", 2}};
  a.record.metadata.tags = {{"git", "abc"}, {"host", "n1"}};
  b.record.metadata.tags = {{"git", "def"}, {"note", "x"}, {"host", "n1"}};
  b.record.metadata.writer_time = absl::FromUnixSeconds(100);
  const CheckpointDiff diff = DiffCheckpoints(a, b);
  using M = ValueChange<double>;
  using T = ValueChange<std::string>;
  EXPECT_EQ(diff.metrics,
            (std::map<std::string, M>{{"acc", M{0.1, std::nullopt}},
                                      {"epoch", M{std::nullopt, 2}},
                                      {"loss", M{0.5, 0.25}}}));
  EXPECT_EQ(diff.tags,
            (std::map<std::string, T>{{"git", T{"abc", "def"}},
                                      {"note", T{std::nullopt, "x"}}}));
  ASSERT_TRUE(diff.writer_time.has_value());
  EXPECT_EQ(diff.writer_time->a, std::nullopt);
  EXPECT_EQ(diff.writer_time->b, absl::FromUnixSeconds(100));
  // A NaN against a number is a change.
  b.record.metadata.metrics["lr"] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_TRUE(DiffCheckpoints(a, b).metrics.contains("lr"));
}

TEST(CheckpointDiffTest, ABrokenDeltaSizeGivesNoRowCount) {
  const TensorEntry w = Plain("w", 10, 8, {k8a});
  TensorEntry delta = Delta(w, 1, 2, "d");
  delta.pieces[0].size += 1;  // no delta of 10 rows of 8 bytes is this long
  const CheckpointDiff diff =
      DiffCheckpoints(Make(1, {{w}}), Make(2, {{delta}}));
  const TensorDiff& t = Find(diff, "w");
  EXPECT_EQ(t.change, TensorChange::kChanged);
  EXPECT_FALSE(t.b->delta_rows.has_value());
  EXPECT_FALSE(t.rows_changed.has_value());
}

}  // namespace
}  // namespace ckpt
