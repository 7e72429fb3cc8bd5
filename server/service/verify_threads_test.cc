// CheckpointService::Verify on several threads (ServiceOptions::
// verify_threads) against one thread, on a real RocksDB store on disk with
// a chunk missing, one replaced by other bytes and one flipped in its blob
// file: the same report, the same progress, the same stop on cancel.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/ordered_parallel.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/service/checkpoint_service.h"
#include "server/storage/rocksdb_store.h"
#include "tests/testing/service_test_util.h"
#include "tests/testing/store_test_util.h"

namespace ckpt::server {
namespace {

using ::ckpt::server::testing::SaveShard;
using ::ckpt::server::testing::ShardBuilder;

constexpr size_t kChunkBytes = 4096;
constexpr int kCheckpoints = 4;
constexpr size_t kChunksPerCheckpoint = 48;

// Random bytes from `seed` (distinct chunks, stored once each).
std::string RandomBytes(size_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(rng());
  return bytes;
}

// Flips a byte in the middle of the one stored copy of `needle` under `dir`.
void FlipStoredCopy(const std::string& dir, const std::string& needle) {
  int flipped = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string content((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
    const size_t at = content.find(needle);
    if (at == std::string::npos) continue;
    std::fstream file(entry.path(),
                      std::ios::in | std::ios::out | std::ios::binary);
    const size_t middle = at + needle.size() / 2;
    file.seekp(static_cast<std::streamoff>(middle));
    file.put(static_cast<char>(content[middle] ^ 0x5a));
    ASSERT_TRUE(file.good());
    ++flipped;
  }
  ASSERT_EQ(flipped, 1) << "the chunk's bytes should be stored once";
}

class VerifyThreadsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir();
    db_ = dir_->path() + "/db";
    // Checkpoints share half their chunks with the one before, as saves
    // deduplicated against the previous step do.
    std::vector<std::string> chunks;
    for (size_t i = 0; i < kChunksPerCheckpoint / 2 * (kCheckpoints + 1); ++i) {
      chunks.push_back(RandomBytes(kChunkBytes, 1000 + i));
    }
    {
      auto store = RocksDbStore::Open(db_);
      ASSERT_TRUE(store.ok()) << store.status();
      FakeClock clock;
      CheckpointService service(store->get(), store->get(), &clock);
      for (int step = 0; step < kCheckpoints; ++step) {
        std::string blob;
        for (size_t i = 0; i < kChunksPerCheckpoint; ++i) {
          blob += chunks[step * kChunksPerCheckpoint / 2 + i];
        }
        ShardBuilder shard{0, {{"w", blob}}, kChunkBytes};
        ASSERT_TRUE(SaveShard(service, shard, step, 1, "team/model").ok());
      }
      // Damage: one chunk gone, one replaced by other bytes under its id.
      ASSERT_TRUE((*store)->Delete("team", Sha256(chunks[5])).ok());
      const ChunkId replaced = Sha256(chunks[60]);
      ASSERT_TRUE((*store)->Delete("team", replaced).ok());
      ASSERT_TRUE(
          (*store)->Put("team", replaced, RandomBytes(kChunkBytes, 7)).ok());
    }  // closed: every chunk is in a blob file
    FlipStoredCopy(db_, chunks[30]);
    flipped_ = Sha256(chunks[30]);
  }

  struct Run {
    absl::StatusOr<VerifyReport> report;
    std::vector<VerifyProgress> progress;
  };

  // Verifies everything, reading data, on `threads` threads; the callback
  // fails at the `fail_at`th progress report (0: never).
  Run Verify(int threads, size_t fail_at = 0) {
    Run run;
    auto store = RocksDbStore::Open(db_);
    EXPECT_TRUE(store.ok()) << store.status();
    if (!store.ok()) return {store.status(), {}};
    FakeClock clock;
    ServiceOptions options;
    options.verify_threads = threads;
    CheckpointService service(store->get(), store->get(), &clock, options);
    VerifyOptions verify;
    verify.read_data = true;
    run.report = service.Verify(verify, [&](const VerifyProgress& now) {
      run.progress.push_back(now);
      if (run.progress.size() == fail_at) {
        return absl::CancelledError("the caller went away");
      }
      return absl::OkStatus();
    });
    return run;
  }

  std::unique_ptr<::ckpt::testing::TempDir> dir_;
  std::string db_;
  ChunkId flipped_;
};

TEST_F(VerifyThreadsTest, EveryThreadCountGivesTheOneThreadReport) {
  const Run one = Verify(1);
  ASSERT_TRUE(one.report.ok()) << one.report.status();
  // The damage is all found: missing, replaced and flipped on disk.
  EXPECT_EQ(one.report->damaged_chunk_count, 3u);
  EXPECT_EQ(one.report->checkpoints_checked, kCheckpoints);
  // All but the missing chunk are read (the flipped blob reads back with
  // other bytes, found by their hash).
  EXPECT_EQ(one.report->chunks_read, one.report->chunks_checked - 1);
  bool saw_flipped = false;
  for (const auto& chunk : one.report->damaged_chunks) {
    if (chunk.id == flipped_) {
      saw_flipped = true;
      EXPECT_EQ(chunk.problem, ChunkProblem::kCorrupt);
    }
  }
  EXPECT_TRUE(saw_flipped);
  EXPECT_FALSE(one.report->damaged_checkpoints.empty());
  for (int threads : {0, 2, 3, 8, 64}) {
    SCOPED_TRACE(absl::StrCat(threads, " threads"));
    const Run many = Verify(threads);
    ASSERT_TRUE(many.report.ok()) << many.report.status();
    EXPECT_EQ(*many.report, *one.report);
    EXPECT_EQ(many.progress, one.progress);
  }
}

TEST_F(VerifyThreadsTest, ACancelStopsAtTheSameReportOnEveryThreadCount) {
  const Run whole = Verify(1);
  ASSERT_TRUE(whole.report.ok()) << whole.report.status();
  // Fail halfway through the data read.
  const size_t fail_at = whole.progress.size() / 2 + 3;
  ASSERT_EQ(whole.progress[fail_at - 1].stage, VerifyStage::kReadData);
  for (int threads : {1, 2, 8}) {
    SCOPED_TRACE(absl::StrCat(threads, " threads"));
    const Run cancelled = Verify(threads, fail_at);
    EXPECT_EQ(cancelled.report.status(),
              absl::CancelledError("the caller went away"));
    ASSERT_EQ(cancelled.progress.size(), fail_at);
    EXPECT_EQ(cancelled.progress.back(), whole.progress[fail_at - 1]);
  }
}

TEST(VerifyThreadsOptionTest, TheDefaultIsHalfTheCoresFromOneToFour) {
  // (cores, threads)
  for (const auto& [cores, threads] : std::vector<std::pair<int, int>>{
           {1, 1}, {2, 1}, {3, 1}, {6, 3}, {8, 4}, {192, 4}}) {
    EXPECT_EQ(DefaultVerifyThreads(cores), threads) << cores << " cores";
  }
  ServiceOptions options;
  EXPECT_EQ(VerifyThreads(options), DefaultVerifyThreads(HardwareThreads()));
  options.verify_threads = 7;
  EXPECT_EQ(VerifyThreads(options), 7);
}

TEST(VerifyThreadsOptionTest, IsBounded) {
  EXPECT_EQ(kMaxVerifyThreads, 64);
  ServiceOptions options;
  options.verify_threads = kMaxVerifyThreads;
  EXPECT_TRUE(ValidateServiceOptions(options).ok());
  options.verify_threads = kMaxVerifyThreads + 1;
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateServiceOptions(options)));
  options.verify_threads = -1;
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateServiceOptions(options)));
}

}  // namespace
}  // namespace ckpt::server
