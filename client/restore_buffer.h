// RestoreBuffer: the memory one restore's tensors land in. A memfd when
// possible, so a server on the same host can write verified chunks straight
// into it (ReadChunksIntoFile) instead of sending them through gRPC.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ckpt::client {

class RestoreBuffer {
 public:
  // The file starts with one page holding the token; the payload follows.
  static constexpr uint64_t kHeaderBytes = 4096;
  static constexpr uint64_t kPageBytes = 4096;
  // `bytes` rounded up to whole pages: where the next tensor may start.
  static constexpr uint64_t RoundUpToPage(uint64_t bytes) {
    return (bytes + kPageBytes - 1) / kPageBytes * kPageBytes;
  }

  // Maps `payload_bytes` of zeroed memory. With `shareable`, a memfd named
  // "ckpt-restore" with a random token when the system allows; otherwise
  // (or when that fails: shareable() false) anonymous memory, which faults
  // in faster. RESOURCE_EXHAUSTED when the memory cannot be had.
  static absl::StatusOr<std::shared_ptr<RestoreBuffer>> Create(
      uint64_t payload_bytes, bool shareable);

  RestoreBuffer(const RestoreBuffer&) = delete;
  RestoreBuffer& operator=(const RestoreBuffer&) = delete;
  ~RestoreBuffer();

  char* payload() const { return payload_; }
  uint64_t payload_bytes() const { return payload_bytes_; }

  // A memfd another process on this host may open as /proc/<pid>/fd/<fd>.
  bool shareable() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  absl::string_view token() const { return token_; }
  // The file offset of a payload address.
  uint64_t FileOffset(const char* address) const {
    return kHeaderBytes + static_cast<uint64_t>(address - payload_);
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
  std::string token_;
  char* mapping_ = nullptr;  // header + payload
  uint64_t mapping_bytes_ = 0;
  char* payload_ = nullptr;
  uint64_t payload_bytes_ = 0;
};

}  // namespace ckpt::client
