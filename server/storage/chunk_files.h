// ChunkFiles: the bytes of large chunks, one file each, beside RocksDB (which
// keeps their index). A chunk written here goes from the upload thread to
// the file system in one write and one fdatasync, in parallel with other
// uploads, instead of through a memtable and RocksDB's single flush thread
// (which copied and checksummed every byte again and capped saves at ~460
// MiB/s on the development machine against the disk's ~1 GiB/s).
//
// Files are named by a number the store never reuses:
// <root>/<last two hex digits>/<16 hex digits>. Write leaves a file written
// but not durable (its writeback started, its handle open); Sync makes a
// batch durable (the bytes, then their directories' entries) before the
// store lets an index entry name any of them, so an index entry (flushed
// whenever RocksDB likes) never outlives its file at a crash. Files no index
// entry names (a crash before their sync or the index's flush, or between a
// delete's flush and Remove) are found by RemoveUnreferenced when the store
// opens.
//
// All I/O goes through a rocksdb::FileSystem (the store's Env's), so the
// power-loss tests' file system sees these writes too. Thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "rocksdb/file_system.h"

namespace ckpt::server {

class ChunkFiles {
 public:
  // Opens the tree under `root` (creating it and its 256 directories).
  static absl::StatusOr<std::unique_ptr<ChunkFiles>> Open(
      std::shared_ptr<rocksdb::FileSystem> fs, std::string root);

  // Writes `bytes` to a new file, starts its writeback and keeps it open
  // for Sync; returns its number. Not durable until Sync. On failure no file
  // is left behind (best effort) and the error says why (RESOURCE_EXHAUSTED
  // for a full disk).
  absl::StatusOr<uint64_t> Write(absl::string_view bytes);

  // Makes each written file of `numbers` durable (fdatasync, close, then one
  // fsync of each directory involved): one status per number. A number not
  // written (or already synced or removed) is OK at once.
  std::vector<absl::Status> Sync(absl::Span<const uint64_t> numbers);

  // The whole content of file `number`, which must hold exactly
  // `expected_size` bytes: DATA_LOSS when it holds another number of bytes,
  // NOT_FOUND when it does not exist.
  absl::StatusOr<std::string> Read(uint64_t number, uint64_t expected_size);

  // Removes file `number` (closing it if still unsynced); OK when it does
  // not exist.
  absl::Status Remove(uint64_t number);

  // Removes (when `remove`) every file whose number is not in `live` and
  // numbers new files above every number seen (in `live` or on disk). Call
  // once, at open, before any Write. Returns how many files it removed; a
  // file that cannot be removed is logged and left.
  absl::StatusOr<uint64_t> RemoveUnreferenced(
      const absl::flat_hash_set<uint64_t>& live, bool remove);

  // Use Open.
  ChunkFiles(std::shared_ptr<rocksdb::FileSystem> fs, std::string root);

  // Bytes in the files (their sizes, as written and removed here).
  uint64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }

  // The path of file `number` (for tests that damage one).
  std::string PathOf(uint64_t number) const;

 private:
  static constexpr size_t kFanOut = 256;

  std::string DirOf(uint64_t number) const;

  const std::shared_ptr<rocksdb::FileSystem> fs_;
  const std::string root_;
  // Open for fsync after each create; FSDirectory::Fsync is thread-safe.
  std::array<std::unique_ptr<rocksdb::FSDirectory>, kFanOut> dirs_;
  std::atomic<uint64_t> next_number_{1};
  absl::Mutex unsynced_mu_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<rocksdb::FSWritableFile>>
      unsynced_ ABSL_GUARDED_BY(unsynced_mu_);
  std::atomic<uint64_t> bytes_{0};
};

}  // namespace ckpt::server
