#include "server/service/shared_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace ckpt::server {

absl::StatusOr<SharedFileWriter> SharedFileWriter::Adopt(UniqueFd fd) {
  struct stat info {};
  if (!fd.valid() || fstat(fd.get(), &info) != 0 || !S_ISREG(info.st_mode)) {
    return absl::FailedPreconditionError(
        "the descriptor is not a regular file (a memfd is expected)");
  }
  const int seals = fcntl(fd.get(), F_GET_SEALS);
  if (seals < 0) {
    return absl::FailedPreconditionError(
        "the descriptor is not a memfd (it cannot carry seals)");
  }
  if ((seals & (F_SEAL_SHRINK | F_SEAL_GROW)) !=
      (F_SEAL_SHRINK | F_SEAL_GROW)) {
    return absl::FailedPreconditionError(
        "the descriptor is not a memfd sealed with F_SEAL_SHRINK and "
        "F_SEAL_GROW (create it with MFD_ALLOW_SEALING, size it, then add "
        "both seals)");
  }
  const int flags = fcntl(fd.get(), F_GETFL);
  if (flags < 0 || (flags & O_ACCMODE) == O_RDONLY ||
      (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) != 0) {
    return absl::FailedPreconditionError(
        "the memfd is read-only (opened read-only or sealed against writes)");
  }
  if (info.st_size <= 0) {
    return absl::FailedPreconditionError("the memfd is empty");
  }
  return SharedFileWriter(std::move(fd), static_cast<uint64_t>(info.st_size));
}

absl::Status SharedFileWriter::CheckRange(uint64_t offset,
                                          uint64_t size) const {
  if (offset > size_ || size > size_ - offset) {
    return absl::InvalidArgumentError(
        absl::StrCat("placement [", offset, ", +", size,
                     ") is outside the shared file's ", size_, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status SharedFileWriter::Write(uint64_t offset,
                                     absl::string_view bytes) const {
  if (absl::Status range = CheckRange(offset, bytes.size()); !range.ok()) {
    return range;
  }
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n =
        pwrite(fd_.get(), bytes.data() + done, bytes.size() - done,
               static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // ENOSPC: the client's memory (or its cgroup's) ran out.
      return absl::ResourceExhaustedError(
          absl::StrCat("writing into the client's shared file: ",
                       n < 0 ? std::strerror(errno) : "no progress"));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace ckpt::server
