// ReadChunksIntoSharedFile over a service on a MemoryStore: what it writes,
// and that every request it refuses before writing leaves the file alone.

#include "server/service/shared_file_reads.h"

#include <functional>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/service_test_util.h"
#include "tests/testing/shared_file_test_util.h"

namespace ckpt::server {
namespace {

using testing::CheckpointServiceTest;
using ::testing::HasSubstr;
using testing::kJob;
using testing::ShardBuilder;
using testing::TestMemfd;

std::string RandomBytes(size_t size, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(rng() & 0xff);
  return bytes;
}

ChunkPlacement Place(const std::string& bytes,
                     std::initializer_list<uint64_t> offsets) {
  return ChunkPlacement{Sha256(bytes), bytes.size(), offsets};
}

bool NeverCancelled() { return false; }

class SharedFileReadsTest : public CheckpointServiceTest {
 protected:
  // Saves each blob as one chunk of its own at step 1.
  void SaveBlobs(const std::vector<std::string>& blobs) {
    ShardBuilder shard;
    shard.chunk_bytes = 1 << 20;
    for (size_t i = 0; i < blobs.size(); ++i) {
      shard.blobs.emplace_back("t" + std::to_string(i), blobs[i]);
    }
    ASSERT_TRUE(Save(shard, 1, 1).ok());
  }

  absl::StatusOr<uint64_t> Read(
      const TestMemfd& file, const std::vector<ChunkPlacement>& placements,
      const std::function<bool()>& cancelled = NeverCancelled) {
    return ReadChunksIntoSharedFile(service_, kJob, file.Writer(), placements,
                                    cancelled);
  }
};

TEST_F(SharedFileReadsTest, WritesEachChunkAtEveryOffsetAndCountsThem) {
  const std::string a = RandomBytes(5000, 1);
  const std::string b = RandomBytes(3000, 2);
  SaveBlobs({a, b});
  TestMemfd file(4096 + 20000);
  auto written = Read(file, {Place(a, {4096, 13000}), Place(b, {9096})});
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(*written, 2 * a.size() + b.size());
  EXPECT_TRUE(file.Read(4096, a.size()) == a);
  EXPECT_TRUE(file.Read(13000, a.size()) == a);
  EXPECT_TRUE(file.Read(9096, b.size()) == b);
  EXPECT_EQ(file.Read(0, 4096), std::string(4096, '\0'));
}

TEST_F(SharedFileReadsTest, RefusedRequestsLeaveTheFileUntouched) {
  const std::string a = RandomBytes(5000, 3);
  const std::string b = RandomBytes(2000, 4);
  SaveBlobs({a, b});
  TestMemfd file(4096 + 8192);
  const std::string before = file.Read(0, 4096 + 8192);
  struct Case {
    std::string what;
    // Edits a request placing a at 4096 and b at 9096.
    std::function<void(std::vector<ChunkPlacement>&)> edit;
    absl::StatusCode code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"range past the end", [](auto& p) { p[0].offsets = {12000}; },
       absl::StatusCode::kInvalidArgument,
       "chunks[0]: placement [12000, +5000) is outside the shared file"},
      {"offset past the end", [](auto& p) { p[0].offsets = {1ull << 62}; },
       absl::StatusCode::kInvalidArgument, "chunks[0]: placement"},
      // Checked before any write: chunk 0 is fine and stays unwritten.
      {"second chunk past the end",
       [](auto& p) { p[1].offsets = {4096 + 8000}; },
       absl::StatusCode::kInvalidArgument, "chunks[1]: placement"},
      {"a size past the end", [](auto& p) { p[1].size = 1 << 20; },
       absl::StatusCode::kInvalidArgument, "chunks[1]: placement"},
      {"no offsets", [](auto& p) { p[1].offsets.clear(); },
       absl::StatusCode::kInvalidArgument, "chunks[1] has no offsets"},
      {"wrong size", [](auto& p) { p[0].size = 4999; },
       absl::StatusCode::kDataLoss,
       "has 5000 bytes, but the request places 4999"},
      {"unknown chunk", [](auto& p) { p[0].id = Sha256("x"); },
       absl::StatusCode::kNotFound, ""},
  };
  for (const Case& c : cases) {
    std::vector<ChunkPlacement> placements = {Place(a, {4096}),
                                              Place(b, {9096})};
    c.edit(placements);
    auto written = Read(file, placements);
    EXPECT_EQ(written.status().code(), c.code)
        << c.what << ": " << written.status();
    EXPECT_THAT(written.status().message(), HasSubstr(c.message)) << c.what;
    EXPECT_THAT(written.status().message(),
                ::testing::Not(HasSubstr("ReadChunksIntoFile")))
        << "the transport names the RPC: " << c.what;
    EXPECT_TRUE(file.Read(0, before.size()) == before) << c.what;
  }
}

TEST_F(SharedFileReadsTest, CorruptChunkIsDataLossAndNoneOfItIsWritten) {
  const std::string weights = RandomBytes(4 << 10, 6);
  SaveBlobs({weights});
  const ChunkId id = Sha256(weights);
  ASSERT_TRUE(store_.Delete("team", id).ok());
  std::string rotten = weights;
  rotten[0] ^= 0x01;
  ASSERT_TRUE(store_.Put("team", id, rotten).ok());
  TestMemfd file(4096 + 8192);
  auto written = Read(file, {Place(weights, {4096})});
  EXPECT_EQ(written.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(file.Read(4096, weights.size()) ==
              std::string(weights.size(), '\0'));
}

TEST_F(SharedFileReadsTest, CancellationStopsBeforeTheNextChunk) {
  const std::string a = RandomBytes(3000, 7);
  const std::string b = RandomBytes(2000, 8);
  SaveBlobs({a, b});
  TestMemfd file(4096 + 8192);
  int asked = 0;
  auto written = Read(file, {Place(a, {4096}), Place(b, {8192})},
                      [&] { return ++asked > 1; });
  EXPECT_EQ(written.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(asked, 2);
  EXPECT_TRUE(file.Read(4096, a.size()) == a);
  EXPECT_TRUE(file.Read(8192, b.size()) == std::string(b.size(), '\0'));
}

}  // namespace
}  // namespace ckpt::server
