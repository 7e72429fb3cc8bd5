// RocksDbStore behaviour beyond the conformance suite: persistence across
// reopen, corruption surfacing as DATA_LOSS, and open errors.
#include "server/storage/rocksdb_store.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "server/storage/keys.h"
#include "tests/testing/store_test_util.h"

extern char** environ;

namespace ckpt::server {
namespace {

using ::ckpt::server::testing::IdOf;
using ::ckpt::server::testing::MakeEvent;
using ::ckpt::server::testing::MakeJob;
using ::ckpt::server::testing::MakeRecord;
using ::ckpt::server::testing::MakeShard;
using ::ckpt::server::testing::MakeTempDir;
using ::ckpt::server::testing::TempDir;
using ::testing::HasSubstr;

class RocksDbStoreTest : public ::testing::Test {
 protected:
  std::string db_path() const { return dir_->path() + "/db"; }

  std::unique_ptr<RocksDbStore> OpenStore() {
    auto store = RocksDbStore::Open(db_path());
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(store).value() : nullptr;
  }

  // Writes `value` under `key` in column family `cf_name`, bypassing the
  // store (which must be closed), to plant corruption.
  void WriteRaw(const std::string& cf_name, const std::string& key,
                const std::string& value) {
    std::vector<std::string> names;
    ASSERT_TRUE(
        rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), db_path(), &names)
            .ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    descriptors.reserve(names.size());
    for (const std::string& name : names)
      descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions());
    rocksdb::DB* raw_db = nullptr;
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::DBOptions(), db_path(), descriptors,
                                  &handles, &raw_db)
                    .ok());
    std::unique_ptr<rocksdb::DB> db(raw_db);
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == cf_name) {
        EXPECT_TRUE(
            db->Put(rocksdb::WriteOptions(), handles[i], key, value).ok());
      }
    }
    for (rocksdb::ColumnFamilyHandle* handle : handles) {
      EXPECT_TRUE(db->DestroyColumnFamilyHandle(handle).ok());
    }
    EXPECT_TRUE(db->Close().ok());
  }

  std::unique_ptr<TempDir> dir_ = MakeTempDir();
};

TEST_F(RocksDbStoreTest, SyncedChunksAndAppliedMetadataSurviveReopen) {
  const std::string small = "small";
  const std::string large(3 << 20, 'x');
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Put("acme", IdOf(small), small).ok());
    ASSERT_TRUE(store->Put("acme", IdOf(large), large).ok());
    ASSERT_TRUE(store->Sync().ok());
    ASSERT_TRUE(store->Sync().ok());  // nothing new: a no-op
    MetadataBatch batch;
    batch.PutJob(MakeJob("acme/j"));
    batch.PutCheckpoint(MakeRecord("acme/j", 3, CheckpointState::kCommitted));
    batch.PutCheckpoint(MakeRecord("acme/j", 4, CheckpointState::kPending));
    batch.PutShard("acme/j", 3, MakeShard(0, large));
    ASSERT_TRUE(store->Apply(batch).ok());
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto got = store->Get("acme", IdOf(large));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, large);
  auto put_again = store->Put("acme", IdOf(small), small);
  ASSERT_TRUE(put_again.ok());
  EXPECT_FALSE(*put_again);
  auto usage = store->GetUsage("acme");
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->chunk_count, 2u);
  EXPECT_EQ(usage->bytes, small.size() + large.size());

  auto job = store->GetJob("acme/j");
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(*job, MakeJob("acme/j"));
  auto record = store->GetCheckpoint("acme/j", 3);
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(*record, MakeRecord("acme/j", 3, CheckpointState::kCommitted));
  auto pending = store->ListPending();
  ASSERT_TRUE(pending.ok());
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].step, 4);
  auto shards = store->GetShards("acme/j", 3);
  ASSERT_TRUE(shards.ok());
  ASSERT_EQ(shards->size(), 1u);
  EXPECT_EQ((*shards)[0], MakeShard(0, large));
}

TEST_F(RocksDbStoreTest, EventsSurviveReopenAndNumberingContinues) {
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    MetadataBatch batch;
    batch.AppendEvent(MakeEvent("acme/j", 1, "committed"));
    batch.AppendEvent(MakeEvent("acme/j", 1, "pinned", EventKind::kPinned));
    ASSERT_TRUE(store->Apply(batch).ok());
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  MetadataBatch after;
  after.AppendEvent(MakeEvent("acme/j", 2, "after restart"));
  ASSERT_TRUE(store->Apply(after).ok());
  auto events = store->ListEvents("acme/j", 10);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 3u);
  EXPECT_EQ((*events)[0].detail, "committed");
  EXPECT_EQ((*events)[1].kind, EventKind::kPinned);
  EXPECT_EQ((*events)[2].sequence, 3u);
  EXPECT_EQ((*events)[2].detail, "after restart");
}

TEST_F(RocksDbStoreTest, CorruptEventIsDataLoss) {
  { ASSERT_NE(OpenStore(), nullptr); }
  WriteRaw("events", EventKey("acme/j", 1), "\xff\xff\xff garbage");
  WriteRaw("events", JobKeyPrefix("acme/k") + "short", "");
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->ListEvents("acme/j", 10).status().code(),
            absl::StatusCode::kDataLoss);
  // A malformed last key stops numbering rather than reusing a sequence.
  MetadataBatch batch;
  batch.AppendEvent(MakeEvent("acme/k", 1, "x"));
  EXPECT_EQ(store->Apply(batch).code(), absl::StatusCode::kDataLoss);
}

TEST_F(RocksDbStoreTest, DatabaseFromBeforeEventsGainsTheFamilyOnOpen) {
  {
    // The column families of the first release, without `events` (and
    // `tenants`).
    rocksdb::DBOptions options;
    options.create_if_missing = true;
    options.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    for (const char* name : {"default", "chunks", "chunk_index", "manifests",
                             "pending", "shards", "jobs"}) {
      descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions());
    }
    rocksdb::DB* raw_db = nullptr;
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    ASSERT_TRUE(
        rocksdb::DB::Open(options, db_path(), descriptors, &handles, &raw_db)
            .ok());
    std::unique_ptr<rocksdb::DB> db(raw_db);
    for (rocksdb::ColumnFamilyHandle* handle : handles) {
      EXPECT_TRUE(db->DestroyColumnFamilyHandle(handle).ok());
    }
    EXPECT_TRUE(db->Close().ok());
  }
  RocksDbStoreOptions options;
  options.create_if_missing = false;  // an existing database: no creation
  auto store = RocksDbStore::Open(db_path(), options);
  ASSERT_TRUE(store.ok()) << store.status();
  MetadataBatch batch;
  batch.AppendEvent(MakeEvent("acme/j", 1, "first"));
  ASSERT_TRUE((*store)->Apply(batch).ok());
  auto events = (*store)->ListEvents("acme/j", 10);
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_EQ(events->size(), 1u);
  EXPECT_EQ(*(*store)->GetTenant("acme"), std::nullopt);
}

TEST_F(RocksDbStoreTest, TenantsSurviveReopenAndCorruptionIsDataLoss) {
  TenantRecord tenant;
  tenant.name = "acme";
  tenant.default_policy = RetentionPolicy{};
  tenant.default_policy->max_to_keep = 4;
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    MetadataBatch batch;
    batch.PutTenant(tenant);
    ASSERT_TRUE(store->Apply(batch).ok());
  }
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(*store->GetTenant("acme"), tenant);
  }
  WriteRaw("tenants", "acme", "\xff\xff\xff garbage");
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->GetTenant("acme").status().code(),
            absl::StatusCode::kDataLoss);
}

// tmpfs has no O_DIRECT: the store must fall back to buffered I/O there.
TEST(RocksDbStoreDirectIoTest, WorksWhereTheFileSystemHasNoDirectIo) {
  if (!std::filesystem::is_directory("/dev/shm")) {
    GTEST_SKIP() << "no /dev/shm here";
  }
  std::string dir = "/dev/shm/ckpt_tmpfs_XXXXXX";
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  const std::string large(5 << 20, 'z');
  {
    auto store = RocksDbStore::Open(dir + "/db");
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->Put("acme", IdOf(large), large).ok());
    ASSERT_TRUE((*store)->Sync().ok());
  }
  {
    auto store = RocksDbStore::Open(dir + "/db");
    ASSERT_TRUE(store.ok()) << store.status();
    auto got = (*store)->Get("acme", IdOf(large));
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, large);
  }
  std::filesystem::remove_all(dir);
}

// Commits' Syncs (manual flushes) racing the automatic flushes of full
// memtables: under atomic_flush a Sync that flushed only some column
// families gave one flush job families with different flush reasons, and
// RocksDB 7.8 aborted on its assertion.
TEST_F(RocksDbStoreTest, SyncWhileMemtableFlushesAreQueuedDoesNotAbort) {
  RocksDbStoreOptions options;
  options.size_to_volume = false;
  options.chunk_write_buffer_size = 64 << 10;  // a flush every few chunks
  auto opened = RocksDbStore::Open(db_path(), options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  std::unique_ptr<RocksDbStore> store = *std::move(opened);
  constexpr int kWriters = 3;
  constexpr int kChunksPerWriter = 150;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int writer = 0; writer < kWriters; ++writer) {
    threads.emplace_back([&, writer] {
      for (int i = 0; i < kChunksPerWriter; ++i) {
        const std::string bytes =
            absl::StrCat(std::string(24 << 10, 'a' + writer), i);
        if (!store->Put("acme", IdOf(bytes), bytes).ok()) ++failures;
        if (i % 3 == 0 && !store->Sync().ok()) ++failures;
        if (i % 10 == 0) {
          MetadataBatch batch;
          batch.PutCheckpoint(MakeRecord(absl::StrCat("acme/j", writer), i,
                                         CheckpointState::kCommitted));
          if (!store->Apply(batch).ok()) ++failures;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  ASSERT_TRUE(store->Sync().ok());
  for (int writer = 0; writer < kWriters; ++writer) {
    for (int i = 0; i < kChunksPerWriter; ++i) {
      const std::string bytes =
          absl::StrCat(std::string(24 << 10, 'a' + writer), i);
      auto read = store->Get("acme", IdOf(bytes));
      ASSERT_TRUE(read.ok()) << read.status();
      ASSERT_TRUE(*read == bytes);
    }
  }
}

TEST_F(RocksDbStoreTest, UnsyncedChunkSurvivesCleanClose) {
  const std::string bytes(100 << 10, 'u');
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Put("acme", IdOf(bytes), bytes).ok());
    // No Sync: closing the store must flush the WAL-less write.
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto got = store->Get("acme", IdOf(bytes));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, bytes);
  auto contains = store->Contains("acme", {IdOf(bytes)});
  ASSERT_TRUE(contains.ok());
  EXPECT_TRUE((*contains)[0]);
}

// A process that dies without closing the store (here: _exit in a forked
// child) keeps synced chunks and applied metadata, loses unsynced chunks,
// and never leaves an index entry without its bytes.
// Small chunks live in RocksDB, large ones (>= 1 MiB) in chunk files: one
// of each, synced and not.
std::string CrashChildSynced() { return std::string(200 << 10, 's'); }
std::string CrashChildUnsynced() { return std::string(200 << 10, 'u'); }
std::string CrashChildSyncedFile() { return std::string(2 << 20, 'S'); }
std::string CrashChildUnsyncedFile() { return std::string(2 << 20, 'U'); }

// Chunk files under the store at `db`.
size_t ChunkFileCount(const std::string& db) {
  size_t count = 0;
  for (const auto& entry :
       std::filesystem::recursive_directory_iterator(db + "/chunk_files")) {
    if (entry.is_regular_file()) ++count;
  }
  return count;
}

// Run only as the child of the test below: writes, then dies without
// closing the store, as a crash would.
TEST(RocksDbStoreCrashChild, DISABLED_WriteThenDie) {
  const char* path = getenv("CKPT_CRASH_CHILD_DB");
  if (path == nullptr) GTEST_SKIP() << "only run by the crash test";
  auto store = RocksDbStore::Open(path);
  auto put = [&](const std::string& bytes) {
    return (*store)->Put("acme", IdOf(bytes), bytes).ok();
  };
  bool ok = store.ok() && put(CrashChildSynced()) &&
            put(CrashChildSyncedFile()) && (*store)->Sync().ok() &&
            put(CrashChildUnsynced()) && put(CrashChildUnsyncedFile());
  MetadataBatch batch;
  batch.PutJob(MakeJob("acme/j"));
  ok = ok && (*store)->Apply(batch).ok();
  _exit(ok ? 0 : 1);  // no destructor: the memtable is lost
}

TEST_F(RocksDbStoreTest, CrashKeepsSyncedChunksAndLosesUnsyncedOnesWhole) {
  const std::string synced = CrashChildSynced();
  const std::string unsynced = CrashChildUnsynced();
  // The crashing writer is a fresh process (this binary, running only the
  // child test below): a fork() of this one would inherit RocksDB's thread
  // pools without their threads and hang in Sync().
  std::string exe = "/proc/self/exe";
  std::string filter =
      "--gtest_filter=RocksDbStoreCrashChild.DISABLED_WriteThenDie";
  std::string also_disabled = "--gtest_also_run_disabled_tests";
  char* argv[] = {exe.data(), filter.data(), also_disabled.data(), nullptr};
  ASSERT_EQ(setenv("CKPT_CRASH_CHILD_DB", db_path().c_str(), 1), 0);
  pid_t child = 0;
  ASSERT_EQ(posix_spawn(&child, exe.c_str(), nullptr, nullptr, argv, environ),
            0);
  unsetenv("CKPT_CRASH_CHILD_DB");
  int wait_status = 0;
  ASSERT_EQ(waitpid(child, &wait_status, 0), child);
  ASSERT_TRUE(WIFEXITED(wait_status));
  ASSERT_EQ(WEXITSTATUS(wait_status), 0);

  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  for (const std::string& kept : {synced, CrashChildSyncedFile()}) {
    auto got = store->Get("acme", IdOf(kept));
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, kept);
  }
  auto contains = store->Contains(
      "acme", {IdOf(synced), IdOf(unsynced), IdOf(CrashChildSyncedFile()),
               IdOf(CrashChildUnsyncedFile())});
  ASSERT_TRUE(contains.ok());
  EXPECT_EQ(*contains, (std::vector<bool>{true, false, true, false}));
  EXPECT_EQ(store->Get("acme", IdOf(unsynced)).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store->Get("acme", IdOf(CrashChildUnsyncedFile())).status().code(),
            absl::StatusCode::kNotFound);
  auto usage = store->GetUsage("acme");
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->chunk_count, 2u);
  // The unsynced large chunk's file was written, but no durable index
  // entry names it: the store removed it when it opened.
  EXPECT_EQ(ChunkFileCount(db_path()), 1u);
  auto job = store->GetJob("acme/j");
  ASSERT_TRUE(job.ok());
  EXPECT_TRUE(job->has_value()) << "a synced Apply was lost";
  // The lost chunk can simply be put again.
  auto put = store->Put("acme", IdOf(unsynced), unsynced);
  ASSERT_TRUE(put.ok());
  EXPECT_TRUE(*put);
}

TEST_F(RocksDbStoreTest, DeletedChunkStaysDeletedAfterReopen) {
  const std::string bytes = "to delete";
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Put("acme", IdOf(bytes), bytes).ok());
    ASSERT_TRUE(store->Sync().ok());
    ASSERT_TRUE(store->Delete("acme", IdOf(bytes)).ok());
    ASSERT_TRUE(store->Sync().ok());
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->Get("acme", IdOf(bytes)).status().code(),
            absl::StatusCode::kNotFound);
}

// Bytes of the blob files in `dir`: what the file system really holds.
uint64_t BlobFileBytes(const std::string& dir) {
  uint64_t bytes = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".blob") bytes += entry.file_size();
  }
  return bytes;
}

TEST_F(RocksDbStoreTest, ReclaimSpaceFreesDeadChunksBytesOnDisk) {
  RocksDbStoreOptions options;
  options.blob_file_size = 2 << 20;  // several files, some mixed
  auto opened = RocksDbStore::Open(db_path(), options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  std::unique_ptr<RocksDbStore> store = std::move(opened).value();

  // 48 chunks of 256 KiB, 12 MiB: the first 16 die together (whole files
  // die), then every other one of the rest (files half dead).
  std::vector<std::string> chunks;
  for (int i = 0; i < 48; ++i) {
    chunks.push_back(std::string(256 << 10, static_cast<char>('A' + i % 26)) +
                     std::to_string(i));
    ASSERT_TRUE(store->Put("acme", IdOf(chunks.back()), chunks.back()).ok());
  }
  ASSERT_TRUE(store->Sync().ok());
  const uint64_t on_disk_before = BlobFileBytes(db_path());
  ASSERT_GE(on_disk_before, uint64_t{12} << 20);

  auto dies = [](int i) { return i < 16 || i % 2 == 1; };  // 32 of 48
  for (int i = 0; i < 48; ++i) {
    if (dies(i)) {
      ASSERT_TRUE(store->Delete("acme", IdOf(chunks[i])).ok());
    }
  }
  ASSERT_TRUE(store->Sync().ok());
  auto usage = store->ReclaimSpace();
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_GE(usage->bytes_before, uint64_t{12} << 20);
  // 8 MiB died; at least the 4 MiB in wholly dead files and most of the
  // half-dead ones must be back with the file system.
  EXPECT_LE(usage->bytes_after, usage->bytes_before - (uint64_t{6} << 20));
  EXPECT_LE(BlobFileBytes(db_path()), on_disk_before - (uint64_t{6} << 20));

  auto check_live = [&](RocksDbStore& s) {
    for (int i = 0; i < 48; ++i) {
      auto got = s.Get("acme", IdOf(chunks[i]));
      if (dies(i)) {
        EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound) << i;
      } else {
        ASSERT_TRUE(got.ok()) << i << ": " << got.status();
        EXPECT_EQ(*got, chunks[i]) << i;
      }
    }
  };
  check_live(*store);
  store.reset();
  auto reopened = RocksDbStore::Open(db_path(), options);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  check_live(**reopened);
}

TEST_F(RocksDbStoreTest, CorruptCheckpointRecordIsDataLoss) {
  { ASSERT_NE(OpenStore(), nullptr); }
  WriteRaw("manifests", CheckpointKey("acme/j", 1), "\xff\xff\xff garbage");
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->GetCheckpoint("acme/j", 1).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(store->ListCheckpoints("acme/j").status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(RocksDbStoreTest, CorruptShardJobAndChunkSizeAreDataLoss) {
  { ASSERT_NE(OpenStore(), nullptr); }
  WriteRaw("shards", ShardKey("acme/j", 1, 0), "\xff\xff\xff garbage");
  WriteRaw("jobs", "acme/j", "\xff\xff\xff garbage");
  WriteRaw("chunk_index", ChunkKey("acme", IdOf("c")), "\x80");
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->GetShards("acme/j", 1).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(store->GetJob("acme/j").status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(store->ListJobs().status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(store->GetUsage("acme").status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(RocksDbStoreTest, OpenOnARegularFileFailsClearly) {
  const std::string file = dir_->path() + "/not_a_dir";
  std::ofstream(file) << "hello";
  auto store = RocksDbStore::Open(file);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(store.status().message()),
              HasSubstr("not a directory"));
  EXPECT_THAT(std::string(store.status().message()), HasSubstr(file));
}

TEST_F(RocksDbStoreTest, OpenOfMissingDbWithoutCreateFails) {
  RocksDbStoreOptions options;
  options.create_if_missing = false;
  auto store = RocksDbStore::Open(db_path(), options);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(std::string(store.status().message()), HasSubstr(db_path()));
}

// A real RocksDB failure (its directory gone under it, so a flush cannot
// create its files) reaches the caller without RocksDB's text, which names
// the files: the message carries an incident id that the log line with the
// full text also carries.
TEST_F(RocksDbStoreTest, StorageFailureNamesNoPathButAnIncident) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Put("acme", IdOf("bytes"), "bytes").ok());
  const std::string moved = dir_->path() + "/moved";
  std::filesystem::rename(db_path(), moved);
  const absl::Status failed = store->Sync();
  std::filesystem::rename(moved, db_path());
  ASSERT_FALSE(failed.ok());
  const std::string message(failed.message());
  EXPECT_THAT(message, ::testing::Not(HasSubstr(dir_->path())));
  EXPECT_THAT(message, ::testing::Not(HasSubstr(".sst")));
  EXPECT_THAT(message, HasSubstr("flushing chunks"));
  EXPECT_THAT(message, ::testing::ContainsRegex("incident [0-9a-f]{8}"));
}

TEST_F(RocksDbStoreTest, SecondOpenOfALockedDbFails) {
  auto first = OpenStore();
  ASSERT_NE(first, nullptr);
  auto second = RocksDbStore::Open(db_path());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable)
      << second.status();
}

}  // namespace
}  // namespace ckpt::server
