// RocksDbStore on a full disk and after background errors: the free-space
// reserve that keeps RocksDB from failing a write, the bounded DB::Resume
// that gets it writing again without a restart, and Health().
#include <algorithm>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "rocksdb/db.h"
#include "server/storage/rocksdb_status.h"
#include "server/storage/rocksdb_store.h"
#include "server/storage/rocksdb_store_impl.h"
#include "server/storage/store_health.h"
#include "server/storage/volume_sizing.h"

namespace ckpt::server {
namespace rocksdb_internal {

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

}  // namespace rocksdb_internal

absl::Status RocksDbStore::Impl::Recover() {
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

absl::Status RocksDbStore::Impl::CheckRoom(absl::string_view what,
                                           uint64_t more) {
  if (min_free_bytes == 0) return absl::OkStatus();
  absl::StatusOr<VolumeSpace> space = GetVolumeSpace(dir);
  if (!space.ok() || space->free_bytes >= min_free_bytes + more) {
    return absl::OkStatus();
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      what, ": the server's disk is full (", space->free_bytes,
      " bytes free; this write needs ", min_free_bytes + more, ")"));
}

uint64_t RocksDbStore::Impl::MemtableBytes() {
  uint64_t bytes = 0;
  db->GetAggregatedIntProperty("rocksdb.cur-size-all-mem-tables", &bytes);
  return bytes;
}

absl::Status RocksDbStore::Impl::WriteRecovering(
    absl::FunctionRef<absl::Status()> write) {
  absl::Status status = write();
  if (status.ok() || !errors->error().has_value()) return status;
  absl::Status recovered = Recover();
  if (absl::IsUnavailable(recovered)) return recovered;
  if (!recovered.ok()) return status;
  return write();
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

}  // namespace ckpt::server
