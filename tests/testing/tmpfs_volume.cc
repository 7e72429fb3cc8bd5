#include "tests/testing/tmpfs_volume.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace ckpt::testing {

absl::StatusOr<std::unique_ptr<TmpfsVolume>> TmpfsVolume::Mount(
    uint64_t bytes) {
  if (::geteuid() != 0) {
    return absl::FailedPreconditionError(
        "needs root to mount a tmpfs it can fill (run the test as root)");
  }
  absl::StatusOr<std::unique_ptr<TempDir>> dir = TempDir::Create("ckpt-tmpfs");
  if (!dir.ok()) return dir.status();
  const std::string options = absl::StrCat("size=", bytes, ",mode=0755");
  if (::mount("tmpfs", (*dir)->path().c_str(), "tmpfs", 0, options.c_str()) !=
      0) {
    const int error = errno;
    return absl::FailedPreconditionError(
        absl::StrCat("cannot mount a tmpfs on ", (*dir)->path(), ": ",
                     std::strerror(error)));
  }
  return std::unique_ptr<TmpfsVolume>(new TmpfsVolume(*std::move(dir)));
}

TmpfsVolume::~TmpfsVolume() { ::umount2(path().c_str(), MNT_DETACH); }

absl::StatusOr<uint64_t> TmpfsVolume::Fill(uint64_t leave_free_bytes) {
  const int fd =
      ::open(filler().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    // The volume may be too full to create even the file's inode entry.
    if (errno == ENOSPC) return 0;
    return absl::InternalError(
        absl::StrCat("opening ", filler(), ": ", std::strerror(errno)));
  }
  const std::vector<char> block(1 << 20, 'f');
  uint64_t written = 0;
  // Down to single bytes, so that not even a small file fits afterwards.
  for (size_t size = block.size(); size > 0; size /= 2) {
    while (true) {
      const ssize_t n = ::write(fd, block.data(), size);
      if (n > 0) {
        written += static_cast<uint64_t>(n);
        continue;
      }
      if (n < 0 && errno != ENOSPC) {
        const int error = errno;
        ::close(fd);
        return absl::InternalError(
            absl::StrCat("filling ", filler(), ": ", std::strerror(error)));
      }
      break;
    }
  }
  if (leave_free_bytes > 0) {
    written -= std::min(written, leave_free_bytes);
    if (::ftruncate(fd, static_cast<off_t>(written)) != 0) {
      const int error = errno;
      ::close(fd);
      return absl::InternalError(
          absl::StrCat("truncating ", filler(), ": ", std::strerror(error)));
    }
  }
  ::close(fd);
  return written;
}

absl::Status TmpfsVolume::Free() {
  if (::unlink(filler().c_str()) != 0 && errno != ENOENT) {
    return absl::InternalError(
        absl::StrCat("deleting ", filler(), ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace ckpt::testing
