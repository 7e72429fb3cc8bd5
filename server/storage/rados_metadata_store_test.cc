// RadosMetadataStore's cluster-wide behaviour against a real single-host
// Ceph cluster (run under tests/ceph/ceph_cluster.py --run): two stores on
// two connections stand for two servers. Locks exclude and are taken over
// after a crash, a stale holder's write is fenced off, the collection lock
// is renewed, corrupt omap bytes are DATA_LOSS; plus the latency figures.
// (The MetadataStore contract itself: storage_conformance_test.)
#include "server/storage/rados_metadata_store.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <list>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/wire_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/storage/rados_io.h"
#include "server/storage/rados_lock.h"
#include "server/storage/rados_metadata_omap.h"
#include "tests/testing/rados_metadata_env.h"
#include "tests/testing/store_test_util.h"

namespace ckpt::server {
namespace {

using ::ckpt::server::testing::ConnectRadosMetadata;
using ::ckpt::server::testing::MakeEvent;
using ::ckpt::server::testing::MakeJob;
using ::ckpt::server::testing::MakeRecord;
using ::ckpt::server::testing::MakeShard;
using ::ckpt::server::testing::RadosMetadataServer;
using ::ckpt::server::testing::UniqueMetaNamespace;
using ::testing::HasSubstr;

RadosMetadataStore::Options Leased(absl::Duration lease, absl::Duration wait) {
  RadosMetadataStore::Options options;
  options.lock_lease = lease;
  options.lock_wait = wait;
  return options;
}

MetadataBatch PutJobBatch(absl::string_view job, int64_t seconds) {
  JobRecord record = MakeJob(std::string(job));
  record.create_time = absl::FromUnixSeconds(seconds);
  MetadataBatch batch;
  batch.PutJob(record);
  return batch;
}

class RadosMetadataStoreTest : public ::testing::Test {
 protected:
  RadosMetadataServer Connect(RadosMetadataStore::Options options = {}) {
    return ConnectRadosMetadata(ns_, std::move(options));
  }
  const std::string ns_ = UniqueMetaNamespace();
};

// The hand-encoded cls_lock_assert_op: the OSD accepts a write fenced with
// the holder's cookie and refuses (EBUSY, nothing written) another cookie,
// another client, and a released lock.
TEST_F(RadosMetadataStoreTest, LockFenceAdmitsOnlyTheHolder) {
  RadosMetadataServer a = Connect();
  RadosMetadataServer b = Connect();
  ASSERT_NE(a.store, nullptr);
  ASSERT_NE(b.store, nullptr);
  librados::IoCtx io_a = IoCtxIn(*a.cluster, ns_);
  librados::IoCtx io_b = IoCtxIn(*b.cluster, ns_);
  timeval lease{30, 0};
  ASSERT_EQ(io_a.lock_exclusive("probe", "ckpt.job", "right", "", &lease, 0),
            0);
  auto write = [&](librados::IoCtx& io, const std::string& cookie,
                   const std::string& key) {
    librados::ObjectWriteOperation op;
    AddLockFence(op, "ckpt.job", cookie);
    librados::bufferlist value;
    value.append("v");
    op.omap_set({{key, value}});
    return io.operate("probe", &op);
  };
  EXPECT_EQ(write(io_a, "right", "by-holder"), 0);
  EXPECT_EQ(write(io_a, "wrong", "by-other-cookie"), -EBUSY);
  EXPECT_EQ(write(io_b, "right", "by-other-client"), -EBUSY);
  ASSERT_EQ(io_a.unlock("probe", "ckpt.job", "right"), 0);
  EXPECT_EQ(write(io_a, "right", "after-unlock"), -EBUSY);
  std::set<std::string> keys;
  ASSERT_EQ(io_a.omap_get_keys2("probe", "", 100, &keys, nullptr), 0);
  EXPECT_EQ(keys, std::set<std::string>{"by-holder"});
}

TEST_F(RadosMetadataStoreTest, LockJobExcludesAnotherServerUntilReleased) {
  RadosMetadataServer a = Connect(Leased(absl::Seconds(30), absl::Seconds(31)));
  RadosMetadataServer b = Connect(Leased(absl::Seconds(1), absl::Seconds(2)));
  ASSERT_NE(a.store, nullptr);
  ASSERT_NE(b.store, nullptr);
  auto held = a.store->LockJob("t/j");
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_TRUE((*held)->Check().ok());

  const absl::Time start = absl::Now();
  auto refused = b.store->LockJob("t/j");
  const absl::Duration waited = absl::Now() - start;
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(refused.status().message(), HasSubstr(a.cluster->ClientName()));
  EXPECT_THAT(refused.status().message(), HasSubstr("job t/j"));
  EXPECT_THAT(refused.status().message(), HasSubstr("of waiting"));
  EXPECT_GE(waited, absl::Seconds(2));
  // Other jobs are not locked.
  EXPECT_TRUE(b.store->LockJob("t/other").ok());
  // Nor is a job's tenant record.
  EXPECT_TRUE(b.store->LockTenant("t").ok());

  held->reset();  // A releases
  const absl::Time released = absl::Now();
  auto taken = b.store->LockJob("t/j");
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_LT(absl::Now() - released, absl::Milliseconds(500));
}

// Threads of one server queue locally for a job: each gets the lock in
// turn, none is refused, and the handover does not wait on backoff.
TEST_F(RadosMetadataStoreTest, ThreadsOfOneServerTakeAJobInTurn) {
  RadosMetadataServer a = Connect(Leased(absl::Seconds(5), absl::Seconds(6)));
  ASSERT_NE(a.store, nullptr);
  constexpr int kThreads = 8;
  constexpr int kRounds = 10;
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  const absl::Time start = absl::Now();
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int round = 0; round < kRounds; ++round) {
        auto lease = a.store->LockJob("t/turns");
        if (!lease.ok()) {
          ++failures;
          continue;
        }
        if (inside.fetch_add(1) != 0) ++overlaps;
        absl::SleepFor(absl::Milliseconds(1));
        inside.fetch_sub(1);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(overlaps.load(), 0);
  // 80 lock + unlock round trips; polling with backoff would take seconds.
  EXPECT_LT(absl::Now() - start, absl::Seconds(4));
}

// Check() judges the lease by the injected clock; a contended wait still
// ends in real time.
TEST_F(RadosMetadataStoreTest, LeaseCheckFollowsTheInjectedClock) {
  FakeClock clock;
  RadosMetadataStore::Options options =
      Leased(absl::Seconds(30), absl::Seconds(31));
  options.clock = &clock;
  RadosMetadataServer a = Connect(options);
  options.lock_lease = absl::Milliseconds(100);
  options.lock_wait = absl::Milliseconds(300);
  RadosMetadataServer b = Connect(options);
  ASSERT_NE(a.store, nullptr);
  ASSERT_NE(b.store, nullptr);
  auto lease = a.store->LockJob("t/j");
  ASSERT_TRUE(lease.ok()) << lease.status();
  clock.Advance(absl::Seconds(29));
  EXPECT_TRUE((*lease)->Check().ok());
  clock.Advance(absl::Seconds(1));
  const absl::Status lost = (*lease)->Check();
  EXPECT_EQ(lost.code(), absl::StatusCode::kAborted) << lost;
  EXPECT_THAT(lost.message(), HasSubstr("job t/j"));
  // b waits its 300 ms in real time, though its clock stands still.
  const absl::Time start = absl::Now();
  EXPECT_EQ(b.store->LockJob("t/j").status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

// A server that dies holding a lock (its connection gone, never unlocked)
// blocks the job only until its lease runs out.
TEST_F(RadosMetadataStoreTest, CrashedHoldersLockIsTakenOverAfterItsLease) {
  RadosMetadataServer a = Connect();
  RadosMetadataServer b = Connect(Leased(absl::Seconds(2), absl::Seconds(6)));
  ASSERT_NE(a.store, nullptr);
  ASSERT_NE(b.store, nullptr);
  {
    librados::IoCtx io = IoCtxIn(*a.cluster, ns_);
    timeval lease{2, 0};
    ASSERT_EQ(io.lock_exclusive(rados_meta::JobOid("t/j"), "ckpt.job",
                                NewLockCookie(), "crashing", &lease, 0),
              0);
  }
  const absl::Time locked = absl::Now();
  a.store.reset();
  a.cluster.reset();  // the "crash": no unlock
  auto taken = b.store->LockJob("t/j");
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_GE(absl::Now() - locked, absl::Milliseconds(1500));
  EXPECT_TRUE(b.store->Apply(PutJobBatch("t/j", 1)).ok());
}

// Fencing: A stalls past its lease; B takes the lock and writes; A's late
// write is refused and B's write stands.
TEST_F(RadosMetadataStoreTest, StaleHoldersWriteIsFencedOff) {
  RadosMetadataServer a = Connect(Leased(absl::Seconds(2), absl::Seconds(3)));
  RadosMetadataServer b = Connect(Leased(absl::Seconds(2), absl::Seconds(6)));
  ASSERT_NE(a.store, nullptr);
  ASSERT_NE(b.store, nullptr);
  auto a_lease = a.store->LockJob("t/j");
  ASSERT_TRUE(a_lease.ok()) << a_lease.status();
  ASSERT_TRUE(a.store->Apply(PutJobBatch("t/j", 1)).ok());

  absl::SleepFor(absl::Milliseconds(2500));  // A stalls past its lease
  EXPECT_EQ((*a_lease)->Check().code(), absl::StatusCode::kAborted);
  // Even before anyone else takes it, the lapsed lock fences A off.
  absl::Status lapsed = a.store->Apply(PutJobBatch("t/j", 2));
  EXPECT_EQ(lapsed.code(), absl::StatusCode::kAborted) << lapsed;

  auto b_lease = b.store->LockJob("t/j");
  ASSERT_TRUE(b_lease.ok()) << b_lease.status();
  ASSERT_TRUE(b.store->Apply(PutJobBatch("t/j", 3)).ok());

  absl::Status late = a.store->Apply(PutJobBatch("t/j", 4));
  EXPECT_EQ(late.code(), absl::StatusCode::kAborted) << late;
  EXPECT_THAT(late.message(), HasSubstr("was lost"));
  EXPECT_THAT(late.message(), HasSubstr(b.cluster->ClientName()));
  auto stored = b.store->GetJob("t/j");
  ASSERT_TRUE(stored.ok()) << stored.status();
  ASSERT_TRUE(stored->has_value());
  EXPECT_EQ((*stored)->create_time, absl::FromUnixSeconds(3));

  // A's stale lease lets go without disturbing B's lock.
  a_lease->reset();
  EXPECT_TRUE(b.store->Apply(PutJobBatch("t/j", 5)).ok());
}

TEST_F(RadosMetadataStoreTest, CollectionLockRefusesAtOnceAndIsRenewed) {
  RadosMetadataServer a = Connect(Leased(absl::Seconds(2), absl::Seconds(3)));
  RadosMetadataServer b = Connect(Leased(absl::Seconds(2), absl::Seconds(3)));
  ASSERT_NE(a.store, nullptr);
  ASSERT_NE(b.store, nullptr);
  auto held = a.store->LockCollection();
  ASSERT_TRUE(held.ok()) << held.status();

  const absl::Time start = absl::Now();
  auto refused = b.store->LockCollection();
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));  // no wait
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr(a.cluster->ClientName()));

  absl::SleepFor(absl::Seconds(7));  // 3.5 leases: renewal keeps it
  EXPECT_TRUE((*held)->Check().ok()) << (*held)->Check();
  EXPECT_EQ(b.store->LockCollection().status().code(),
            absl::StatusCode::kFailedPrecondition);

  held->reset();
  EXPECT_TRUE(b.store->LockCollection().ok());
}

// A renewal that finds the lock gone (broken by an operator, or expired
// while the holder was cut off) makes Check() report the loss.
TEST_F(RadosMetadataStoreTest, CollectionLeaseReportsABrokenLock) {
  RadosMetadataServer a = Connect(Leased(absl::Seconds(1), absl::Seconds(2)));
  ASSERT_NE(a.store, nullptr);
  auto held = a.store->LockCollection();
  ASSERT_TRUE(held.ok()) << held.status();
  librados::IoCtx io = IoCtxIn(*a.cluster, ns_);
  int exclusive = 0;
  std::string tag;
  std::list<librados::locker_t> lockers;
  ASSERT_EQ(io.list_lockers(rados_meta::kCollectionOid, "ckpt.gc", &exclusive,
                            &tag, &lockers),
            1);
  ASSERT_EQ(io.break_lock(rados_meta::kCollectionOid, "ckpt.gc",
                          lockers.front().client, lockers.front().cookie),
            0);
  const absl::Time deadline = absl::Now() + absl::Seconds(3);
  absl::Status check = (*held)->Check();
  while (check.ok() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));  // polls the renewal's verdict
    check = (*held)->Check();
  }
  EXPECT_EQ(check.code(), absl::StatusCode::kAborted);
  EXPECT_THAT(check.message(), HasSubstr("lost the lock"));
}

// Apply takes the job lock itself when the caller holds none, so appends
// from two servers at once never reuse or lose a sequence number.
TEST_F(RadosMetadataStoreTest, ConcurrentAppendsFromTwoServersAreSerialized) {
  RadosMetadataServer a = Connect();
  RadosMetadataServer b = Connect();
  ASSERT_NE(a.store, nullptr);
  ASSERT_NE(b.store, nullptr);
  constexpr int kPerThread = 15;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    RadosMetadataStore* store = t % 2 == 0 ? a.store.get() : b.store.get();
    threads.emplace_back([store, t] {
      for (int i = 0; i < kPerThread; ++i) {
        MetadataBatch batch;
        batch.AppendEvent(MakeEvent("t/j", t, absl::StrCat(t, "-", i)));
        EXPECT_TRUE(store->Apply(batch).ok());
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  auto events = a.store->ListEvents("t/j", 1000);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 4u * kPerThread);
  std::set<std::string> details;
  for (size_t i = 0; i < events->size(); ++i) {
    EXPECT_EQ((*events)[i].sequence, i + 1);
    details.insert((*events)[i].detail);
  }
  EXPECT_EQ(details.size(), 4u * kPerThread);  // none lost, none doubled
}

// Reads come a page (1024 omap entries) at a time: a job with more shards
// than a page, and more jobs than a page of the index, are read whole.
TEST_F(RadosMetadataStoreTest, ReadsAndDeletesSpanManyPages) {
  RadosMetadataServer a = Connect();
  ASSERT_NE(a.store, nullptr);
  constexpr int kRanks = 2100;  // three pages
  MetadataBatch big;
  big.PutCheckpoint(MakeRecord("t/big", 1, CheckpointState::kPending));
  for (int32_t rank = 0; rank < kRanks; ++rank) {
    big.PutShard("t/big", 1, MakeShard(rank, "b"));
  }
  big.PutShard("t/big", 2, MakeShard(0, "next step"));
  ASSERT_TRUE(a.store->Apply(big).ok());
  constexpr int kJobs = 1030;  // past one index page
  for (int j = 0; j < kJobs; ++j) {
    MetadataBatch batch;
    batch.PutJob(MakeJob(absl::StrFormat("u/%04d", j)));
    ASSERT_TRUE(a.store->Apply(batch).ok());
  }
  auto jobs = a.store->ListJobs();
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  EXPECT_EQ(jobs->size(), static_cast<size_t>(kJobs));  // t/big has none
  EXPECT_EQ(a.store->GetShards("t/big", 1)->size(),
            static_cast<size_t>(kRanks));
  int visited = 0;
  int32_t last_rank = -1;
  ASSERT_TRUE(a.store
                  ->ForEachShard([&](absl::string_view job, int64_t step,
                                     const ShardManifest& shard) {
                    EXPECT_EQ(job, "t/big");
                    if (step == 1) {
                      EXPECT_EQ(shard.rank, last_rank + 1);
                      last_rank = shard.rank;
                    }
                    ++visited;
                    return absl::OkStatus();
                  })
                  .ok());
  EXPECT_EQ(visited, kRanks + 1);

  MetadataBatch del;
  del.DeleteCheckpoint("t/big", 1);
  ASSERT_TRUE(a.store->Apply(del).ok());
  EXPECT_TRUE(a.store->GetShards("t/big", 1)->empty());
  EXPECT_EQ(a.store->GetShards("t/big", 2)->size(), 1u);
  EXPECT_TRUE(a.store->ListPending()->empty());
}

// A tenant record is fenced like a job's.
TEST_F(RadosMetadataStoreTest, StaleTenantLockHoldersWriteIsFencedOff) {
  RadosMetadataServer a = Connect(Leased(absl::Seconds(1), absl::Seconds(2)));
  ASSERT_NE(a.store, nullptr);
  auto lease = a.store->LockTenant("t");
  ASSERT_TRUE(lease.ok()) << lease.status();
  MetadataBatch batch;
  batch.PutTenant(TenantRecord{"t", std::nullopt, std::nullopt});
  ASSERT_TRUE(a.store->Apply(batch).ok());
  absl::SleepFor(absl::Milliseconds(1500));  // stalls past the lease
  const absl::Status late = a.store->Apply(batch);
  EXPECT_EQ(late.code(), absl::StatusCode::kAborted) << late;
  EXPECT_THAT(late.message(), HasSubstr("tenant t"));
  lease->reset();
  EXPECT_TRUE(a.store->Apply(batch).ok());  // takes the lock itself
}

// Bytes read back from RADOS are hostile: what does not decode is DATA_LOSS
// naming the object and the key.
TEST_F(RadosMetadataStoreTest, CorruptOmapEntriesAreDataLossNamingThem) {
  RadosMetadataServer a = Connect();
  ASSERT_NE(a.store, nullptr);
  MetadataBatch batch;
  batch.PutJob(MakeJob("t/j"));
  batch.PutCheckpoint(MakeRecord("t/j", 7, CheckpointState::kPending));
  batch.PutShard("t/j", 7, MakeShard(0, "bytes"));
  batch.AppendEvent(MakeEvent("t/j", 7, "e"));
  ASSERT_TRUE(a.store->Apply(batch).ok());
  librados::IoCtx io = IoCtxIn(*a.cluster, ns_);
  const std::string oid = rados_meta::JobOid("t/j");
  auto plant = [&](const std::string& key) {
    librados::bufferlist garbage;
    garbage.append("\xff\xfe garbage");
    ASSERT_EQ(io.omap_set(oid, {{key, garbage}}), 0);
  };
  auto expect_data_loss = [&](const absl::Status& status,
                              absl::string_view key) {
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
    EXPECT_THAT(status.message(), HasSubstr(a.store->JobObject("t/j")));
    EXPECT_THAT(status.message(), HasSubstr(absl::StrCat("\"", key)));
  };
  plant("j");
  expect_data_loss(a.store->GetJob("t/j").status(), "j");
  expect_data_loss(a.store->ListJobs().status(), "j");
  plant(rados_meta::HeaderKey(7));
  expect_data_loss(a.store->GetCheckpoint("t/j", 7).status(), "c");
  expect_data_loss(a.store->ListCheckpoints("t/j").status(), "c");
  plant(rados_meta::PendingKey(7));
  expect_data_loss(a.store->ListPending().status(), "p");
  plant(rados_meta::ShardOmapKey(7, 0));
  expect_data_loss(a.store->GetShards("t/j", 7).status(), "s");
  expect_data_loss(a.store->ForEachShard(
                       [](absl::string_view, int64_t, const ShardManifest&) {
                         return absl::OkStatus();
                       }),
                   "s");
  // A shard value filed under another rank's key.
  librados::bufferlist other_rank;
  const std::string rank_one = EncodeShard(MakeShard(1, "bytes"));
  other_rank.append(rank_one.data(), rank_one.size());
  ASSERT_EQ(io.omap_set(oid, {{rados_meta::ShardOmapKey(7, 0), other_rank}}),
            0);
  expect_data_loss(a.store->GetShards("t/j", 7).status(), "s");
  // An index entry no job could have.
  ASSERT_EQ(io.omap_set(rados_meta::kIndexOid,
                        {{std::string("t/\0x", 4), librados::bufferlist()}}),
            0);
  const absl::Status index = a.store->ListJobs().status();
  EXPECT_EQ(index.code(), absl::StatusCode::kDataLoss) << index;
  EXPECT_THAT(index.message(), HasSubstr("/jobs"));
  plant(rados_meta::EventOmapKey(1));
  expect_data_loss(a.store->ListEvents("t/j", 10).status(), "e");
  plant("n");
  MetadataBatch append;
  append.AppendEvent(MakeEvent("t/j", 8, "next"));
  const absl::Status counter = a.store->Apply(append);
  expect_data_loss(counter, "n");
  EXPECT_THAT(counter.message(), HasSubstr("last event sequence"));
  EXPECT_THAT(a.store->ListEvents("t/j", 10).status().message(),
              HasSubstr("last event sequence"));
  // A header key of the wrong length is named as one.
  ASSERT_EQ(io.omap_rm_keys(oid, {rados_meta::HeaderKey(7)}), 0);
  ASSERT_EQ(
      io.omap_set(oid, {{std::string("c\0\x01", 3), librados::bufferlist()}}),
      0);
  const absl::Status short_key = a.store->ListCheckpoints("t/j").status();
  EXPECT_EQ(short_key.code(), absl::StatusCode::kDataLoss) << short_key;
  EXPECT_THAT(short_key.message(), HasSubstr("malformed checkpoint key"));
}

// ---- Figures (printed; the assertions only check the work was done) ----

TEST_F(RadosMetadataStoreTest, MeasureLockedCommitLatency) {
  RadosMetadataServer a = Connect();
  ASSERT_NE(a.store, nullptr);
  constexpr int kRuns = 200;
  std::vector<absl::Duration> latencies;
  for (int run = 0; run < kRuns; ++run) {
    // What a commit writes: the last rank's shard, the committed header
    // (here with 64 ranks) and its event.
    CheckpointRecord record =
        MakeRecord("t/j", run, CheckpointState::kCommitted);
    record.world_size = 64;
    record.committed_ranks.clear();
    for (int32_t rank = 0; rank < 64; ++rank) {
      record.committed_ranks.push_back(rank);
    }
    MetadataBatch commit;
    commit.PutShard("t/j", run, MakeShard(63, std::string(4096, 'x')));
    commit.PutCheckpoint(record);
    commit.AppendEvent(MakeEvent("t/j", run, "committed"));
    const absl::Time start = absl::Now();
    {
      auto lease = a.store->LockJob("t/j");
      ASSERT_TRUE(lease.ok()) << lease.status();
      ASSERT_TRUE(a.store->Apply(commit).ok());
    }
    latencies.push_back(absl::Now() - start);
  }
  std::sort(latencies.begin(), latencies.end());
  const absl::Duration median = latencies[kRuns / 2];
  const absl::Duration p99 = latencies[kRuns * 99 / 100];
  std::printf(
      "LockJob+Apply(commit)+unlock over %d runs: median %s, p99 %s, "
      "max %s\n",
      kRuns, absl::FormatDuration(median).c_str(),
      absl::FormatDuration(p99).c_str(),
      absl::FormatDuration(latencies.back()).c_str());
  RecordProperty("median_us", absl::ToInt64Microseconds(median));
  RecordProperty("p99_us", absl::ToInt64Microseconds(p99));
  EXPECT_EQ(a.store->ListCheckpoints("t/j")->size(),
            static_cast<size_t>(kRuns));
}

// Event appends made without a job lock (restore reports from every rank)
// each take the lock for their write: how fast do three servers' appends
// to one job go?
TEST_F(RadosMetadataStoreTest, MeasureUnlockedAppendsFromThreeServers) {
  std::vector<RadosMetadataServer> servers;
  for (int i = 0; i < 3; ++i) {
    servers.push_back(Connect());
    ASSERT_NE(servers.back().store, nullptr);
  }
  constexpr int kThreadsPerServer = 8, kPerThread = 20;
  std::vector<std::thread> threads;
  std::vector<absl::Duration> slowest(3 * kThreadsPerServer);
  const absl::Time start = absl::Now();
  for (int t = 0; t < 3 * kThreadsPerServer; ++t) {
    RadosMetadataStore* store = servers[t % 3].store.get();
    threads.emplace_back([store, t, &slowest] {
      for (int i = 0; i < kPerThread; ++i) {
        MetadataBatch batch;
        batch.AppendEvent(MakeEvent("t/j", t, "restored"));
        const absl::Time begin = absl::Now();
        EXPECT_TRUE(store->Apply(batch).ok());
        slowest[t] = std::max(slowest[t], absl::Now() - begin);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  const absl::Duration took = absl::Now() - start;
  constexpr int kTotal = 3 * kThreadsPerServer * kPerThread;
  std::printf(
      "%d unlocked appends from 3 servers x %d threads: %s "
      "(%.0f/s), slowest single Apply %s\n",
      kTotal, kThreadsPerServer, absl::FormatDuration(took).c_str(),
      kTotal / absl::ToDoubleSeconds(took),
      absl::FormatDuration(*std::max_element(slowest.begin(), slowest.end()))
          .c_str());
  auto events = servers[0].store->ListEvents("t/j", kTotal + 10);
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_EQ(events->size(), static_cast<size_t>(kTotal));
}

TEST_F(RadosMetadataStoreTest, MeasureForEachShardOverAHundredJobs) {
  RadosMetadataServer a = Connect();
  ASSERT_NE(a.store, nullptr);
  constexpr int kJobs = 100, kSteps = 10, kRanks = 8;
  for (int j = 0; j < kJobs; ++j) {
    const std::string job = absl::StrFormat("t/job%03d", j);
    MetadataBatch batch;
    batch.PutJob(MakeJob(job));
    for (int64_t step = 0; step < kSteps; ++step) {
      batch.PutCheckpoint(MakeRecord(job, step, CheckpointState::kCommitted));
      for (int32_t rank = 0; rank < kRanks; ++rank) {
        batch.PutShard(job, step, MakeShard(rank, std::string(4096, 'y')));
      }
    }
    ASSERT_TRUE(a.store->Apply(batch).ok());
  }
  for (int round = 0; round < 3; ++round) {
    int shards = 0;
    std::string last_job;
    const absl::Time start = absl::Now();
    ASSERT_TRUE(a.store
                    ->ForEachShard([&](absl::string_view job, int64_t,
                                       const ShardManifest&) {
                      EXPECT_GE(job, last_job);
                      last_job = std::string(job);
                      ++shards;
                      return absl::OkStatus();
                    })
                    .ok());
    const absl::Duration took = absl::Now() - start;
    EXPECT_EQ(shards, kJobs * kSteps * kRanks);
    std::printf("ForEachShard over %d jobs x %d checkpoints x %d shards: %s\n",
                kJobs, kSteps, kRanks, absl::FormatDuration(took).c_str());
  }
  const absl::Time start = absl::Now();
  auto jobs = a.store->ListJobs();
  std::printf("ListJobs of %d jobs: %s\n", kJobs,
              absl::FormatDuration(absl::Now() - start).c_str());
  ASSERT_TRUE(jobs.ok());
  EXPECT_EQ(jobs->size(), static_cast<size_t>(kJobs));
}

}  // namespace
}  // namespace ckpt::server
