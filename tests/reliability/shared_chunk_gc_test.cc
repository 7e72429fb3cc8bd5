// T7/T10 (tests/reliability/README.md): retention (max_to_keep=2) and
// garbage collection in a loop while jobs A and B of one tenant save
// checkpoints that deduplicate against a pool of chunks the jobs share, and
// A's writer also deletes and prunes A's checkpoints. The service runs
// in-process over a real RocksDB store with a fake clock (the hold on
// chunks a save named is time), so a few hundred collections take seconds.
//
// After every collection the checker asserts that
// - every chunk referenced by a committed manifest is stored;
// - every chunk an open save named (FindMissingChunks, PutChunks) within
//   the hold window is stored;
// - job B's listing is what B's own saves and retention made it, and a
//   frozen job F (same tenant, the same shared chunks) keeps its listing
//   and restores byte for byte: nothing done to A removes what others need;
// and every save acknowledged OK restores byte for byte (right after its
// commit, and every kept one at the end).
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/chunking.h"
#include "common/clock.h"
#include "common/manifest.h"
#include "common/sha256.h"
#include "gtest/gtest.h"
#include "server/service/checkpoint_service.h"
#include "server/storage/rocksdb_store.h"
#include "tests/reliability/reliability_run.h"
#include "tests/testing/service_test_util.h"
#include "tests/testing/temp_dir.h"

namespace ckpt::server {
namespace {

using ::ckpt::server::testing::ShardBuilder;
using ::ckpt::testing::PrintSummary;
using ::ckpt::testing::RunCount;
using ::ckpt::testing::RunSeed;
using ::ckpt::testing::TempDir;

constexpr char kTenant[] = "rel";
constexpr char kJobA[] = "rel/a";
constexpr char kJobB[] = "rel/b";
constexpr char kFrozen[] = "rel/frozen";
constexpr size_t kChunk = 4096;
constexpr int kPool = 24;
constexpr absl::Duration kHold = absl::Hours(1);
// Each save moves the fake clock on, so chunks of pruned checkpoints age
// past the hold and are collected while the run goes on.
constexpr absl::Duration kTick = absl::Minutes(1);

// What every save of a job must restore to: (job, step) -> bytes.
using Model = std::map<std::pair<std::string, int64_t>, std::string>;

class SharedChunkGcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::Create("ckpt-rel-gc");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *std::move(dir);
    auto store = RocksDbStore::Open(dir_->path() + "/db");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    ServiceOptions options;
    options.chunk_hold = kHold;
    service_ = std::make_unique<CheckpointService>(store_.get(), store_.get(),
                                                   &clock_, options);
  }

  // A state of `chunks` pool chunks (the jobs share them) and 2 new ones.
  std::string MakeState(std::mt19937_64& rng, int chunks) {
    std::string state;
    for (int i = 0; i < chunks; ++i) {
      state += pool_[std::uniform_int_distribution<int>(0, kPool - 1)(rng)];
    }
    for (int i = 0; i < 2; ++i) state += RandomChunk(rng);
    return state;
  }

  static std::string RandomChunk(std::mt19937_64& rng) {
    std::string bytes(kChunk, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    return bytes;
  }

  // Reads (job, step) back and compares it with `want`; "" when equal,
  // else what differs.
  std::string Restore(const std::string& job, int64_t step,
                      const std::string& want) {
    auto checkpoint = service_->GetManifest(job, step);
    if (!checkpoint.ok()) return checkpoint.status().ToString();
    std::string bytes;
    for (const ChunkRef& ref : checkpoint->shards.at(0).tensors.at(0).pieces) {
      auto chunk = service_->ReadChunk(job, ref.id);
      if (!chunk.ok()) return chunk.status().ToString();
      bytes += *chunk;
    }
    return bytes == want ? "" : "restored bytes differ";
  }

  // The chunks open saves named, each with when it was named (the clock
  // before the naming call: the server's hold starts no earlier).
  void Named(absl::Span<const ChunkId> ids, absl::Time when, int writer) {
    absl::MutexLock lock(&mu_);
    for (const ChunkId& id : ids) open_[writer][id] = when;
  }
  void Closed(int writer) {
    absl::MutexLock lock(&mu_);
    open_[writer].clear();
  }

  // One save as the client makes it: begin (with the writer's policy), ask
  // what is missing, upload that, commit; a commit refused because a chunk
  // went missing (only when a save outlives the hold) uploads again.
  absl::Status Save(int writer, const std::string& job, int64_t step,
                    const std::string& state, int* refusals) {
    RetentionPolicy policy;
    policy.max_to_keep = 2;
    ShardBuilder builder;
    builder.chunk_bytes = kChunk;
    builder.blobs = {{"w", state}};
    auto begun = service_->BeginCheckpoint(job, step, 1, {},
                                           absl::ZeroDuration(), policy);
    if (!begun.ok()) return begun.status();
    std::vector<ChunkId> ids;
    std::map<ChunkId, std::string> chunks;
    for (absl::string_view chunk : SplitIntoChunks(state, kChunk)) {
      ids.push_back(Sha256(chunk));
      chunks[ids.back()] = std::string(chunk);
    }
    for (int attempt = 0; attempt < 100; ++attempt) {
      const absl::Time asked = clock_.Now();
      auto missing = service_->FindMissingChunks(job, ids);
      if (!missing.ok()) return missing.status();
      std::set<ChunkId> absent(missing->begin(), missing->end());
      std::vector<ChunkId> present;
      for (const ChunkId& id : ids) {
        if (absent.count(id) == 0) present.push_back(id);
      }
      Named(present, asked, writer);
      for (const ChunkId& id : absent) {
        const absl::Time put_at = clock_.Now();
        auto put = service_->PutChunk(job, id, chunks[id]);
        if (!put.ok()) return put.status();
        Named({id}, put_at, writer);
      }
      absl::StatusOr<CommitResult> commit;
      {
        // B's commit and the model of B's listing change together, so the
        // checker never sees one without the other.
        absl::MutexLock lock(&b_mu_);
        commit = service_->CommitShard(job, step, 1, builder.Manifest());
        if (commit.ok() && job == kJobB) {
          b_listing_.push_back(step);
          if (b_listing_.size() > 2) b_listing_.erase(b_listing_.begin());
        }
      }
      if (absl::IsFailedPrecondition(commit.status())) {
        ++*refusals;
        continue;
      }
      Closed(writer);
      return commit.status();
    }
    return absl::DeadlineExceededError("commit refused 100 times");
  }

  // The checks after one collection; failures name the round.
  void CheckInvariants(int round, const Model& frozen) {
    SCOPED_TRACE(absl::StrCat("after collection ", round));
    // Committed manifests' chunks are stored.
    for (const char* job : {kJobA, kJobB, kFrozen}) {
      auto listed = service_->ListCheckpoints(job, false);
      if (absl::IsNotFound(listed.status())) continue;  // not begun yet
      ASSERT_TRUE(listed.ok()) << listed.status();
      for (const CheckpointRecord& record : *listed) {
        auto checkpoint = service_->GetManifest(job, record.step);
        if (absl::IsNotFound(checkpoint.status())) continue;  // pruned since
        ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
        std::vector<ChunkId> ids;
        for (const ChunkRef& ref : ReferencedChunks(checkpoint->shards.at(0))) {
          ids.push_back(ref.id);
        }
        auto stored = store_->Contains(kTenant, ids);
        ASSERT_TRUE(stored.ok()) << stored.status();
        for (size_t i = 0; i < ids.size(); ++i) {
          EXPECT_TRUE((*stored)[i])
              << job << "@" << record.step << " references chunk "
              << ids[i].ShortHex() << ", which is not stored";
          violations_ += (*stored)[i] ? 0 : 1;
        }
      }
    }
    // Chunks open saves named within the hold are stored.
    std::vector<ChunkId> held;
    {
      const absl::Time now = clock_.Now();
      absl::MutexLock lock(&mu_);
      for (const auto& [writer, named] : open_) {
        for (const auto& [id, when] : named) {
          if (when + kHold > now) held.push_back(id);
        }
      }
    }
    auto stored = store_->Contains(kTenant, held);
    ASSERT_TRUE(stored.ok()) << stored.status();
    for (size_t i = 0; i < held.size(); ++i) {
      EXPECT_TRUE((*stored)[i]) << "chunk " << held[i].ShortHex()
                                << " named by an open save is not stored";
      violations_ += (*stored)[i] ? 0 : 1;
    }
    // B's listing is B's own doing; F's is untouched and restores.
    {
      absl::MutexLock lock(&b_mu_);
      auto listed = service_->ListCheckpoints(kJobB, false);
      std::vector<int64_t> steps;
      if (!absl::IsNotFound(listed.status())) {
        ASSERT_TRUE(listed.ok()) << listed.status();
        for (const CheckpointRecord& record : *listed) {
          steps.push_back(record.step);
        }
      }
      EXPECT_EQ(steps, b_listing_) << "job B's listing changed";
    }
    auto listed = service_->ListCheckpoints(kFrozen, false);
    ASSERT_TRUE(listed.ok()) << listed.status();
    ASSERT_EQ(listed->size(), frozen.size()) << "job F's listing changed";
    for (const auto& [key, bytes] : frozen) {
      EXPECT_EQ(Restore(key.first, key.second, bytes), "");
    }
  }

  std::unique_ptr<TempDir> dir_;
  FakeClock clock_;
  std::unique_ptr<RocksDbStore> store_;
  std::unique_ptr<CheckpointService> service_;
  std::vector<std::string> pool_;
  absl::Mutex mu_;
  std::map<int, std::map<ChunkId, absl::Time>> open_ ABSL_GUARDED_BY(mu_);
  absl::Mutex b_mu_;
  std::vector<int64_t> b_listing_ ABSL_GUARDED_BY(b_mu_);
  std::atomic<int> violations_{0};
};

TEST_F(SharedChunkGcTest, NothingDoneToOneJobRemovesAChunkAnotherNeeds) {
  const uint64_t seed = RunSeed();
  const int rounds = RunCount("CKPT_ROUNDS", 150);
  SCOPED_TRACE(absl::StrCat("CKPT_SEED=", seed, " CKPT_ROUNDS=", rounds));
  std::mt19937_64 rng(seed);
  for (int i = 0; i < kPool; ++i) pool_.push_back(RandomChunk(rng));

  // F: three checkpoints over the shared pool, no retention policy.
  Model frozen;
  int refusals = 0;
  for (int64_t step = 1; step <= 3; ++step) {
    const std::string state = MakeState(rng, 8);
    ShardBuilder builder;
    builder.chunk_bytes = kChunk;
    builder.blobs = {{"w", state}};
    ASSERT_TRUE(testing::SaveShard(*service_, builder, step, 1, kFrozen).ok());
    frozen[{kFrozen, step}] = state;
  }

  std::atomic<int> collections{0};
  std::atomic<int> running{2};
  std::atomic<int> deleted_chunks{0};
  std::atomic<int> a_deletes{0};
  std::atomic<int> a_prunes{0};
  Model acknowledged;  // written by the writers under model_mu
  absl::Mutex model_mu;
  std::vector<std::thread> writers;
  std::atomic<int> saves{0};
  for (int writer = 0; writer < 2; ++writer) {
    const uint64_t writer_seed = rng();
    writers.emplace_back([&, writer, writer_seed] {
      absl::Cleanup finished = [&] { running.fetch_sub(1); };
      std::mt19937_64 wrng(writer_seed);
      const std::string job = writer == 0 ? kJobA : kJobB;
      int local_refusals = 0;
      // Saves go on until the collector has run its rounds.
      for (int64_t step = 1; collections.load() < rounds || step <= 20;
           ++step) {
        const std::string state = MakeState(wrng, 6);
        absl::Status saved = Save(writer, job, step, state, &local_refusals);
        ASSERT_TRUE(saved.ok()) << job << "@" << step << ": " << saved;
        saves.fetch_add(1);
        {
          absl::MutexLock lock(&model_mu);
          acknowledged[{job, step}] = state;
        }
        // Acknowledged and newest, so retention keeps it: it restores now.
        ASSERT_EQ(Restore(job, step, state), "") << job << "@" << step;
        clock_.Advance(kTick);
        if (writer != 0) continue;
        // Operations on A alone: delete its older kept checkpoint, or prune
        // it to one.
        const int op = std::uniform_int_distribution<int>(0, 9)(wrng);
        if (op == 0 && step > 1) {
          absl::Status deleted = service_->DeleteCheckpoint(kJobA, step - 1);
          ASSERT_TRUE(deleted.ok() || absl::IsNotFound(deleted)) << deleted;
          if (deleted.ok()) a_deletes.fetch_add(1);
        } else if (op == 1) {
          RetentionPolicy one;
          one.max_to_keep = 1;
          auto pruned = service_->Prune(kJobA, one, false);
          ASSERT_TRUE(pruned.ok()) << pruned.status();
          a_prunes.fetch_add(1);
        }
      }
      absl::MutexLock lock(&model_mu);
      refusals += local_refusals;
    });
  }
  const absl::Time start = absl::Now();
  while (collections.load() < rounds || running.load() > 0) {
    auto report = service_->CollectGarbage({});
    if (!report.ok()) {
      // Not ASSERT: the writers must be stopped and joined first.
      ADD_FAILURE() << "collection " << collections.load() + 1 << ": "
                    << report.status();
      collections.store(rounds);
      break;
    }
    EXPECT_TRUE(report->damaged.empty());
    deleted_chunks.fetch_add(static_cast<int>(report->chunks_deleted));
    const int round = collections.fetch_add(1) + 1;
    CheckInvariants(round, frozen);
    if (HasFatalFailure() || violations_.load() > 0) {
      collections.store(rounds);  // stops the writers
      break;
    }
  }
  for (auto& writer : writers) writer.join();
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(violations_.load(), 0);
  // Collections must have deleted garbage, or they proved nothing.
  EXPECT_GT(deleted_chunks.load(), 0);

  // Every kept checkpoint of A and B restores as it was acknowledged; B and
  // F keep exactly what their own retention keeps.
  auto final_report = service_->CollectGarbage({});
  ASSERT_TRUE(final_report.ok()) << final_report.status();
  int kept = 0;
  for (const char* job : {kJobA, kJobB, kFrozen}) {
    auto listed = service_->ListCheckpoints(job, false);
    ASSERT_TRUE(listed.ok()) << listed.status();
    for (const CheckpointRecord& record : *listed) {
      const auto key = std::make_pair(std::string(job), record.step);
      const std::string& want =
          job == std::string(kFrozen) ? frozen[key] : acknowledged[key];
      EXPECT_EQ(Restore(job, record.step, want), "")
          << job << "@" << record.step;
      ++kept;
    }
  }
  PrintSummary(absl::StrCat(
      R"({"test":"T7/T10 shared-chunk GC","seed":)", seed, R"(,"gc_rounds":)",
      collections.load(), R"(,"saves":)", saves.load(), R"(,"a_deletes":)",
      a_deletes.load(), R"(,"a_prunes":)", a_prunes.load(),
      R"(,"chunks_deleted":)", deleted_chunks.load(), R"(,"commit_refusals":)",
      refusals, R"(,"violations":)", violations_.load(),
      R"(,"kept_checkpoints_restored":)", kept, R"(,"seconds":)",
      absl::ToDoubleSeconds(absl::Now() - start), "}"));
}

}  // namespace
}  // namespace ckpt::server
