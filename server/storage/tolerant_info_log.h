// TolerantInfoLog: the RocksDB info LOG of the store, written by the store
// itself. RocksDB 7.8's own LOG writer keeps appending to a file whose
// write failed and then trips an assertion (abort) once the disk is full;
// this one drops the lines it cannot write and carries on.
#pragma once

#include <cstdarg>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "rocksdb/env.h"

namespace ckpt::server {

// Thread-safe. Never fails: a line that cannot be formatted or written
// (ENOSPC, EIO) is counted in dropped_lines() and lost.
class TolerantInfoLog final : public rocksdb::Logger {
 public:
  // Appends to `path`. When it grows past `max_bytes` it is renamed to
  // `path`.old (replacing an older one) and a new one is started, so the
  // LOG never takes more than about twice `max_bytes`. A file that cannot
  // be opened is retried at the next line.
  TolerantInfoLog(std::string path, uint64_t max_bytes);
  ~TolerantInfoLog() override;

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override;
  size_t GetLogFileSize() const override;

  uint64_t dropped_lines() const;

 private:
  // Opens the file if needed; false when it cannot be.
  bool EnsureOpen() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RotateIfFull() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  const uint64_t max_bytes_;
  mutable absl::Mutex mu_;
  int fd_ ABSL_GUARDED_BY(mu_) = -1;
  uint64_t size_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace ckpt::server
