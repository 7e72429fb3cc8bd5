#include "common/small_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace ckpt {
namespace {

absl::Status ErrnoStatus(int error) {
  switch (error) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError("no such file");
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError("permission denied");
    case EISDIR:
      return absl::FailedPreconditionError("is a directory");
    default:
      return absl::UnknownError(std::strerror(error));
  }
}

// Closes the descriptor it holds when it goes out of scope.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;
  ~FdCloser() { ::close(fd_); }

 private:
  int fd_;
};

}  // namespace

absl::StatusOr<std::string> ReadSmallRegularFile(const std::string& path,
                                                 size_t max_bytes) {
  // O_NONBLOCK: opening a FIFO without a writer would block; on a regular
  // file it changes nothing.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return ErrnoStatus(errno);
  FdCloser closer(fd);
  struct stat info;
  if (::fstat(fd, &info) != 0) return ErrnoStatus(errno);
  if (S_ISDIR(info.st_mode)) return ErrnoStatus(EISDIR);
  if (!S_ISREG(info.st_mode)) {
    return absl::FailedPreconditionError("is not a regular file");
  }
  const auto too_big = [max_bytes] {
    return absl::OutOfRangeError(
        absl::StrCat("larger than ", max_bytes, " bytes"));
  };
  if (static_cast<size_t>(info.st_size) > max_bytes) return too_big();
  std::string text;
  char buffer[16384];
  while (true) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno);
    if (n == 0) break;
    // The file may have grown since fstat.
    if (text.size() + static_cast<size_t>(n) > max_bytes) return too_big();
    text.append(buffer, static_cast<size_t>(n));
  }
  return text;
}

}  // namespace ckpt
