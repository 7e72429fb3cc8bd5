#include "client/restore_buffer.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"

namespace ckpt::client {
namespace {

constexpr size_t kTokenBytes = 32;

std::string RandomToken() {
  std::random_device device;  // /dev/urandom or the CPU's generator
  std::string token(kTokenBytes, '\0');
  for (size_t i = 0; i < token.size(); i += sizeof(unsigned)) {
    const unsigned word = device();
    std::memcpy(token.data() + i, &word,
                std::min(sizeof(word), token.size() - i));
  }
  return token;
}

}  // namespace

absl::StatusOr<std::shared_ptr<RestoreBuffer>> RestoreBuffer::Create(
    uint64_t payload_bytes, bool shareable) {
  auto buffer = std::make_shared<RestoreBuffer>(PrivateTag{});
  buffer->mapping_bytes_ = kHeaderBytes + RoundUpToPage(payload_bytes);
  buffer->payload_bytes_ = payload_bytes;
  const int fd = shareable ? memfd_create("ckpt-restore", MFD_CLOEXEC) : -1;
  if (fd >= 0) {
    buffer->fd_ = fd;
    buffer->token_ = RandomToken();
    if (ftruncate(fd, static_cast<off_t>(buffer->mapping_bytes_)) != 0 ||
        pwrite(fd, buffer->token_.data(), buffer->token_.size(), 0) !=
            static_cast<ssize_t>(buffer->token_.size())) {
      close(fd);
      buffer->fd_ = -1;
      buffer->token_.clear();
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
  buffer->payload_ = buffer->mapping_ + kHeaderBytes;
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
