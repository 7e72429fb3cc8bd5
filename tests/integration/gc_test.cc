// Garbage collection end to end: the real ckpt-server binary on a loopback
// port over RocksDB in a temporary directory, driven by the C++ client.
#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/real_server_test.h"
#include "tests/testing/server_process.h"

namespace ckpt::testing {
namespace {

using ::testing::IsEmpty;

constexpr size_t kChunk = 256 << 10;

std::string RandomBytes(size_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(rng());
  return bytes;
}

// One tensor of `bytes` (uint8), saved with kChunk chunks.
std::vector<client::TensorData> Tensor(const std::string& bytes) {
  return {Uint8Tensor("state", bytes)};
}

class GcTest : public RealServerTest {
 protected:
  absl::Status Save(client::Client& client, absl::string_view job, int64_t step,
                    const std::string& bytes,
                    std::optional<RetentionPolicy> policy = std::nullopt) {
    client::SaveOptions options;
    options.chunk_bytes = kChunk;
    options.retention_policy = std::move(policy);
    auto tensors = Tensor(bytes);
    return client.SaveShard(job, step, tensors, options).status();
  }

  // Restores (job, step) and compares it with `bytes`.
  void ExpectRestores(client::Client& client, absl::string_view job,
                      int64_t step, const std::string& bytes) {
    auto restored = client.RestoreShard(job, step, 0);
    ASSERT_TRUE(restored.ok())
        << job << "@" << step << ": " << restored.status();
    ASSERT_EQ(restored->size(), 1u);
    EXPECT_TRUE((*restored)[0].bytes == bytes) << job << "@" << step;
  }

  uint64_t StoredChunks() {
    auto stats = client_->GetStats("");
    EXPECT_TRUE(stats.ok()) << stats.status();
    return stats.ok() ? stats->chunk_count : 0;
  }
};

TEST_F(GcTest, ReclaimsDeletedCheckpointsAndKeepsPinnedOnesThroughRestart) {
  StartServer({"--gc-interval", "0"});
  // Steps 1-3 share their first 4 MiB; each has 4 MiB of its own.
  const std::string shared = RandomBytes(4 << 20, 1);
  std::vector<std::string> states;
  for (int step = 1; step <= 3; ++step) {
    states.push_back(shared + RandomBytes(4 << 20, 100 + step));
    ASSERT_TRUE(Save(*client_, "it/gc", step, states.back()).ok());
  }
  ASSERT_EQ(StoredChunks(), 16u + 3 * 16u);
  ASSERT_TRUE(client_->PinCheckpoint("it/gc", 1).ok());
  ASSERT_TRUE(client_->DeleteCheckpoint("it/gc", 2).ok());

  // Uploads just now are held for saves in flight (default 30 minutes), so
  // step 2's chunks survive a collection until the hold ends...
  auto held = client_->CollectGarbage(false);
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(held->chunks_held, 16u);
  EXPECT_EQ(held->chunks_deleted, 0u);

  // ...which a server started with no hold does not wait for.
  ASSERT_TRUE(server_->Stop().ok());
  StartServer({"--gc-interval", "0", "--chunk-hold-seconds", "0"});
  auto dry = client_->CollectGarbage(/*dry_run=*/true);
  ASSERT_TRUE(dry.ok()) << dry.status();
  EXPECT_TRUE(dry->dry_run);
  EXPECT_EQ(dry->chunks_deleted, 16u);
  EXPECT_EQ(StoredChunks(), 64u) << "a dry run deleted chunks";

  auto report = client_->CollectGarbage(false);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->chunks_scanned, 64u);
  EXPECT_EQ(report->chunks_referenced, 48u);
  EXPECT_EQ(report->chunks_deleted, 16u);
  EXPECT_EQ(report->bytes_deleted, uint64_t{4} << 20);
  EXPECT_THAT(report->damaged, IsEmpty());
  EXPECT_GE(report->disk_bytes_before, report->disk_bytes_after);
  EXPECT_EQ(StoredChunks(), 48u);

  // Prune everything but the newest: the pinned step 1 survives it and GC.
  RetentionPolicy keep_last;
  keep_last.max_to_keep = 1;
  ASSERT_TRUE(client_->PruneCheckpoints("it/gc", keep_last, false).ok());
  report = client_->CollectGarbage(false);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->chunks_deleted, 0u);  // steps 1 and 3 share nothing more
  ExpectRestores(*client_, "it/gc", 1, states[0]);
  ExpectRestores(*client_, "it/gc", 3, states[2]);

  ASSERT_TRUE(server_->Stop().ok());
  StartServer({"--gc-interval", "0", "--chunk-hold-seconds", "0"});
  ExpectRestores(*client_, "it/gc", 1, states[0]);
  ExpectRestores(*client_, "it/gc", 3, states[2]);
  EXPECT_EQ(client_->RestoreShard("it/gc", 2, 0).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(GcTest, BackgroundCollectionRunsOnItsInterval) {
  // A hold of 2 s covers the save's upload-to-commit gap even on a slow
  // (sanitized, loaded) machine; with none, a collection between them takes
  // the uploaded chunks and the commit fails.
  StartServer({"--gc-interval", "0.3", "--chunk-hold-seconds", "2"});
  ASSERT_TRUE(Save(*client_, "it/bg", 1, RandomBytes(1 << 20, 7)).ok());
  ASSERT_TRUE(client_->DeleteCheckpoint("it/bg", 1).ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (StoredChunks() > 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(StoredChunks(), 0u);
}

// Writers save checkpoints that dedup against their predecessors while the
// job's max_to_keep=2 deletes those predecessors and GC runs in a loop on a
// server with no chunk hold, so every sweep races the saves. No
// acknowledged checkpoint may ever fail to restore; a save may be refused
// (FAILED_PRECONDITION: a sweep took one of its chunks) and is then simply
// not acknowledged, and retried.
TEST_F(GcTest, NoAcknowledgedCheckpointIsLostToConcurrentCollections) {
  StartServer({"--gc-interval", "0", "--chunk-hold-seconds", "0"});
  constexpr int kWriters = 2;
  constexpr int kSteps = 12;
  RetentionPolicy policy;
  policy.max_to_keep = 2;

  std::atomic<bool> done{false};
  std::atomic<int> collections{0};
  std::atomic<uint64_t> deleted{0};
  std::thread collector([&] {
    auto client = client::Client::Connect(server_->address());
    ASSERT_TRUE(client.ok());
    while (!done.load()) {
      auto report = (*client)->CollectGarbage(false);
      ASSERT_TRUE(report.ok()) << report.status();
      EXPECT_THAT(report->damaged, IsEmpty());
      deleted.fetch_add(report->chunks_deleted);
      collections.fetch_add(1);
      // With no chunk hold, a collection between a save's upload and its
      // commit takes the save's chunks (refused, retried); a collector that
      // never pauses can starve a sanitized writer for minutes. Short
      // pauses still put collections inside most saves.
      absl::SleepFor(absl::Milliseconds(20));
    }
  });
  std::atomic<int> refused{0};
  std::vector<std::thread> writers;
  writers.reserve(kWriters);
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      auto client = client::Client::Connect(server_->address());
      ASSERT_TRUE(client.ok());
      const std::string job = absl::StrCat("it/writer", w);
      // 2 MiB that every step keeps, plus 512 KiB that each step rewrites.
      const std::string stable = RandomBytes(2 << 20, 1000 + w);
      for (int step = 1; step <= kSteps; ++step) {
        const std::string state =
            stable + RandomBytes(512 << 10, w * 1000 + step);
        // Retried for as long as sweeps keep winning the race (on a slow,
        // sanitized machine that can take many attempts).
        absl::Status saved;
        const absl::Time give_up = absl::Now() + absl::Seconds(180);
        while (true) {
          saved = Save(**client, job, step, state, policy);
          if (!absl::IsFailedPrecondition(saved) || absl::Now() > give_up) {
            break;
          }
          refused.fetch_add(1);
        }
        ASSERT_TRUE(saved.ok()) << job << "@" << step << ": " << saved;
        ExpectRestores(**client, job, step, state);
      }
    });
  }
  for (auto& writer : writers) writer.join();
  done.store(true);
  collector.join();
  EXPECT_GT(collections.load(), 2);
  EXPECT_GT(deleted.load(), 0u) << "GC never reclaimed pruned checkpoints";
  RecordProperty("collections", collections.load());
  RecordProperty("refused_saves", refused.load());

  // Each job keeps its last two steps, whole; GC leaves exactly their chunks.
  for (int w = 0; w < kWriters; ++w) {
    const std::string job = absl::StrCat("it/writer", w);
    auto records = client_->ListCheckpoints(job, false);
    ASSERT_TRUE(records.ok()) << records.status();
    ASSERT_EQ(records->size(), 2u);
    const std::string stable = RandomBytes(2 << 20, 1000 + w);
    for (int step : {kSteps - 1, kSteps}) {
      ExpectRestores(*client_, job, step,
                     stable + RandomBytes(512 << 10, w * 1000 + step));
    }
  }
  auto final_report = client_->CollectGarbage(false);
  ASSERT_TRUE(final_report.ok()) << final_report.status();
  EXPECT_EQ(final_report->chunks_referenced, StoredChunks());
}

}  // namespace
}  // namespace ckpt::testing
