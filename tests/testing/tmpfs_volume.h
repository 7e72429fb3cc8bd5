// TmpfsVolume: a small tmpfs the test mounts itself (as root), so that it
// can fill a real file system to ENOSPC and free it again.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tests/testing/temp_dir.h"

namespace ckpt::testing {

class TmpfsVolume {
 public:
  // Mounts a tmpfs of `bytes` on a fresh directory. FAILED_PRECONDITION,
  // saying why, when not root or the mount fails: callers GTEST_SKIP with it.
  static absl::StatusOr<std::unique_ptr<TmpfsVolume>> Mount(uint64_t bytes);
  // Unmounts (lazily, should a process still hold a file) and removes it.
  ~TmpfsVolume();
  TmpfsVolume(const TmpfsVolume&) = delete;
  TmpfsVolume& operator=(const TmpfsVolume&) = delete;

  const std::string& path() const { return dir_->path(); }

  // Writes `path()`/filler until the volume is full (ENOSPC), then gives
  // back `leave_free_bytes` of it (truncating the filler); the filler's
  // size, or the error other than ENOSPC.
  absl::StatusOr<uint64_t> Fill(uint64_t leave_free_bytes = 0);
  // Deletes the filler.
  absl::Status Free();

 private:
  explicit TmpfsVolume(std::unique_ptr<TempDir> dir) : dir_(std::move(dir)) {}
  std::string filler() const { return path() + "/filler"; }

  std::unique_ptr<TempDir> dir_;
};

}  // namespace ckpt::testing
