#include "common/delta_base.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt {
namespace {

using ::testing::HasSubstr;

TensorEntry Entry(std::string name, DType dtype, std::vector<int64_t> shape,
                  Box box) {
  TensorEntry entry;
  entry.name = std::move(name);
  entry.dtype = dtype;
  entry.global_shape = std::move(shape);
  entry.box = std::move(box);
  return entry;
}

const Box kTopHalf{{0, 0}, {4, 8}};
const Box kBottomHalf{{4, 0}, {4, 8}};

TEST(DeltaBaseTest, FindsTheEntryOfTheSameNameAndLayoutInAnyShard) {
  std::vector<ShardManifest> base(2);
  base[0].rank = 0;
  base[0].tensors = {Entry("emb", DType::kFloat32, {8, 8}, kTopHalf)};
  base[1].rank = 1;
  base[1].tensors = {Entry("other", DType::kFloat32, {8, 8}, kBottomHalf),
                     Entry("emb", DType::kFloat32, {8, 8}, kBottomHalf)};
  TensorEntry delta = Entry("emb", DType::kFloat32, {8, 8}, kBottomHalf);
  delta.delta_base_step = 3;  // not looked at
  auto found = FindDeltaBase(base, delta);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(*found, &base[1].tensors[1]);
}

// Per-rank state: every rank holds "rng" whole, with its own values; a
// rank's delta is on its own entry, and without a rank on the first.
TEST(DeltaBaseTest, PrefersTheGivenRanksEntryOfPerRankState) {
  const Box whole{{0, 0}, {8, 8}};
  std::vector<ShardManifest> base(3);
  for (int32_t rank = 0; rank < 3; ++rank) {
    base[rank].rank = rank;
    base[rank].tensors = {Entry("rng", DType::kFloat32, {8, 8}, whole)};
  }
  const TensorEntry delta = Entry("rng", DType::kFloat32, {8, 8}, whole);
  for (int32_t rank = 0; rank < 3; ++rank) {
    auto found = FindDeltaBase(base, delta, rank);
    ASSERT_TRUE(found.ok()) << found.status();
    EXPECT_EQ(*found, &base[rank].tensors[0]) << rank;
  }
  auto first = FindDeltaBase(base, delta);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(*first, &base[0].tensors[0]);
  // A rank without a matching entry (a new rank) falls back to the first.
  auto absent = FindDeltaBase(base, delta, 7);
  ASSERT_TRUE(absent.ok()) << absent.status();
  EXPECT_EQ(*absent, &base[0].tensors[0]);
}

TEST(DeltaBaseTest, RefusesAMissingTensorAnotherLayoutOrAQuantizedBase) {
  std::vector<ShardManifest> base(1);
  base[0].tensors = {Entry("emb", DType::kFloat32, {8, 8}, kTopHalf)};

  auto absent =
      FindDeltaBase(base, Entry("gone", DType::kFloat32, {8, 8}, kTopHalf));
  EXPECT_EQ(absent.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(absent.status().message(), HasSubstr("has no tensor 'gone'"));

  for (const TensorEntry& other :
       {Entry("emb", DType::kFloat16, {8, 8}, kTopHalf),
        Entry("emb", DType::kFloat32, {16, 8}, kTopHalf),
        Entry("emb", DType::kFloat32, {8, 8}, kBottomHalf)}) {
    auto mismatch = FindDeltaBase(base, other);
    EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(
        mismatch.status().message(),
        HasSubstr("holds it as float32 shape [8, 8] box [0, 0]+[4, 8]"));
  }

  base[0].tensors[0].quantization = Quantization{.bits = 4};
  auto quantized =
      FindDeltaBase(base, Entry("emb", DType::kFloat32, {8, 8}, kTopHalf));
  EXPECT_EQ(quantized.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(quantized.status().message(), HasSubstr("quantized to 4 bits"));
}

TEST(DeltaBaseTest, SameLayoutComparesNameDtypeShapeAndBoxOnly) {
  TensorEntry a = Entry("w", DType::kInt8, {4}, Box{{0}, {4}});
  TensorEntry b = a;
  b.delta_base_step = 1;
  b.pieces.push_back(ChunkRef{});
  EXPECT_TRUE(SameTensorLayout(a, b));
  b.name = "v";
  EXPECT_FALSE(SameTensorLayout(a, b));
}

}  // namespace
}  // namespace ckpt
