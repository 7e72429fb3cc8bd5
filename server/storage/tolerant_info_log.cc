#include "server/storage/tolerant_info_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace ckpt::server {

TolerantInfoLog::TolerantInfoLog(std::string path, uint64_t max_bytes)
    : rocksdb::Logger(rocksdb::InfoLogLevel::INFO_LEVEL),
      path_(std::move(path)),
      max_bytes_(max_bytes) {
  absl::MutexLock lock(&mu_);
  EnsureOpen();
}

TolerantInfoLog::~TolerantInfoLog() {
  absl::MutexLock lock(&mu_);
  if (fd_ >= 0) ::close(fd_);
}

bool TolerantInfoLog::EnsureOpen() {
  if (fd_ >= 0) return true;
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) return false;
  struct stat st {};
  size_ = ::fstat(fd_, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  return true;
}

void TolerantInfoLog::RotateIfFull() {
  if (size_ < max_bytes_ || fd_ < 0) return;
  ::close(fd_);
  fd_ = -1;
  // On failure the old file is reopened and keeps growing: losing lines is
  // acceptable, losing the server is not.
  const std::string old = path_ + ".old";
  if (::rename(path_.c_str(), old.c_str()) != 0) ++dropped_;
  EnsureOpen();
}

void TolerantInfoLog::Logv(const char* format, va_list ap) {
  // RocksDB's lines are short; a longer one is cut, not dropped.
  char line[4096];
  const std::string stamp = absl::FormatTime("%Y/%m/%d-%H:%M:%E6S ",
                                             absl::Now(), absl::UTCTimeZone());
  const size_t prefix = std::min(stamp.size(), sizeof(line) - 2);
  std::copy_n(stamp.data(), prefix, line);
  va_list copy;
  va_copy(copy, ap);
  const int written =
      std::vsnprintf(line + prefix, sizeof(line) - prefix - 1, format, copy);
  va_end(copy);
  absl::MutexLock lock(&mu_);
  if (written < 0) {
    ++dropped_;
    return;
  }
  size_t length = prefix + std::min(static_cast<size_t>(written),
                                    sizeof(line) - prefix - 2);
  if (line[length - 1] != '\n') line[length++] = '\n';
  RotateIfFull();
  if (!EnsureOpen()) {
    ++dropped_;
    return;
  }
  // One write(2) per line (O_APPEND): a partial write on a full disk leaves
  // a cut line, never a stuck writer.
  const ssize_t result = ::write(fd_, line, length);
  if (result < 0 || static_cast<size_t>(result) != length) {
    ++dropped_;
    if (result > 0) size_ += static_cast<uint64_t>(result);
    return;
  }
  size_ += length;
}

size_t TolerantInfoLog::GetLogFileSize() const {
  absl::MutexLock lock(&mu_);
  return size_;
}

uint64_t TolerantInfoLog::dropped_lines() const {
  absl::MutexLock lock(&mu_);
  return dropped_;
}

}  // namespace ckpt::server
