// The disk's floor that benchmarks set beside ckpt's times: a save as the
// same bytes written to one file in 1 MiB pieces + fsync, a verified
// restore as that file read back into fresh memory with a SHA-256 per
// 4 MiB piece (as ckpt verifies each chunk). Header-only.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/sha256.h"
#include "tests/bench/bench_util.h"

namespace ckpt::bench {

// Writes `bytes` to `fd` in 1 MiB pieces (one huge write() then fsync is
// much slower on this kind of disk).
inline absl::Status WritePieces(int fd, absl::string_view bytes) {
  constexpr size_t kPiece = 1 << 20;
  for (size_t off = 0; off < bytes.size(); off += kPiece) {
    const size_t len = std::min(kPiece, bytes.size() - off);
    if (::write(fd, bytes.data() + off, len) != static_cast<ssize_t>(len)) {
      return absl::InternalError("short write");
    }
  }
  return absl::OkStatus();
}

// Seconds to write every shard of `data` to `path` and fsync it.
inline absl::StatusOr<double> BaselineSave(
    const std::string& path, const std::vector<std::vector<float>>& data) {
  const absl::Time start = absl::Now();
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
  if (fd < 0) return absl::InternalError(absl::StrCat("open ", path));
  for (const auto& shard : data) {
    absl::Status written = WritePieces(
        fd, absl::string_view(reinterpret_cast<const char*>(shard.data()),
                              shard.size() * sizeof(float)));
    if (!written.ok()) {
      ::close(fd);
      return written;
    }
  }
  if (::fsync(fd) != 0) return absl::InternalError("fsync");
  ::close(fd);
  return Seconds(start);
}

// Writes `bytes` to a new file at `path` and fsyncs it.
inline absl::Status WriteFileSynced(const std::string& path,
                                    absl::string_view bytes) {
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
  if (fd < 0) return absl::InternalError(absl::StrCat("open ", path));
  absl::Status written = WritePieces(fd, bytes);
  if (written.ok() && ::fsync(fd) != 0) {
    written = absl::InternalError(absl::StrCat("fsync ", path));
  }
  ::close(fd);
  return written;
}

// Seconds to read `size` bytes of `path` into freshly allocated memory, as
// a restore into new tensors does, hashing each piece.
inline absl::StatusOr<double> BaselineRestore(const std::string& path,
                                              size_t size) {
  const absl::Time start = absl::Now();
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return absl::InternalError(absl::StrCat("open ", path));
  auto buffer = std::make_unique_for_overwrite<char[]>(size);
  char* out = buffer.get();
  constexpr size_t kPiece = 4 << 20;
  for (size_t off = 0; off < size; off += kPiece) {
    size_t len = std::min(kPiece, size - off);
    if (::read(fd, out + off, len) != static_cast<ssize_t>(len)) {
      ::close(fd);
      return absl::InternalError("short read");
    }
    ChunkId digest = Sha256(absl::string_view(out + off, len));
    (void)digest;
  }
  ::close(fd);
  return Seconds(start);
}

}  // namespace ckpt::bench
