// RocksDbStore: the RocksDB options (column families, blob files, sizes for
// the volume), opening the database, and closing it.
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "rocksdb/file_system.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/options.h"
#include "rocksdb/table.h"
#include "server/storage/chunk_files.h"
#include "server/storage/keys.h"
#include "server/storage/rocksdb_status.h"
#include "server/storage/rocksdb_store.h"
#include "server/storage/rocksdb_store_impl.h"
#include "server/storage/tolerant_info_log.h"
#include "server/storage/volume_sizing.h"

namespace ckpt::server {
using rocksdb_internal::CfHandle;
using rocksdb_internal::CfHandleDeleter;
using rocksdb_internal::kCfNames;
using rocksdb_internal::kChunkIndex;
using rocksdb_internal::kChunks;
using rocksdb_internal::kNumCfs;
using rocksdb_internal::MinFreeBytes;

namespace {

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

// Opens the chunk file tree and removes the files no index entry names:
// written by a Put whose index entry a crash lost, or of a chunk deleted
// durably just before a crash.
absl::Status OpenChunkFiles(RocksDbStore::Impl& impl,
                            const RocksDbStoreOptions& options) {
  impl.file_chunk_min_bytes = options.file_chunk_min_bytes;
  std::shared_ptr<rocksdb::FileSystem> fs =
      impl.env != nullptr ? impl.env->GetFileSystem()
                          : rocksdb::FileSystem::Default();
  CKPT_ASSIGN_OR_RETURN(
      impl.files, ChunkFiles::Open(std::move(fs), impl.dir + "/chunk_files"));
  absl::flat_hash_set<uint64_t> live;
  uint64_t corrupt = 0;
  CKPT_RETURN_IF_ERROR(impl.Scan(
      kChunkIndex, "", nullptr,
      [&](absl::string_view, absl::string_view value) -> absl::Status {
        absl::StatusOr<ChunkIndexValue> index = DecodeChunkIndexValue(value);
        if (!index.ok()) {
          ++corrupt;
        } else if (index->file_number.has_value()) {
          live.insert(*index->file_number);
        }
        return absl::OkStatus();
      }));
  if (corrupt > 0) {
    // Which file a corrupt entry named is unknown, so no file is taken for
    // an orphan (verify reports the entries); new files are still numbered
    // above every file on disk.
    CKPT_LOG(Warning, corrupt,
             " chunk index entries are corrupt; chunk files no entry names "
             "are kept until they are repaired or deleted");
    return impl.files->RemoveUnreferenced(live, /*remove=*/false).status();
  }
  CKPT_ASSIGN_OR_RETURN(uint64_t removed,
                        impl.files->RemoveUnreferenced(live, /*remove=*/true));
  if (removed > 0) {
    CKPT_LOG(Info, "removed ", removed,
             " chunk files no index entry names (left by a crash)");
  }
  return absl::OkStatus();
}

}  // namespace

RocksDbStore::Impl::~Impl() {
  if (db == nullptr) return;
  // Closing would flush unsynced (WAL-less) writes anyway, as
  // avoid_flush_during_shutdown is false; do it explicitly to log errors.
  if (files != nullptr) {
    if (absl::Status status = CompleteStaged(); !status.ok()) {
      CKPT_LOG(Error, "syncing chunk files at close: ", status.ToString());
    }
  }
  if (absl::Status status = SyncChunks(); !status.ok()) {
    CKPT_LOG(Error, "flushing chunks at close: ", status.ToString());
  } else if (files != nullptr) {
    if (absl::Status removed = RemoveDeletedFiles(); !removed.ok()) {
      CKPT_LOG(Error,
               "removing deleted chunk files at close: ", removed.ToString());
    }
  }
  resume.reset();  // waits for a Resume still running
  handles.clear();
  if (rocksdb::Status status = db->Close(); !status.ok()) {
    CKPT_LOG(Error, "closing RocksDB: ", status.ToString());
  }
}

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
  if (options.env != nullptr) {
    impl->env = options.env;
    db_options.env = options.env.get();
  }
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
  db_options.max_file_opening_threads = options.max_file_opening_threads;
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
  CKPT_RETURN_IF_ERROR(OpenChunkFiles(*impl, options));
  return std::make_unique<RocksDbStore>(Passkey(), std::move(impl));
}

}  // namespace ckpt::server
