#include "server/service/shared_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace ckpt::server {
namespace {

std::string ErrnoText(int error) { return std::strerror(error); }

// The target of /proc/self/fd/<fd>: what we really opened, not what the
// client's pid and descriptor named a moment earlier.
std::string LinkTarget(int fd) {
  const std::string link = absl::StrCat("/proc/self/fd/", fd);
  char target[256];
  const ssize_t n = readlink(link.c_str(), target, sizeof(target));
  if (n <= 0) return "";
  return std::string(target, static_cast<size_t>(n));
}

}  // namespace

absl::StatusOr<SharedFileWriter> SharedFileWriter::Open(
    int32_t pid, int32_t fd, absl::string_view token) {
  if (token.size() < kMinSharedFileToken ||
      token.size() > kMaxSharedFileToken) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the shared file's token must have ", kMinSharedFileToken, " to ",
        kMaxSharedFileToken, " bytes, got ", token.size()));
  }
  if (pid <= 0 || fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("no shared file has pid ", pid, " and descriptor ", fd));
  }
  const std::string path = absl::StrCat("/proc/", pid, "/fd/", fd);
  const int opened = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (opened < 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot open the client's shared file ", path, ": ", ErrnoText(errno),
        " (is the client on another host, in another pid namespace, or run by "
        "another user?)"));
  }
  SharedFileWriter writer(opened, 0, token.size());
  const std::string target = LinkTarget(opened);
  if (!absl::StartsWith(target,
                        absl::StrCat("/memfd:", kRestoreMemfdName, " "))) {
    return absl::FailedPreconditionError(absl::StrCat(path, " is '", target,
                                                      "', not a memfd named '",
                                                      kRestoreMemfdName, "'"));
  }
  struct stat info {};
  if (fstat(opened, &info) != 0 || !S_ISREG(info.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is not a regular file"));
  }
  writer.size_ = static_cast<uint64_t>(info.st_size);
  std::string found(token.size(), '\0');
  const ssize_t n = pread(opened, found.data(), found.size(), 0);
  if (n != static_cast<ssize_t>(found.size()) || found != token) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " does not start with the request's token"));
  }
  return writer;
}

SharedFileWriter::SharedFileWriter(SharedFileWriter&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      size_(other.size_),
      token_size_(other.token_size_) {}

SharedFileWriter& SharedFileWriter::operator=(
    SharedFileWriter&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    size_ = other.size_;
    token_size_ = other.token_size_;
  }
  return *this;
}

SharedFileWriter::~SharedFileWriter() {
  if (fd_ >= 0) close(fd_);
}

absl::Status SharedFileWriter::CheckRange(uint64_t offset,
                                          uint64_t size) const {
  if (offset < token_size_ || offset > size_ || size > size_ - offset) {
    return absl::InvalidArgumentError(absl::StrCat(
        "placement [", offset, ", +", size, ") is outside the shared file's ",
        size_, " bytes after its ", token_size_, "-byte token"));
  }
  return absl::OkStatus();
}

absl::Status SharedFileWriter::Write(uint64_t offset, absl::string_view bytes) {
  if (absl::Status range = CheckRange(offset, bytes.size()); !range.ok()) {
    return range;
  }
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = pwrite(fd_, bytes.data() + done, bytes.size() - done,
                             static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // ENOSPC: the client's memory (or its cgroup's) ran out.
      return absl::ResourceExhaustedError(
          absl::StrCat("writing into the client's shared file: ",
                       n < 0 ? ErrnoText(errno) : "no progress"));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace ckpt::server
