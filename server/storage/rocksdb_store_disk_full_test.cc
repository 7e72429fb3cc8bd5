// RocksDbStore on a volume that fills up: writes fail with
// RESOURCE_EXHAUSTED saying the disk is full, what was committed stays
// readable, and once space is freed writes work again without reopening
// (DB::Resume), through a write or through Health(). Each test mounts its
// own small tmpfs, so they run as root only (skipped otherwise).
#include <memory>
#include <random>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/storage/rocksdb_store.h"
#include "server/storage/tolerant_info_log.h"
#include "tests/testing/store_test_util.h"
#include "tests/testing/tmpfs_volume.h"

namespace ckpt::server {
namespace {

using ::ckpt::server::testing::IdOf;
using ::ckpt::server::testing::MakeRecord;
using ::ckpt::server::testing::MakeShard;
using ::ckpt::testing::TmpfsVolume;
using ::testing::HasSubstr;

std::string RandomBytes(size_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(rng());
  return bytes;
}

class FullVolumeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto volume = TmpfsVolume::Mount(32 << 20);
    if (!volume.ok()) GTEST_SKIP() << volume.status().message();
    volume_ = *std::move(volume);
    auto store = RocksDbStore::Open(volume_->path() + "/db", Options());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  virtual RocksDbStoreOptions Options() { return {}; }
  void TearDown() override { store_.reset(); }

  // Stores `bytes` as one chunk and commits step `step` of "acme/j" over it,
  // the way the service does: Put, Sync, then Apply.
  absl::Status Commit(int64_t step, const std::string& bytes) {
    absl::StatusOr<bool> put = store_->Put("acme", IdOf(bytes), bytes);
    if (!put.ok()) return put.status();
    if (absl::Status synced = store_->Sync(); !synced.ok()) return synced;
    MetadataBatch batch;
    batch.PutCheckpoint(
        MakeRecord("acme/j", step, CheckpointState::kCommitted));
    batch.PutShard("acme/j", step, MakeShard(0, bytes));
    return store_->Apply(batch);
  }

  void ExpectReadable(int64_t step, const std::string& bytes) {
    auto record = store_->GetCheckpoint("acme/j", step);
    ASSERT_TRUE(record.ok()) << record.status();
    EXPECT_EQ(record->state, CheckpointState::kCommitted);
    auto read = store_->Get("acme", IdOf(bytes));
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_TRUE(*read == bytes) << "step " << step;
  }

  std::unique_ptr<TmpfsVolume> volume_;
  std::unique_ptr<RocksDbStore> store_;
};

using RocksDbStoreDiskFullTest = FullVolumeTest;

// Without the free-space reserve RocksDB itself runs into ENOSPC and stops
// on a background error, which only DB::Resume clears.
class RocksDbStoreResumeTest : public FullVolumeTest {
 protected:
  RocksDbStoreOptions Options() override {
    RocksDbStoreOptions options;
    options.reserve_free_space = false;
    return options;
  }
};

TEST_F(RocksDbStoreDiskFullTest, CommitFailsWhileFullAndWorksOnceFreed) {
  const std::string first = RandomBytes(512 << 10, 1);
  ASSERT_TRUE(Commit(1, first).ok());
  for (int round = 0; round < 5; ++round) {
    SCOPED_TRACE(round);
    ASSERT_TRUE(volume_->Fill().ok());
    const std::string refused = RandomBytes(512 << 10, 100 + round);
    absl::Status full = Commit(100 + round, refused);
    EXPECT_TRUE(absl::IsResourceExhausted(full)) << full;
    EXPECT_THAT(full.message(), HasSubstr("disk is full"));
    // Nothing half-committed, and what was committed reads back.
    EXPECT_TRUE(absl::IsNotFound(
        store_->GetCheckpoint("acme/j", 100 + round).status()));
    ExpectReadable(1, first);

    ASSERT_TRUE(volume_->Free().ok());
    const std::string next = RandomBytes(512 << 10, 2 + round);
    absl::Status saved = Commit(2 + round, next);
    ASSERT_TRUE(saved.ok()) << saved;
    ExpectReadable(2 + round, next);
  }
  ExpectReadable(1, first);
}

TEST_F(RocksDbStoreResumeTest, ReopenAfterAFullDiskKeepsEveryCommit) {
  const std::string first = RandomBytes(256 << 10, 1);
  ASSERT_TRUE(Commit(1, first).ok());
  ASSERT_TRUE(volume_->Fill().ok());
  EXPECT_FALSE(Commit(2, RandomBytes(256 << 10, 2)).ok());
  ASSERT_TRUE(volume_->Free().ok());
  store_.reset();
  auto reopened = RocksDbStore::Open(volume_->path() + "/db", Options());
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  store_ = *std::move(reopened);
  ExpectReadable(1, first);
  EXPECT_TRUE(absl::IsNotFound(store_->GetCheckpoint("acme/j", 2).status()));
}

TEST_F(RocksDbStoreDiskFullTest, InfoLogDropsLinesOnAFullDiskInsteadOfFailing) {
  TolerantInfoLog log(volume_->path() + "/LOG.test", 1 << 20);
  ASSERT_TRUE(volume_->Fill().ok());
  for (int i = 0; i < 100; ++i) {
    rocksdb::Log(&log, "line %d of a log on a full disk", i);
  }
  EXPECT_GT(log.dropped_lines(), 0u);
  ASSERT_TRUE(volume_->Free().ok());
  const uint64_t dropped = log.dropped_lines();
  rocksdb::Log(&log, "written again");
  EXPECT_EQ(log.dropped_lines(), dropped);
}

TEST_F(RocksDbStoreDiskFullTest, RefusesWritesRocksDbHasNoRoomForAndResumes) {
  const std::string first = RandomBytes(256 << 10, 1);
  ASSERT_TRUE(Commit(1, first).ok());
  // Room for the WAL block but not for this chunk on top of it.
  ASSERT_TRUE(volume_->Fill(3 << 20).ok());
  absl::Status refused = Commit(2, RandomBytes(2 << 20, 2));
  EXPECT_TRUE(absl::IsResourceExhausted(refused)) << refused;
  EXPECT_THAT(refused.message(), HasSubstr("disk is full"));
  // RocksDB never ran out of space itself, so nothing needs resuming.
  EXPECT_EQ(store_->Health().problem, StoreHealth::Problem::kNone);
  ASSERT_TRUE(volume_->Fill().ok());
  refused = Commit(3, RandomBytes(16 << 10, 3));
  EXPECT_TRUE(absl::IsResourceExhausted(refused)) << refused;
  EXPECT_EQ(store_->Health().problem, StoreHealth::Problem::kNoSpace);
  ExpectReadable(1, first);
  ASSERT_TRUE(volume_->Free().ok());
  EXPECT_TRUE(store_->Health().writable());
  ASSERT_TRUE(Commit(4, RandomBytes(2 << 20, 4)).ok());
}

using RocksDbStoreHealthTest = FullVolumeTest;

TEST_F(RocksDbStoreHealthTest, WritableStoreReportsItsVolume) {
  StoreHealth health = store_->Health();
  EXPECT_TRUE(health.writable()) << health.detail;
  EXPECT_TRUE(health.detail.empty());
  EXPECT_FALSE(health.write_stopped);
  EXPECT_GT(health.volume_total_bytes, uint64_t{30} << 20);
  EXPECT_LE(health.volume_total_bytes, uint64_t{32} << 20);
  EXPECT_GT(health.volume_free_bytes, 0u);
}

TEST_F(RocksDbStoreDiskFullTest, AFullVolumeIsNotWritableBeforeAnyWriteFails) {
  ASSERT_TRUE(volume_->Fill().ok());
  StoreHealth health = store_->Health();
  EXPECT_EQ(health.problem, StoreHealth::Problem::kNoSpace);
  EXPECT_THAT(health.detail, HasSubstr("disk is full"));
  ASSERT_TRUE(volume_->Free().ok());
  EXPECT_TRUE(store_->Health().writable());
}

TEST_F(RocksDbStoreResumeTest, HealthResumesAStoreStoppedOnENOSPCOnceFreed) {
  ASSERT_TRUE(Commit(1, RandomBytes(256 << 10, 1)).ok());
  ASSERT_TRUE(volume_->Fill().ok());
  ASSERT_FALSE(Commit(2, RandomBytes(256 << 10, 2)).ok());
  EXPECT_EQ(store_->Health().problem, StoreHealth::Problem::kNoSpace);
  ASSERT_TRUE(volume_->Free().ok());
  // No write in between: Health itself resumes RocksDB.
  StoreHealth health = store_->Health();
  EXPECT_TRUE(health.writable()) << health.detail;
  EXPECT_TRUE(Commit(3, RandomBytes(256 << 10, 3)).ok());
}

}  // namespace
}  // namespace ckpt::server
