// RestoreBuffer: the memory one restore's tensors land in. A sealed memfd
// when possible, which the client passes to a server on the same host
// (Transport::RegisterSharedFile) so that it can write verified chunks
// straight into it (ReadChunksIntoFile) instead of sending them through
// gRPC.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"

namespace ckpt::client {

class RestoreBuffer {
 public:
  static constexpr uint64_t kPageBytes = 4096;
  // `bytes` rounded up to whole pages: where the next tensor may start.
  static constexpr uint64_t RoundUpToPage(uint64_t bytes) {
    return (bytes + kPageBytes - 1) / kPageBytes * kPageBytes;
  }

  // Maps `payload_bytes` of zeroed memory. With `shareable`, a memfd named
  // "ckpt-restore", sized and then sealed against shrinking and growing
  // (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL: what a server requires
  // before it writes into it), when the system allows; otherwise (or when
  // that fails: shareable() false) anonymous memory, which faults in
  // faster. RESOURCE_EXHAUSTED when the memory cannot be had.
  static absl::StatusOr<std::shared_ptr<RestoreBuffer>> Create(
      uint64_t payload_bytes, bool shareable);

  RestoreBuffer(const RestoreBuffer&) = delete;
  RestoreBuffer& operator=(const RestoreBuffer&) = delete;
  ~RestoreBuffer();

  char* payload() const { return payload_; }
  uint64_t payload_bytes() const { return payload_bytes_; }

  // A sealed memfd this process may pass to a server on this host.
  bool shareable() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  // The file offset of a payload address.
  uint64_t FileOffset(const char* address) const {
    return static_cast<uint64_t>(address - payload_);
  }

  // Allocates and maps every payload page now (they stay zero until
  // written), so neither the server's writes nor the caller's first touches
  // fault pages in one at a time. Best effort; safe while another process
  // writes the file.
  void Populate() const;

  // Gives the whole pages inside [address, address + bytes) back to the
  // system, as the owner of a restored tensor does when it is freed.
  void Release(const char* address, uint64_t bytes) const;

 private:
  // Only Create constructs; the tag keeps std::make_shared usable.
  struct PrivateTag {};

 public:
  explicit RestoreBuffer(PrivateTag) {}

 private:
  int fd_ = -1;
  char* mapping_ = nullptr;  // the payload, in whole pages
  uint64_t mapping_bytes_ = 0;
  char* payload_ = nullptr;
  uint64_t payload_bytes_ = 0;
};

}  // namespace ckpt::client
