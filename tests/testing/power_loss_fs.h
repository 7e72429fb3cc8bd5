// PowerLossFs: a RocksDB file system (a FileSystemWrapper over a real one)
// that remembers which writes an fsync made durable, and at a simulated
// power loss throws away every one that none did.
//
// What is modelled (a conservative ext4 without data=journal):
// - File contents: a file written through this file system keeps, after a
//   crash, only the prefix its last successful Sync or Fsync covered (the
//   length written when that sync began). RangeSync (sync_file_range)
//   makes nothing durable: it writes pages back but neither the disk cache
//   nor the metadata. Truncate is durable only up to the synced length.
// - Creates: a file created here (NewWritableFile of a missing name) is
//   removed at a crash unless an Fsync of its directory (NewDirectory ->
//   Fsync/FsyncWithDirOptions) began after the create.
// - Renames: a rename not followed by such a directory fsync is undone: the
//   file goes back to its old name and the replaced file (if any; its bytes
//   are kept in memory, up to 1 MiB, larger ones make the rename durable at
//   once) comes back.
// - Not modelled: deletes are durable at once (a deleted file never comes
//   back, which RocksDB tolerates anyway); directories created are
//   durable at once; files that existed before this file system saw them
//   (or that survived the last crash) are durable as they are;
//   ReuseWritableFile and NewRandomRWFile are refused (RocksDB does not
//   use them with the store's options); reordering inside a synced range
//   and torn sectors are not modelled.
//
// Crash() is the power cut: from then on every call that would change the
// disk (writes, syncs, creates, renames, deletes) fails with an IOError, as
// does a sync that was under way, so no caller is told OK for something
// that was not durable before the cut. CrashAfterOps(k) cuts the power just
// before the k-th such call. Once every file is closed (the store
// destroyed), RestoreAfterCrash() drops what was not durable and switches
// the power back on, ready for the store to reopen on the same directory.
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "rocksdb/file_system.h"

namespace ckpt::testing {

class PowerLossFs final : public rocksdb::FileSystemWrapper {
 public:
  // What RestoreAfterCrash threw away.
  struct Dropped {
    uint64_t files_truncated = 0;
    uint64_t bytes_dropped = 0;
    uint64_t creates_undone = 0;
    uint64_t renames_undone = 0;
  };

  explicit PowerLossFs(const std::shared_ptr<rocksdb::FileSystem>& base);

  const char* Name() const override { return "PowerLossFs"; }

  // The power cut (idempotent).
  void Crash();
  // Cuts the power just before the k-th call (k >= 1) that changes the
  // disk from now on; 0 disarms.
  void CrashAfterOps(uint64_t k);
  bool crashed() const;
  // Calls that changed the disk so far (for choosing k).
  uint64_t ops() const;

  // Drops every write no fsync made durable (see above) and powers on.
  // Call only once nothing has a file of this file system open.
  absl::StatusOr<Dropped> RestoreAfterCrash();

  rocksdb::IOStatus NewWritableFile(
      const std::string& name, const rocksdb::FileOptions& options,
      std::unique_ptr<rocksdb::FSWritableFile>* result,
      rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReopenWritableFile(
      const std::string& name, const rocksdb::FileOptions& options,
      std::unique_ptr<rocksdb::FSWritableFile>* result,
      rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReuseWritableFile(
      const std::string& name, const std::string& old_name,
      const rocksdb::FileOptions& options,
      std::unique_ptr<rocksdb::FSWritableFile>* result,
      rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus NewRandomRWFile(
      const std::string& name, const rocksdb::FileOptions& options,
      std::unique_ptr<rocksdb::FSRandomRWFile>* result,
      rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus NewDirectory(const std::string& name,
                                 const rocksdb::IOOptions& options,
                                 std::unique_ptr<rocksdb::FSDirectory>* result,
                                 rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus DeleteFile(const std::string& name,
                               const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus Truncate(const std::string& name, size_t size,
                             const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus RenameFile(const std::string& from, const std::string& to,
                               const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus LinkFile(const std::string& from, const std::string& to,
                             const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus CreateDir(const std::string& name,
                              const rocksdb::IOOptions& options,
                              rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus CreateDirIfMissing(const std::string& name,
                                       const rocksdb::IOOptions& options,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus DeleteDir(const std::string& name,
                              const rocksdb::IOOptions& options,
                              rocksdb::IODebugContext* dbg) override;

  // Used by the file and directory wrappers (power_loss_fs.cc).
  // OK while powered, counting one disk-changing call; the crash's IOError
  // after the cut (or when this very call is the k-th).
  rocksdb::IOStatus BeginChange();
  // A file's writes reached `end` (bytes from its start).
  void Wrote(const std::string& path, uint64_t end);
  // A file was truncated to `size`.
  void Truncated(const std::string& path, uint64_t size);
  // Number of the next pending directory entry change; a directory fsync
  // that begins now covers every change numbered below it.
  uint64_t NextChange() const;
  // The length of `path` written so far.
  uint64_t Written(const std::string& path) const;
  // A sync that began when `path` had `length` bytes finished OK; the
  // crash's IOError instead when the power was cut meanwhile.
  rocksdb::IOStatus Synced(const std::string& path, uint64_t length);
  // An fsync of `dir` that began at change `before` finished OK.
  rocksdb::IOStatus DirSynced(const std::string& dir, uint64_t before);

 private:
  struct FileState {
    uint64_t written = 0;
    uint64_t synced = 0;
  };
  // A directory entry change no directory fsync has covered yet.
  struct Change {
    enum class Kind { kCreate, kRename } kind;
    uint64_t number = 0;
    std::string dir;
    std::string path;              // created, or renamed to
    std::string from;              // renamed from
    bool replaced = false;         // `path` existed before the rename
    std::string replaced_content;  // its bytes
  };

  // NewWritableFile (reopen false) and ReopenWritableFile (true).
  rocksdb::IOStatus OpenWritable(
      const std::string& name, const rocksdb::FileOptions& options,
      std::unique_ptr<rocksdb::FSWritableFile>* result,
      rocksdb::IODebugContext* dbg, bool reopen);
  rocksdb::IOStatus CrashError() const;
  bool PoweredLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  bool crashed_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t ops_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t crash_at_op_ ABSL_GUARDED_BY(mu_) = 0;  // 0: not armed
  uint64_t next_change_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<std::string, FileState> files_ ABSL_GUARDED_BY(mu_);
  std::vector<Change> changes_ ABSL_GUARDED_BY(mu_);  // ascending number
};

}  // namespace ckpt::testing
