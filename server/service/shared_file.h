// SharedFileWriter: writes into a client's restore memfd on this host, for
// same-host restores (ReadChunksIntoSharedFile in shared_file_reads.h). The
// descriptor is one the client passed itself (SharedFileRegistry); the
// server never opens another process's files. Free of gRPC types.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/unique_fd.h"

namespace ckpt::server {

// Thread-safe once made: Write may run from many threads at once.
class SharedFileWriter {
 public:
  // Takes `fd` if it is a restore buffer the server may write: a regular
  // file, open for writing, that is a memfd sealed against shrinking and
  // growing (F_SEAL_SHRINK | F_SEAL_GROW: only memfds created with
  // MFD_ALLOW_SEALING can carry them, so the kernel vouches for what the
  // file is, and its size cannot change under us), not sealed against
  // writes, of at least one byte. FAILED_PRECONDITION saying which of these
  // it is not (never naming the file); `fd` is closed then.
  static absl::StatusOr<SharedFileWriter> Adopt(UniqueFd fd);

  SharedFileWriter(SharedFileWriter&&) noexcept = default;
  SharedFileWriter& operator=(SharedFileWriter&&) noexcept = default;

  // INVALID_ARGUMENT when [offset, offset + size) ends past the file.
  absl::Status CheckRange(uint64_t offset, uint64_t size) const;
  // Writes `bytes` at `offset` (checked as CheckRange does).
  // RESOURCE_EXHAUSTED when the client's memory (or its cgroup's) runs out.
  absl::Status Write(uint64_t offset, absl::string_view bytes) const;

  uint64_t size() const { return size_; }

 private:
  SharedFileWriter(UniqueFd fd, uint64_t size)
      : fd_(std::move(fd)), size_(size) {}

  UniqueFd fd_;
  uint64_t size_ = 0;
};

}  // namespace ckpt::server
