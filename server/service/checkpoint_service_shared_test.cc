// CheckpointService on stores shared by several servers: two services, each
// with its own connection to one real Ceph pool (two "servers"), commit
// ranks of one checkpoint, check layouts, and collect garbage against each
// other. Run under tests/ceph/ceph_cluster.py --run (ckpt_ceph_test).
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/service/checkpoint_service.h"
#include "server/storage/rados_chunk_store.h"
#include "server/storage/rados_cluster.h"
#include "server/storage/rados_metadata_store.h"
#include "tests/testing/ceph_env.h"
#include "tests/testing/service_test_util.h"

namespace ckpt::server {
namespace {

using ::ckpt::server::testing::CephOptionsFromEnv;
using ::ckpt::server::testing::MaxToKeep;
using ::ckpt::server::testing::SaveShard;
using ::ckpt::server::testing::ShardBuilder;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// One ckpt-server's view of the shared pool.
struct Server {
  Server(Clock* clock, const ServiceOptions& options,
         absl::Duration lock_lease) {
    auto connected = RadosCluster::Connect(CephOptionsFromEnv());
    EXPECT_TRUE(connected.ok()) << connected.status();
    if (!connected.ok()) return;
    cluster = *std::move(connected);
    chunks = std::make_unique<RadosChunkStore>(cluster.get(), clock);
    RadosMetadataStore::Options metadata_options;
    metadata_options.clock = clock;
    metadata_options.lock_lease = lock_lease;
    metadata_options.lock_wait = lock_lease + absl::Seconds(2);
    metadata =
        std::make_unique<RadosMetadataStore>(cluster.get(), metadata_options);
    service = std::make_unique<CheckpointService>(chunks.get(), metadata.get(),
                                                  clock, options);
  }
  std::unique_ptr<RadosCluster> cluster;
  std::unique_ptr<RadosChunkStore> chunks;
  std::unique_ptr<RadosMetadataStore> metadata;
  std::unique_ptr<CheckpointService> service;
};

class SharedStoreServiceTest : public ::testing::Test {
 protected:
  // Each case its own tenant: the pool is shared by the whole binary.
  std::string Job() const {
    return absl::StrCat(
        ::testing::UnitTest::GetInstance()->current_test_info()->name(),
        "/model");
  }
  static ServiceOptions Options() {
    ServiceOptions options;
    options.default_lease = absl::Minutes(10);
    return options;
  }

  FakeClock clock_;
  Server a_{&clock_, Options(), absl::Seconds(15)};
  Server b_{&clock_, Options(), absl::Seconds(15)};
};

TEST_F(SharedStoreServiceTest,
       RanksCommittedThroughTwoServersFormOneCheckpoint) {
  ASSERT_NE(a_.service, nullptr);
  ASSERT_NE(b_.service, nullptr);
  const std::string job = Job();
  auto rank0 =
      SaveShard(*a_.service, ShardBuilder{0, {{"w0", "rank zero"}}}, 1, 2, job);
  ASSERT_TRUE(rank0.ok()) << rank0.status();
  EXPECT_FALSE(rank0->checkpoint_committed);
  // Neither server lists it as committed while a rank is missing.
  for (Server* server : {&a_, &b_}) {
    auto listed = server->service->ListCheckpoints(job, false);
    ASSERT_TRUE(listed.ok()) << listed.status();
    EXPECT_TRUE(listed->empty());
  }
  auto rank1 = SaveShard(*b_.service, ShardBuilder{1, {{"w1", "rank one"}}, 64},
                         1, 2, job);
  ASSERT_TRUE(rank1.ok()) << rank1.status();
  EXPECT_TRUE(rank1->checkpoint_committed);
  EXPECT_THAT(rank1->record.committed_ranks, ElementsAre(0, 1));
  // The first server serves it whole, bytes included.
  auto manifest = a_.service->GetManifest(job, 1);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  ASSERT_EQ(manifest->shards.size(), 2u);
  const ChunkRef& piece = manifest->shards[1].tensors[0].pieces[0];
  auto bytes = a_.service->ReadChunk(job, piece.id);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(*bytes, "rank one");
}

TEST_F(SharedStoreServiceTest, LayoutCheckSeesRanksCommittedElsewhere) {
  ASSERT_NE(a_.service, nullptr);
  const std::string job = Job();
  // One sharded tensor of 12 bytes over 3 ranks, 4 bytes each.
  auto shard = [](int32_t rank, int64_t begin) {
    ShardManifest manifest;
    manifest.rank = rank;
    TensorEntry tensor;
    tensor.name = "t";
    tensor.dtype = DType::kUint8;
    tensor.global_shape = {12};
    tensor.box = Box{{begin}, {4}};
    tensor.pieces.push_back(ChunkRef{Sha256("abcd"), 4});
    manifest.tensors.push_back(tensor);
    return manifest;
  };
  for (Server* server : {&a_, &b_}) {
    ASSERT_TRUE(server->service
                    ->BeginCheckpoint(job, 7, 3, {}, absl::ZeroDuration(),
                                      std::nullopt, {}, {})
                    .ok());
  }
  ASSERT_TRUE(b_.service->PutChunk(job, Sha256("abcd"), "abcd").ok());
  // B learns the layout with rank 0, then A commits rank 1 behind its back.
  ASSERT_TRUE(b_.service->CommitShard(job, 7, 3, shard(0, 0)).ok());
  ASSERT_TRUE(a_.service->CommitShard(job, 7, 3, shard(1, 4)).ok());
  // Rank 2 overlapping rank 1's box must be refused by B.
  auto overlapping = b_.service->CommitShard(job, 7, 3, shard(2, 4));
  EXPECT_TRUE(absl::IsInvalidArgument(overlapping.status()))
      << overlapping.status();
  auto fitting = b_.service->CommitShard(job, 7, 3, shard(2, 8));
  ASSERT_TRUE(fitting.ok()) << fitting.status();
  EXPECT_TRUE(fitting->checkpoint_committed);
}

TEST_F(SharedStoreServiceTest, ASecondServerCannotCollectAtTheSameTime) {
  ASSERT_NE(a_.metadata, nullptr);
  auto held = a_.metadata->LockCollection();
  ASSERT_TRUE(held.ok()) << held.status();
  auto report = b_.service->CollectGarbage({});
  EXPECT_TRUE(absl::IsFailedPrecondition(report.status())) << report.status();
  EXPECT_THAT(report.status().message(), HasSubstr("client."));
  held->reset();
  auto after = b_.service->CollectGarbage({});
  EXPECT_TRUE(after.ok()) << after.status();
}

TEST_F(SharedStoreServiceTest, AUseRecordedByOneServerHoldsAChunkOnAnother) {
  ASSERT_NE(a_.service, nullptr);
  const std::string job = Job();
  ASSERT_TRUE(SaveShard(*a_.service, ShardBuilder{0, {{"w", "old bytes"}}, 64},
                        1, 1, job)
                  .ok());
  ASSERT_TRUE(a_.service->DeleteCheckpoint(job, 1).ok());
  const std::vector<ChunkId> ids = {Sha256("old bytes")};
  clock_.Advance(absl::Hours(2));
  // A save on B is about to reuse the unreferenced chunk.
  auto missing = b_.service->FindMissingChunks(job, ids);
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_TRUE(missing->empty());
  GcOptions no_hold;
  no_hold.hold = absl::ZeroDuration();
  auto report = a_.service->CollectGarbage(no_hold);
  ASSERT_TRUE(report.ok()) << report.status();
  auto still = a_.chunks->Contains(absl::StrCat(TenantOf(job)), ids);
  ASSERT_TRUE(still.ok());
  EXPECT_TRUE((*still)[0]) << "a chunk B's save named was swept by A";
  // Once the use is older than the shared minimum hold, it goes.
  clock_.Advance(Options().shared_min_hold + absl::Seconds(1));
  report = a_.service->CollectGarbage(no_hold);
  ASSERT_TRUE(report.ok()) << report.status();
  still = a_.chunks->Contains(absl::StrCat(TenantOf(job)), ids);
  ASSERT_TRUE(still.ok());
  EXPECT_FALSE((*still)[0]);
  EXPECT_GE(report->chunks_deleted, 1u);
}

// Writers on B dedup against checkpoints that retention deletes, while A
// collects with no hold in a loop, on the real clock with a short lease and
// minimum hold: no acknowledged checkpoint ever misses a chunk.
TEST(SharedStoreGcRaceTest, NoAcknowledgedCheckpointIsLostToAnotherServersGc) {
  ServiceOptions options;
  options.default_lease = absl::Minutes(10);
  options.shared_min_hold = absl::Seconds(2);
  Server a(RealClock::Get(), options, absl::Seconds(1));
  Server b(RealClock::Get(), options, absl::Seconds(1));
  ASSERT_NE(a.service, nullptr);
  ASSERT_NE(b.service, nullptr);
  const std::string job = "gcrace/model";
  ASSERT_TRUE(b.service->SetRetentionPolicy(job, MaxToKeep(1)).ok());
  std::atomic<bool> stop{false};
  std::atomic<int> collections{0};
  std::atomic<uint64_t> deleted{0};
  std::thread collector([&] {
    GcOptions no_hold;
    no_hold.hold = absl::ZeroDuration();
    while (!stop.load()) {
      auto report = a.service->CollectGarbage(no_hold);
      EXPECT_TRUE(report.ok()) << report.status();
      if (report.ok()) deleted += report->chunks_deleted;
      ++collections;
      absl::SleepFor(absl::Milliseconds(20));
    }
  });
  std::vector<int64_t> acknowledged;
  const absl::Time end = absl::Now() + absl::Seconds(12);
  for (int64_t step = 1; absl::Now() < end; ++step) {
    // Seven contents in turn, a save every ~0.3 s: each save reuses chunks
    // that retention made unreferenced ~2.1 s before, about when the
    // minimum hold (2 s) lets the collector delete them.
    const std::string bytes = absl::StrCat("content-", step % 7, "-padding");
    absl::StatusOr<CommitResult> saved;
    for (int attempt = 0; attempt < 20; ++attempt) {
      saved = SaveShard(*b.service, ShardBuilder{0, {{"w", bytes}}, 4}, step, 1,
                        job);
      if (!absl::IsFailedPrecondition(saved.status())) break;
    }
    ASSERT_TRUE(saved.ok()) << saved.status();
    acknowledged.push_back(step);
    auto manifest = b.service->GetManifest(job, step);
    ASSERT_TRUE(manifest.ok()) << manifest.status();
    for (const ChunkRef& piece : manifest->shards[0].tensors[0].pieces) {
      auto chunk = a.service->ReadChunk(job, piece.id);
      ASSERT_TRUE(chunk.ok()) << "step " << step << ": " << chunk.status();
    }
    absl::SleepFor(absl::Milliseconds(300));
  }
  stop = true;
  collector.join();
  EXPECT_GE(collections.load(), 2);
  EXPECT_GT(deleted.load(), 0u) << "the collections never deleted anything: "
                                   "the race was not exercised";
  EXPECT_GE(acknowledged.size(), 5u);
}

// The lease reaper must not wait on the lock of a job whose pending
// checkpoint's lease is still running: another server may be writing that
// job, or have died holding its lock, and every pass of every server's
// reaper would wait up to a lock lease for it.
TEST_F(SharedStoreServiceTest, LeaseReaperSkipsUnexpiredLeasesWithoutLocking) {
  ASSERT_NE(a_.service, nullptr);
  ASSERT_NE(b_.service, nullptr);
  const std::string job = Job();
  auto rank0 =
      SaveShard(*a_.service, ShardBuilder{0, {{"w0", "rank zero"}}}, 1, 2, job);
  ASSERT_TRUE(rank0.ok()) << rank0.status();
  {
    auto held = b_.metadata->LockJob(job);  // b_ mid-write, or dead
    ASSERT_TRUE(held.ok()) << held.status();
    const absl::Time start = absl::Now();
    auto reaped = a_.service->ExpireLeases();
    EXPECT_TRUE(reaped.ok()) << reaped.status();
    EXPECT_LT(absl::Now() - start, absl::Seconds(5))
        << "the reaper waited for the lock of a job with a running lease";
  }
  // Once the lease has run out, the reaper still aborts it.
  clock_.Advance(Options().default_lease + absl::Minutes(1));
  auto reaped = a_.service->ExpireLeases();
  ASSERT_TRUE(reaped.ok()) << reaped.status();
  auto listed = b_.service->ListCheckpoints(job, true);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].state, CheckpointState::kAborted);
}

}  // namespace
}  // namespace ckpt::server
