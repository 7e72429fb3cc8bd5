// RocksDbStore: both storage interfaces over one RocksDB database (column
// families per kind, BlobDB for chunk values, synced batches). Over 600 lines
// because it is one job: every ChunkStore and MetadataStore method over the
// same handles and key layout (keys.h), which splitting would only scatter.
#include "server/storage/rocksdb_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <filesystem>
#include <optional>
#include <system_error>
#include <utility>
#include <variant>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/wire_format.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/options.h"
#include "rocksdb/slice.h"
#include "rocksdb/snapshot.h"
#include "rocksdb/table.h"
#include "rocksdb/write_batch.h"
#include "server/storage/keys.h"
#include "server/storage/rocksdb_status.h"
#include "server/storage/store_health.h"
#include "server/storage/tolerant_info_log.h"
#include "server/storage/volume_sizing.h"

namespace ckpt::server {
namespace {

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
  kNumCfs,
};
constexpr std::array<const char*, kNumCfs> kCfNames = {
    "default",  // == rocksdb::kDefaultColumnFamilyName
    "chunks",  "chunk_index", "manifests", "pending",
    "shards",  "jobs",        "events"};

// Put/Delete of one chunk check-then-write under one of these (chosen by
// the digest, which is uniform), so two concurrent Puts of the same chunk
// cannot both report it new.
constexpr size_t kChunkLockStripes = 64;

rocksdb::Slice ToSlice(absl::string_view s) { return {s.data(), s.size()}; }
absl::string_view ToView(const rocksdb::Slice& s) {
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

rocksdb::BlockBasedTableOptions TableOptions(
    const std::shared_ptr<rocksdb::Cache>& cache, bool bloom) {
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache;
  if (bloom) {
    // Contains/Put look up mostly absent keys: a filter saves the reads.
    table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  }
  return table;
}

std::vector<rocksdb::ColumnFamilyDescriptor> Descriptors(
    const RocksDbStoreOptions& options, const VolumeSizes& sizes,
    const std::shared_ptr<rocksdb::Cache>& cache) {
  rocksdb::ColumnFamilyOptions small;
  small.table_factory.reset(
      rocksdb::NewBlockBasedTableFactory(TableOptions(cache, false)));
  small.write_buffer_size = sizes.metadata_write_buffer_size;

  rocksdb::ColumnFamilyOptions index = small;
  index.table_factory.reset(
      rocksdb::NewBlockBasedTableFactory(TableOptions(cache, true)));
  // Flushed together with `chunks`, so sized like it.
  index.write_buffer_size = sizes.chunk_write_buffer_size;
  index.max_write_buffer_number = options.max_write_buffer_number;

  rocksdb::ColumnFamilyOptions chunks = small;
  chunks.write_buffer_size = sizes.chunk_write_buffer_size;
  chunks.max_write_buffer_number = options.max_write_buffer_number;
  chunks.enable_blob_files = true;
  chunks.min_blob_size = options.min_blob_size;
  chunks.blob_file_size = sizes.blob_file_size;
  // Tensor bytes barely compress; compressing would cost CPU for nothing.
  chunks.blob_compression_type = rocksdb::kNoCompression;
  chunks.compression = rocksdb::kNoCompression;
  // Chunks are immutable and die only by GC's explicit deletes, so blob GC
  // during compaction would rewrite live chunk bytes for little gain. Off
  // until garbage collection reclaims space deliberately.
  chunks.enable_blob_garbage_collection = false;

  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (size_t cf = 0; cf < kNumCfs; ++cf) {
    const rocksdb::ColumnFamilyOptions& cf_options = cf == kChunks ? chunks
                                                     : cf == kChunkIndex
                                                         ? index
                                                         : small;
    descriptors.emplace_back(kCfNames[cf], cf_options);
  }
  return descriptors;
}

}  // namespace

// Free space below which the store refuses metadata writes itself
// (RESOURCE_EXHAUSTED) instead of letting RocksDB try: a WAL append that
// fails on ENOSPC leaves RocksDB 7.8's WAL writer failed, and unless the
// recovery flush happens to switch to a new WAL (only when some memtable
// holds data), the next memtable switch hits the old writer's error and
// stops the database for good (a "fatal" error only a restart clears).
// Enough room for a new WAL's preallocated block, which RocksDB reserves
// at its first record, keeps WAL appends from failing; the rest is for the
// MANIFEST and LOG.
uint64_t MinFreeBytes(const VolumeSizes& sizes) {
  const uint64_t write_buffer =
      std::max(sizes.chunk_write_buffer_size, sizes.metadata_write_buffer_size);
  const uint64_t wal_block =
      std::min(write_buffer + write_buffer / 10, sizes.max_total_wal_size);
  return wal_block + (uint64_t{1} << 20);
}

struct RocksDbStore::Impl {
  std::string dir;
  absl::Duration resume_timeout;
  uint64_t min_free_bytes = 0;  // MinFreeBytes; 0: reserve_free_space off
  // Registered with RocksDB as a listener before it opens.
  std::shared_ptr<BackgroundErrorTracker> errors =
      std::make_shared<BackgroundErrorTracker>();
  // Declared before `handles`, so destroyed after them, as RocksDB requires.
  std::unique_ptr<rocksdb::DB> db;
  std::vector<CfHandle> handles;
  // Set once `db` is open; reset (joined) before it closes.
  std::unique_ptr<BoundedResume> resume;

  std::array<absl::Mutex, kChunkLockStripes> chunk_locks;

  // Chunk writes (Put/Delete) done, and how many of them the last
  // successful Sync covered. A Sync with nothing new returns at once.
  std::atomic<uint64_t> chunk_writes{0};
  std::atomic<uint64_t> synced_writes{0};
  absl::Mutex sync_mu;  // one flush at a time

  // Held by an Apply that appends events from numbering them (reading each
  // job's last event key) until its batch is written, so two batches never
  // take the same sequence.
  absl::Mutex events_mu;

  ~Impl() {
    if (db == nullptr) return;
    // Closing would flush unsynced (WAL-less) writes anyway, as
    // avoid_flush_during_shutdown is false; do it explicitly to log errors.
    if (absl::Status status = SyncChunks(); !status.ok()) {
      CKPT_LOG(Error, "flushing chunks at close: ", status.ToString());
    }
    resume.reset();  // waits for a Resume still running
    handles.clear();
    if (rocksdb::Status status = db->Close(); !status.ok()) {
      CKPT_LOG(Error, "closing RocksDB: ", status.ToString());
    }
  }

  rocksdb::ColumnFamilyHandle* cf(Cf which) const {
    return handles[which].get();
  }

  absl::Mutex& ChunkLock(const ChunkId& id) {
    return chunk_locks[static_cast<uint8_t>(id.bytes()[0]) % kChunkLockStripes];
  }

  absl::Status SyncChunks() {
    const uint64_t target = chunk_writes.load(std::memory_order_acquire);
    if (synced_writes.load(std::memory_order_acquire) >= target) {
      return absl::OkStatus();
    }
    absl::MutexLock lock(&sync_mu);
    // A Sync that ran while this one waited may have covered `target`.
    if (synced_writes.load(std::memory_order_acquire) >= target) {
      return absl::OkStatus();
    }
    rocksdb::FlushOptions flush;
    flush.wait = true;
    flush.allow_write_stall = true;
    // Every family, not just `chunks` and `chunk_index`: under atomic_flush
    // RocksDB 7.8 asserts that all families of one flush job share a flush
    // reason, and a manual flush of some of them racing an automatic flush
    // of all of them broke that (an abort after a full disk was freed).
    std::vector<rocksdb::ColumnFamilyHandle*> families;
    for (const CfHandle& handle : handles) families.push_back(handle.get());
    CKPT_RETURN_IF_ERROR(WriteRecovering([&] {
      return FromRocksDb(db->Flush(flush, families), "flushing chunks");
    }));
    synced_writes.store(target, std::memory_order_release);
    return absl::OkStatus();
  }

  // Gets RocksDB writing again after it stopped on a background error:
  // OK when it writes (or already did). RESOURCE_EXHAUSTED while the volume
  // has no room for the memtables (Resume is not even tried), UNAVAILABLE
  // when Resume did not finish within resume_timeout, else Resume's error.
  absl::Status Recover() {
    const uint64_t generation = errors->generation();
    std::optional<rocksdb::Status> error = errors->error();
    if (!error.has_value()) return absl::OkStatus();
    // Resume flushes every memtable; with less room it would only fail
    // again.
    const uint64_t needed =
        MemtableBytes() + std::max(min_free_bytes, uint64_t{1} << 20);
    absl::StatusOr<VolumeSpace> space = GetVolumeSpace(dir);
    if (space.ok() && space->free_bytes < needed) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the server's disk is full: ", space->free_bytes,
                       " bytes free, and resuming writes needs ", needed));
    }
    if (resume == nullptr) {
      return absl::UnavailableError("the server's storage is closing");
    }
    std::optional<rocksdb::Status> resumed = resume->Resume(resume_timeout);
    if (!resumed.has_value()) {
      CKPT_LOG(Error, "RocksDB did not resume within ",
               absl::FormatDuration(resume_timeout), " of a background error (",
               error->ToString(), "); writes fail until it does");
      return absl::UnavailableError(absl::StrCat(
          "the server's storage is recovering from an error and did not "
          "finish within ",
          absl::FormatDuration(resume_timeout), "; retry later"));
    }
    CKPT_RETURN_IF_ERROR(
        FromRocksDb(*resumed, "resuming writes after a background error"));
    errors->ClearUnlessNewer(generation);
    CKPT_LOG(Info, "RocksDB resumed writing after: ", error->ToString());
    return absl::OkStatus();
  }

  // RESOURCE_EXHAUSTED when the volume has less than min_free_bytes plus
  // `more` free (see MinFreeBytes); OK when it has enough or cannot be
  // measured.
  absl::Status CheckRoom(absl::string_view what, uint64_t more = 0) {
    if (min_free_bytes == 0) return absl::OkStatus();
    absl::StatusOr<VolumeSpace> space = GetVolumeSpace(dir);
    if (!space.ok() || space->free_bytes >= min_free_bytes + more) {
      return absl::OkStatus();
    }
    return absl::ResourceExhaustedError(absl::StrCat(
        what, ": the server's disk is full (", space->free_bytes,
        " bytes free; this write needs ", min_free_bytes + more, ")"));
  }

  // Bytes in memtables, i.e. what flushing everything writes.
  uint64_t MemtableBytes() {
    uint64_t bytes = 0;
    db->GetAggregatedIntProperty("rocksdb.cur-size-all-mem-tables", &bytes);
    return bytes;
  }

  // Runs `write`; when it fails because RocksDB stopped on a background
  // error, recovers (bounded) and runs it once more. A write that finds the
  // disk still full keeps its own error (RESOURCE_EXHAUSTED).
  absl::Status WriteRecovering(absl::FunctionRef<absl::Status()> write) {
    absl::Status status = write();
    if (status.ok() || !errors->error().has_value()) return status;
    absl::Status recovered = Recover();
    if (absl::IsUnavailable(recovered)) return recovered;
    if (!recovered.ok()) return status;
    return write();
  }

  // Writes a chunk's entries (or their deletion) without the WAL; Sync()
  // makes them durable.
  absl::Status WriteChunkBatch(rocksdb::WriteBatch* batch,
                               absl::string_view context) {
    rocksdb::WriteOptions write;
    write.disableWAL = true;
    CKPT_RETURN_IF_ERROR(WriteRecovering(
        [&] { return FromRocksDb(db->Write(write, batch), context); }));
    chunk_writes.fetch_add(1, std::memory_order_release);
    return absl::OkStatus();
  }

  // Calls fn(key, value) for each entry of `which` whose key starts with
  // `prefix` (all when empty), in key order, until fn fails.
  template <typename Fn>
  absl::Status Scan(Cf which, absl::string_view prefix,
                    const rocksdb::Snapshot* snapshot, Fn&& fn) {
    rocksdb::ReadOptions read;
    read.snapshot = snapshot;
    const std::string end = PrefixSuccessor(prefix);
    const rocksdb::Slice end_slice = ToSlice(end);
    if (!end.empty()) read.iterate_upper_bound = &end_slice;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(read, cf(which)));
    for (it->Seek(ToSlice(prefix)); it->Valid(); it->Next()) {
      CKPT_RETURN_IF_ERROR(fn(ToView(it->key()), ToView(it->value())));
    }
    return FromRocksDb(it->status(),
                       absl::StrCat("scanning ", kCfNames[which]));
  }

  // Calls fn(key, value) for the last `max_entries` entries of `which` whose
  // key starts with `prefix`, in reverse key order, until fn fails.
  template <typename Fn>
  absl::Status ReverseScan(Cf which, absl::string_view prefix,
                           size_t max_entries, Fn&& fn) {
    rocksdb::ReadOptions read;
    const std::string end = PrefixSuccessor(prefix);
    const rocksdb::Slice begin_slice = ToSlice(prefix);
    const rocksdb::Slice end_slice = ToSlice(end);
    read.iterate_lower_bound = &begin_slice;
    if (!end.empty()) read.iterate_upper_bound = &end_slice;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(read, cf(which)));
    size_t visited = 0;
    for (it->SeekToLast(); it->Valid() && visited < max_entries;
         it->Prev(), ++visited) {
      CKPT_RETURN_IF_ERROR(fn(ToView(it->key()), ToView(it->value())));
    }
    return FromRocksDb(it->status(),
                       absl::StrCat("scanning ", kCfNames[which]));
  }

  // The job's highest stored event sequence; 0 when it has none.
  absl::StatusOr<uint64_t> LastEventSequence(absl::string_view job) {
    uint64_t last = 0;
    CKPT_RETURN_IF_ERROR(ReverseScan(
        kEvents, JobKeyPrefix(job), 1,
        [&](absl::string_view key, absl::string_view) -> absl::Status {
          CKPT_ASSIGN_OR_RETURN(last, DecodeEventSequence(job, key));
          return absl::OkStatus();
        }));
    return last;
  }

  // The value of `key` in `which`; nullopt when absent.
  absl::StatusOr<std::optional<std::string>> GetValue(
      Cf which, absl::string_view key, const rocksdb::Snapshot* snapshot) {
    rocksdb::ReadOptions read;
    read.snapshot = snapshot;
    rocksdb::PinnableSlice value;
    rocksdb::Status status = db->Get(read, cf(which), ToSlice(key), &value);
    if (status.IsNotFound()) return std::nullopt;
    CKPT_RETURN_IF_ERROR(
        FromRocksDb(status, absl::StrCat("reading ", kCfNames[which])));
    return value.ToString();
  }
};

namespace {
// Whether files in `dir` can be opened with O_DIRECT.
bool SupportsDirectIo(const std::string& dir) {
  const std::string probe = dir + "/.direct_io_probe";
  const int fd = ::open(probe.c_str(), O_CREAT | O_WRONLY | O_DIRECT, 0600);
  if (fd < 0) {
    CKPT_LOG(Warning, "no O_DIRECT in ", dir,
             ": checkpoint files are written through the page cache");
    return false;
  }
  ::close(fd);
  ::unlink(probe.c_str());
  return true;
}
}  // namespace

RocksDbStore::RocksDbStore(Passkey, std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

RocksDbStore::~RocksDbStore() = default;

absl::StatusOr<std::unique_ptr<RocksDbStore>> RocksDbStore::Open(
    const std::string& dir, RocksDbStoreOptions options) {
  std::error_code error;
  const auto type = std::filesystem::status(dir, error).type();
  if (type != std::filesystem::file_type::not_found &&
      type != std::filesystem::file_type::directory) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot open checkpoint store at ", dir,
        error ? absl::StrCat(": ", error.message()) : ": not a directory"));
  }

  if (options.create_if_missing) {
    std::filesystem::create_directories(dir, error);
  }
  VolumeSizes sizes{.chunk_write_buffer_size = options.chunk_write_buffer_size,
                    .metadata_write_buffer_size = uint64_t{64} << 20,
                    .blob_file_size = options.blob_file_size,
                    .max_total_wal_size = kMaxWalBytes,
                    .max_manifest_file_size = uint64_t{64} << 20,
                    .info_log_max_bytes = uint64_t{8} << 20};
  if (absl::StatusOr<VolumeSpace> space = GetVolumeSpace(dir); !space.ok()) {
    CKPT_LOG(Warning, space.status().message(),
             "; RocksDB keeps its default sizes");
  } else if (options.size_to_volume) {
    sizes = SizeForVolume(space->total_bytes, options.chunk_write_buffer_size,
                          options.blob_file_size);
    if (space->total_bytes < kSmallestSensibleVolumeBytes) {
      CKPT_LOG(Warning, "the volume of ", dir, " holds only ",
               space->total_bytes >> 20, " MiB; ckpt-server is sized for ",
               kSmallestSensibleVolumeBytes >> 20,
               " MiB or more (docs/operations.md, Disk full): memtables of ",
               sizes.chunk_write_buffer_size >> 20,
               " MiB, and a single save may fill it");
    }
  }
  rocksdb::DBOptions db_options;
  // RocksDB's own LOG writer aborts after a write to it failed (a full
  // disk); this one drops the line instead.
  db_options.info_log =
      std::make_shared<TolerantInfoLog>(dir + "/LOG", sizes.info_log_max_bytes);
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  impl->resume_timeout = options.resume_timeout;
  impl->min_free_bytes = options.reserve_free_space ? MinFreeBytes(sizes) : 0;
  db_options.listeners.push_back(impl->errors);
  // Caps the WAL's preallocation too (1.1 write buffers otherwise, 141 MB).
  db_options.max_total_wal_size = sizes.max_total_wal_size;
  db_options.max_manifest_file_size = sizes.max_manifest_file_size;
  db_options.create_if_missing = options.create_if_missing;
  // Always: a database written before a column family existed (e.g.
  // `events`) gains it, empty, when opened by this build.
  db_options.create_missing_column_families = true;
  // Chunk writes skip the WAL: flushing `chunks` and `chunk_index` as one
  // unit is what keeps them consistent with each other after a crash.
  db_options.atomic_flush = true;
  db_options.max_background_jobs = options.max_background_jobs;
  // RocksDB's default "slowdown" throttles writers to 16 MiB/s as soon as
  // memtables queue for flush, far below the disk; writers should instead
  // wait only when every memtable is full (max_write_buffer_number), which
  // already bounds memory.
  db_options.delayed_write_rate = uint64_t{8} << 30;
  db_options.max_background_flushes = options.max_background_flushes;
  db_options.use_direct_io_for_flush_and_compaction =
      options.direct_io && SupportsDirectIo(dir);
  db_options.use_direct_reads =
      db_options.use_direct_io_for_flush_and_compaction;
  const std::shared_ptr<rocksdb::Cache> cache =
      rocksdb::NewLRUCache(options.block_cache_bytes);

  rocksdb::DB* raw_db = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> raw_handles;
  rocksdb::Status status =
      rocksdb::DB::Open(db_options, dir, Descriptors(options, sizes, cache),
                        &raw_handles, &raw_db);
  impl->db.reset(raw_db);
  for (rocksdb::ColumnFamilyHandle* handle : raw_handles) {
    impl->handles.emplace_back(handle, CfHandleDeleter{raw_db});
  }
  CKPT_RETURN_IF_ERROR(
      FromRocksDb(status, absl::StrCat("opening RocksDB at ", dir)));
  if (impl->handles.size() != kNumCfs) {
    return absl::InternalError("RocksDB returned the wrong number of handles");
  }
  impl->resume = std::make_unique<BoundedResume>(raw_db);
  return std::make_unique<RocksDbStore>(Passkey(), std::move(impl));
}

absl::StatusOr<bool> RocksDbStore::Put(absl::string_view tenant,
                                       const ChunkId& id,
                                       absl::string_view bytes) {
  CKPT_RETURN_IF_ERROR(ValidateTenant(tenant));
  const std::string key = ChunkKey(tenant, id);
  const std::string index_value =
      EncodeChunkIndexValue(bytes.size(), ComputeChunkChecksum(bytes));
  absl::MutexLock lock(&impl_->ChunkLock(id));
  CKPT_ASSIGN_OR_RETURN(std::optional<std::string> existing,
                        impl_->GetValue(kChunkIndex, key, nullptr));
  if (existing.has_value()) return false;
  CKPT_RETURN_IF_ERROR(
      impl_->CheckRoom(absl::StrCat("writing chunk ", id.ShortHex()),
                       impl_->MemtableBytes() + bytes.size()));
  rocksdb::WriteBatch batch;
  CKPT_RETURN_IF_ERROR(
      FromRocksDb(batch.Put(impl_->cf(kChunks), ToSlice(key), ToSlice(bytes)),
                  "batching chunk"));
  CKPT_RETURN_IF_ERROR(FromRocksDb(
      batch.Put(impl_->cf(kChunkIndex), ToSlice(key), ToSlice(index_value)),
      "batching chunk"));
  CKPT_RETURN_IF_ERROR(impl_->WriteChunkBatch(
      &batch, absl::StrCat("writing chunk ", id.ShortHex())));
  return true;
}

absl::StatusOr<std::string> RocksDbStore::Get(absl::string_view tenant,
                                              const ChunkId& id) {
  if (!ValidateTenant(tenant).ok()) return ChunkNotFound(tenant, id);
  rocksdb::PinnableSlice value;
  rocksdb::ReadOptions read;
  // Debian's RocksDB computes CRC32C in software (no SSE4.2 build), slower
  // than the SHA-256 every reader of a chunk verifies anyway; skip it.
  read.verify_checksums = false;
  rocksdb::Status status = impl_->db->Get(
      read, impl_->cf(kChunks), ToSlice(ChunkKey(tenant, id)), &value);
  if (status.IsNotFound()) return ChunkNotFound(tenant, id);
  CKPT_RETURN_IF_ERROR(
      FromRocksDb(status, absl::StrCat("reading chunk ", id.ShortHex())));
  // The one copy: from the pinned block or blob into the result.
  return std::string(value.data(), value.size());
}

absl::Status RocksDbStore::ReadVerified(
    absl::string_view tenant, const ChunkId& id,
    absl::FunctionRef<absl::Status(absl::string_view bytes)> consume) {
  if (!ValidateTenant(tenant).ok()) return ChunkNotFound(tenant, id);
  const std::string key = ChunkKey(tenant, id);
  CKPT_ASSIGN_OR_RETURN(std::optional<std::string> index_value,
                        impl_->GetValue(kChunkIndex, key, nullptr));
  if (!index_value.has_value()) return ChunkNotFound(tenant, id);
  CKPT_ASSIGN_OR_RETURN(ChunkIndexValue index,
                        DecodeChunkIndexValue(*index_value));
  rocksdb::PinnableSlice value;
  rocksdb::ReadOptions read;
  read.verify_checksums = false;  // as in Get; the check below replaces it
  rocksdb::Status status =
      impl_->db->Get(read, impl_->cf(kChunks), ToSlice(key), &value);
  if (status.IsNotFound()) return ChunkNotFound(tenant, id);
  CKPT_RETURN_IF_ERROR(
      FromRocksDb(status, absl::StrCat("reading chunk ", id.ShortHex())));
  const absl::string_view bytes(value.data(), value.size());
  if (index.checksum.has_value()) {
    if (bytes.size() != index.size ||
        ComputeChunkChecksum(bytes) != *index.checksum) {
      return absl::DataLossError(absl::StrCat(
          "chunk ", id.ToHex(), " is corrupt: its ", bytes.size(),
          " stored bytes do not match the checksum recorded when it was "
          "stored"));
    }
  } else if (const ChunkId actual = Sha256(bytes); actual != id) {
    return absl::DataLossError(
        absl::StrCat("chunk ", id.ToHex(),
                     " is corrupt: its stored bytes hash to ", actual.ToHex()));
  }
  return consume(bytes);
}

absl::StatusOr<std::vector<std::optional<uint64_t>>> RocksDbStore::Sizes(
    absl::string_view tenant, absl::Span<const ChunkId> ids) {
  std::vector<std::optional<uint64_t>> sizes(ids.size());
  if (ids.empty() || !ValidateTenant(tenant).ok()) return sizes;
  std::vector<std::string> keys;
  std::vector<rocksdb::Slice> slices;
  keys.reserve(ids.size());
  slices.reserve(ids.size());
  for (const ChunkId& id : ids) {
    keys.push_back(ChunkKey(tenant, id));
    slices.push_back(ToSlice(keys.back()));
  }
  std::vector<rocksdb::PinnableSlice> values(ids.size());
  std::vector<rocksdb::Status> statuses(ids.size());
  impl_->db->MultiGet(rocksdb::ReadOptions(), impl_->cf(kChunkIndex),
                      ids.size(), slices.data(), values.data(),
                      statuses.data());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (statuses[i].IsNotFound()) continue;
    CKPT_RETURN_IF_ERROR(FromRocksDb(statuses[i], "looking up chunks"));
    CKPT_ASSIGN_OR_RETURN(ChunkIndexValue index,
                          DecodeChunkIndexValue(ToView(values[i])));
    sizes[i] = index.size;
  }
  return sizes;
}

absl::Status RocksDbStore::Delete(absl::string_view tenant, const ChunkId& id) {
  if (!ValidateTenant(tenant).ok()) return absl::OkStatus();
  const std::string key = ChunkKey(tenant, id);
  absl::MutexLock lock(&impl_->ChunkLock(id));
  rocksdb::WriteBatch batch;
  CKPT_RETURN_IF_ERROR(FromRocksDb(
      batch.Delete(impl_->cf(kChunks), ToSlice(key)), "batching delete"));
  CKPT_RETURN_IF_ERROR(FromRocksDb(
      batch.Delete(impl_->cf(kChunkIndex), ToSlice(key)), "batching delete"));
  return impl_->WriteChunkBatch(&batch,
                                absl::StrCat("deleting chunk ", id.ShortHex()));
}

absl::Status RocksDbStore::Sync() { return impl_->SyncChunks(); }

absl::StatusOr<ChunkStore::Usage> RocksDbStore::GetUsage(
    absl::string_view tenant) {
  Usage usage;
  CKPT_RETURN_IF_ERROR(impl_->Scan(
      kChunkIndex, ChunkKeyPrefix(tenant), nullptr,
      [&](absl::string_view, absl::string_view value) -> absl::Status {
        CKPT_ASSIGN_OR_RETURN(ChunkIndexValue index,
                              DecodeChunkIndexValue(value));
        ++usage.chunk_count;
        usage.bytes += index.size;
        return absl::OkStatus();
      }));
  return usage;
}

absl::Status RocksDbStore::ForEach(
    absl::string_view tenant,
    absl::FunctionRef<absl::Status(absl::string_view tenant, const ChunkId& id,
                                   uint64_t size)>
        fn) {
  return impl_->Scan(
      kChunkIndex, ChunkKeyPrefix(tenant), nullptr,
      [&](absl::string_view key, absl::string_view value) -> absl::Status {
        CKPT_ASSIGN_OR_RETURN(DecodedChunkKey decoded, DecodeChunkKey(key));
        CKPT_ASSIGN_OR_RETURN(ChunkIndexValue index,
                              DecodeChunkIndexValue(value));
        return fn(decoded.tenant, decoded.id, index.size);
      });
}

namespace {

// Table and blob file bytes of one column family.
uint64_t DiskBytes(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
  rocksdb::ColumnFamilyMetaData meta;
  db->GetColumnFamilyMetaData(cf, &meta);
  return meta.size + meta.blob_file_size;
}

// The fraction of the oldest blob files worth rewriting: the longest prefix
// (by file number, i.e. age) whose dead bytes are at least its live bytes,
// so rewriting it moves no more bytes than it frees. 0 when none is.
double BlobGcAgeCutoff(std::vector<rocksdb::BlobMetaData> files) {
  std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) {
    return a.blob_file_number < b.blob_file_number;
  });
  uint64_t dead = 0;
  uint64_t total = 0;
  size_t best = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    dead += files[i].garbage_blob_bytes;
    total += files[i].total_blob_bytes;
    if (dead > 0 && 2 * dead >= total) best = i + 1;
  }
  return files.empty()
             ? 0.0
             : static_cast<double>(best) / static_cast<double>(files.size());
}

// Compacts every table file of `cf` into its last level, which drops
// deleted keys. CompactFiles, unlike CompactRange, never flushes: a manual
// flush racing the commits' flushes trips a RocksDB 7.8 assertion under
// atomic_flush (fixed upstream in 8.0, PR 11111). A background compaction
// holding some file makes it fail with Aborted; that compaction drops the
// same keys, so it is logged and not an error.
absl::Status CompactTableFiles(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                               absl::string_view what) {
  rocksdb::ColumnFamilyMetaData meta;
  db->GetColumnFamilyMetaData(cf, &meta);
  std::vector<std::string> files;
  for (const rocksdb::LevelMetaData& level : meta.levels) {
    for (const rocksdb::SstFileMetaData& file : level.files) {
      files.push_back(file.name);
    }
  }
  if (files.empty()) return absl::OkStatus();
  rocksdb::CompactionOptions options;
  options.compression = rocksdb::kNoCompression;
  const rocksdb::Status status = db->CompactFiles(
      options, cf, files, static_cast<int>(meta.levels.size()) - 1);
  if (status.IsAborted()) {
    CKPT_LOG(Info, what, " skipped: ", status.ToString());
    return absl::OkStatus();
  }
  return FromRocksDb(status, what);
}

}  // namespace

absl::StatusOr<ChunkStore::DiskUsage> RocksDbStore::ReclaimSpace() {
  rocksdb::DB* db = impl_->db.get();
  rocksdb::ColumnFamilyHandle* chunks = impl_->cf(kChunks);
  rocksdb::ColumnFamilyHandle* index = impl_->cf(kChunkIndex);
  // Deletes not yet flushed would survive the compactions below.
  CKPT_RETURN_IF_ERROR(impl_->SyncChunks());
  DiskUsage usage;
  usage.bytes_before = DiskBytes(db, chunks) + DiskBytes(db, index);

  // Pass 1: drop deleted keys. RocksDB counts the blobs they pointed at as
  // garbage and deletes blob files that hold nothing else.
  CKPT_RETURN_IF_ERROR(CompactTableFiles(db, index, "compacting chunk_index"));
  CKPT_RETURN_IF_ERROR(CompactTableFiles(db, chunks, "compacting chunks"));

  // Pass 2: move the live chunks out of mostly-dead old blob files, with
  // blob GC switched on for just this compaction.
  rocksdb::ColumnFamilyMetaData meta;
  db->GetColumnFamilyMetaData(chunks, &meta);
  const double cutoff = BlobGcAgeCutoff(meta.blob_files);
  if (cutoff > 0) {
    CKPT_RETURN_IF_ERROR(FromRocksDb(
        db->SetOptions(chunks, {{"enable_blob_garbage_collection", "true"},
                                {"blob_garbage_collection_age_cutoff",
                                 absl::StrCat(cutoff)}}),
        "enabling blob garbage collection"));
    absl::Status rewritten = CompactTableFiles(
        db, chunks, "rewriting live chunks of old blob files");
    absl::Status restored = FromRocksDb(
        db->SetOptions(chunks, {{"enable_blob_garbage_collection", "false"}}),
        "disabling blob garbage collection");
    CKPT_RETURN_IF_ERROR(rewritten);
    CKPT_RETURN_IF_ERROR(restored);
  }
  usage.bytes_after = DiskBytes(db, chunks) + DiskBytes(db, index);
  return usage;
}

absl::StatusOr<std::optional<JobRecord>> RocksDbStore::GetJob(
    absl::string_view job) {
  CKPT_ASSIGN_OR_RETURN(std::optional<std::string> value,
                        impl_->GetValue(kJobs, job, nullptr));
  if (!value.has_value()) return std::nullopt;
  return DecodeJobRecord(*value);
}

absl::StatusOr<std::vector<JobRecord>> RocksDbStore::ListJobs() {
  std::vector<JobRecord> jobs;
  CKPT_RETURN_IF_ERROR(impl_->Scan(
      kJobs, "", nullptr,
      [&](absl::string_view, absl::string_view value) -> absl::Status {
        CKPT_ASSIGN_OR_RETURN(JobRecord job, DecodeJobRecord(value));
        jobs.push_back(std::move(job));
        return absl::OkStatus();
      }));
  return jobs;
}

absl::StatusOr<CheckpointRecord> RocksDbStore::GetCheckpoint(
    absl::string_view job, int64_t step) {
  if (step < 0) return CheckpointNotFound(job, step);
  const std::string key = CheckpointKey(job, step);
  rocksdb::ManagedSnapshot snapshot(impl_->db.get());
  for (Cf which : {kManifests, kPending}) {
    CKPT_ASSIGN_OR_RETURN(std::optional<std::string> value,
                          impl_->GetValue(which, key, snapshot.snapshot()));
    if (value.has_value()) return DecodeCheckpointRecord(*value);
  }
  return CheckpointNotFound(job, step);
}

absl::StatusOr<std::vector<CheckpointRecord>> RocksDbStore::ListCheckpoints(
    absl::string_view job) {
  std::vector<CheckpointRecord> records;
  rocksdb::ManagedSnapshot snapshot(impl_->db.get());
  for (Cf which : {kManifests, kPending}) {
    CKPT_RETURN_IF_ERROR(impl_->Scan(
        which, JobKeyPrefix(job), snapshot.snapshot(),
        [&](absl::string_view, absl::string_view value) -> absl::Status {
          CKPT_ASSIGN_OR_RETURN(CheckpointRecord record,
                                DecodeCheckpointRecord(value));
          records.push_back(std::move(record));
          return absl::OkStatus();
        }));
  }
  // Each family is in step order; Apply keeps a step in at most one.
  std::stable_sort(records.begin(), records.end(),
                   [](const CheckpointRecord& a, const CheckpointRecord& b) {
                     return a.step < b.step;
                   });
  return records;
}

absl::StatusOr<std::vector<CheckpointRecord>> RocksDbStore::ListPending() {
  std::vector<CheckpointRecord> records;
  CKPT_RETURN_IF_ERROR(impl_->Scan(
      kPending, "", nullptr,
      [&](absl::string_view, absl::string_view value) -> absl::Status {
        CKPT_ASSIGN_OR_RETURN(CheckpointRecord record,
                              DecodeCheckpointRecord(value));
        if (record.state == CheckpointState::kPending) {
          records.push_back(std::move(record));
        }
        return absl::OkStatus();
      }));
  return records;
}

absl::StatusOr<std::vector<ShardManifest>> RocksDbStore::GetShards(
    absl::string_view job, int64_t step) {
  std::vector<ShardManifest> shards;
  if (step < 0) return shards;
  CKPT_RETURN_IF_ERROR(impl_->Scan(
      kShards, CheckpointKey(job, step), nullptr,
      [&](absl::string_view, absl::string_view value) -> absl::Status {
        CKPT_ASSIGN_OR_RETURN(ShardManifest shard, DecodeShard(value));
        shards.push_back(std::move(shard));
        return absl::OkStatus();
      }));
  return shards;
}

absl::Status RocksDbStore::ForEachShard(
    absl::FunctionRef<absl::Status(absl::string_view job, int64_t step,
                                   const ShardManifest& shard)>
        fn) {
  // An iterator reads the implicit snapshot of its creation.
  return impl_->Scan(
      kShards, "", nullptr,
      [&](absl::string_view key, absl::string_view value) -> absl::Status {
        CKPT_ASSIGN_OR_RETURN(DecodedShardKey decoded, DecodeShardKey(key));
        CKPT_ASSIGN_OR_RETURN(ShardManifest shard, DecodeShard(value));
        return fn(decoded.job, decoded.step, shard);
      });
}

absl::StatusOr<std::vector<JobEvent>> RocksDbStore::ListEvents(
    absl::string_view job, size_t limit) {
  std::vector<JobEvent> events;
  CKPT_RETURN_IF_ERROR(impl_->ReverseScan(
      kEvents, JobKeyPrefix(job), limit,
      [&](absl::string_view, absl::string_view value) -> absl::Status {
        CKPT_ASSIGN_OR_RETURN(JobEvent event, DecodeJobEvent(value));
        events.push_back(std::move(event));
        return absl::OkStatus();
      }));
  std::reverse(events.begin(), events.end());
  return events;
}

absl::Status RocksDbStore::Apply(const MetadataBatch& batch) {
  CKPT_RETURN_IF_ERROR(ValidateBatch(batch));
  if (batch.empty()) return absl::OkStatus();
  const bool appends_events = std::any_of(
      batch.ops().begin(), batch.ops().end(), [](const MetadataBatch::Op& op) {
        return std::holds_alternative<MetadataBatch::AppendEventOp>(op);
      });
  std::optional<absl::MutexLock> events_lock;
  if (appends_events) events_lock.emplace(&impl_->events_mu);
  EventSequencer sequencer;
  auto last_stored = [this](absl::string_view job) {
    return impl_->LastEventSequence(job);
  };
  rocksdb::WriteBatch write_batch;
  auto put = [&](Cf which, absl::string_view key, absl::string_view value) {
    return FromRocksDb(
        write_batch.Put(impl_->cf(which), ToSlice(key), ToSlice(value)),
        "batching metadata");
  };
  auto del = [&](Cf which, absl::string_view key) {
    return FromRocksDb(write_batch.Delete(impl_->cf(which), ToSlice(key)),
                       "batching metadata");
  };
  for (const MetadataBatch::Op& op : batch.ops()) {
    if (const auto* put_job = std::get_if<MetadataBatch::PutJobOp>(&op)) {
      CKPT_RETURN_IF_ERROR(
          put(kJobs, put_job->job.name, EncodeJobRecord(put_job->job)));
    } else if (const auto* put_checkpoint =
                   std::get_if<MetadataBatch::PutCheckpointOp>(&op)) {
      const CheckpointRecord& record = put_checkpoint->record;
      const std::string key = CheckpointKey(record.job, record.step);
      const bool committed = record.state == CheckpointState::kCommitted;
      CKPT_RETURN_IF_ERROR(put(committed ? kManifests : kPending, key,
                               EncodeCheckpointRecord(record)));
      CKPT_RETURN_IF_ERROR(del(committed ? kPending : kManifests, key));
    } else if (const auto* del_checkpoint =
                   std::get_if<MetadataBatch::DeleteCheckpointOp>(&op)) {
      const std::string key =
          CheckpointKey(del_checkpoint->job, del_checkpoint->step);
      CKPT_RETURN_IF_ERROR(del(kManifests, key));
      CKPT_RETURN_IF_ERROR(del(kPending, key));
      // A range delete also covers shards put earlier in this same batch.
      CKPT_RETURN_IF_ERROR(
          FromRocksDb(write_batch.DeleteRange(impl_->cf(kShards), ToSlice(key),
                                              ToSlice(PrefixSuccessor(key))),
                      "batching metadata"));
    } else if (const auto* append =
                   std::get_if<MetadataBatch::AppendEventOp>(&op)) {
      JobEvent event = append->event;
      CKPT_ASSIGN_OR_RETURN(event.sequence,
                            sequencer.Next(event.job, last_stored));
      CKPT_RETURN_IF_ERROR(put(kEvents, EventKey(event.job, event.sequence),
                               EncodeJobEvent(event)));
    } else {
      const auto& put_shard = std::get<MetadataBatch::PutShardOp>(op);
      CKPT_RETURN_IF_ERROR(
          put(kShards,
              ShardKey(put_shard.job, put_shard.step, put_shard.shard.rank),
              EncodeShard(put_shard.shard)));
    }
  }
  // After the puts, so the range also covers events put by this batch.
  for (const EventSequencer::Trim& trim : sequencer.Trims()) {
    CKPT_RETURN_IF_ERROR(FromRocksDb(
        write_batch.DeleteRange(impl_->cf(kEvents),
                                ToSlice(JobKeyPrefix(trim.job)),
                                ToSlice(EventKey(trim.job, trim.keep_from))),
        "batching metadata"));
  }
  CKPT_RETURN_IF_ERROR(impl_->CheckRoom("writing metadata batch"));
  rocksdb::WriteOptions write;
  write.sync = true;
  return impl_->WriteRecovering([&] {
    return FromRocksDb(impl_->db->Write(write, &write_batch),
                       "writing metadata batch");
  });
}

StoreHealth RocksDbStore::Health() {
  StoreHealth health;
  absl::StatusOr<VolumeSpace> space = GetVolumeSpace(impl_->dir);
  if (space.ok()) {
    health.volume_total_bytes = space->total_bytes;
    health.volume_free_bytes = space->free_bytes;
  }
  if (absl::Status recovered = impl_->Recover(); !recovered.ok()) {
    health.problem = absl::IsResourceExhausted(recovered)
                         ? StoreHealth::Problem::kNoSpace
                         : StoreHealth::Problem::kBackgroundError;
    health.detail = std::string(recovered.message());
  } else if (absl::Status room = impl_->CheckRoom("writing"); !room.ok()) {
    health.problem = StoreHealth::Problem::kNoSpace;
    health.detail = std::string(room.message());
  }
  uint64_t stopped = 0;
  health.write_stopped =
      impl_->db->GetIntProperty("rocksdb.is-write-stopped", &stopped) &&
      stopped != 0;
  return health;
}

std::optional<uint64_t> RocksDbStore::IntProperty(
    const std::string& name) const {
  uint64_t value = 0;
  if (!impl_->db->GetIntProperty(name, &value)) return std::nullopt;
  return value;
}

}  // namespace ckpt::server
