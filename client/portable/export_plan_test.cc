// The pure parts of export (client/portable/export_plan.h,
// checkpoint_json.h) and the staged directory's all-or-nothing writes
// (staged_dir.h), without a server: the rank rule on hand-built manifests,
// file assignment, slabs, ckpt_checkpoint.json both ways, the
// model.safetensors.index.json reader, and rollback.
#include "client/portable/export_plan.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/portable/checkpoint_json.h"
#include "client/portable/safetensors_index.h"
#include "client/portable/staged_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace ckpt::client::portable {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TensorEntry Entry(const std::string& name, std::vector<int64_t> shape, Box box,
                  char chunk = 'a') {
  TensorEntry entry;
  entry.name = name;
  entry.dtype = DType::kFloat32;
  entry.global_shape = std::move(shape);
  entry.box = std::move(box);
  entry.pieces = {ChunkRef{ChunkId(), static_cast<uint64_t>(chunk)}};
  return entry;
}

Box Whole(std::vector<int64_t> shape) {
  return Box{std::vector<int64_t>(shape.size(), 0), shape};
}

// Ranks 0..2: "emb" [10, 4] sharded by rows 4/4/2; "head" [3] alike on
// every rank; "loader" [2] different on each; "only0" on rank 0 alone.
Checkpoint ThreeRanks() {
  Checkpoint checkpoint;
  checkpoint.record.job = "t/j";
  checkpoint.record.step = 7;
  checkpoint.record.world_size = 3;
  const int64_t rows[] = {4, 4, 2};
  int64_t at = 0;
  for (int32_t rank = 0; rank < 3; ++rank) {
    ShardManifest shard;
    shard.rank = rank;
    shard.tensors.push_back(
        Entry("emb", {10, 4}, Box{{at, 0}, {rows[rank], 4}}));
    at += rows[rank];
    shard.tensors.push_back(Entry("head", {3}, Whole({3})));
    shard.tensors.push_back(
        Entry("loader", {2}, Whole({2}), static_cast<char>('b' + rank)));
    if (rank == 0) shard.tensors.push_back(Entry("only0", {1}, Whole({1})));
    checkpoint.shards.push_back(std::move(shard));
  }
  return checkpoint;
}

struct Planned {
  std::vector<WholeTensor> plans;
  absl::StatusOr<std::vector<ExportTensor>> tensors;
};

Planned Plan(const Checkpoint& checkpoint, const ExportOptions& options,
             bool same = false) {
  Planned planned{PlanWholeTensors(checkpoint),
                  absl::UnknownError("not planned")};
  planned.tensors = PlanExport(checkpoint, planned.plans, options,
                               [&](const WholeTensor&) { return same; });
  return planned;
}

std::vector<std::string> Names(const std::vector<ExportTensor>& tensors) {
  std::vector<std::string> names;
  for (const ExportTensor& tensor : tensors) names.push_back(tensor.name);
  return names;
}

TEST(PlanExportTest, FullExportsPerRankCopiesByRankUnlessTheirBytesAgree) {
  const Checkpoint checkpoint = ThreeRanks();
  Planned differ = Plan(checkpoint, {});
  ASSERT_TRUE(differ.tensors.ok()) << differ.tensors.status();
  EXPECT_THAT(Names(*differ.tensors),
              ElementsAre("emb", "head", "rank-0/loader", "rank-1/loader",
                          "rank-2/loader", "only0"));
  EXPECT_EQ((*differ.tensors)[0].shape(), (std::vector<int64_t>{10, 4}));
  EXPECT_EQ((*differ.tensors)[3].source.source_rank, 1);
  Planned agree = Plan(checkpoint, {}, /*same=*/true);
  ASSERT_TRUE(agree.tensors.ok());
  EXPECT_THAT(Names(*agree.tensors),
              ElementsAre("emb", "head", "loader", "only0"));
  EXPECT_THAT((*agree.tensors)[2].ranks, ElementsAre(0, 1, 2));
}

TEST(PlanExportTest, RankPartsSplitRowsAsTorchChunk) {
  const Checkpoint checkpoint = ThreeRanks();
  // torch.chunk(10 rows, 4): chunks of 3, 3, 3, 1.
  const int64_t offsets[] = {0, 3, 6, 9};
  const int64_t lengths[] = {3, 3, 3, 1};
  for (int32_t rank = 0; rank < 3; ++rank) {  // the checkpoint has ranks 0-2
    ExportOptions options;
    options.full = false;
    options.rank = rank;
    options.world_size = 4;
    Planned planned = Plan(checkpoint, options);
    ASSERT_TRUE(planned.tensors.ok()) << planned.tensors.status();
    const ExportTensor& emb = (*planned.tensors)[0];
    EXPECT_EQ(emb.source.region.offsets[0], offsets[rank]);
    EXPECT_EQ(emb.shape(), (std::vector<int64_t>{lengths[rank], 4}));
    // head whole everywhere; loader the rank's own; only0 on rank 0.
    std::vector<std::string> expected = {"emb", "head", "loader"};
    if (rank == 0) expected.push_back("only0");
    EXPECT_EQ(Names(*planned.tensors), expected);
    EXPECT_EQ((*planned.tensors)[2].source.source_rank, rank);
  }
  // torch.chunk(2 rows, 3): one row each for ranks 0 and 1, none for 2.
  Checkpoint small;
  small.record.world_size = 2;
  for (int32_t rank = 0; rank < 2; ++rank) {
    small.shards.push_back(
        {rank, {Entry("w", {2, 5}, Box{{rank, 0}, {1, 5}})}});
  }
  ExportOptions last;
  last.full = false;
  last.rank = 2;
  last.world_size = 3;
  Planned empty = Plan(small, last);
  ASSERT_TRUE(empty.tensors.ok());
  EXPECT_EQ((*empty.tensors)[0].shape(), (std::vector<int64_t>{0, 5}));
}

TEST(PlanExportTest, RefusesARankWithoutPerRankStateListingIt) {
  ExportOptions options;
  options.full = false;
  options.rank = 3;
  options.world_size = 4;
  Planned planned = Plan(ThreeRanks(), options);
  EXPECT_TRUE(absl::IsInvalidArgument(planned.tensors.status()));
  EXPECT_THAT(planned.tensors.status().message(),
              HasSubstr("no rank 3 for the per-rank tensor(s)"));
  EXPECT_THAT(planned.tensors.status().message(),
              HasSubstr("'loader', 'only0' (2 in all)"));
  // Excluding them leaves nothing to refuse.
  options.exclude_tensors = {"loader", "only0"};
  Planned excluded = Plan(ThreeRanks(), options);
  ASSERT_TRUE(excluded.tensors.ok()) << excluded.tensors.status();
  EXPECT_THAT(Names(*excluded.tensors), ElementsAre("emb", "head"));
}

TEST(PlanExportTest, RefusesAPerRankCopyNamedLikeAnotherTensor) {
  Checkpoint checkpoint = ThreeRanks();
  checkpoint.shards[0].tensors.push_back(
      Entry("rank-1/loader", {2}, Whole({2})));
  Planned planned = Plan(checkpoint, {});
  EXPECT_THAT(planned.tensors.status().message(),
              HasSubstr("'rank-1/loader' would be exported twice"));
}

TEST(AssignFilesTest, CutsFilesAtTheLimitAndNamesThemAsHuggingFace) {
  Checkpoint checkpoint;
  checkpoint.record.world_size = 1;
  ShardManifest shard;
  for (int i = 0; i < 4; ++i) {
    shard.tensors.push_back(Entry(absl::StrCat("t", i), {i == 2 ? 100 : 10},
                                  Whole({i == 2 ? 100 : 10})));
  }
  checkpoint.shards.push_back(shard);
  Planned planned = Plan(checkpoint, {});
  ASSERT_TRUE(planned.tensors.ok());
  const std::vector<ExportFile> files = AssignFiles(*planned.tensors, 80);
  ASSERT_EQ(files.size(), 3u);  // t0 t1 (80 bytes) | t2 (400, alone) | t3
  EXPECT_EQ(files[0].name, "model-00001-of-00003.safetensors");
  EXPECT_THAT(files[0].tensors, ElementsAre(0, 1));
  EXPECT_THAT(files[1].tensors, ElementsAre(2));
  EXPECT_EQ(files[1].bytes, 400u);
  EXPECT_EQ(AssignFiles(*planned.tensors, 1000)[0].name, "model.safetensors");
  EXPECT_EQ(AssignFiles({}, 1000).size(), 1u);
}

// The slabs of `region` must cover it in row-major order, each contiguous
// and within the limit.
void ExpectSlabs(const Box& region, uint64_t element, uint64_t max_bytes) {
  SCOPED_TRACE(absl::StrCat("max ", max_bytes));
  const std::vector<Box> slabs = SplitRegion(region, element, max_bytes);
  std::vector<std::vector<int64_t>> expected;
  std::vector<int64_t> index = region.offsets;
  const size_t dims = index.size();
  uint64_t count = 1;
  for (int64_t length : region.lengths) count *= length;
  for (uint64_t n = 0; n < count; ++n) {
    expected.push_back(index);
    for (size_t d = dims; d-- > 0;) {
      if (++index[d] < region.offsets[d] + region.lengths[d]) break;
      index[d] = region.offsets[d];
    }
  }
  std::vector<std::vector<int64_t>> got;
  for (const Box& slab : slabs) {
    uint64_t slab_count = 1;
    for (int64_t length : slab.lengths) slab_count *= length;
    EXPECT_LE(slab_count * element, std::max(max_bytes, element));
    // Contiguous in the region: a box whose dimensions after the first
    // that is not 1 span the region's whole extent.
    bool inner = false;
    for (size_t d = 0; d < dims; ++d) {
      if (inner) {
        EXPECT_EQ(slab.lengths[d], region.lengths[d]);
      }
      inner |= slab.lengths[d] != 1;
    }
    std::vector<int64_t> at = slab.offsets;
    for (uint64_t n = 0; n < slab_count; ++n) {
      got.push_back(at);
      for (size_t d = dims; d-- > 0;) {
        if (++at[d] < slab.offsets[d] + slab.lengths[d]) break;
        at[d] = slab.offsets[d];
      }
    }
  }
  EXPECT_EQ(got, expected);
}

TEST(SplitRegionTest, CoversTheRegionInRowMajorSlabsWithinTheLimit) {
  const Box region{{1, 2, 0}, {5, 3, 7}};
  for (uint64_t max_bytes : {4, 8, 27, 28, 60, 84, 200, 420, 10000}) {
    ExpectSlabs(region, 4, max_bytes);
  }
  EXPECT_EQ(SplitRegion(region, 4, 420).size(), 1u);
  EXPECT_EQ(SplitRegion(region, 4, 84).size(), 5u);              // one row each
  EXPECT_EQ(SplitRegion(Box{{}, {}}, 8, 8).size(), 1u);          // a scalar
  EXPECT_EQ(SplitRegion(Box{{0, 0}, {0, 9}}, 4, 4).size(), 1u);  // empty
}

TEST(CheckpointJsonTest, RoundTripsWhatImportReads) {
  Checkpoint checkpoint = ThreeRanks();
  checkpoint.record.commit_time = absl::FromUnixMicros(1700000000654321);
  checkpoint.record.metadata.metrics = {
      {"loss", 0.1 + 0.2},
      {"nan", std::numeric_limits<double>::quiet_NaN()},
      {"inf", -std::numeric_limits<double>::infinity()}};
  checkpoint.record.metadata.tags = {{"k", "v \"quoted\""}};
  checkpoint.record.metadata.writer_time = absl::FromUnixMicros(1234567);
  ExportOptions options;
  options.full = false;
  options.rank = 1;
  options.world_size = 2;
  options.objects_json = R"({"epoch": 3, "lr": [0.1]})";
  Planned planned = Plan(checkpoint, options);
  ASSERT_TRUE(planned.tensors.ok());
  const std::vector<ExportFile> files = AssignFiles(*planned.tensors, 1 << 20);
  const std::string text =
      WriteCheckpointJson(checkpoint, options, *planned.tensors, files);
  absl::StatusOr<CheckpointJson> parsed =
      ParseCheckpointJson(text, "ckpt_checkpoint.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->job, "t/j");
  EXPECT_EQ(parsed->step, 7);
  EXPECT_FALSE(parsed->full);
  EXPECT_EQ(parsed->rank, 1);
  EXPECT_EQ(parsed->world_size, 2);
  EXPECT_EQ(parsed->commit_time, checkpoint.record.commit_time);
  const CheckpointMetadata& metadata = parsed->metadata;
  EXPECT_EQ(metadata.metrics.at("loss"), 0.1 + 0.2);
  EXPECT_TRUE(std::isnan(metadata.metrics.at("nan")));
  EXPECT_EQ(metadata.metrics.at("inf"),
            -std::numeric_limits<double>::infinity());
  EXPECT_EQ(metadata.tags, checkpoint.record.metadata.tags);
  EXPECT_EQ(metadata.writer_time, checkpoint.record.metadata.writer_time);
  EXPECT_EQ(parsed->objects_json, R"({"epoch":3,"lr":[0.1]})");
  const CheckpointJsonTensor& emb = parsed->tensors.at("emb");
  EXPECT_EQ(emb.file, "model.safetensors");
  EXPECT_EQ(emb.dtype, DType::kFloat32);
  EXPECT_EQ(emb.shape, (std::vector<int64_t>{5, 4}));
  EXPECT_EQ(emb.global_shape, (std::vector<int64_t>{10, 4}));
  EXPECT_EQ(emb.box, (Box{{5, 0}, {5, 4}}));
}

// The objects of the deepest state the Python package saves (tree.py's
// MAX_DEPTH, 128 levels, each written by tree_json.py as up to three JSON
// levels: {"$ordered_dict": [[key, value]]}) import back: the reader's
// depth bound must not be below what the writer writes.
TEST(CheckpointJsonTest, ReadsTheObjectsOfTheDeepestStatePythonSaves) {
  constexpr int kPythonMaxDepth = 128;
  std::string state = "null";
  for (int level = 0; level < kPythonMaxDepth; ++level) {
    state = absl::StrCat(R"({"$ordered_dict":[["k",)", state, "]]}");
  }
  ExportOptions options;
  options.objects_json =
      absl::StrCat(R"({"encoding":"e","ranks":{"0":)", state, "}}");
  const Checkpoint checkpoint = ThreeRanks();
  Planned planned = Plan(checkpoint, options);
  ASSERT_TRUE(planned.tensors.ok());
  const std::string text =
      WriteCheckpointJson(checkpoint, options, *planned.tensors,
                          AssignFiles(*planned.tensors, 1 << 20));
  absl::StatusOr<CheckpointJson> parsed =
      ParseCheckpointJson(text, "ckpt_checkpoint.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->objects_json, options.objects_json);
}

TEST(CheckpointJsonTest, RefusesWhatItCannotTrustNamingTheField) {
  auto refusal = [](const std::string& text) {
    absl::StatusOr<CheckpointJson> parsed = ParseCheckpointJson(text, "F");
    EXPECT_TRUE(absl::IsInvalidArgument(parsed.status())) << parsed.status();
    return std::string(parsed.status().message());
  };
  const std::string head =
      R"({"format":"ckpt-checkpoint","version":1,"job":"t/j","step":1,)"
      R"("commit_time":"2024-01-01T00:00:00Z",)"
      R"("metadata":{"metrics":{},"tags":{},"writer_time":null},)";
  EXPECT_THAT(refusal(R"({"format":"other"})"),
              HasSubstr("F field \"format\" is not \"ckpt-checkpoint\""));
  EXPECT_THAT(refusal(R"({"format":"ckpt-checkpoint","version":2})"),
              HasSubstr("F field \"version\" is outside [1, 1]"));
  EXPECT_THAT(refusal(head + R"("export":{"full":false,"rank":2,)"
                             R"("world_size":2},"tensors":{}})"),
              HasSubstr("\"rank\" is outside [0, 1]"));
  EXPECT_THAT(refusal(head + R"("export":{"full":true},"tensors":{"w":{)"
                             R"("file":"m","dtype":"float32","shape":[2],)"
                             R"("global_shape":[2],"box":{"offsets":[1],)"
                             R"("lengths":[2]}}}})"),
              HasSubstr("F tensor 'w': field \"box\" is not a box"));
  EXPECT_THAT(refusal(head + R"("export":{"full":true},"tensors":{"w":{)"
                             R"("file":"m","dtype":"float9"}}})"),
              HasSubstr("'float9', which is no ckpt dtype"));
  EXPECT_THAT(refusal(R"({"format":"ckpt-checkpoint","format":"x"})"),
              HasSubstr("key 'format' twice"));
  // absl::ParseTime's own words for the infinities, and years past what a
  // checkpoint stores (microseconds since 1970 in 64 bits), are refused.
  const std::string infinite =
      R"({"format":"ckpt-checkpoint","version":1,"job":"t/j","step":1,)"
      R"("commit_time":"infinite-future"})";
  EXPECT_THAT(refusal(infinite),
              HasSubstr("F field \"commit_time\" is a time past what"));
  EXPECT_THAT(
      refusal(R"({"format":"ckpt-checkpoint","version":1,"job":"t/j",)"
              R"("step":1,"commit_time":"2024-01-01T00:00:00Z","metadata":)"
              R"({"metrics":{},"tags":{},"writer_time":"infinite-past"}})"),
      HasSubstr("\"writer_time\" is a time past what a checkpoint stores"));
  const std::string late = absl::StrCat(
      R"({"format":"ckpt-checkpoint","version":1,"job":"t/j","step":1,)",
      R"("commit_time":")");
  EXPECT_THAT(refusal(late + R"(300000-01-01T00:00:00Z"})"),
              HasSubstr("\"commit_time\" is a time past what"));
  EXPECT_THAT(refusal(late + R"(-300000-01-01T00:00:00Z"})"),
              HasSubstr("\"commit_time\" is"));
}

// A sharded Hugging Face directory's index: tensor -> plain file name.
TEST(SafetensorsIndexTest, ReadsTheWeightMapAndRefusesWhatIsNoFileName) {
  absl::StatusOr<std::map<std::string, std::string>> index =
      ParseSafetensorsIndex(
          R"({"metadata":{"total_size":8},"weight_map":)"
          R"({"a":"model-1.safetensors","b":"model-2.safetensors"}})",
          "I");
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(*index,
            (std::map<std::string, std::string>{{"a", "model-1.safetensors"},
                                                {"b", "model-2.safetensors"}}));
  auto refusal = [](const std::string& text) {
    absl::StatusOr<std::map<std::string, std::string>> parsed =
        ParseSafetensorsIndex(text, "I");
    EXPECT_TRUE(absl::IsInvalidArgument(parsed.status())) << parsed.status();
    return std::string(parsed.status().message());
  };
  EXPECT_THAT(refusal("[]"), HasSubstr("I: field \"weight_map\" is missing"));
  EXPECT_THAT(refusal(R"({"weight_map":[]})"), HasSubstr("not an object"));
  EXPECT_THAT(refusal(R"({"weight_map":{"a":1}})"),
              HasSubstr("tensor 'a': the file is not a string"));
  for (const char* name : {"", ".", "..", "../x", "d/x"}) {
    EXPECT_THAT(refusal(absl::StrCat(R"({"weight_map":{"a":")", name, "\"}}")),
                HasSubstr("is not a plain file name inside the directory"))
        << name;
  }
  EXPECT_THAT(refusal(R"({"weight_map":{"a":"x\u0000y"}})"),
              HasSubstr("is not a plain file name"));
  EXPECT_THAT(refusal(R"({"weight_map":{"a":{"b":{"c":1}}}})"),
              HasSubstr("deeper"));
}

class StagedDirectoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = ckpt::testing::TempDir::Create("ckpt-staged");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *std::move(dir);
  }
  std::vector<std::string> Listed(const std::string& path) {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(path)) {
      names.push_back(entry.path().filename());
    }
    std::sort(names.begin(), names.end());
    return names;
  }
  std::unique_ptr<ckpt::testing::TempDir> dir_;
};

TEST_F(StagedDirectoryTest, LeavesNothingWithoutCommitNotEvenItsDirectory) {
  const std::string path = dir_->path() + "/a/b";
  {
    auto staged = StagedDirectory::Open(path);
    ASSERT_TRUE(staged.ok()) << staged.status();
    auto file = (*staged)->Create("model.safetensors");
    ASSERT_TRUE(file.ok());
    ASSERT_TRUE((*staged)->Append(*file, "bytes").ok());
    EXPECT_EQ(Listed(path).size(), 1u);  // hidden, under a temporary name
    EXPECT_EQ(Listed(path)[0].front(), '.');
  }
  EXPECT_FALSE(std::filesystem::exists(dir_->path() + "/a"));
}

TEST_F(StagedDirectoryTest, CommitsAllOrNoneAndNeverOverwrites) {
  const std::string path = dir_->path();
  {
    auto staged = StagedDirectory::Open(path);
    ASSERT_TRUE(staged.ok());
    for (const char* name : {"a", "b", "c"}) {
      auto file = (*staged)->Create(name);
      ASSERT_TRUE(file.ok());
      ASSERT_TRUE((*staged)->Append(*file, name).ok());
    }
    // "b" appears meanwhile: "a" was renamed already and is taken back.
    std::ofstream(path + "/b") << "theirs";
    absl::Status committed = (*staged)->Commit();
    EXPECT_TRUE(absl::IsAlreadyExists(committed)) << committed;
    EXPECT_THAT(committed.message(), HasSubstr("/b' appeared"));
  }
  EXPECT_THAT(Listed(path), ElementsAre("b"));
  auto staged = StagedDirectory::Open(path);
  ASSERT_TRUE(staged.ok());
  auto file = (*staged)->Create("a");
  ASSERT_TRUE(file.ok());
  ASSERT_TRUE((*staged)->Append(*file, "mine").ok());
  ASSERT_TRUE((*staged)->Commit().ok());
  staged->reset();
  EXPECT_THAT(Listed(path), ElementsAre("a", "b"));
}

}  // namespace
}  // namespace ckpt::client::portable
