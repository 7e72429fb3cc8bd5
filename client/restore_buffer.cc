#include "client/restore_buffer.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace ckpt::client {

absl::StatusOr<std::shared_ptr<RestoreBuffer>> RestoreBuffer::Create(
    uint64_t payload_bytes, bool shareable) {
  auto buffer = std::make_shared<RestoreBuffer>(PrivateTag{});
  // At least one page: a server refuses an empty file, and mmap of 0 fails.
  buffer->mapping_bytes_ = std::max(kPageBytes, RoundUpToPage(payload_bytes));
  buffer->payload_bytes_ = payload_bytes;
  const int fd =
      shareable ? memfd_create("ckpt-restore", MFD_CLOEXEC | MFD_ALLOW_SEALING)
                : -1;
  if (fd >= 0) {
    buffer->fd_ = fd;
    // Sealed so that the size a server checks placements against stays the
    // size (F_SEAL_SEAL: nobody adds other seals later).
    if (ftruncate(fd, static_cast<off_t>(buffer->mapping_bytes_)) != 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) !=
            0) {
      close(fd);
      buffer->fd_ = -1;
    }
  }
  void* mapping =
      buffer->fd_ >= 0
          ? mmap(nullptr, buffer->mapping_bytes_, PROT_READ | PROT_WRITE,
                 MAP_SHARED, buffer->fd_, 0)
          : mmap(nullptr, buffer->mapping_bytes_, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapping == MAP_FAILED) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot map ", buffer->mapping_bytes_,
                     " bytes to restore into: ", std::strerror(errno)));
  }
  buffer->mapping_ = static_cast<char*>(mapping);
  buffer->payload_ = buffer->mapping_;
  return buffer;
}

RestoreBuffer::~RestoreBuffer() {
  if (mapping_ != nullptr) munmap(mapping_, mapping_bytes_);
  if (fd_ >= 0) close(fd_);
}

void RestoreBuffer::Populate() const {
  if (payload_bytes_ == 0) return;
  // Linux 5.14+; older kernels fault the pages in on first touch instead.
  madvise(payload_, RoundUpToPage(payload_bytes_), MADV_POPULATE_WRITE);
}

void RestoreBuffer::Release(const char* address, uint64_t bytes) const {
  const uint64_t start =
      RoundUpToPage(static_cast<uint64_t>(address - mapping_));
  const uint64_t end = (static_cast<uint64_t>(address - mapping_) + bytes) /
                       kPageBytes * kPageBytes;
  if (end <= start) return;
  // MADV_REMOVE frees a memfd's pages (a hole in the file); anonymous
  // memory is freed by MADV_DONTNEED.
  madvise(mapping_ + start, end - start,
          fd_ >= 0 ? MADV_REMOVE : MADV_DONTNEED);
}

}  // namespace ckpt::client
