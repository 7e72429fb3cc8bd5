// SharedFileWriter: writes into a client's restore memfd on this host, for
// same-host restores (ReadChunksIntoSharedFile in shared_file_reads.h).
// Free of gRPC types; the RPC edge checks that the peer is on this host.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ckpt::server {

// The memfd name clients give restore buffers (as readlink shows it:
// "/memfd:ckpt-restore (deleted)").
inline constexpr absl::string_view kRestoreMemfdName = "ckpt-restore";
inline constexpr size_t kMinSharedFileToken = 16;
inline constexpr size_t kMaxSharedFileToken = 64;

class SharedFileWriter {
 public:
  // Opens /proc/<pid>/fd/<fd> for writing. FAILED_PRECONDITION (with the
  // reason) when it cannot be opened, is not a memfd named
  // kRestoreMemfdName, or does not start with `token`; INVALID_ARGUMENT for
  // a token of the wrong length.
  static absl::StatusOr<SharedFileWriter> Open(int32_t pid, int32_t fd,
                                               absl::string_view token);

  SharedFileWriter(SharedFileWriter&& other) noexcept;
  SharedFileWriter& operator=(SharedFileWriter&& other) noexcept;
  SharedFileWriter(const SharedFileWriter&) = delete;
  SharedFileWriter& operator=(const SharedFileWriter&) = delete;
  ~SharedFileWriter();

  // INVALID_ARGUMENT when [offset, offset + size) overlaps the token or ends
  // past the file.
  absl::Status CheckRange(uint64_t offset, uint64_t size) const;
  // Writes `bytes` at `offset` (checked as CheckRange does).
  absl::Status Write(uint64_t offset, absl::string_view bytes);

  uint64_t size() const { return size_; }

 private:
  SharedFileWriter(int fd, uint64_t size, uint64_t token_size)
      : fd_(fd), size_(size), token_size_(token_size) {}

  int fd_ = -1;
  uint64_t size_ = 0;
  uint64_t token_size_ = 0;
};

}  // namespace ckpt::server
