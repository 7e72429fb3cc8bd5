// T3 power loss: the real CheckpointService over a real RocksDbStore whose
// RocksDB runs on PowerLossFs (tests/testing/power_loss_fs.h), so a crash
// keeps only what was fsynced. Each cycle opens the store, checks it
// against the model of acknowledged commits (power_loss_model.h) and
// restores every acknowledged checkpoint byte-identical (SHA-256 per
// shard), then runs multi-rank saves (deduplicated against the previous
// step), deletes, prunes and garbage collections until the power is cut:
// between calls, before the k-th file operation, or by another thread at a
// random moment (inside a put, a flush or a commit). Every other cycle
// stores whole chunks in chunk files (chunk_files.h). Flags: --seed=N (else
// random, printed) and --cycles=N (CI 50, soak 500; split over two
// stores run side by side, seeds N and N+1). Prints one JSON line
// with the figures.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/chunking.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/sha256.h"
#include "gtest/gtest.h"
#include "rocksdb/env.h"
#include "server/service/checkpoint_service.h"
#include "server/storage/rocksdb_store.h"
#include "tests/reliability/power_loss_model.h"
#include "tests/reliability/reliability_flags.h"
#include "tests/testing/power_loss_fs.h"
#include "tests/testing/service_test_util.h"
#include "tests/testing/temp_dir.h"

namespace ckpt::testing {
namespace {

using server::CheckpointService;
using server::RocksDbStore;
using server::testing::ShardBuilder;

ReliabilityFlags& TheFlags() {
  static ReliabilityFlags flags{.seed = std::nullopt, .size = 50};
  return flags;
}

constexpr char kJob[] = "power/loss";
constexpr size_t kChunkBytes = size_t{8} << 10;

// How a cycle ends.
enum class Cut {
  kBetweenCalls,  // after the last call returned
  kAtOp,          // before the k-th disk-changing file operation
  kFromThread,    // by another thread, at a random moment
  kAfterClose,    // after a clean close
};

struct Figures {
  int cycles = 0;
  int cuts[4] = {0, 0, 0, 0};
  int commits_acked = 0;
  int commits_failed_by_cut = 0;
  int in_flight_commits_visible = 0;
  int in_flight_commits_gone = 0;
  int in_flight_deletes_applied = 0;
  int in_flight_deletes_gone = 0;
  int checkpoints_checked = 0;
  int lost = 0;
  int wrong_bytes = 0;
  uint64_t bytes_dropped = 0;
  uint64_t files_truncated = 0;
  uint64_t creates_undone = 0;
  uint64_t renames_undone = 0;

  void Add(const Figures& other) {
    cycles += other.cycles;
    for (int i = 0; i < 4; ++i) cuts[i] += other.cuts[i];
    commits_acked += other.commits_acked;
    commits_failed_by_cut += other.commits_failed_by_cut;
    in_flight_commits_visible += other.in_flight_commits_visible;
    in_flight_commits_gone += other.in_flight_commits_gone;
    in_flight_deletes_applied += other.in_flight_deletes_applied;
    in_flight_deletes_gone += other.in_flight_deletes_gone;
    checkpoints_checked += other.checkpoints_checked;
    lost += other.lost;
    wrong_bytes += other.wrong_bytes;
    bytes_dropped += other.bytes_dropped;
    files_truncated += other.files_truncated;
    creates_undone += other.creates_undone;
    renames_undone += other.renames_undone;
  }

  std::string Json(uint64_t seed) const {
    return absl::StrCat(
        "{\"test\": \"power_loss\", \"seed\": ", seed, ", \"cycles\": ", cycles,
        ", \"cuts_between_calls\": ", cuts[0], ", \"cuts_at_op\": ", cuts[1],
        ", \"cuts_from_thread\": ", cuts[2],
        ", \"cuts_after_close\": ", cuts[3],
        ", \"commits_acked\": ", commits_acked,
        ", \"commits_failed_by_cut\": ", commits_failed_by_cut,
        ", \"in_flight_commits_visible\": ", in_flight_commits_visible,
        ", \"in_flight_commits_gone\": ", in_flight_commits_gone,
        ", \"in_flight_deletes_applied\": ", in_flight_deletes_applied,
        ", \"in_flight_deletes_gone\": ", in_flight_deletes_gone,
        ", \"checkpoints_checked\": ", checkpoints_checked,
        ", \"bytes_dropped\": ", bytes_dropped,
        ", \"files_truncated\": ", files_truncated,
        ", \"creates_undone\": ", creates_undone,
        ", \"renames_undone\": ", renames_undone, ", \"lost\": ", lost,
        ", \"wrong_bytes\": ", wrong_bytes, "}");
  }
};

std::string RandomBytes(std::mt19937_64& rng, size_t size) {
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(rng());
  return bytes;
}

class PowerLossRun {
 public:
  PowerLossRun(uint64_t seed, std::string dir)
      : rng_(seed),
        dir_(std::move(dir)),
        fs_(std::make_shared<PowerLossFs>(rocksdb::FileSystem::Default())),
        env_(rocksdb::NewCompositeEnv(fs_)) {}

  // One cycle: open, check, work until the cut, drop what was not durable.
  void Cycle() {
    ++figures_.cycles;
    ASSERT_NO_FATAL_FAILURE(Open());
    ASSERT_NO_FATAL_FAILURE(CheckRecovered());

    const Cut cut = figures_.cycles == 1 ? Cut::kBetweenCalls
                                         : static_cast<Cut>(Uniform(0, 3));
    ++figures_.cuts[static_cast<int>(cut)];
    const uint64_t ops_before = fs_->ops();
    const absl::Time start = absl::Now();
    std::thread cutter;
    if (cut == Cut::kAtOp) {
      fs_->CrashAfterOps(Uniform(1, ops_per_cycle_));
    } else if (cut == Cut::kFromThread) {
      const auto delay = std::chrono::microseconds(Uniform(0, cycle_us_));
      cutter = std::thread([this, delay] {
        std::this_thread::sleep_for(delay);
        fs_->Crash();
      });
    }
    const int calls = static_cast<int>(Uniform(2, 5));
    for (int i = 0; i < calls && !fs_->crashed(); ++i) {
      ASSERT_NO_FATAL_FAILURE(RandomCall());
    }
    if (cut == Cut::kBetweenCalls || cut == Cut::kAtOp) {
      // An armed k beyond this cycle's operations cuts here instead.
      fs_->Crash();
    }
    if (cutter.joinable()) cutter.join();
    if (cut == Cut::kBetweenCalls) {
      // Learn the cycle's size, to aim the other cuts inside it.
      ops_per_cycle_ =
          std::max<uint64_t>(ops_per_cycle_, fs_->ops() - ops_before);
      cycle_us_ = std::max<uint64_t>(
          cycle_us_, absl::ToInt64Microseconds(absl::Now() - start));
    }
    if (cut == Cut::kAfterClose) {
      Close();
      fs_->Crash();
    } else {
      Close();
    }
    absl::StatusOr<PowerLossFs::Dropped> dropped = fs_->RestoreAfterCrash();
    ASSERT_TRUE(dropped.ok()) << dropped.status();
    figures_.bytes_dropped += dropped->bytes_dropped;
    figures_.files_truncated += dropped->files_truncated;
    figures_.creates_undone += dropped->creates_undone;
    figures_.renames_undone += dropped->renames_undone;
  }

  // A last recovery and check, after the final cycle.
  void Finish() {
    ASSERT_NO_FATAL_FAILURE(Open());
    ASSERT_NO_FATAL_FAILURE(CheckRecovered());
    Close();
  }

  const Figures& figures() const { return figures_; }

 private:
  uint64_t Uniform(uint64_t low, uint64_t high) {
    return std::uniform_int_distribution<uint64_t>(low, high)(rng_);
  }

  void Open() {
    server::RocksDbStoreOptions options;
    options.env = env_;
    options.size_to_volume = false;
    // Small memtables, so flushes also start on their own mid-save.
    options.chunk_write_buffer_size = uint64_t{256} << 10;
    options.blob_file_size = uint64_t{1} << 20;
    // Every other open stores whole chunks in chunk files (tails stay in
    // RocksDB), so cuts strike both write paths and stores that mix them.
    options.file_chunk_min_bytes =
        figures_.cycles % 2 == 0 ? kChunkBytes : UINT64_MAX;
    options.resume_timeout = absl::Milliseconds(200);
    auto store = RocksDbStore::Open(dir_, options);
    ASSERT_TRUE(store.ok()) << "reopening after the cut: " << store.status();
    store_ = *std::move(store);
    server::ServiceOptions service_options;
    service_options.default_lease = absl::Minutes(10);
    service_ = std::make_unique<CheckpointService>(store_.get(), store_.get(),
                                                   &clock_, service_options);
    // Leases of saves cut short end while the store is down.
    clock_.Advance(absl::Hours(1));
  }

  void Close() {
    service_.reset();
    store_.reset();
  }

  // The committed steps listed, checked against the model, then every
  // acknowledged checkpoint restored.
  void CheckRecovered() {
    std::set<int64_t> visible;
    auto records = service_->ListCheckpoints(kJob, false);
    if (!absl::IsNotFound(records.status())) {
      ASSERT_TRUE(records.ok()) << records.status();
      for (const CheckpointRecord& record : *records) {
        visible.insert(record.step);
      }
    }
    const CommittedModel::Check check = model_.Recover(visible);
    figures_.lost += static_cast<int>(check.lost.size());
    EXPECT_TRUE(check.ok())
        << "after cycle " << figures_.cycles << ": " << check.ToString();
    if (check.unknown_commit_visible.has_value()) {
      ++(*check.unknown_commit_visible ? figures_.in_flight_commits_visible
                                       : figures_.in_flight_commits_gone);
    }
    if (check.unknown_delete_applied.has_value()) {
      ++(*check.unknown_delete_applied ? figures_.in_flight_deletes_applied
                                       : figures_.in_flight_deletes_gone);
    }
    for (const auto& [step, shards] : model_.acked()) {
      if (visible.count(step) == 0) continue;  // counted as lost
      ++figures_.checkpoints_checked;
      const std::vector<std::string> restored = Restore(step);
      if (restored != shards) {
        ++figures_.wrong_bytes;
        ADD_FAILURE() << "step " << step << " does not restore as committed";
      }
    }
  }

  // Per rank, the SHA-256 of its restored tensors' bytes; a restore error
  // is a failure (and an empty hash).
  std::vector<std::string> Restore(int64_t step) {
    auto checkpoint = service_->GetManifest(kJob, step);
    EXPECT_TRUE(checkpoint.ok()) << step << ": " << checkpoint.status();
    if (!checkpoint.ok()) return {};
    std::vector<std::string> shards(checkpoint->shards.size());
    for (const ShardManifest& shard : checkpoint->shards) {
      std::string bytes;
      for (const TensorEntry& tensor : shard.tensors) {
        for (const ChunkRef& piece : tensor.pieces) {
          auto chunk = service_->ReadChunk(kJob, piece.id);
          EXPECT_TRUE(chunk.ok()) << step << ": " << chunk.status();
          if (!chunk.ok()) return {};
          bytes += *chunk;
        }
      }
      if (shard.rank < 0 || shard.rank >= static_cast<int32_t>(shards.size())) {
        ADD_FAILURE() << "step " << step << " has rank " << shard.rank;
        return {};
      }
      shards[shard.rank] = Sha256(bytes).ToHex();
    }
    return shards;
  }

  // A call that fails must have been cut.
  void ExpectCut(const absl::Status& status, absl::string_view what) {
    EXPECT_TRUE(fs_->crashed())
        << what << " failed with the power on: " << status;
  }

  void RandomCall() {
    const uint64_t pick = Uniform(0, 99);
    if (pick < 70 || model_.acked().empty()) {
      Save();
    } else if (pick < 80) {
      Delete();
    } else if (pick < 90) {
      PruneToKeep(static_cast<int>(Uniform(1, 3)));
    } else {
      GcOptions gc;
      gc.hold = absl::ZeroDuration();
      auto report = service_->CollectGarbage(gc);
      if (!report.ok()) ExpectCut(report.status(), "GC");
    }
  }

  // Ranks' tensors for the next step: "a" kept from the previous step
  // (deduplicated) more often than not, "b" new with a tail smaller than
  // the blob threshold, "c" small enough to stay inline in the SST files.
  ShardBuilder NextShard(int32_t rank) {
    std::string& kept = last_a_[rank];
    if (kept.empty() || Uniform(0, 9) < 4) {
      kept = RandomBytes(rng_, 3 * kChunkBytes);
    }
    ShardBuilder shard;
    shard.rank = rank;
    shard.chunk_bytes = kChunkBytes;
    shard.blobs = {{"a", kept},
                   {"b", RandomBytes(rng_, Uniform(1, 20000))},
                   {"c", RandomBytes(rng_, 600)}};
    return shard;
  }

  void Save() {
    const int64_t step = next_step_++;
    const auto world_size = static_cast<int32_t>(Uniform(1, 3));
    CommittedModel::Shards shards;
    for (int32_t rank = 0; rank < world_size; ++rank) {
      const ShardBuilder shard = NextShard(rank);
      std::string bytes;
      for (const auto& [name, blob] : shard.blobs) bytes += blob;
      shards.push_back(Sha256(bytes).ToHex());

      auto begun = service_->BeginCheckpoint(kJob, step, world_size, {},
                                             absl::ZeroDuration());
      if (!begun.ok()) return ExpectCut(begun.status(), "begin");
      std::vector<ChunkId> ids;
      std::map<ChunkId, std::string> chunks;
      for (const auto& [name, blob] : shard.blobs) {
        for (absl::string_view chunk : SplitIntoChunks(blob, kChunkBytes)) {
          ids.push_back(Sha256(chunk));
          chunks.emplace(ids.back(), std::string(chunk));
        }
      }
      auto missing = service_->FindMissingChunks(kJob, ids);
      if (!missing.ok()) return ExpectCut(missing.status(), "find missing");
      for (const ChunkId& id : *missing) {
        auto put = service_->PutChunk(kJob, id, chunks.at(id));
        if (!put.ok()) return ExpectCut(put.status(), "put");
      }
      const bool last = rank + 1 == world_size;
      auto committed =
          service_->CommitShard(kJob, step, world_size, shard.Manifest());
      if (!committed.ok()) {
        if (last) {
          model_.CommitUnknown(step, shards);
          ++figures_.commits_failed_by_cut;
        }
        return ExpectCut(committed.status(), "commit");
      }
      EXPECT_EQ(committed->checkpoint_committed, last);
    }
    model_.Acked(step, std::move(shards));
    ++figures_.commits_acked;
  }

  void Delete() {
    auto it = model_.acked().begin();
    std::advance(it, Uniform(0, model_.acked().size() - 1));
    const int64_t step = it->first;
    absl::Status deleted = service_->DeleteCheckpoint(kJob, step);
    if (deleted.ok()) {
      model_.Deleted({step});
    } else {
      model_.DeleteUnknown({step});
      ExpectCut(deleted, "delete");
    }
  }

  void PruneToKeep(int keep) {
    std::vector<int64_t> expected;
    for (const auto& [step, shards] : model_.acked()) expected.push_back(step);
    expected.resize(expected.size() > static_cast<size_t>(keep)
                        ? expected.size() - keep
                        : 0);
    auto decisions = service_->Prune(kJob, server::testing::MaxToKeep(keep),
                                     /*dry_run=*/false);
    if (!decisions.ok()) {
      model_.DeleteUnknown(expected);
      return ExpectCut(decisions.status(), "prune");
    }
    std::vector<int64_t> deleted;
    for (const RetentionDecision& decision : *decisions) {
      if (!decision.keep) deleted.push_back(decision.step);
    }
    EXPECT_EQ(deleted, expected);
    model_.Deleted(deleted);
  }

  std::mt19937_64 rng_;
  const std::string dir_;
  std::shared_ptr<PowerLossFs> fs_;
  std::shared_ptr<rocksdb::Env> env_;
  FakeClock clock_;
  std::unique_ptr<RocksDbStore> store_;
  std::unique_ptr<CheckpointService> service_;
  CommittedModel model_;
  Figures figures_;
  std::map<int32_t, std::string> last_a_;
  int64_t next_step_ = 1;
  uint64_t ops_per_cycle_ = 50;
  uint64_t cycle_us_ = 1000;
};

// Independent stores run side by side: each cut costs about a second of
// RocksDB's back-off (BackgroundCallFlush sleeps 1 s after a failed
// flush), little CPU, so lanes divide the wall time.
constexpr int kLanes = 2;

TEST(PowerLossTest, AcknowledgedCommitsSurviveEveryCut) {
  const ReliabilityFlags& flags = TheFlags();
  const uint64_t seed = flags.seed.value_or(std::random_device()());
  SCOPED_TRACE(absl::StrCat("seed ", seed, " (rerun with --seed=", seed, ")"));
  auto dir = TempDir::Create("ckpt-power-loss");
  ASSERT_TRUE(dir.ok()) << dir.status();
  std::vector<std::unique_ptr<PowerLossRun>> runs;
  std::vector<std::thread> lanes;
  for (int lane = 0; lane < kLanes; ++lane) {
    runs.push_back(std::make_unique<PowerLossRun>(
        seed + lane, absl::StrCat((*dir)->path(), "/db", lane)));
    const int cycles = flags.size / kLanes + (lane < flags.size % kLanes);
    lanes.emplace_back([run = runs.back().get(), cycles, lane] {
      SCOPED_TRACE(absl::StrCat("lane ", lane));
      for (int cycle = 0; cycle < cycles; ++cycle) {
        run->Cycle();
        if (::testing::Test::HasFailure()) return;
      }
      // (After a failure the model already names what is lost.)
      run->Finish();
    });
  }
  for (std::thread& lane : lanes) lane.join();
  Figures figures;
  for (const auto& run : runs) figures.Add(run->figures());
  std::printf("%s\n", figures.Json(seed).c_str());
  EXPECT_EQ(figures.lost, 0);
  EXPECT_EQ(figures.wrong_bytes, 0);
  // The run must have done what it claims: cuts inside calls, commits.
  EXPECT_GT(figures.commits_acked, flags.size / 2);
  EXPECT_GT(figures.checkpoints_checked, flags.size);
}

}  // namespace
}  // namespace ckpt::testing

// gtest's own flags, then --seed=N and --cycles=N.
int main(int argc, char** argv) {
  // Every cut makes the store log errors; the figures are in the JSON line.
  ckpt::SetMinLogLevel(ckpt::LogLevel::kError);
  return ckpt::testing::RunReliabilityProgram(argc, argv, "cycles",
                                              &ckpt::testing::TheFlags());
}
