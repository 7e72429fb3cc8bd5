// RocksDbStore: ChunkStore and MetadataStore in one local RocksDB database.
// Includes no RocksDB header (pimpl), so users of the store do not either.
//
// Layout: column families
//   chunks       ChunkKey -> chunk bytes, for chunks under
//                file_chunk_min_bytes (integrated BlobDB: values of at
//                least min_blob_size live in blob files, uncompressed)
//   chunk_index  ChunkKey -> size, checksum, and for a larger chunk the
//                number of the file (chunk_files/, chunk_files.h) holding
//                its bytes; Put/Sizes/GetUsage/ForEach read only this
//   manifests    CheckpointKey -> committed header (EncodeCheckpointRecord)
//   pending      CheckpointKey -> pending or aborted header
//   shards       ShardKey -> EncodeShard
//   jobs         job name -> EncodeJobRecord
//   events       EventKey (job, sequence) -> EncodeJobEvent; each job's
//                newest kMaxEventsPerJob, older ones range-deleted in the
//                batch that pushes them out
// with the key encodings of server/storage/keys.h. A database written before
// a family existed gains it, empty, on open.
//
// Durability, and what a crash in the middle leaves behind:
// - Chunk Put/Delete write `chunks` and `chunk_index` in one WriteBatch
//   with the WAL disabled, so a chunk's bytes reach the disk once (into a
//   blob file when the memtable is flushed) instead of twice. Sync()
//   flushes both column families together (DBOptions::atomic_flush), and
//   every automatic flush is atomic too, so after any crash a chunk is
//   either wholly present in both families or absent from both: an index
//   entry never points at missing bytes. A crash loses the Puts and Deletes
//   made since the last Sync(); a lost Delete only delays garbage
//   collection. A clean close (destruction) flushes them first.
// - A chunk in a file: Put writes the file and stages the chunk; Sync()
//   syncs the staged files (and their directories) before it writes their
//   index entries, so whenever RocksDB flushes an entry its file is
//   durable (rocksdb_store_staged.cc). A chunk whose file cannot be synced
//   is dropped and Sync() fails. Delete removes the index entry only; the
//   file goes once the deletion is flushed (ReclaimSpace, a clean close).
//   Files no durable index entry names (a crash before the sync or the
//   flush) are removed at open.
// - Apply() writes one WriteBatch through the WAL with sync=true: after a
//   crash a batch is either wholly applied or not at all, events included.
//   Event sequences continue from each job's last stored key, so they stay
//   monotonic across restarts and crashes.
// - Callers Sync() chunks before Apply()ing a manifest that references
//   them (the service does), so a crash never leaves a committed manifest
//   pointing at lost chunk bytes; at worst it leaves synced chunks that no
//   manifest references, which GC removes.
// - Corrupt stored values read back as DATA_LOSS; RocksDB errors convert to
//   absl codes in rocksdb_status.cc only.
//
// A full disk: writes RocksDB would have no room for are refused first
// (reserve_free_space), RESOURCE_EXHAUSTED saying the disk is full; reads
// go on. Should RocksDB still stop on a background error (space taken by
// others mid-flush), the next write or Health() resumes it (DB::Resume,
// bounded by resume_timeout) once the memtables fit: no reopen, no hang.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/storage/chunk_store.h"
#include "server/storage/metadata_store.h"

namespace rocksdb {
class Env;  // only a pointer is held here; no RocksDB header is included
}  // namespace rocksdb

namespace ckpt::server {

struct RocksDbStoreOptions {
  // Create the directory and the database (with its column families) when
  // missing; otherwise Open of a missing database fails.
  // Default: true
  bool create_if_missing = true;

  // Memtable size of `chunks` (and `chunk_index`, flushed with it). Large,
  // because chunks are big sequential values and each flush writes one run
  // of blob files.
  // Default: 128 MiB
  uint64_t chunk_write_buffer_size = uint64_t{128} << 20;

  // Memtables per column family before writes stall.
  // Default: 4
  int max_write_buffer_number = 4;

  // Background flush and compaction threads. RocksDB 7.8 ignores it once
  // max_background_flushes is set (as here): it then runs that many
  // flushes and one compaction.
  // Default: 4
  int max_background_jobs = 4;

  // Flushes that may run at once. One: with atomic_flush, RocksDB 7.8
  // mishandles two flushes that fail together (a full disk fails every
  // flush): a younger flush waiting to install behind a failed older one
  // leaves memtables marked "being flushed" that no job owns, so DB::Resume
  // waits forever for them (RocksDB PR 11872, fixed in 8.7), and the
  // rollback of a flush that picked no memtable aborts the process
  // (memtable_list.cc:440, `!mems.empty()`). Both were seen under ASan's
  // timing with two. Saves may be slower (docs/operations.md has a noisy
  // measurement).
  // Default: 1
  int max_background_flushes = 1;

  // Threads that open the table files at Open (RocksDB's
  // max_file_opening_threads): Open starts this many less one, and joins
  // them before it returns. 1 opens them on the calling thread and starts
  // none, for processes that reopen stores often and must not churn
  // threads (the fuzz harnesses, tests/fuzz/fuzz_store.h).
  // Default: 16 (RocksDB's)
  int max_file_opening_threads = 16;

  // How long a write (or Health) that finds RocksDB stopped on a background
  // error waits for DB::Resume. Past it the call fails with UNAVAILABLE
  // while Resume carries on; nothing waits on RocksDB unbounded.
  // Default: 30 s
  absl::Duration resume_timeout = absl::Seconds(30);

  // Refuse writes (RESOURCE_EXHAUSTED, "the server's disk is full") while
  // the volume lacks room for them: a chunk Put needs room for every
  // unflushed memtable plus itself, any write a WAL block plus 1 MiB.
  // RocksDB 7.8 then never runs out of space on its own writes: a failed
  // atomic flush can abort the process (RollbackMemtableFlush's
  // `!mems.empty()` assertion, when one family of the flush had nothing to
  // flush) and a failed WAL append can stop the database until a restart.
  // Recovery (DB::Resume) remains for space taken by others meanwhile. Off
  // only in tests that drive RocksDB into ENOSPC on purpose.
  // Default: true
  bool reserve_free_space = true;

  // Size RocksDB to the data directory's volume (volume_sizing.h): caps
  // memtables, blob files, the WAL, the MANIFEST and the LOG by fractions
  // of the volume. Off only for tests that need the sizes above as given.
  // Default: true
  bool size_to_volume = true;

  // Write and read RocksDB's blob and table files with O_DIRECT (chunk
  // files, below, always go through the page cache). Off by default: with
  // one flush thread (max_background_flushes) each synchronous 1 MiB
  // O_DIRECT write of a flush waited for the disk, and saves ran at a third
  // of their buffered speed (docs/operations.md has the figures). Ignored
  // (with a log line) where the file system has no O_DIRECT, e.g. tmpfs.
  // Default: false
  bool direct_io = false;

  // Chunks at least this large are stored in files of their own
  // (chunk_files.h), written by the thread that stores them and synced in
  // batches; the index keeps their size, checksum and file number. Smaller ones
  // stay in the `chunks` column family, where a file and two fsyncs each would
  // cost more than the bytes. UINT64_MAX keeps every chunk in RocksDB. Default:
  // 1 MiB
  uint64_t file_chunk_min_bytes = uint64_t{1} << 20;

  // Chunk values at least this large go to blob files; smaller ones stay
  // inline in the SST files.
  // Default: 4 KiB
  uint64_t min_blob_size = uint64_t{4} << 10;

  // Target size of one blob file.
  // Default: 256 MiB
  uint64_t blob_file_size = uint64_t{256} << 20;

  // LRU block cache shared by every column family (index, filter and small
  // value blocks; chunk bodies in blob files bypass it).
  // Default: 32 MiB
  uint64_t block_cache_bytes = uint64_t{32} << 20;

  // The RocksDB environment (its file system above all) the database runs
  // on; the store keeps it alive until closed. Only tests set it, to run
  // the store on a file system that simulates power loss (tests/testing/
  // power_loss_fs.h). The store's own LOG and the O_DIRECT probe bypass it.
  // Default: nullptr (RocksDB's default environment)
  std::shared_ptr<rocksdb::Env> env;
};

// Whether the store can take writes now, and if not why (RocksDbStore::
// Health). A write stall (RocksDB holding writers while it flushes) is
// reported but leaves the store writable: stalled writes finish.
struct StoreHealth {
  enum class Problem {
    kNone,
    // The data directory's volume is full, or RocksDB stopped on ENOSPC and
    // the volume has no room yet to flush its memtables and resume.
    kNoSpace,
    // RocksDB stopped writing on another background error (or could not
    // resume from one).
    kBackgroundError,
  };
  Problem problem = Problem::kNone;
  // Why, in words for an operator's log; empty when writable.
  std::string detail;
  // RocksDB is holding writers (rocksdb.is-write-stopped).
  bool write_stopped = false;
  // The volume of the data directory (0 when statvfs failed).
  uint64_t volume_total_bytes = 0;
  uint64_t volume_free_bytes = 0;

  bool writable() const { return problem == Problem::kNone; }
};

// Thread-safe. ForEach iterates a consistent snapshot taken when it starts;
// `fn` may call back into the store.
class RocksDbStore final : public ChunkStore, public MetadataStore {
 public:
  // Opens (by default creating) the database in directory `dir`.
  // FAILED_PRECONDITION when `dir` exists but is not a directory; otherwise
  // the converted RocksDB error (e.g. UNAVAILABLE when the database is
  // locked by another process).
  static absl::StatusOr<std::unique_ptr<RocksDbStore>> Open(
      const std::string& dir, RocksDbStoreOptions options = {});

  struct Impl;
  // Only Open can name Passkey, so only Open constructs.
  class Passkey {
    explicit Passkey() = default;
    friend class RocksDbStore;
  };
  RocksDbStore(Passkey, std::unique_ptr<Impl> impl);

  // Flushes unsynced chunk writes, then closes the database.
  ~RocksDbStore() override;
  RocksDbStore(const RocksDbStore&) = delete;
  RocksDbStore& operator=(const RocksDbStore&) = delete;

  // ChunkStore. Put/Delete of an empty tenant (or one containing '\0') is
  // INVALID_ARGUMENT / a no-op respectively.
  absl::StatusOr<bool> Put(absl::string_view tenant, const ChunkId& id,
                           absl::string_view bytes) override;
  absl::StatusOr<std::string> Get(absl::string_view tenant,
                                  const ChunkId& id) override;
  // Checks the XXH3-128 recorded at Put (SHA-256 for chunks stored before
  // checksums were) and hands over the pinned bytes without a copy.
  absl::Status ReadVerified(
      absl::string_view tenant, const ChunkId& id,
      absl::FunctionRef<absl::Status(absl::string_view bytes)> consume)
      override;
  // The same check; returns the bytes read, not a copy.
  absl::StatusOr<std::string> ReadVerifiedBytes(absl::string_view tenant,
                                                const ChunkId& id) override;
  // One MultiGet of `chunk_index`.
  absl::StatusOr<std::vector<std::optional<uint64_t>>> Sizes(
      absl::string_view tenant, absl::Span<const ChunkId> ids) override;
  absl::StatusOr<std::vector<std::optional<uint64_t>>> DurableSizes(
      absl::string_view tenant, absl::Span<const ChunkId> ids) override;
  absl::Status Delete(absl::string_view tenant, const ChunkId& id) override;
  // Flushes `chunks` + `chunk_index` when anything was put or deleted since
  // the last successful Sync; otherwise returns at once.
  absl::Status Sync() override;
  // Scans the tenant's `chunk_index` range: O(chunks), reads no body.
  absl::StatusOr<Usage> GetUsage(absl::string_view tenant) override;
  absl::Status ForEach(
      absl::string_view tenant,
      absl::FunctionRef<absl::Status(absl::string_view tenant,
                                     const ChunkId& id, uint64_t size)>
          fn) override;
  // Compacts `chunk_index` and `chunks` so deleted chunks' keys are dropped
  // and blob files holding only dead chunks are removed, then rewrites the
  // live chunks of the oldest blob files when at least half of their bytes
  // are dead (the longest such prefix of files; checkpoints die roughly
  // oldest first, so dead bytes gather there). Live chunks in files that
  // are mostly alive stay where they are, so a sweep that frees little
  // rewrites little. Best effort where a background compaction holds files.
  absl::StatusOr<DiskUsage> ReclaimSpace() override;

  // MetadataStore. Reads that touch both `manifests` and `pending` use one
  // snapshot, so a concurrent commit is seen either before or after.
  absl::StatusOr<std::optional<JobRecord>> GetJob(
      absl::string_view job) override;
  absl::StatusOr<std::vector<JobRecord>> ListJobs() override;
  absl::StatusOr<std::optional<TenantRecord>> GetTenant(
      absl::string_view tenant) override;
  absl::StatusOr<CheckpointRecord> GetCheckpoint(absl::string_view job,
                                                 int64_t step) override;
  absl::StatusOr<std::vector<CheckpointRecord>> ListCheckpoints(
      absl::string_view job) override;
  absl::StatusOr<std::vector<CheckpointRecord>> ListPending() override;
  absl::StatusOr<std::vector<ShardManifest>> GetShards(absl::string_view job,
                                                       int64_t step) override;
  absl::Status ForEachShard(
      absl::FunctionRef<absl::Status(absl::string_view job, int64_t step,
                                     const ShardManifest& shard)>
          fn) override;
  absl::StatusOr<std::vector<JobEvent>> ListEvents(absl::string_view job,
                                                   size_t limit) override;
  absl::Status Apply(const MetadataBatch& batch) override;

  // For monitoring: an integer RocksDB property of the database (e.g.
  // "rocksdb.is-write-stopped", "rocksdb.background-errors"); nullopt when
  // RocksDB does not know it. Read-only.
  std::optional<uint64_t> IntProperty(const std::string& name) const;

  // Whether writes can succeed now. When RocksDB stopped on a background
  // error and the volume has room for its memtables again, first resumes
  // it (DB::Resume, waiting at most resume_timeout), so polling Health
  // brings a store back after space was freed even with no write coming.
  StoreHealth Health();

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace ckpt::server
