#include "common/chunking.h"

#include <cstddef>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt {
namespace {

std::string Pattern(size_t size) {
  std::string s(size, '\0');
  for (size_t i = 0; i < size; ++i) s[i] = static_cast<char>(i * 7 + i / 251);
  return s;
}

std::vector<size_t> Sizes(const std::vector<absl::string_view>& chunks) {
  std::vector<size_t> sizes;
  sizes.reserve(chunks.size());
  for (absl::string_view c : chunks) sizes.push_back(c.size());
  return sizes;
}

TEST(SplitIntoChunksTest, EmptyInputGivesNoChunks) {
  EXPECT_TRUE(SplitIntoChunks("", 4).empty());
  EXPECT_TRUE(SplitIntoChunks(absl::string_view(), 1).empty());
}

TEST(SplitIntoChunksTest, LastChunkIsShorter) {
  std::string data = Pattern(10);
  EXPECT_EQ(Sizes(SplitIntoChunks(data, 4)), (std::vector<size_t>{4, 4, 2}));
  EXPECT_EQ(Sizes(SplitIntoChunks(data, 3)), (std::vector<size_t>{3, 3, 3, 1}));
}

TEST(SplitIntoChunksTest, ExactMultipleHasNoShortChunk) {
  std::string data = Pattern(12);
  EXPECT_EQ(Sizes(SplitIntoChunks(data, 4)), (std::vector<size_t>{4, 4, 4}));
  EXPECT_EQ(Sizes(SplitIntoChunks(data, 12)), (std::vector<size_t>{12}));
}

TEST(SplitIntoChunksTest, InputSmallerThanChunkIsOneChunk) {
  std::string data = Pattern(5);
  EXPECT_EQ(Sizes(SplitIntoChunks(data, 6)), (std::vector<size_t>{5}));
  EXPECT_EQ(Sizes(SplitIntoChunks(data, kDefaultChunkBytes)),
            (std::vector<size_t>{5}));
  EXPECT_EQ(Sizes(SplitIntoChunks(data, std::numeric_limits<size_t>::max())),
            (std::vector<size_t>{5}));
}

TEST(SplitIntoChunksTest, ChunkSizeOneGivesOneBytePerChunk) {
  std::string data = Pattern(7);
  auto chunks = SplitIntoChunks(data, 1);
  ASSERT_EQ(chunks.size(), 7u);
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_EQ(chunks[i], data.substr(i, 1));
  }
}

TEST(SplitIntoChunksTest, ViewsPointIntoTheOriginalBuffer) {
  std::string data = Pattern(1000);
  auto chunks = SplitIntoChunks(data, 64);
  ASSERT_EQ(chunks.size(), 16u);
  for (size_t i = 0; i < chunks.size(); ++i) {
    // No copies: each view aliases the input at offset i * 64.
    EXPECT_EQ(chunks[i].data(), data.data() + i * 64) << i;
  }
  // Writing through the original buffer is visible through the views.
  data[64] = 'Z';
  EXPECT_EQ(chunks[1][0], 'Z');
}

TEST(SplitIntoChunksTest, ConcatenationEqualsInput) {
  for (size_t size : {1, 2, 63, 64, 65, 1000, 4096, 4097}) {
    for (size_t chunk_bytes : {1, 3, 64, 4096, 10000}) {
      SCOPED_TRACE(testing::Message() << size << " / " << chunk_bytes);
      std::string data = Pattern(size);
      auto chunks = SplitIntoChunks(data, chunk_bytes);
      EXPECT_EQ(chunks.size(), (size + chunk_bytes - 1) / chunk_bytes);
      EXPECT_EQ(absl::StrJoin(chunks, ""), data);
      for (size_t i = 0; i + 1 < chunks.size(); ++i) {
        EXPECT_EQ(chunks[i].size(), chunk_bytes);
      }
      ASSERT_FALSE(chunks.empty());
      EXPECT_GE(chunks.back().size(), 1u);
      EXPECT_LE(chunks.back().size(), chunk_bytes);
    }
  }
}

TEST(SplitIntoChunksTest, DefaultChunkSizeSplitsLargeBuffer) {
  std::string data(2 * kDefaultChunkBytes + 1, 'x');
  EXPECT_EQ(Sizes(SplitIntoChunks(data, kDefaultChunkBytes)),
            (std::vector<size_t>{kDefaultChunkBytes, kDefaultChunkBytes, 1}));
}

TEST(SplitIntoChunksTest, ChunkSizeConstantsAreConsistent) {
  EXPECT_EQ(kDefaultChunkBytes, size_t{4} << 20);
  EXPECT_LE(kDefaultChunkBytes, kMaxChunkBytes);
}

TEST(SplitIntoChunksTest, UnchangedBytesGiveTheSameChunks) {
  // Chunking is deterministic and position-independent of other tensors.
  const std::string a = Pattern(300);
  const std::string b = Pattern(300);  // another buffer, the same content
  auto ca = SplitIntoChunks(a, 128);
  auto cb = SplitIntoChunks(b, 128);
  ASSERT_EQ(ca.size(), cb.size());
  for (size_t i = 0; i < ca.size(); ++i) EXPECT_EQ(ca[i], cb[i]);
}

}  // namespace
}  // namespace ckpt
