// CheckpointService::CollectGarbage on the in-memory store (the RocksDB
// store's space reclamation is tested in rocksdb_store_test.cc, and GC on
// the real server in tests/integration/gc_test.cc).
#include <atomic>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/chunking.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/service/checkpoint_service.h"
#include "server/storage/fault_injecting_store.h"
#include "server/storage/memory_store.h"
#include "tests/testing/service_test_util.h"

namespace ckpt::server {
namespace {

using ::ckpt::server::testing::SaveShard;
using ::ckpt::server::testing::ShardBuilder;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using Op = FaultInjectingStore::Op;

constexpr char kJob[] = "team/model";
constexpr absl::Duration kHold = absl::Minutes(5);
// FakeClock's start.
const absl::Time kStart = absl::FromUnixSeconds(1'700'000'000);

ShardBuilder Blobs(std::vector<std::pair<std::string, std::string>> blobs) {
  ShardBuilder builder;
  builder.blobs = std::move(blobs);
  return builder;
}

class GarbageCollectionTest : public ::testing::Test {
 protected:
  GarbageCollectionTest() { service_ = MakeService(); }

  std::unique_ptr<CheckpointService> MakeService() {
    ServiceOptions options;
    options.chunk_hold = kHold;
    return std::make_unique<CheckpointService>(&faults_, &faults_, &clock_,
                                               options);
  }

  absl::StatusOr<CommitResult> Save(const ShardBuilder& builder, int64_t step,
                                    absl::string_view job = kJob) {
    return SaveShard(*service_, builder, step, 1, job);
  }

  GcReport Collect(bool dry_run = false) {
    GcOptions options;
    options.dry_run = dry_run;
    auto report = service_->CollectGarbage(options);
    EXPECT_TRUE(report.ok()) << report.status();
    return report.ok() ? *report : GcReport{};
  }

  uint64_t StoredChunks(absl::string_view tenant = "") {
    auto usage = store_.GetUsage(tenant);
    EXPECT_TRUE(usage.ok()) << usage.status();
    return usage.ok() ? usage->chunk_count : 0;
  }

  // Reads back every chunk of (job, step), verified by the service.
  void ExpectRestorable(int64_t step, absl::string_view job = kJob) {
    SCOPED_TRACE(absl::StrCat(job, "@", step));
    auto checkpoint = service_->GetManifest(job, step);
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
    for (const ShardManifest& shard : checkpoint->shards) {
      for (const ChunkRef& ref : ReferencedChunks(shard)) {
        auto bytes = service_->ReadChunk(job, ref.id);
        ASSERT_TRUE(bytes.ok()) << bytes.status();
      }
    }
  }

  FakeClock clock_;
  MemoryStore store_;
  FaultInjectingStore faults_{&store_, &store_};
  std::unique_ptr<CheckpointService> service_;
};

TEST_F(GarbageCollectionTest, DeletesExactlyTheChunksNoCheckpointReferences) {
  // 8-byte chunks: "shared.." is in both checkpoints, the rest in one each.
  ASSERT_TRUE(Save(Blobs({{"w", "shared..only-1.."}}), 1).ok());
  ASSERT_TRUE(Save(Blobs({{"w", "shared..only-2.."}}), 2).ok());
  clock_.Advance(kHold + absl::Seconds(1));
  ASSERT_EQ(StoredChunks(), 3u);

  GcReport nothing = Collect();
  EXPECT_EQ(nothing.chunks_scanned, 3u);
  EXPECT_EQ(nothing.chunks_referenced, 3u);
  EXPECT_EQ(nothing.chunks_deleted, 0u);
  EXPECT_EQ(StoredChunks(), 3u);

  ASSERT_TRUE(service_->DeleteCheckpoint(kJob, 1).ok());
  GcReport report = Collect();
  EXPECT_FALSE(report.dry_run);
  EXPECT_EQ(report.chunks_scanned, 3u);
  EXPECT_EQ(report.bytes_scanned, 24u);
  EXPECT_EQ(report.chunks_referenced, 2u);
  EXPECT_EQ(report.chunks_deleted, 1u);
  EXPECT_EQ(report.bytes_deleted, 8u);
  EXPECT_THAT(report.damaged, IsEmpty());
  // The memory store frees at once; RocksDB's before/after is tested there.
  EXPECT_EQ(report.disk_bytes_after, 16u);
  EXPECT_EQ(StoredChunks(), 2u);
  auto gone = store_.Contains("team", {Sha256("only-1..")});
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE((*gone)[0]);
  ExpectRestorable(2);

  // Idempotent: a second run finds nothing.
  EXPECT_EQ(Collect().chunks_deleted, 0u);
}

TEST_F(GarbageCollectionTest, DryRunDeletesNothingAndPredictsTheRealRun) {
  ASSERT_TRUE(Save(Blobs({{"w", "aaaaaaaabbbbbbbb"}}), 1).ok());
  ASSERT_TRUE(Save(Blobs({{"w", "aaaaaaaacccccccc"}}), 2).ok());
  ASSERT_TRUE(Save(Blobs({{"w", "dddddddd"}}), 3).ok());
  clock_.Advance(kHold + absl::Seconds(1));
  ASSERT_TRUE(service_->DeleteCheckpoint(kJob, 1).ok());
  ASSERT_TRUE(service_->DeleteCheckpoint(kJob, 3).ok());

  GcReport dry = Collect(/*dry_run=*/true);
  EXPECT_TRUE(dry.dry_run);
  EXPECT_EQ(dry.chunks_deleted, 2u);
  EXPECT_EQ(dry.bytes_deleted, 16u);
  EXPECT_EQ(dry.disk_bytes_after, 0u);
  EXPECT_EQ(StoredChunks(), 4u);

  GcReport real = Collect();
  EXPECT_EQ(real.chunks_deleted, dry.chunks_deleted);
  EXPECT_EQ(real.bytes_deleted, dry.bytes_deleted);
  EXPECT_EQ(StoredChunks(), 2u);
  ExpectRestorable(2);
}

TEST_F(GarbageCollectionTest, PendingShardsKeepTheirChunks) {
  // Rank 0 of a 2-rank checkpoint has committed; rank 1 has not yet.
  ASSERT_TRUE(
      SaveShard(*service_, Blobs({{"w0", "rank-0.."}}), 7, 2, kJob).ok());
  clock_.Advance(kHold + absl::Seconds(1));
  EXPECT_EQ(Collect().chunks_deleted, 0u);

  ShardBuilder rank1 = Blobs({{"w1", "rank-1.."}});
  rank1.rank = 1;
  auto done = SaveShard(*service_, rank1, 7, 2, kJob);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_TRUE(done->checkpoint_committed);
  ExpectRestorable(7);
}

TEST_F(GarbageCollectionTest, UploadedChunksAreHeldUntilTheHoldEnds) {
  ASSERT_TRUE(service_->BeginCheckpoint(kJob, 1, 1, {}, absl::Hours(1)).ok());
  ASSERT_TRUE(service_->PutChunk(kJob, Sha256("uploaded"), "uploaded").ok());
  clock_.Advance(kHold - absl::Seconds(1));
  GcReport held = Collect();
  EXPECT_EQ(held.chunks_held, 1u);
  EXPECT_EQ(held.chunks_deleted, 0u);

  // FindMissingChunks renews the hold: the save is still coming.
  ASSERT_TRUE(service_->FindMissingChunks(kJob, {Sha256("uploaded")}).ok());
  clock_.Advance(kHold - absl::Seconds(1));
  EXPECT_EQ(Collect().chunks_deleted, 0u);

  // Once the hold ends, an unreferenced chunk is garbage, and a commit that
  // still references it is refused rather than committed over a hole.
  clock_.Advance(absl::Seconds(2));
  GcReport swept = Collect();
  EXPECT_EQ(swept.chunks_held, 0u);
  EXPECT_EQ(swept.chunks_deleted, 1u);
  auto commit =
      service_->CommitShard(kJob, 1, 1, Blobs({{"w", "uploaded"}}).Manifest());
  EXPECT_EQ(commit.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(commit.status().message(),
              ::testing::HasSubstr("deleted by garbage collection"));
  // Uploading again (as the client does on this error) commits.
  ASSERT_TRUE(service_->PutChunk(kJob, Sha256("uploaded"), "uploaded").ok());
  ASSERT_TRUE(
      service_->CommitShard(kJob, 1, 1, Blobs({{"w", "uploaded"}}).Manifest())
          .ok());
  ExpectRestorable(1);
}

TEST_F(GarbageCollectionTest, ExplainsWhatItKeepsAndUntilWhen) {
  // Rank 0 of a 2-rank checkpoint (the default lease, 30 minutes) has
  // committed; a save of lab/y has uploaded a chunk it has not committed.
  ASSERT_TRUE(
      SaveShard(*service_, Blobs({{"w0", "rank-0..rank-0b."}}), 7, 2, kJob)
          .ok());
  ASSERT_TRUE(service_->BeginCheckpoint("lab/y", 1, 1, {}, {}).ok());
  clock_.Advance(absl::Minutes(1));
  const absl::Time uploaded = clock_.Now();
  ASSERT_TRUE(service_->PutChunk("lab/y", Sha256("upload.."), "upload..").ok());

  GcReport report = Collect();
  EXPECT_EQ(report.hold, kHold);
  EXPECT_EQ(report.chunks_deleted, 0u);
  EXPECT_EQ(report.chunks_referenced, 2u);
  EXPECT_EQ(report.chunks_held, 1u);
  EXPECT_EQ(report.bytes_held, 8u);
  ASSERT_EQ(report.held.size(), 2u);
  EXPECT_EQ(report.held_group_count, 2u);
  // The most bytes first.
  const HeldChunks& pending = report.held[0];
  EXPECT_EQ(pending.reason, HeldReason::kPendingCheckpoint);
  EXPECT_EQ(pending.tenant, "team");
  EXPECT_EQ(pending.job, kJob);
  EXPECT_EQ(pending.step, 7);
  EXPECT_EQ(pending.chunk_count, 2u);
  EXPECT_EQ(pending.bytes, 16u);
  EXPECT_EQ(pending.until, kStart + absl::Minutes(30));
  const HeldChunks& in_flight = report.held[1];
  EXPECT_EQ(in_flight.reason, HeldReason::kSaveInFlight);
  EXPECT_EQ(in_flight.tenant, "lab");
  EXPECT_EQ(in_flight.job, "");
  EXPECT_EQ(in_flight.chunk_count, 1u);
  EXPECT_EQ(in_flight.until, uploaded + kHold);

  // A pending checkpoint's chunk that a committed one also references is
  // not held by it.
  ASSERT_TRUE(Save(Blobs({{"w", "rank-0.."}}), 1).ok());
  report = Collect(/*dry_run=*/true);
  ASSERT_EQ(report.held.size(), 2u);
  EXPECT_EQ(report.held[1].reason, HeldReason::kPendingCheckpoint)
      << "equal bytes: in reason order";
  EXPECT_EQ(report.held[1].chunk_count, 1u);
  EXPECT_EQ(report.held[1].bytes, 8u);
}

TEST_F(GarbageCollectionTest, AShorterHoldCollectsWhatTheDefaultHolds) {
  ASSERT_TRUE(service_->BeginCheckpoint(kJob, 1, 1, {}, absl::Hours(1)).ok());
  ASSERT_TRUE(service_->PutChunk(kJob, Sha256("uploaded"), "uploaded").ok());
  clock_.Advance(absl::Minutes(2));
  GcOptions three_minutes;
  three_minutes.hold = absl::Minutes(3);
  auto held = service_->CollectGarbage(three_minutes);
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(held->hold, absl::Minutes(3));
  EXPECT_EQ(held->chunks_held, 1u);
  ASSERT_EQ(held->held.size(), 1u);
  EXPECT_EQ(held->held[0].until, kStart + absl::Minutes(3));

  GcOptions none;
  none.hold = absl::ZeroDuration();
  auto swept = service_->CollectGarbage(none);
  ASSERT_TRUE(swept.ok()) << swept.status();
  EXPECT_EQ(swept->chunks_deleted, 1u);
  EXPECT_THAT(swept->held, IsEmpty());
  EXPECT_EQ(StoredChunks(), 0u);
  // The save then fails its commit, and uploads again.
  auto commit =
      service_->CommitShard(kJob, 1, 1, Blobs({{"w", "uploaded"}}).Manifest());
  EXPECT_EQ(commit.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(GarbageCollectionTest, RefusesAHoldOutsideZeroToTheServersHold) {
  ASSERT_TRUE(service_->BeginCheckpoint(kJob, 1, 1, {}, absl::Hours(1)).ok());
  ASSERT_TRUE(service_->PutChunk(kJob, Sha256("uploaded"), "uploaded").ok());
  clock_.Advance(kHold + absl::Seconds(1));  // garbage by now
  for (absl::Duration hold :
       {absl::Seconds(-1), kHold + absl::Seconds(1),
        absl::Seconds(std::numeric_limits<int64_t>::max()),
        absl::Seconds(std::numeric_limits<int64_t>::min())}) {
    GcOptions options;
    options.hold = hold;
    auto refused = service_->CollectGarbage(options);
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument)
        << hold;
    EXPECT_THAT(refused.status().message(),
                ::testing::HasSubstr("hold_seconds must be from 0 to 300"));
    EXPECT_EQ(StoredChunks(), 1u) << "a refused collection deleted chunks";
  }
  GcOptions longest;
  longest.hold = kHold;
  EXPECT_TRUE(service_->CollectGarbage(longest).ok());
}

TEST_F(GarbageCollectionTest, MissingReferencedChunkStopsTheSweepAndIsNamed) {
  ASSERT_TRUE(Save(Blobs({{"w", "keep-me.lost-me."}}), 1).ok());
  ASSERT_TRUE(Save(Blobs({{"w", "lost-me."}}), 2).ok());
  ASSERT_TRUE(Save(Blobs({{"w", "garbage."}}), 3).ok());
  ASSERT_TRUE(Save(Blobs({{"w", "fine...."}}), 1, "team/other").ok());
  ASSERT_TRUE(service_->DeleteCheckpoint(kJob, 3).ok());
  clock_.Advance(kHold + absl::Seconds(1));
  ASSERT_TRUE(store_.Delete("team", Sha256("lost-me.")).ok());  // damage

  GcReport report = Collect();
  EXPECT_EQ(report.chunks_deleted, 0u);
  ASSERT_EQ(report.damaged.size(), 2u);
  EXPECT_EQ(report.damaged[0].job, kJob);
  EXPECT_EQ(report.damaged[0].step, 1);
  EXPECT_EQ(report.damaged[0].state, CheckpointState::kCommitted);
  EXPECT_THAT(report.damaged[0].missing_chunks,
              ElementsAre(Sha256("lost-me.")));
  EXPECT_EQ(report.damaged[1].step, 2);
  auto garbage = store_.Contains("team", {Sha256("garbage.")});
  ASSERT_TRUE(garbage.ok());
  EXPECT_TRUE((*garbage)[0]) << "GC deleted although data was missing";
}

TEST_F(GarbageCollectionTest, RerunAfterAFailureMidSweepFinishesTheJob) {
  std::string big;
  for (int i = 0; i < 600; ++i)
    big += absl::StrCat(10000000 + i);  // 600 chunks
  ASSERT_TRUE(Save(Blobs({{"w", big}}), 1).ok());
  ASSERT_TRUE(Save(Blobs({{"w", "survivor"}}), 2).ok());
  ASSERT_TRUE(service_->DeleteCheckpoint(kJob, 1).ok());
  clock_.Advance(kHold + absl::Seconds(1));

  // The "crash": the 301st delete fails, in the sweep's second batch.
  faults_.FailAfter(Op::kDelete, 300, absl::UnavailableError("disk gone"));
  auto failed = service_->CollectGarbage({});
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(StoredChunks(), 601u - 300u);
  ExpectRestorable(2);

  GcReport rerun = Collect();
  EXPECT_EQ(rerun.chunks_deleted, 300u);
  EXPECT_EQ(StoredChunks(), 1u);
  ExpectRestorable(2);
}

TEST_F(GarbageCollectionTest,
       TenantsWithPendingCheckpointsFromBeforeStartWait) {
  ASSERT_TRUE(service_->BeginCheckpoint(kJob, 9, 1, {}, absl::Hours(1)).ok());
  ASSERT_TRUE(service_->PutChunk(kJob, Sha256("inflight"), "inflight").ok());
  ASSERT_TRUE(Save(Blobs({{"w", "other..."}}), 1, "lab/x").ok());
  ASSERT_TRUE(service_->DeleteCheckpoint("lab/x", 1).ok());

  // A restart forgets which chunks step 9's uploads were.
  clock_.Advance(absl::Minutes(1));
  service_ = MakeService();
  GcReport report = Collect();
  ASSERT_EQ(report.skipped_tenants.size(), 1u);
  EXPECT_EQ(report.skipped_tenants[0].first, "team");
  EXPECT_EQ(report.chunks_deleted, 1u);  // lab's garbage only
  EXPECT_EQ(StoredChunks("team"), 1u);
  EXPECT_EQ(StoredChunks("lab"), 0u);
  // The chunk kept is explained: until step 9's lease ends.
  EXPECT_EQ(report.chunks_held, 1u);
  EXPECT_EQ(report.bytes_held, 8u);
  ASSERT_EQ(report.held.size(), 1u);
  EXPECT_EQ(report.held[0].reason, HeldReason::kTenantSkipped);
  EXPECT_EQ(report.held[0].tenant, "team");
  EXPECT_EQ(report.held[0].job, kJob);
  EXPECT_EQ(report.held[0].step, 9);
  EXPECT_EQ(report.held[0].chunk_count, 1u);
  EXPECT_EQ(report.held[0].until, kStart + absl::Hours(1));

  auto commit =
      service_->CommitShard(kJob, 9, 1, Blobs({{"w", "inflight"}}).Manifest());
  ASSERT_TRUE(commit.ok()) << commit.status();
  ExpectRestorable(9);
}

// Writers save checkpoints that dedup against earlier ones while retention
// deletes those and GC runs in a loop, with no hold at all so every race
// between a sweep and a commit is live. Every acknowledged commit that
// retention keeps must stay whole.
TEST_F(GarbageCollectionTest, ConcurrentSavesPrunesAndCollectionsLoseNothing) {
  ServiceOptions options;
  options.chunk_hold = absl::ZeroDuration();
  CheckpointService service(&faults_, &faults_, &clock_, options);
  constexpr int kWriters = 3;
  constexpr int kSteps = 150;
  RetentionPolicy policy;
  policy.max_to_keep = 2;

  std::atomic<bool> done{false};
  std::atomic<int> collections{0};
  std::thread collector([&] {
    while (!done.load()) {
      auto report = service.CollectGarbage({});
      EXPECT_TRUE(report.ok()) << report.status();
      if (report.ok()) {
        EXPECT_THAT(report->damaged, IsEmpty());
      }
      collections.fetch_add(1);
    }
  });
  std::atomic<int> refusals{0};
  std::vector<std::thread> writers;
  writers.reserve(kWriters);
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      const std::string job = absl::StrCat("team/writer", w);
      // Writers must overlap collections, however the threads are
      // scheduled: they start after the first and, halfway, wait for more.
      auto wait_for_collections = [&](int count) {
        while (collections.load() < count) std::this_thread::yield();
      };
      wait_for_collections(1);
      for (int step = 1; step <= kSteps; ++step) {
        if (step == kSteps / 2) wait_for_collections(3);
        // Mostly the same bytes as the step before (dedup), one new chunk.
        const std::string bytes =
            absl::StrCat("base", w, "...", "stable..", "step", 1000 + step);
        const ShardBuilder builder = Blobs({{"w", bytes}});
        ASSERT_TRUE(
            service
                .BeginCheckpoint(job, step, 1, {}, absl::ZeroDuration(), policy)
                .ok());
        // As the client: ask what is missing, upload that, commit; on
        // FAILED_PRECONDITION (a sweep took a chunk), upload again. With no
        // hold, a collector spinning in a loop can take a new checkpoint's
        // chunks before every commit for a while (a refusal, never a loss):
        // this asserts safety, so it retries as long as that lasts.
        std::vector<ChunkId> ids;
        std::map<ChunkId, std::string> chunks;
        for (absl::string_view chunk : SplitIntoChunks(bytes, 8)) {
          ids.push_back(Sha256(chunk));
          chunks[Sha256(chunk)] = std::string(chunk);
        }
        absl::StatusOr<CommitResult> commit;
        for (int attempt = 0; attempt < 10000; ++attempt) {
          auto missing = service.FindMissingChunks(job, ids);
          ASSERT_TRUE(missing.ok()) << missing.status();
          for (const ChunkId& id : *missing) {
            ASSERT_TRUE(service.PutChunk(job, id, chunks[id]).ok());
          }
          commit = service.CommitShard(job, step, 1, builder.Manifest());
          if (!absl::IsFailedPrecondition(commit.status())) break;
          refusals.fetch_add(1);
          std::this_thread::yield();
        }
        ASSERT_TRUE(commit.ok()) << commit.status();
        // Acknowledged (and newest, so retention keeps it): it must read
        // back whole now, whatever the collector is doing.
        auto checkpoint = service.GetManifest(job, step);
        ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
        for (const ChunkRef& ref : ReferencedChunks(checkpoint->shards[0])) {
          auto read = service.ReadChunk(job, ref.id);
          ASSERT_TRUE(read.ok()) << job << "@" << step << ": " << read.status();
        }
      }
    });
  }
  for (auto& writer : writers) writer.join();
  done.store(true);
  collector.join();

  // What retention kept is whole, and GC leaves exactly its chunks.
  auto final_report = service.CollectGarbage({});
  ASSERT_TRUE(final_report.ok());
  EXPECT_THAT(final_report->damaged, IsEmpty());
  for (int w = 0; w < kWriters; ++w) {
    const std::string job = absl::StrCat("team/writer", w);
    auto records = service.ListCheckpoints(job, false);
    ASSERT_TRUE(records.ok());
    ASSERT_EQ(records->size(), 2u);
    for (const auto& record : *records) {
      auto checkpoint = service.GetManifest(job, record.step);
      ASSERT_TRUE(checkpoint.ok());
      for (const ChunkRef& ref : ReferencedChunks(checkpoint->shards[0])) {
        EXPECT_TRUE(service.ReadChunk(job, ref.id).ok());
      }
    }
  }
  EXPECT_EQ(final_report->chunks_referenced, StoredChunks());
  RecordProperty("refused_commits", refusals.load());
}

}  // namespace
}  // namespace ckpt::server
