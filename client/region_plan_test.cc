// The region restore (client/region_plan.h) against FakeTransport: random
// N -> M layouts checked against slicing the global tensor, the exact set
// of chunks fetched, delta chains, quantized sources, and every refusal.
// The expectations are computed element by element here, independently of
// client/box_overlap.h. One suite (past 600 lines) because every part of it
// needs the same fixtures: sharded saves of several ranks into the fake,
// delta histories, and those element-by-element references.
#include "client/region_plan.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/restore_buffer.h"
#include "client/restore_plan.h"
#include "client/save_pipeline.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/client_tensors.h"
#include "tests/testing/fake_transport.h"

namespace ckpt::client {
namespace {

using ::ckpt::testing::ElementNumber;
using ::ckpt::testing::FakeTransport;
using ::ckpt::testing::ForEachElement;
using ::ckpt::testing::PatternBytes;
using ::testing::AllOf;
using ::testing::HasSubstr;

using Shape = std::vector<int64_t>;
using ChunkSet = absl::flat_hash_set<ChunkId>;

constexpr char kJob[] = "team/model";

bool Inside(const Box& box, const std::vector<int64_t>& index) {
  for (size_t d = 0; d < index.size(); ++d) {
    if (index[d] < box.offsets[d] ||
        index[d] >= box.offsets[d] + box.lengths[d]) {
      return false;
    }
  }
  return true;
}

std::string RegionText(const Box& region) {
  return absl::StrCat("region [", absl::StrJoin(region.offsets, ", "), "]+[",
                      absl::StrJoin(region.lengths, ", "), "]");
}

Box Whole(const Shape& shape) {
  return Box{std::vector<int64_t>(shape.size(), 0), shape};
}

std::string Slice(const std::string& global, const Shape& shape,
                  size_t element_bytes, const Box& box) {
  return testing::SliceBox(global, shape, element_bytes, box);
}

uint64_t Elements(const Shape& shape) {
  uint64_t n = 1;
  for (int64_t length : shape) n *= static_cast<uint64_t>(length);
  return n;
}

// A tensor of `shape` saved by several ranks, rank r holding boxes[r].
struct Sharded {
  std::string name;
  DType dtype = DType::kUint8;
  Shape shape;
  std::string global;
  std::vector<Box> boxes;
  std::optional<int> quantize_bits;
  size_t element_bytes() const { return DTypeSize(dtype); }
};

Sharded MakeSharded(const std::string& name, DType dtype, Shape shape,
                    std::vector<Box> boxes, uint32_t seed) {
  Sharded t;
  t.name = name;
  t.dtype = dtype;
  t.global = PatternBytes(Elements(shape) * DTypeSize(dtype), seed);
  t.shape = std::move(shape);
  t.boxes = std::move(boxes);
  return t;
}

// Float32 values that quantize well (finite, smooth).
std::string SmoothFloats(uint64_t count, float phase) {
  std::vector<float> values(count);
  for (uint64_t i = 0; i < count; ++i) {
    values[i] = std::sin(static_cast<float>(i) * 0.37f + phase) * 3.0f;
  }
  return std::string(reinterpret_cast<const char*>(values.data()),
                     values.size() * sizeof(float));
}

// A row delta to save for one rank: its rows (of its box) and base.
struct DeltaOf {
  int64_t base_step = 0;
  std::vector<uint64_t> rows;
};

// Saves checkpoint `step` of `world` ranks: rank r saves every tensor's
// boxes[r] (as a delta where `deltas` says so for (tensor, rank)).
void SaveRanks(
    FakeTransport& fake, int64_t step, const std::vector<Sharded>& tensors,
    int32_t world, size_t chunk_bytes,
    const std::map<std::pair<size_t, int32_t>, DeltaOf>& deltas = {}) {
  for (int32_t r = 0; r < world; ++r) {
    std::vector<std::string> bytes;
    bytes.reserve(tensors.size());
    std::vector<TensorData> data;
    for (size_t t = 0; t < tensors.size(); ++t) {
      const Sharded& s = tensors[t];
      bytes.push_back(Slice(s.global, s.shape, s.element_bytes(), s.boxes[r]));
      TensorData& d = data.emplace_back();
      d.name = s.name;
      d.dtype = s.dtype;
      d.global_shape = s.shape;
      d.box = s.boxes[r];
      d.bytes = bytes.back();
      d.quantize_bits = s.quantize_bits;
      auto delta = deltas.find({t, r});
      if (delta != deltas.end()) {
        d.delta_base_step = delta->second.base_step;
        d.delta_rows = delta->second.rows;
      }
    }
    SaveOptions options;
    options.rank = r;
    options.world_size = world;
    options.chunk_bytes = chunk_bytes;
    absl::StatusOr<SaveResult> saved =
        SaveShard(fake, kJob, step, data, options);
    ASSERT_TRUE(saved.ok()) << saved.status();
  }
}

Checkpoint Manifest(FakeTransport& fake, int64_t step) {
  absl::StatusOr<Checkpoint> manifest =
      fake.GetManifest(kJob, step, std::nullopt);
  EXPECT_TRUE(manifest.ok()) << manifest.status();
  return manifest.ok() ? *manifest : Checkpoint();
}

RegionRequest Request(const Sharded& t, const Box& region,
                      std::optional<int32_t> source_rank = std::nullopt) {
  return RegionRequest{t.name, t.dtype, t.shape, region, source_rank};
}

uint64_t RegionBytesOf(const Sharded& t, const Box& region) {
  uint64_t n = t.element_bytes();
  for (int64_t length : region.lengths) n *= static_cast<uint64_t>(length);
  return n;
}

// Reads `regions` of `t` in one ReadRegions call.
absl::StatusOr<RegionReadStats> Read(FakeTransport& fake,
                                     const Checkpoint& checkpoint,
                                     const Sharded& t,
                                     const std::vector<Box>& regions,
                                     std::vector<std::string>& outs) {
  std::vector<RegionRequest> requests;
  std::vector<absl::Span<char>> spans;
  outs.clear();
  outs.reserve(regions.size());
  for (const Box& region : regions) {
    requests.push_back(Request(t, region));
    outs.emplace_back(RegionBytesOf(t, region), '\xee');
    spans.push_back(absl::MakeSpan(outs.back()));
  }
  return ReadRegions(fake, checkpoint, requests, spans, {});
}

// The entry of `name` that rank `rank` saved in `checkpoint`.
const TensorEntry& EntryOf(const Checkpoint& checkpoint, int32_t rank,
                           const std::string& name) {
  for (const ShardManifest& shard : checkpoint.shards) {
    if (shard.rank != rank) continue;
    for (const TensorEntry& entry : shard.tensors) {
      if (entry.name == name) return entry;
    }
  }
  ADD_FAILURE() << "rank " << rank << " saved no " << name;
  static const TensorEntry kNone;
  return kNone;
}

// The pieces of `entry` holding any of box bytes [begin, end).
void AddPiecesHolding(const TensorEntry& entry, uint64_t begin, uint64_t end,
                      ChunkSet& chunks) {
  uint64_t offset = 0;
  for (const ChunkRef& piece : entry.pieces) {
    if (offset < end && offset + piece.size > begin) chunks.insert(piece.id);
    offset += piece.size;
  }
}

// The pieces of `entry` (a full one of `box`) holding one of `region`'s
// elements.
void AddPiecesHoldingRegion(const TensorEntry& entry, const Box& box,
                            size_t element_bytes, const Box& region,
                            ChunkSet& chunks) {
  ForEachElement(region, [&](const std::vector<int64_t>& index) {
    if (!Inside(box, index)) return;
    const uint64_t byte = ElementNumber(box, index) * element_bytes;
    AddPiecesHolding(entry, byte, byte + element_bytes, chunks);
  });
}

// What a region of a full (plain) tensor must fetch: of each distinct saved
// box, the pieces that hold one of the region's elements.
ChunkSet ChunksHolding(const Checkpoint& checkpoint, const Sharded& t,
                       const Box& region) {
  ChunkSet chunks;
  std::set<std::pair<Shape, Shape>> seen;
  for (int32_t r = 0; r < static_cast<int32_t>(t.boxes.size()); ++r) {
    const Box& box = t.boxes[r];
    if (!seen.insert({box.offsets, box.lengths}).second) continue;
    AddPiecesHoldingRegion(EntryOf(checkpoint, r, t.name), box,
                           t.element_bytes(), region, chunks);
  }
  return chunks;
}

uint64_t BytesOf(const Checkpoint& checkpoint, const ChunkSet& chunks) {
  absl::flat_hash_map<ChunkId, uint64_t> sizes;
  for (const ShardManifest& shard : checkpoint.shards) {
    for (const TensorEntry& entry : shard.tensors) {
      for (const ChunkRef& piece : entry.pieces) sizes[piece.id] = piece.size;
    }
  }
  uint64_t total = 0;
  for (const ChunkId& id : chunks) total += sizes[id];
  return total;
}

// The chunks read since the last ClearReads, each of which must have been
// read exactly once.
ChunkSet ReadOnce(const FakeTransport& fake) {
  ChunkSet read;
  for (const auto& [id, times] : fake.read_counts()) {
    EXPECT_EQ(times, 1) << id.ShortHex();
    read.insert(id);
  }
  return read;
}

// `parts` cut points of [0, length): strictly ascending, 0 first, length
// last, at random places (so the parts are uneven).
std::vector<int64_t> RandomBounds(int64_t length, int parts,
                                  std::mt19937& rng) {
  std::set<int64_t> cuts;
  while (static_cast<int>(cuts.size()) < parts - 1) {
    cuts.insert(1 + static_cast<int64_t>(rng() % (length - 1)));
  }
  std::vector<int64_t> bounds = {0};
  bounds.insert(bounds.end(), cuts.begin(), cuts.end());
  bounds.push_back(length);
  return bounds;
}

// Boxes tiling `shape`: each of dims `split` cut into parts (up to 4) at
// random places, the others whole; row-major over the grid.
std::vector<Box> Grid(const Shape& shape, const std::vector<size_t>& split,
                      std::mt19937& rng) {
  std::vector<std::vector<int64_t>> bounds(shape.size());
  for (size_t d = 0; d < shape.size(); ++d) bounds[d] = {0, shape[d]};
  for (size_t d : split) {
    const int parts =
        1 + static_cast<int>(rng() % std::min<int64_t>(4, shape[d]));
    bounds[d] = RandomBounds(shape[d], parts, rng);
  }
  Box cells;
  for (size_t d = 0; d < shape.size(); ++d) {
    cells.offsets.push_back(0);
    cells.lengths.push_back(static_cast<int64_t>(bounds[d].size()) - 1);
  }
  std::vector<Box> boxes;
  ForEachElement(cells, [&](const std::vector<int64_t>& cell) {
    Box& box = boxes.emplace_back();
    for (size_t d = 0; d < shape.size(); ++d) {
      box.offsets.push_back(bounds[d][cell[d]]);
      box.lengths.push_back(bounds[d][cell[d] + 1] - bounds[d][cell[d]]);
    }
  });
  return boxes;
}

// Up to two distinct dimensions to split, at random.
std::vector<size_t> RandomSplitDims(size_t rank, std::mt19937& rng) {
  std::vector<size_t> dims;
  const size_t count = std::min<size_t>(rank, rng() % 3);
  while (dims.size() < count) {
    const size_t d = rng() % rank;
    if (std::find(dims.begin(), dims.end(), d) == dims.end()) {
      dims.push_back(d);
    }
  }
  return dims;
}

// Row-split boxes of a 2-D tensor: rows [bounds[i], bounds[i + 1]).
std::vector<Box> RowBoxes(const std::vector<int64_t>& bounds, int64_t cols) {
  std::vector<Box> boxes;
  for (size_t i = 0; i + 1 < bounds.size(); ++i) {
    boxes.push_back(Box{{bounds[i], 0}, {bounds[i + 1] - bounds[i], cols}});
  }
  return boxes;
}

bool SharedMemoryWorks() {
  absl::StatusOr<std::shared_ptr<RestoreBuffer>> buffer =
      RestoreBuffer::Create(RestoreBuffer::kPageBytes, true);
  return buffer.ok() && (*buffer)->shareable();
}

TEST(RegionPlanTest, RandomNToMLayoutsReadExactlyTheChunksHoldingTheRegion) {
  std::mt19937 rng(20261214);
  const DType dtypes[] = {DType::kUint8, DType::kInt16, DType::kInt32,
                          DType::kFloat64};
  for (int iteration = 0; iteration < 80; ++iteration) {
    SCOPED_TRACE(absl::StrCat("iteration ", iteration));
    const size_t rank = 1 + rng() % 3;
    Shape shape(rank);
    for (int64_t& length : shape) length = 1 + static_cast<int64_t>(rng() % 9);
    std::vector<Box> saved = Grid(shape, RandomSplitDims(rank, rng), rng);
    // A quarter of the layouts save every box twice (replicated).
    if (rng() % 4 == 0) {
      std::vector<Box> twice;
      for (const Box& box : saved) twice.insert(twice.end(), {box, box});
      saved = twice;
    }
    const Sharded t = MakeSharded("w", dtypes[rng() % 4], shape, saved,
                                  static_cast<uint32_t>(iteration));
    FakeTransport fake;
    SaveRanks(fake, 1, {t}, static_cast<int32_t>(saved.size()), 1 + rng() % 40);
    const Checkpoint checkpoint = Manifest(fake, 1);
    const std::vector<Box> regions =
        Grid(shape, RandomSplitDims(rank, rng), rng);

    // One region per call, as each rank of the new layout reads its own.
    for (const Box& region : regions) {
      SCOPED_TRACE(RegionText(region));
      fake.ClearReads();
      std::vector<std::string> outs;
      absl::StatusOr<RegionReadStats> stats =
          Read(fake, checkpoint, t, {region}, outs);
      ASSERT_TRUE(stats.ok()) << stats.status();
      EXPECT_EQ(outs[0], Slice(t.global, shape, t.element_bytes(), region));
      const ChunkSet expected = ChunksHolding(checkpoint, t, region);
      EXPECT_EQ(ReadOnce(fake), expected);
      EXPECT_EQ(stats->chunks_fetched, expected.size());
      EXPECT_EQ(stats->bytes_fetched, BytesOf(checkpoint, expected));
      EXPECT_EQ(stats->bytes_used, outs[0].size());
    }

    // All regions in one call: each chunk still read once.
    fake.ClearReads();
    std::vector<std::string> outs;
    ASSERT_TRUE(Read(fake, checkpoint, t, regions, outs).ok());
    ChunkSet expected;
    for (size_t i = 0; i < regions.size(); ++i) {
      EXPECT_EQ(outs[i], Slice(t.global, shape, t.element_bytes(), regions[i]));
      const ChunkSet of_region = ChunksHolding(checkpoint, t, regions[i]);
      expected.insert(of_region.begin(), of_region.end());
    }
    EXPECT_EQ(ReadOnce(fake), expected);
  }
}

TEST(RegionPlanTest, RestoreRegionsAssemblesIntoItsOwnMemoryEitherWay) {
  std::mt19937 rng(7);
  const Shape shape = {9, 7, 3};
  const Sharded t =
      MakeSharded("w", DType::kInt16, shape, Grid(shape, {0, 1}, rng), 5);
  FakeTransport fake;
  SaveRanks(fake, 1, {t}, static_cast<int32_t>(t.boxes.size()), 22);
  const Checkpoint checkpoint = Manifest(fake, 1);
  const std::vector<Box> regions = Grid(shape, {1, 2}, rng);
  std::vector<RegionRequest> requests;
  for (const Box& region : regions) requests.push_back(Request(t, region));
  for (bool shared_memory : {false, true}) {
    SCOPED_TRACE(shared_memory ? "shared memory" : "streamed");
    fake.ClearReads();
    uint64_t last_done = 0, last_total = 0;
    absl::StatusOr<RestoredRegions> restored = RestoreRegions(
        fake, checkpoint, requests,
        [&](uint64_t done, uint64_t total) {
          EXPECT_GE(done, last_done);
          last_done = done;
          last_total = total;
        },
        shared_memory);
    ASSERT_TRUE(restored.ok()) << restored.status();
    ASSERT_EQ(restored->tensors.size(), regions.size());
    for (size_t i = 0; i < regions.size(); ++i) {
      const RestoredTensor& tensor = restored->tensors[i];
      EXPECT_EQ(absl::string_view(tensor.bytes.data(), tensor.bytes.size()),
                Slice(t.global, shape, t.element_bytes(), regions[i]));
      EXPECT_EQ(tensor.entry.box, regions[i]);
      EXPECT_EQ(tensor.entry.global_shape, shape);
      EXPECT_TRUE(tensor.entry.pieces.empty());
    }
    EXPECT_EQ(last_total, restored->stats.bytes_fetched);
    EXPECT_EQ(last_done, last_total);
    EXPECT_EQ(restored->stats.bytes_used, Elements(shape) * 2);
    if (shared_memory && SharedMemoryWorks()) {
      EXPECT_GT(fake.into_file_calls(), 0);
      EXPECT_TRUE(fake.read_calls().empty());
    }
  }
}

// Where the sinks of one read may land: the regions' memory (direct) or
// elsewhere (scratch).
int SinksIntoScratch(const FakeTransport& fake,
                     const std::vector<std::string>& outs) {
  int scratch = 0;
  for (const ChunkSink& sink : fake.sinks_read()) {
    for (char* destination : sink.destinations) {
      const bool direct =
          std::any_of(outs.begin(), outs.end(), [&](const std::string& out) {
            return destination >= out.data() &&
                   destination + sink.size <= out.data() + out.size();
          });
      if (!direct) ++scratch;
    }
  }
  return scratch;
}

TEST(RegionPlanTest, ChunksInsideOneRunLandStraightInTheRegion) {
  // 16 x 8 int32 (32-byte rows), chunks of two rows, saved by 4 ranks.
  const Sharded t = MakeSharded("w", DType::kInt32, {16, 8},
                                RowBoxes({0, 4, 8, 12, 16}, 8), 3);
  FakeTransport fake;
  SaveRanks(fake, 1, {t}, 4, 64);
  const Checkpoint checkpoint = Manifest(fake, 1);

  // The same layout: every chunk straight into its region, no scratch.
  for (const Box& region : t.boxes) {
    fake.ClearReads();
    std::vector<std::string> outs;
    ASSERT_TRUE(Read(fake, checkpoint, t, {region}, outs).ok());
    EXPECT_EQ(outs[0], Slice(t.global, t.shape, 4, region));
    EXPECT_EQ(SinksIntoScratch(fake, outs), 0);
    EXPECT_EQ(fake.sinks_read().size(), 2u);
  }
  // 4 -> 3 ([0, 5), [5, 11), [11, 16)): only the chunks a cut goes through
  // (rows 4-5, 10-11) pass through scratch, in both regions they serve.
  const std::vector<Box> regions = RowBoxes({0, 5, 11, 16}, 8);
  const int expected_scratch[] = {1, 2, 1};
  for (size_t i = 0; i < regions.size(); ++i) {
    fake.ClearReads();
    std::vector<std::string> outs;
    ASSERT_TRUE(Read(fake, checkpoint, t, {regions[i]}, outs).ok());
    EXPECT_EQ(outs[0], Slice(t.global, t.shape, 4, regions[i]));
    EXPECT_EQ(SinksIntoScratch(fake, outs), expected_scratch[i]);
  }
  // Columns of another split: rows of 2 ints, never contiguous in the
  // saved box, all through scratch; all of every chunk is needed.
  fake.ClearReads();
  std::vector<std::string> outs;
  const Box columns{{0, 2}, {16, 2}};
  absl::StatusOr<RegionReadStats> stats =
      Read(fake, checkpoint, t, {columns}, outs);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(outs[0], Slice(t.global, t.shape, 4, columns));
  EXPECT_EQ(stats->chunks_fetched, 8u);
}

TEST(RegionPlanTest, AScalarAndAnEmptyRegion) {
  const Sharded scalar =
      MakeSharded("step", DType::kInt64, {}, {Box{}, Box{}}, 9);
  const Sharded table =
      MakeSharded("t", DType::kUint8, {4, 4}, RowBoxes({0, 2, 4}, 4), 10);
  FakeTransport fake;
  SaveRanks(fake, 1, {scalar, table}, 2, 16);
  const Checkpoint checkpoint = Manifest(fake, 1);
  std::vector<std::string> outs;
  ASSERT_TRUE(Read(fake, checkpoint, scalar, {Box{}}, outs).ok());
  EXPECT_EQ(outs[0], scalar.global);
  fake.ClearReads();
  absl::StatusOr<RegionReadStats> stats =
      Read(fake, checkpoint, table, {Box{{2, 0}, {0, 4}}}, outs);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->chunks_fetched, 0u);
  EXPECT_TRUE(fake.read_counts().empty());
}

// Finding each request's entries is a lookup, not a scan of the whole
// checkpoint per request (quadratic: an export or restore of 100,000
// tensors in one call took minutes).
TEST(RegionPlanTest, ManyTensorsInOneCallArePlannedInLinearTime) {
  constexpr int kTensors = 100'000;
  Checkpoint checkpoint;
  checkpoint.record.job = kJob;
  checkpoint.record.step = 1;
  checkpoint.record.world_size = 1;
  checkpoint.record.state = CheckpointState::kCommitted;
  ShardManifest& shard = checkpoint.shards.emplace_back();
  std::vector<RegionRequest> requests;
  for (int i = 0; i < kTensors; ++i) {
    TensorEntry& entry = shard.tensors.emplace_back();
    entry.name = absl::StrCat("t", i);
    entry.dtype = DType::kUint8;
    entry.global_shape = {0};
    entry.box = Box{{0}, {0}};
    requests.push_back(RegionRequest{.name = entry.name,
                                     .dtype = DType::kUint8,
                                     .global_shape = {0},
                                     .region = Box{{0}, {0}},
                                     .source_rank = std::nullopt});
  }
  std::vector<absl::Span<char>> spans(kTensors);
  FakeTransport fake;
  const absl::Time start = absl::Now();
  absl::StatusOr<RegionReadStats> stats =
      ReadRegions(fake, checkpoint, requests, spans, {});
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->chunks_fetched, 0u);
  EXPECT_LT(took, absl::Seconds(30));
}

TEST(RegionPlanTest, SourceRankReadsOnlyThatRanksEntry) {
  // Per-rank state: each rank saved its own whole "rng" tensor.
  const Sharded rng_state = MakeSharded("rng", DType::kUint8, {12}, {}, 11);
  const std::string rank1_bytes = PatternBytes(12, 99);
  FakeTransport fake;
  for (int32_t r = 0; r < 2; ++r) {
    const std::vector<TensorData> data = {
        testing::Uint8Tensor("rng", r == 0 ? rng_state.global : rank1_bytes)};
    SaveOptions options;
    options.rank = r;
    options.world_size = 2;
    options.chunk_bytes = 4;
    ASSERT_TRUE(SaveShard(fake, kJob, 2, data, options).ok());
  }
  const Checkpoint checkpoint = Manifest(fake, 2);
  const Box part{{3}, {6}};
  std::string out(6, '\0');
  const std::vector<absl::Span<char>> spans = {absl::MakeSpan(out)};
  const std::vector<RegionRequest> from_1 = {Request(rng_state, part, 1)};
  ASSERT_TRUE(ReadRegions(fake, checkpoint, from_1, spans, {}).ok());
  EXPECT_EQ(out, rank1_bytes.substr(3, 6));
  const std::vector<RegionRequest> from_0 = {Request(rng_state, part, 0)};
  ASSERT_TRUE(ReadRegions(fake, checkpoint, from_0, spans, {}).ok());
  EXPECT_EQ(out, rng_state.global.substr(3, 6));
  // Without a source rank, the two ranks' identical boxes of different
  // bytes are no replicated tensor.
  const std::vector<RegionRequest> any = {Request(rng_state, part)};
  absl::Status refused = ReadRegions(fake, checkpoint, any, spans, {}).status();
  EXPECT_TRUE(absl::IsInvalidArgument(refused)) << refused;
  EXPECT_THAT(refused.message(),
              AllOf(HasSubstr("tensor 'rng'"), HasSubstr("ranks 0 and 1"),
                    HasSubstr("saved the same box [0]+[12]")));
}

// Embedding-table history for the delta tests: 16 x 6 int32 rows (24
// bytes) split by 4 ranks at rows 3, 8 and 12, saved in chunks of 40 bytes
// (not whole rows).
struct TableHistory {
  std::map<int64_t, Sharded> at;  // step -> the table's bytes then
};

constexpr int64_t kTableRows = 16;
constexpr int64_t kTableCols = 6;
constexpr size_t kTableRowBytes = kTableCols * 4;

std::string ChangeRows(std::string bytes, const std::vector<int64_t>& rows,
                       uint32_t seed) {
  for (int64_t row : rows) {
    const std::string fresh =
        PatternBytes(kTableRowBytes, seed + static_cast<uint32_t>(row));
    std::memcpy(bytes.data() + row * kTableRowBytes, fresh.data(),
                kTableRowBytes);
  }
  return bytes;
}

// The rows of box `box` (relative) whose bytes differ between two states.
std::vector<uint64_t> ChangedRows(const std::string& now,
                                  const std::string& base, const Box& box) {
  std::vector<uint64_t> rows;
  for (int64_t r = 0; r < box.lengths[0]; ++r) {
    const size_t at = (box.offsets[0] + r) * kTableRowBytes;
    if (now.compare(at, kTableRowBytes, base, at, kTableRowBytes) != 0) {
      rows.push_back(static_cast<uint64_t>(r));
    }
  }
  return rows;
}

// Step 1 full; 2 a delta on 1; 3 a delta on 2 (a chain of three); 4 a delta
// on 1 by ranks 0 and 2 (skipping 2 and 3) and full by ranks 1 and 3.
TableHistory SaveTableHistory(FakeTransport& fake) {
  TableHistory h;
  Sharded t = MakeSharded("emb", DType::kInt32, {kTableRows, kTableCols},
                          RowBoxes({0, 3, 8, 12, 16}, kTableCols), 21);
  h.at[1] = t;
  SaveRanks(fake, 1, {t}, 4, 40);
  auto save_delta = [&](int64_t step, int64_t base,
                        const std::vector<int32_t>& delta_ranks) {
    std::map<std::pair<size_t, int32_t>, DeltaOf> deltas;
    for (int32_t r : delta_ranks) {
      deltas[{0, r}] = DeltaOf{
          base, ChangedRows(h.at[step].global, h.at[base].global, t.boxes[r])};
    }
    SaveRanks(fake, step, {h.at[step]}, 4, 40, deltas);
  };
  h.at[2] = t;
  h.at[2].global = ChangeRows(t.global, {2, 3, 7, 9, 15}, 200);
  save_delta(2, 1, {0, 1, 2, 3});
  h.at[3] = t;
  h.at[3].global = ChangeRows(h.at[2].global, {3, 4, 10}, 300);
  save_delta(3, 2, {0, 1, 2, 3});
  h.at[4] = t;
  h.at[4].global = ChangeRows(h.at[3].global, {0, 9, 11}, 400);
  save_delta(4, 1, {0, 2});
  return h;
}

TEST(RegionPlanTest, DeltaChainsRebuildOnlyTheRowsOfTheRegion) {
  FakeTransport fake;
  const TableHistory h = SaveTableHistory(fake);
  const Box rows_and_cols{{2, 1}, {12, 3}};
  for (int64_t step : {3, 4}) {
    SCOPED_TRACE(absl::StrCat("step ", step));
    const Sharded& t = h.at.at(step);
    const Checkpoint checkpoint = Manifest(fake, step);
    std::vector<Box> regions = RowBoxes({0, 5, 11, 16}, kTableCols);
    regions.push_back(Whole(t.shape));
    regions.push_back(rows_and_cols);
    for (const Box& region : regions) {
      SCOPED_TRACE(RegionText(region));
      fake.ClearReads();
      std::vector<std::string> outs;
      absl::StatusOr<RegionReadStats> stats =
          Read(fake, checkpoint, t, {region}, outs);
      ASSERT_TRUE(stats.ok()) << stats.status();
      EXPECT_EQ(outs[0], Slice(t.global, t.shape, 4, region));
      // Of each box saved whole at this step, the chunks holding region
      // elements; of each chain, the full entry's chunks covering the
      // region's rows, and every delta whole.
      ChunkSet expected;
      for (int32_t r = 0; r < 4; ++r) {
        const Box& box = t.boxes[r];
        const int64_t first = std::max(box.offsets[0], region.offsets[0]);
        const int64_t end = std::min(box.offsets[0] + box.lengths[0],
                                     region.offsets[0] + region.lengths[0]);
        if (first >= end) continue;
        if (!EntryOf(checkpoint, r, "emb").IsDelta()) {
          AddPiecesHoldingRegion(EntryOf(checkpoint, r, "emb"), box, 4, region,
                                 expected);
          continue;
        }
        int64_t at = step;
        for (;;) {
          const Checkpoint saved_at = Manifest(fake, at);
          const TensorEntry& entry = EntryOf(saved_at, r, "emb");
          if (!entry.IsDelta()) {
            AddPiecesHolding(entry, (first - box.offsets[0]) * kTableRowBytes,
                             (end - box.offsets[0]) * kTableRowBytes, expected);
            break;
          }
          for (const ChunkRef& piece : entry.pieces) expected.insert(piece.id);
          at = *entry.delta_base_step;
        }
      }
      EXPECT_EQ(ReadOnce(fake), expected);
      EXPECT_EQ(stats->chunks_fetched, expected.size());
    }
  }
}

TEST(RegionPlanTest, QuantizedSourcesAreDequantizedAsAWholeRestoreDoes) {
  const Shape shape = {12, 10};
  Sharded q = MakeSharded("q", DType::kFloat32, shape,
                          RowBoxes({0, 3, 6, 9, 12}, 10), 0);
  q.global = SmoothFloats(Elements(shape), 0.5f);
  q.quantize_bits = 4;
  FakeTransport fake;
  SaveRanks(fake, 1, {q}, 4, 64);
  const Checkpoint checkpoint = Manifest(fake, 1);
  // What each rank's whole restore gives, assembled.
  std::string dequantized(q.global.size(), '\0');
  for (int32_t r = 0; r < 4; ++r) {
    absl::StatusOr<std::vector<RestoredTensor>> whole =
        RestoreShard(fake, checkpoint, r, {}, false);
    ASSERT_TRUE(whole.ok()) << whole.status();
    const RestoredTensor& tensor = (*whole)[0];
    std::memcpy(dequantized.data() + q.boxes[r].offsets[0] * 40,
                tensor.bytes.data(), tensor.bytes.size());
  }
  ASSERT_NE(dequantized, q.global);  // lossy
  std::vector<Box> regions = RowBoxes({0, 4, 8, 12}, 10);
  regions.push_back(Box{{2, 3}, {9, 4}});
  for (const Box& region : regions) {
    fake.ClearReads();
    std::vector<std::string> outs;
    absl::StatusOr<RegionReadStats> stats =
        Read(fake, checkpoint, q, {region}, outs);
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_EQ(outs[0], Slice(dequantized, shape, 4, region));
    // Every chunk of each quantized box that meets the region.
    ChunkSet expected;
    for (int32_t r = 0; r < 4; ++r) {
      const Box& box = q.boxes[r];
      if (box.offsets[0] < region.offsets[0] + region.lengths[0] &&
          region.offsets[0] < box.offsets[0] + box.lengths[0]) {
        for (const ChunkRef& piece : EntryOf(checkpoint, r, "q").pieces) {
          expected.insert(piece.id);
        }
      }
    }
    EXPECT_EQ(ReadOnce(fake), expected);
  }
}

TEST(RegionPlanTest, MixedSourcesInOneCallEitherWay) {
  FakeTransport fake;
  const TableHistory h = SaveTableHistory(fake);
  // Step 5: the table as a delta on 4 plus a plain and a quantized tensor.
  Sharded emb = h.at.at(4);
  emb.global = ChangeRows(emb.global, {5}, 500);
  Sharded plain = MakeSharded("plain", DType::kUint8, {8, 9}, {}, 31);
  plain.boxes = {Box{{0, 0}, {8, 2}}, Box{{0, 2}, {8, 3}}, Box{{0, 5}, {8, 1}},
                 Box{{0, 6}, {8, 3}}};
  Sharded q = MakeSharded("q", DType::kFloat32, {8, 5},
                          RowBoxes({0, 2, 4, 6, 8}, 5), 0);
  q.global = SmoothFloats(40, 1.5f);
  q.quantize_bits = 8;
  std::map<std::pair<size_t, int32_t>, DeltaOf> deltas;
  for (int32_t r = 0; r < 4; ++r) {
    deltas[{0, r}] =
        DeltaOf{4, ChangedRows(emb.global, h.at.at(4).global, emb.boxes[r])};
  }
  SaveRanks(fake, 5, {emb, plain, q}, 4, 40, deltas);
  const Checkpoint checkpoint = Manifest(fake, 5);
  // What the quantized tensor restores to, from a whole restore.
  std::string q_values(q.global.size(), '\0');
  for (int32_t r = 0; r < 4; ++r) {
    absl::StatusOr<std::vector<RestoredTensor>> whole =
        RestoreShard(fake, checkpoint, r, {}, false);
    ASSERT_TRUE(whole.ok()) << whole.status();
    std::memcpy(q_values.data() + q.boxes[r].offsets[0] * 20,
                (*whole)[2].bytes.data(), (*whole)[2].bytes.size());
  }
  // Rank 1 of 3: a third of each tensor's rows.
  const Box emb_part{{5, 0}, {6, kTableCols}};
  const Box plain_part{{3, 0}, {3, 9}};
  const Box q_part{{3, 0}, {3, 5}};
  const std::vector<RegionRequest> requests = {
      Request(emb, emb_part), Request(plain, plain_part), Request(q, q_part)};
  const std::string want[] = {Slice(emb.global, emb.shape, 4, emb_part),
                              Slice(plain.global, plain.shape, 1, plain_part),
                              Slice(q_values, q.shape, 4, q_part)};
  for (bool shared_memory : {false, true}) {
    SCOPED_TRACE(shared_memory ? "shared memory" : "streamed");
    absl::StatusOr<RestoredRegions> restored =
        RestoreRegions(fake, checkpoint, requests, {}, shared_memory);
    ASSERT_TRUE(restored.ok()) << restored.status();
    for (size_t i = 0; i < 3; ++i) {
      const RestoredTensor& tensor = restored->tensors[i];
      EXPECT_EQ(absl::string_view(tensor.bytes.data(), tensor.bytes.size()),
                want[i]);
    }
  }
}

// --- Refusals: each before any chunk is fetched ---

class RegionRefusalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SaveRanks(fake_, 1, {table_}, 4, 40);
    checkpoint_ = Manifest(fake_, 1);
    fake_.ClearReads();
  }

  // The status of reading `request` from `checkpoint` (default: the saved
  // one) into an out of `out_bytes` (default: the region's).
  absl::Status Refusal(const RegionRequest& request,
                       std::optional<Checkpoint> checkpoint = std::nullopt,
                       std::optional<size_t> out_bytes = std::nullopt) {
    uint64_t bytes = DTypeSize(request.dtype);
    for (int64_t length : request.region.lengths) {
      bytes *= static_cast<uint64_t>(std::max<int64_t>(length, 0));
    }
    std::string out(out_bytes.value_or(std::min<uint64_t>(bytes, 1 << 20)),
                    '\0');
    const std::vector<RegionRequest> requests = {request};
    const std::vector<absl::Span<char>> outs = {absl::MakeSpan(out)};
    const Checkpoint& from = checkpoint.has_value() ? *checkpoint : checkpoint_;
    absl::Status status = ReadRegions(fake_, from, requests, outs, {}).status();
    EXPECT_FALSE(status.ok());
    if (!out_bytes.has_value()) {
      absl::Status restore =
          RestoreRegions(fake_, from, requests, {}, false).status();
      EXPECT_EQ(restore.code(), status.code()) << restore;
    }
    EXPECT_TRUE(fake_.read_counts().empty()) << "fetched before refusing";
    return status;
  }

  RegionRequest WholeTable() const {
    return Request(table_, Whole(table_.shape));
  }

  FakeTransport fake_;
  const Sharded table_ = MakeSharded("emb", DType::kInt32, {16, 6},
                                     RowBoxes({0, 3, 8, 12, 16}, 6), 41);
  Checkpoint checkpoint_;
};

TEST_F(RegionRefusalTest, RequestsThatDoNotMatchTheCheckpoint) {
  RegionRequest request = WholeTable();
  request.name = "nope";
  EXPECT_THAT(Refusal(request).message(),
              HasSubstr("tensor 'nope': no rank of checkpoint 1"));

  request = WholeTable();
  request.dtype = DType::kFloat32;
  absl::Status status = Refusal(request);
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_THAT(status.message(), AllOf(HasSubstr("tensor 'emb'"),
                                      HasSubstr("requested as float32"),
                                      HasSubstr("saved it as int32")));

  request = WholeTable();
  request.global_shape = {16, 7};
  request.region.lengths = {16, 7};
  status = Refusal(request);
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_THAT(status.message(), AllOf(HasSubstr("global shape [16, 7]"),
                                      HasSubstr("global shape [16, 6]")));

  request = WholeTable();
  request.region = Box{{4, 0}, {13, 6}};
  status = Refusal(request);
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("[4, +13) exceeds dimension 0"));

  request = WholeTable();
  request.region = Box{{4}, {3}};
  EXPECT_TRUE(absl::IsInvalidArgument(Refusal(request)));

  request = WholeTable();
  request.source_rank = 7;
  EXPECT_THAT(Refusal(request).message(),
              HasSubstr("source rank 7 has no shard"));

  // Rank 2 holds rows [8, 12) only.
  request = WholeTable();
  request.source_rank = 2;
  request.region = Box{{6, 0}, {4, 6}};
  status = Refusal(request);
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_THAT(status.message(),
              HasSubstr("rank 2's box [8, 0]+[4, 6] does not hold element "
                        "[6, 0]"));

  status = Refusal(WholeTable(), std::nullopt, 10);
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("has 384 bytes but the output "
                                          "buffer has 10"));
}

TEST_F(RegionRefusalTest, BoxesThatLeaveTheRegionUncovered) {
  Checkpoint missing = checkpoint_;
  missing.shards[2].tensors.clear();  // rows [8, 12)
  absl::Status status = Refusal(WholeTable(), missing);
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_THAT(status.message(),
              HasSubstr("tensor 'emb': no saved box holds element [8, 0] of "
                        "the requested region [0, 0]+[16, 6]"));
  // A region that does not need rank 2 is fine.
  std::string out(3 * kTableRowBytes, '\0');
  const std::vector<RegionRequest> requests = {
      Request(table_, Box{{12, 0}, {3, 6}})};
  EXPECT_TRUE(
      ReadRegions(fake_, missing, requests, {absl::MakeSpan(out)}, {}).ok());
}

TEST_F(RegionRefusalTest, HostileBoxesAndPieces) {
  struct Case {
    std::string what;
    std::function<void(TensorEntry&)> damage;
    absl::StatusCode code;
    std::string message;
  };
  const ChunkRef first_piece = checkpoint_.shards[0].tensors[0].pieces[0];
  const std::vector<Case> cases = {
      {"partial overlap", [](TensorEntry& e) { e.box.offsets[0] = 1; },
       absl::StatusCode::kDataLoss,
       "the boxes of rank 0 ([0, 0]+[3, 6]) and rank 1 ([1, 0]+[5, 6]) "
       "overlap partly"},
      {"box outside the shape", [](TensorEntry& e) { e.box.offsets[0] = 14; },
       absl::StatusCode::kDataLoss, "[14, +5) exceeds dimension 0 of size 16"},
      {"negative length", [](TensorEntry& e) { e.box.lengths[1] = -6; },
       absl::StatusCode::kDataLoss, "exceeds dimension 1"},
      {"rank mismatch", [](TensorEntry& e) { e.box.lengths.pop_back(); },
       absl::StatusCode::kDataLoss, "for a tensor of 2 dimensions"},
      {"pieces that do not add up", [](TensorEntry& e) { e.pieces.pop_back(); },
       absl::StatusCode::kDataLoss, "but its box needs 120"},
      {"an empty piece", [](TensorEntry& e) { e.pieces[0].size = 0; },
       absl::StatusCode::kDataLoss, "a piece of 0 bytes"},
      {"a huge piece",
       [](TensorEntry& e) { e.pieces[0].size = uint64_t{1} << 63; },
       absl::StatusCode::kDataLoss, "pieces hold 1 to"},
      {"a chunk of two sizes",
       [&](TensorEntry& e) {
         // 40 + 40 + 40 bytes; claim rank 0's first chunk as this one's
         // first, at another size, keeping the sum.
         e.pieces[0] = ChunkRef{first_piece.id, 20};
         e.pieces.insert(e.pieces.begin() + 1, ChunkRef{Sha256("x"), 20});
       },
       absl::StatusCode::kDataLoss, "with two sizes"},
      {"delta and quantized",
       [](TensorEntry& e) {
         e.delta_base_step = 0;
         e.quantization = Quantization{8, 0, 0};
       },
       absl::StatusCode::kDataLoss, "both a row delta and quantized"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    Checkpoint damaged = checkpoint_;
    c.damage(damaged.shards[1].tensors[0]);
    absl::Status status = Refusal(WholeTable(), damaged);
    EXPECT_EQ(status.code(), c.code) << status;
    EXPECT_THAT(status.message(), HasSubstr(c.message));
  }
}

TEST_F(RegionRefusalTest, SizesThatWouldOverflow) {
  // A global shape whose whole box holds 2^80 bytes: both a request for a
  // small region of it and a saved box of it are refused without
  // computing a wrapped-around size.
  const Shape huge = {int64_t{1} << 40, int64_t{1} << 40};
  Checkpoint hostile = checkpoint_;
  TensorEntry& entry = hostile.shards[0].tensors[0];
  entry.global_shape = huge;
  entry.box = Box{{0, 0}, huge};
  RegionRequest request{"emb", DType::kInt32, huge, Box{{0, 0}, {1, 1}}, 0};
  absl::Status status = Refusal(request, hostile);
  EXPECT_TRUE(absl::IsDataLoss(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("more than 2^62 bytes"));

  request.region = Box{{0, 0}, huge};
  status = Refusal(request, hostile, 0);
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("more than 2^62 bytes"));
}

TEST_F(RegionRefusalTest, ADeltaWhoseBaseIsGone) {
  FakeTransport fake;
  const TableHistory h = SaveTableHistory(fake);
  ASSERT_TRUE(fake.DeleteCheckpoint(kJob, 2, false).ok());
  const Checkpoint checkpoint = Manifest(fake, 3);
  fake.ClearReads();
  std::string out(kTableRows * kTableRowBytes, '\0');
  const std::vector<RegionRequest> requests = {
      Request(h.at.at(3), Whole(h.at.at(3).shape))};
  absl::Status status =
      ReadRegions(fake, checkpoint, requests, {absl::MakeSpan(out)}, {})
          .status();
  EXPECT_TRUE(absl::IsDataLoss(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("row delta on checkpoint 2, which "
                                          "is gone"));
  EXPECT_TRUE(fake.read_counts().empty());
}

TEST_F(RegionRefusalTest, AHostileBaseOfADelta) {
  // Step 6, committed by hand: rank 1's entry of the table without its last
  // piece (its box needs 120 bytes, its pieces hold 80); step 7 a delta on
  // it of every rank.
  FakeTransport fake;
  SaveRanks(fake, 1, {table_}, 4, 40);
  const Checkpoint saved = Manifest(fake, 1);
  client::BeginOptions begin;
  begin.world_size = 4;
  ASSERT_TRUE(fake.BeginCheckpoint(kJob, 6, begin).ok());
  for (ShardManifest shard : saved.shards) {
    if (shard.rank == 1) shard.tensors[0].pieces.pop_back();
    ASSERT_TRUE(fake.CommitShard(kJob, 6, 4, shard).ok());
  }
  std::map<std::pair<size_t, int32_t>, DeltaOf> deltas;
  for (int32_t r = 0; r < 4; ++r) deltas[{0, r}] = DeltaOf{6, {0}};
  SaveRanks(fake, 7, {table_}, 4, 40, deltas);
  const Checkpoint checkpoint = Manifest(fake, 7);
  fake.ClearReads();
  std::string out(kTableRows * kTableRowBytes, '\0');
  const std::vector<RegionRequest> requests = {WholeTable()};
  absl::Status status =
      ReadRegions(fake, checkpoint, requests, {absl::MakeSpan(out)}, {})
          .status();
  EXPECT_TRUE(absl::IsDataLoss(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("manifest pieces hold 80 bytes"));
  EXPECT_TRUE(fake.read_counts().empty());
}

TEST_F(RegionRefusalTest, EqualDeltasOnDifferentBasesAreDifferentTensors) {
  // Ranks 0 and 1 both save the whole table under one name, with row 5
  // different (step 1: refused as unreplicated). At step 2 both save a
  // delta on step 1 of row 0, equal in both: the deltas' chunks are the
  // same, but the tensors they rebuild are not, so step 2 is refused too
  // rather than read from rank 0 for both.
  FakeTransport fake;
  const Shape shape = {16, 6};
  std::string rank0 = PatternBytes(16 * kTableRowBytes, 7);
  std::string rank1 = rank0;
  rank1[5 * kTableRowBytes] ^= 0x5a;
  const std::vector<uint64_t> row_zero = {0};
  for (int64_t step : {1, 2}) {
    for (int32_t r = 0; r < 2; ++r) {
      TensorData d;
      d.name = "emb";
      d.dtype = DType::kInt32;
      d.global_shape = shape;
      d.box = Whole(shape);
      d.bytes = r == 0 ? rank0 : rank1;
      if (step == 2) {
        d.delta_base_step = 1;
        d.delta_rows = row_zero;
      }
      SaveOptions options;
      options.rank = r;
      options.world_size = 2;
      options.chunk_bytes = 40;
      ASSERT_TRUE(SaveShard(fake, kJob, step, {d}, options).ok());
    }
    if (step == 1) {
      rank0[3] ^= 0x11;  // row 0 changes alike on both ranks
      rank1[3] ^= 0x11;
    }
  }
  const Checkpoint checkpoint = Manifest(fake, 2);
  ASSERT_EQ(checkpoint.shards[0].tensors[0].pieces,
            checkpoint.shards[1].tensors[0].pieces);
  fake.ClearReads();
  const RegionRequest whole{"emb", DType::kInt32, shape, Whole(shape),
                            std::nullopt};
  std::string out(16 * kTableRowBytes, '\0');
  absl::Status status =
      ReadRegions(fake, checkpoint, {whole}, {absl::MakeSpan(out)}, {})
          .status();
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_THAT(status.message(),
              HasSubstr("ranks 0 and 1 saved the same box [0, 0]+[16, 6] "
                        "with different contents"));
  EXPECT_TRUE(fake.read_counts().empty()) << "fetched before refusing";
  // Each rank's own copy still reads back exactly.
  for (int32_t r = 0; r < 2; ++r) {
    RegionRequest own = whole;
    own.source_rank = r;
    ASSERT_TRUE(
        ReadRegions(fake, checkpoint, {own}, {absl::MakeSpan(out)}, {}).ok());
    EXPECT_EQ(out, r == 0 ? rank0 : rank1) << "rank " << r;
  }
}

TEST(RegionPlanTest, OutsAndRequestsMustPair) {
  FakeTransport fake;
  const std::vector<RegionRequest> requests(2);
  std::string out;
  absl::Status status =
      ReadRegions(fake, Checkpoint(), requests, {absl::MakeSpan(out)}, {})
          .status();
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("2 regions to read but 1 output"));
}

}  // namespace
}  // namespace ckpt::client
