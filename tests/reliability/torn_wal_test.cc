// T4 torn WAL tails: a store of acknowledged operations is crashed (on
// PowerLossFs, so only what was synced remains), then, offline, each trial
// copies it and damages its write-ahead log: truncated at a random offset,
// or followed by random garbage. (The store flushes every column family
// together, so one log is live at a time.) The store reopened on the copy
// must either refuse with an error that says what is wrong or open with the
// visible checkpoints of some prefix of the operations (commits and
// deletes), each restoring byte-identical (SHA-256 per tensor), and verify
// --read-data clean: never half of an operation's write batch. Flags:
// --seed=N (else random, printed) and --trials=N (CI 200, soak 2,000; half
// of each damage). Prints one JSON line with the figures.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/chunking.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/sha256.h"
#include "gtest/gtest.h"
#include "rocksdb/env.h"
#include "server/service/checkpoint_service.h"
#include "server/storage/rocksdb_store.h"
#include "tests/reliability/reliability_flags.h"
#include "tests/testing/power_loss_fs.h"
#include "tests/testing/service_test_util.h"
#include "tests/testing/temp_dir.h"

namespace ckpt::testing {
namespace {

namespace fs = std::filesystem;
using server::CheckpointService;
using server::RocksDbStore;
using server::testing::ShardBuilder;

ReliabilityFlags& TheFlags() {
  static ReliabilityFlags flags{.seed = std::nullopt, .size = 200};
  return flags;
}

constexpr char kJob[] = "torn/wal";
constexpr size_t kChunkBytes = size_t{8} << 10;
constexpr int64_t kSteps = 12;   // commits of new bytes
constexpr int64_t kWalOps = 12;  // then metadata-only commits and deletes

enum class Damage { kTruncate, kGarbage };

struct Figures {
  int trials = 0;
  int wal_files = 0;
  int truncated = 0;
  int garbage_appended = 0;
  int opened = 0;
  int refused = 0;
  int operations_undone = 0;  // acked operations a damaged log took back
  int checkpoints_checked = 0;
  int not_a_prefix = 0;
  int wrong_bytes = 0;
  int verify_damaged = 0;

  std::string Json(uint64_t seed) const {
    return absl::StrCat("{\"test\": \"T4 torn WAL\", \"seed\": ", seed,
                        ", \"trials\": ", trials,
                        ", \"wal_files\": ", wal_files,
                        ", \"truncated\": ", truncated,
                        ", \"garbage_appended\": ", garbage_appended,
                        ", \"opened\": ", opened, ", \"refused\": ", refused,
                        ", \"operations_undone\": ", operations_undone,
                        ", \"checkpoints_checked\": ", checkpoints_checked,
                        ", \"not_a_prefix\": ", not_a_prefix,
                        ", \"wrong_bytes\": ", wrong_bytes,
                        ", \"verify_damaged\": ", verify_damaged, "}");
  }
};

std::string RandomBytes(std::mt19937_64& rng, size_t size) {
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(rng());
  return bytes;
}

// The write-ahead logs of a database directory, oldest first (RocksDB
// numbers its files in creation order, zero-padded to one width).
std::vector<fs::path> WalFiles(const std::string& dir) {
  std::vector<fs::path> logs;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() == ".log" &&
        entry.path().filename() != "LOG") {
      logs.push_back(entry.path());
    }
  }
  std::sort(logs.begin(), logs.end());
  return logs;
}

class TornWalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = TheFlags().seed.value_or(std::random_device()());
    rng_.seed(seed_);
    auto dir = TempDir::Create("ckpt-torn-wal");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *std::move(dir);
  }

  std::string base() const { return dir_->path() + "/base"; }

  // kSteps single-rank commits of new bytes (each flushes its chunks, and
  // with them the metadata, to SST files), then kWalOps operations that
  // write only metadata and so stay in the WAL: commits whose chunks are
  // all stored already and deletes, in turn. Each acknowledged; then a
  // crash that keeps only what was synced.
  void MakeCrashedStore() {
    auto power = std::make_shared<PowerLossFs>(rocksdb::FileSystem::Default());
    std::shared_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(power);
    const absl::Status opened = Open(base(), env);
    ASSERT_TRUE(opened.ok()) << opened;
    std::set<int64_t> visible;
    states_.push_back(visible);
    for (int64_t step = 1; step <= kSteps + kWalOps; ++step) {
      if (step > kSteps && step % 2 == 0) {
        // A delete of the oldest visible step.
        const int64_t oldest = *visible.begin();
        const absl::Status deleted = service_->DeleteCheckpoint(kJob, oldest);
        ASSERT_TRUE(deleted.ok()) << deleted;
        visible.erase(oldest);
        states_.push_back(visible);
        continue;
      }
      ShardBuilder shard;
      shard.chunk_bytes = kChunkBytes;
      if (step <= kSteps) {
        shard.blobs = {{"w", RandomBytes(rng_, 3 * kChunkBytes + step)},
                       {"b", RandomBytes(rng_, 300)}};
        blobs_[step] = shard.blobs;
      } else {
        shard.blobs = blobs_.at(kSteps);  // every chunk stored already
      }
      std::vector<std::string> hashes;
      for (const auto& [name, bytes] : shard.blobs) {
        hashes.push_back(Sha256(bytes).ToHex());
      }
      ASSERT_TRUE(
          service_->BeginCheckpoint(kJob, step, 1, {}, absl::ZeroDuration())
              .ok());
      for (const auto& [name, bytes] : shard.blobs) {
        for (absl::string_view chunk : SplitIntoChunks(bytes, kChunkBytes)) {
          auto missing = service_->FindMissingChunks(kJob, {Sha256(chunk)});
          ASSERT_TRUE(missing.ok()) << missing.status();
          if (missing->empty()) continue;
          auto put = service_->PutChunk(kJob, Sha256(chunk), chunk);
          ASSERT_TRUE(put.ok()) << put.status();
        }
      }
      auto committed = service_->CommitShard(kJob, step, 1, shard.Manifest());
      ASSERT_TRUE(committed.ok()) << committed.status();
      ASSERT_TRUE(committed->checkpoint_committed);
      expected_[step] = std::move(hashes);
      visible.insert(step);
      states_.push_back(visible);
    }
    power->Crash();
    Close();
    auto dropped = power->RestoreAfterCrash();
    ASSERT_TRUE(dropped.ok()) << dropped.status();
  }

  absl::Status Open(const std::string& dir,
                    std::shared_ptr<rocksdb::Env> env = nullptr) {
    server::RocksDbStoreOptions options;
    // Only the crashed store is made; a trial opens an existing copy.
    options.create_if_missing = env != nullptr;
    options.env = std::move(env);
    options.size_to_volume = false;
    auto store = RocksDbStore::Open(dir, options);
    if (!store.ok()) return store.status();
    store_ = *std::move(store);
    service_ = std::make_unique<CheckpointService>(store_.get(), store_.get(),
                                                   &clock_);
    return absl::OkStatus();
  }

  void Close() {
    service_.reset();
    store_.reset();
  }

  // One trial: a copy of the crashed store, one WAL damaged, reopened and
  // checked.
  void Trial(Damage damage) {
    ++figures_.trials;
    const std::string copy = absl::StrCat(dir_->path(), "/trial");
    fs::remove_all(copy);
    fs::copy(base(), copy, fs::copy_options::recursive);
    const std::vector<fs::path> logs = WalFiles(copy);
    ASSERT_FALSE(logs.empty()) << "the crashed store has no WAL";
    const fs::path victim = logs.back();
    const uintmax_t size = fs::file_size(victim);
    std::string what;
    if (damage == Damage::kGarbage) {
      ++figures_.garbage_appended;
      const size_t garbage =
          std::uniform_int_distribution<size_t>(1, 4096)(rng_);
      std::ofstream(victim, std::ios::binary | std::ios::app)
          << RandomBytes(rng_, garbage);
      what = absl::StrCat(garbage, " bytes of garbage appended to ",
                          victim.filename().string(), " (", size, " bytes)");
    } else {
      ++figures_.truncated;
      const uintmax_t at = size == 0 ? 0
                                     : std::uniform_int_distribution<uintmax_t>(
                                           0, size - 1)(rng_);
      fs::resize_file(victim, at);
      what = absl::StrCat(victim.filename().string(), " truncated from ", size,
                          " to ", at, " bytes");
    }
    SCOPED_TRACE(what);

    const absl::Status opened = Open(copy);
    if (!opened.ok()) {
      // Refusing is allowed, with a message that says what is wrong.
      ++figures_.refused;
      EXPECT_FALSE(opened.message().empty());
      return;
    }
    ++figures_.opened;
    std::set<int64_t> visible;
    auto records = service_->ListCheckpoints(kJob, false);
    if (!absl::IsNotFound(records.status())) {
      ASSERT_TRUE(records.ok()) << records.status();
      for (const CheckpointRecord& record : *records) {
        visible.insert(record.step);
      }
    }
    // The state after some prefix of the acknowledged operations.
    const auto state = std::find(states_.begin(), states_.end(), visible);
    if (state == states_.end()) {
      ++figures_.not_a_prefix;
      ADD_FAILURE() << "the visible steps are no state the operations went "
                       "through: "
                    << absl::StrJoin(visible, ",");
    } else {
      figures_.operations_undone += static_cast<int>(states_.end() - state) - 1;
    }
    for (int64_t step : visible) {
      ++figures_.checkpoints_checked;
      if (Restore(step) != expected_.at(step)) {
        ++figures_.wrong_bytes;
        ADD_FAILURE() << "step " << step << " does not restore as committed";
      }
    }
    VerifyOptions options;
    options.read_data = true;
    auto report = service_->Verify(options);
    ASSERT_TRUE(report.ok()) << report.status();
    if (!report->ok()) {
      ++figures_.verify_damaged;
      ADD_FAILURE() << "verify found damage after the reopen";
    }
    Close();
  }

  // The SHA-256 of each tensor's bytes, in manifest order; empty on error.
  std::vector<std::string> Restore(int64_t step) {
    auto checkpoint = service_->GetManifest(kJob, step);
    EXPECT_TRUE(checkpoint.ok()) << step << ": " << checkpoint.status();
    if (!checkpoint.ok() || checkpoint->shards.size() != 1) return {};
    std::vector<std::string> hashes;
    for (const TensorEntry& tensor : checkpoint->shards[0].tensors) {
      std::string bytes;
      for (const ChunkRef& piece : tensor.pieces) {
        auto chunk = service_->ReadChunk(kJob, piece.id);
        EXPECT_TRUE(chunk.ok()) << step << ": " << chunk.status();
        if (!chunk.ok()) return {};
        bytes += *chunk;
      }
      hashes.push_back(Sha256(bytes).ToHex());
    }
    return hashes;
  }

  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
  std::unique_ptr<TempDir> dir_;
  FakeClock clock_;
  std::unique_ptr<RocksDbStore> store_;
  std::unique_ptr<CheckpointService> service_;
  // Per step, each tensor's SHA-256; the tensors of steps <= kSteps.
  std::map<int64_t, std::vector<std::string>> expected_;
  std::map<int64_t, std::vector<std::pair<std::string, std::string>>> blobs_;
  // The visible steps before and after each acknowledged operation.
  std::vector<std::set<int64_t>> states_;
  Figures figures_;
};

TEST_F(TornWalTest, EveryDamagedLogOpensToAPrefixOrIsRefused) {
  SCOPED_TRACE(
      absl::StrCat("seed ", seed_, " (rerun with --seed=", seed_, ")"));
  ASSERT_NO_FATAL_FAILURE(MakeCrashedStore());
  figures_.wal_files = static_cast<int>(WalFiles(base()).size());
  // Undamaged, the crashed store holds every acknowledged operation (on a
  // copy: opening replays the logs into table files).
  const std::string copy = absl::StrCat(dir_->path(), "/undamaged");
  fs::copy(base(), copy, fs::copy_options::recursive);
  ASSERT_TRUE(Open(copy).ok());
  auto records = service_->ListCheckpoints(kJob, false);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), states_.back().size());
  Close();

  const int trials = TheFlags().size;
  for (int i = 0; i < trials && !HasFailure(); ++i) {
    ASSERT_NO_FATAL_FAILURE(
        Trial(i % 2 == 0 ? Damage::kTruncate : Damage::kGarbage));
  }
  std::printf("RELIABILITY_SUMMARY %s\n", figures_.Json(seed_).c_str());
  EXPECT_EQ(figures_.not_a_prefix, 0);
  EXPECT_EQ(figures_.wrong_bytes, 0);
  EXPECT_EQ(figures_.verify_damaged, 0);
  // The damage must have reached the operations in the logs.
  EXPECT_GT(figures_.operations_undone, 0);
}

}  // namespace
}  // namespace ckpt::testing

// gtest's own flags, then --seed=N and --trials=N.
int main(int argc, char** argv) {
  // Every damaged log makes RocksDB log errors; the figures are in the JSON.
  ckpt::SetMinLogLevel(ckpt::LogLevel::kError);
  return ckpt::testing::RunReliabilityProgram(argc, argv, "trials",
                                              &ckpt::testing::TheFlags());
}
