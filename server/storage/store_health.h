// What RocksDbStore uses to notice that RocksDB stopped writing and to get
// it writing again: BackgroundErrorTracker, the EventListener through which
// it learns of background errors and takes recovery into its own hands, and
// BoundedResume, which runs DB::Resume without ever waiting on it unbounded.
#pragma once

#include <cstdint>
#include <optional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "rocksdb/db.h"
#include "rocksdb/listener.h"
#include "rocksdb/status.h"

namespace ckpt::server {

// Thread-safe; RocksDB calls it from its own threads, never under its mutex.
class BackgroundErrorTracker final : public rocksdb::EventListener {
 public:
  // Records the error. A soft error (RocksDB keeps writing; a NoSpace during
  // compaction is one) is raised to a hard one: in a soft-error state
  // RocksDB 7.8 keeps starting atomic flushes, and one that finds the
  // background error set neither installs nor rolls back the memtables it
  // picked, so no later flush (nor DB::Resume, which waits for one) ever
  // takes them (RocksDB PR 11872, fixed in 8.7). Stopping writes at once
  // leaves every memtable to the recovery flush instead.
  void OnBackgroundError(rocksdb::BackgroundErrorReason reason,
                         rocksdb::Status* error) override;
  // Declines RocksDB's own recovery. For NoSpace it waits, polling every
  // 5 s, for free space of a whole write buffer, and while it waits it
  // refuses DB::Resume (Busy); the store resumes itself as soon as the
  // memtables fit.
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason reason,
                            rocksdb::Status error,
                            bool* auto_recovery) override;
  // Clears the error once RocksDB reports it recovered.
  void OnErrorRecoveryEnd(
      const rocksdb::BackgroundErrorRecoveryInfo& info) override;

  // The background error RocksDB stopped on; nullopt while it writes.
  std::optional<rocksdb::Status> error() const;
  // Counts the errors recorded so far; read it before DB::Resume and pass
  // it to ClearUnlessNewer after, so an error that came in meanwhile stays.
  uint64_t generation() const;
  void ClearUnlessNewer(uint64_t generation);

 private:
  mutable absl::Mutex mu_;
  std::optional<rocksdb::Status> error_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
};

// Runs DB::Resume on a thread of its own, one at a time. Resume flushes
// every memtable and can wait for a flush that never comes (RocksDB 7.8 bugs
// around failed atomic flushes), so callers wait for it only up to a bound:
// a stuck RocksDB then fails calls instead of hanging them. Thread-safe.
class BoundedResume {
 public:
  explicit BoundedResume(rocksdb::DB* db) : db_(db) {}
  // Waits for a Resume still running (unbounded: the database must not
  // close under it).
  ~BoundedResume();
  BoundedResume(const BoundedResume&) = delete;
  BoundedResume& operator=(const BoundedResume&) = delete;

  // Starts DB::Resume unless one is running, and waits up to `timeout` for
  // the one running to finish. Its status, or nullopt when it did not
  // finish in time (it keeps running; a later call waits for it again
  // rather than starting another).
  std::optional<rocksdb::Status> Resume(absl::Duration timeout);

 private:
  rocksdb::DB* const db_;
  absl::Mutex mu_;
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  rocksdb::Status result_ ABSL_GUARDED_BY(mu_);
  std::thread thread_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ckpt::server
