// RocksDbStore's internals, shared by the files that implement it (and by
// no one else): the column families, the handles, and the write, scan and
// recovery primitives every store method builds on.
//   rocksdb_store.cc           chunk and metadata reads and writes
//   rocksdb_store_open.cc      options, opening and closing the database
//   rocksdb_store_recovery.cc  full disks and background errors, Health
//   rocksdb_store_reclaim.cc   ReclaimSpace (compactions, blob GC)
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "rocksdb/db.h"
#include "rocksdb/slice.h"
#include "rocksdb/snapshot.h"
#include "rocksdb/write_batch.h"
#include "server/storage/chunk_files.h"
#include "server/storage/keys.h"
#include "server/storage/rocksdb_status.h"
#include "server/storage/rocksdb_store.h"
#include "server/storage/store_health.h"
#include "server/storage/volume_sizing.h"

namespace ckpt::server::rocksdb_internal {

// Column families, in the order of Impl::handles.
enum Cf : size_t {
  kDefault,  // unused; RocksDB requires it
  kChunks,
  kChunkIndex,
  kManifests,
  kPending,
  kShards,
  kJobs,
  kEvents,
  kTenants,  // TenantRecord by tenant name (added after the others: a
             // database made before it gets it at open)
  kNumCfs,
};
inline constexpr std::array<const char*, kNumCfs> kCfNames = {
    "default",  // == rocksdb::kDefaultColumnFamilyName
    "chunks",  "chunk_index", "manifests", "pending",
    "shards",  "jobs",        "events",    "tenants"};

// Put/Delete of one chunk check-then-write under one of these (chosen by
// the digest, which is uniform), so two concurrent Puts of the same chunk
// cannot both report it new.
inline constexpr size_t kChunkLockStripes = 64;

inline rocksdb::Slice ToSlice(absl::string_view s) {
  return {s.data(), s.size()};
}
inline absl::string_view ToView(const rocksdb::Slice& s) {
  return {s.data(), s.size()};
}

struct CfHandleDeleter {
  rocksdb::DB* db;
  void operator()(rocksdb::ColumnFamilyHandle* handle) const {
    // Only fails for the default family's handle, which it then keeps.
    db->DestroyColumnFamilyHandle(handle).PermitUncheckedError();
  }
};
using CfHandle = std::unique_ptr<rocksdb::ColumnFamilyHandle, CfHandleDeleter>;

// Free space below which the store refuses writes itself (see
// rocksdb_store_recovery.cc).
uint64_t MinFreeBytes(const VolumeSizes& sizes);

}  // namespace ckpt::server::rocksdb_internal

namespace ckpt::server {

struct RocksDbStore::Impl {
  using Cf = rocksdb_internal::Cf;

  std::string dir;
  absl::Duration resume_timeout;
  uint64_t min_free_bytes = 0;  // MinFreeBytes; 0: reserve_free_space off
  // Registered with RocksDB as a listener before it opens.
  std::shared_ptr<BackgroundErrorTracker> errors =
      std::make_shared<BackgroundErrorTracker>();
  // RocksDbStoreOptions::env; declared before `db`, so it outlives it.
  std::shared_ptr<rocksdb::Env> env;
  // Declared before `handles`, so destroyed after them, as RocksDB requires.
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb_internal::CfHandle> handles;
  // Set once `db` is open; reset (joined) before it closes.
  std::unique_ptr<BoundedResume> resume;

  std::array<absl::Mutex, rocksdb_internal::kChunkLockStripes> chunk_locks;

  // Large chunks' bytes (RocksDbStoreOptions::file_chunk_min_bytes).
  std::unique_ptr<ChunkFiles> files;
  uint64_t file_chunk_min_bytes = UINT64_MAX;

  // Large chunks stored (Put returned) whose files are not yet synced and
  // whose index entries are not yet written, by chunk key: a Put does not
  // wait for the disk; CompleteStaged (at Sync, or when kMaxStagedChunks
  // are staged) syncs their files, then indexes them. Reads and existence
  // checks look here first (rocksdb_store_staged.cc).
  struct StagedChunk {
    ChunkId id;
    ChunkIndexValue index;  // with its file number
  };
  static constexpr size_t kMaxStagedChunks = 64;
  absl::Mutex staged_mu;
  absl::flat_hash_map<std::string, StagedChunk> staged
      ABSL_GUARDED_BY(staged_mu);
  absl::Mutex complete_mu;  // one CompleteStaged at a time
  // Files of deleted chunks, removed only once their index entries' deletion
  // is durable (RemoveDeletedFiles): a crash before that would bring back an
  // index entry naming a missing file.
  absl::Mutex deleted_files_mu;
  std::vector<uint64_t> deleted_files ABSL_GUARDED_BY(deleted_files_mu);

  // Chunk writes (Put/Delete) done, and how many of them the last
  // successful Sync covered. A Sync with nothing new returns at once.
  std::atomic<uint64_t> chunk_writes{0};
  std::atomic<uint64_t> synced_writes{0};
  absl::Mutex sync_mu;  // one flush at a time

  // Held by an Apply that appends events from numbering them (reading each
  // job's last event key) until its batch is written, so two batches never
  // take the same sequence.
  absl::Mutex events_mu;

  // Flushes what is unsynced and closes the database (rocksdb_store_open.cc).
  ~Impl();

  rocksdb::ColumnFamilyHandle* cf(Cf which) const {
    return handles[which].get();
  }

  absl::Mutex& ChunkLock(const ChunkId& id) {
    return chunk_locks[static_cast<uint8_t>(id.bytes()[0]) %
                       rocksdb_internal::kChunkLockStripes];
  }

  // Flushes every family when chunk writes happened since the last flush
  // (rocksdb_store.cc).
  absl::Status SyncChunks();

  // Writes `bytes` to a chunk file and stages it under `key`; the caller
  // holds ChunkLock(id) and has checked it is not stored. Returns whether
  // CompleteStaged is due (rocksdb_store_staged.cc).
  absl::StatusOr<bool> StageFileChunk(const std::string& key, const ChunkId& id,
                                      absl::string_view bytes,
                                      const ChunkChecksum& checksum);

  // Syncs the files of every chunk staged now (and their directories), then
  // writes their index entries. A chunk whose file could not be synced is
  // dropped (file removed, never indexed) and the first such error
  // returned: a commit that counted on it finds it missing after Sync.
  absl::Status CompleteStaged();

  // ChunkStore::Sizes, with or without staged chunks (DurableSizes)
  // (rocksdb_store.cc).
  absl::StatusOr<std::vector<std::optional<uint64_t>>> Sizes(
      absl::string_view tenant, absl::Span<const ChunkId> ids,
      bool include_staged);

  // The staged chunk under `key`, if any.
  std::optional<StagedChunk> FindStaged(const std::string& key);

  // Drops the staged chunk under `key` and removes its file (it was never
  // indexed); false when none is staged. The caller holds its ChunkLock.
  bool DropStaged(const std::string& key);

  // Makes every chunk deletion so far durable, then removes the files of the
  // deleted chunks (rocksdb_store.cc).
  absl::Status RemoveDeletedFiles();

  // The bytes of (tenant, id), unverified, and its index entry in `index`:
  // ChunkNotFound when absent, DATA_LOSS when its file is missing or of
  // another length than the index says (rocksdb_store.cc).
  absl::StatusOr<std::string> ReadChunk(absl::string_view tenant,
                                        const ChunkId& id,
                                        ChunkIndexValue* index);

  // The bytes of a chunk as its index entry describes them: from its file
  // or from the `chunks` family. NOT_FOUND when absent (rocksdb_store.cc).
  absl::StatusOr<std::string> ReadChunkBytes(absl::string_view key,
                                             const ChunkIndexValue& index,
                                             const ChunkId& id);

  // Writes a chunk's entries (or their deletion) without the WAL; Sync()
  // makes them durable (rocksdb_store.cc).
  absl::Status WriteChunkBatch(rocksdb::WriteBatch* batch,
                               absl::string_view context);

  // Gets RocksDB writing again after it stopped on a background error:
  // OK when it writes (or already did). RESOURCE_EXHAUSTED while the volume
  // has no room for the memtables (Resume is not even tried), UNAVAILABLE
  // when Resume did not finish within resume_timeout, else Resume's error.
  absl::Status Recover();

  // RESOURCE_EXHAUSTED when the volume has less than min_free_bytes plus
  // `more` free (see MinFreeBytes); OK when it has enough or cannot be
  // measured.
  absl::Status CheckRoom(absl::string_view what, uint64_t more = 0);

  // Bytes in memtables, i.e. what flushing everything writes.
  uint64_t MemtableBytes();

  // Runs `write`; when it fails because RocksDB stopped on a background
  // error, recovers (bounded) and runs it once more. A write that finds the
  // disk still full keeps its own error (RESOURCE_EXHAUSTED).
  absl::Status WriteRecovering(absl::FunctionRef<absl::Status()> write);

  // Calls fn(key, value) for each entry of `which` whose key starts with
  // `prefix` (all when empty), in key order, until fn fails.
  template <typename Fn>
  absl::Status Scan(Cf which, absl::string_view prefix,
                    const rocksdb::Snapshot* snapshot, Fn&& fn) {
    rocksdb::ReadOptions read;
    read.snapshot = snapshot;
    const std::string end = PrefixSuccessor(prefix);
    const rocksdb::Slice end_slice = rocksdb_internal::ToSlice(end);
    if (!end.empty()) read.iterate_upper_bound = &end_slice;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(read, cf(which)));
    for (it->Seek(rocksdb_internal::ToSlice(prefix)); it->Valid(); it->Next()) {
      CKPT_RETURN_IF_ERROR(fn(rocksdb_internal::ToView(it->key()),
                              rocksdb_internal::ToView(it->value())));
    }
    return FromRocksDb(
        it->status(),
        absl::StrCat("scanning ", rocksdb_internal::kCfNames[which]));
  }

  // Calls fn(key, value) for the last `max_entries` entries of `which` whose
  // key starts with `prefix`, in reverse key order, until fn fails.
  template <typename Fn>
  absl::Status ReverseScan(Cf which, absl::string_view prefix,
                           size_t max_entries, Fn&& fn) {
    rocksdb::ReadOptions read;
    const std::string end = PrefixSuccessor(prefix);
    const rocksdb::Slice begin_slice = rocksdb_internal::ToSlice(prefix);
    const rocksdb::Slice end_slice = rocksdb_internal::ToSlice(end);
    read.iterate_lower_bound = &begin_slice;
    if (!end.empty()) read.iterate_upper_bound = &end_slice;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(read, cf(which)));
    size_t visited = 0;
    for (it->SeekToLast(); it->Valid() && visited < max_entries;
         it->Prev(), ++visited) {
      CKPT_RETURN_IF_ERROR(fn(rocksdb_internal::ToView(it->key()),
                              rocksdb_internal::ToView(it->value())));
    }
    return FromRocksDb(
        it->status(),
        absl::StrCat("scanning ", rocksdb_internal::kCfNames[which]));
  }

  // The job's highest stored event sequence; 0 when it has none
  // (rocksdb_store.cc).
  absl::StatusOr<uint64_t> LastEventSequence(absl::string_view job);

  // The value of `key` in `which`; nullopt when absent (rocksdb_store.cc).
  absl::StatusOr<std::optional<std::string>> GetValue(
      Cf which, absl::string_view key, const rocksdb::Snapshot* snapshot);
};

}  // namespace ckpt::server
