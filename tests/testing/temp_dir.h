// TempDir: a fresh directory for a test or benchmark, removed with
// everything in it on destruction. The one such helper of the project.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace ckpt::testing {

class TempDir {
 public:
  // A relative prefix is placed under $TMPDIR (or /tmp); an absolute one is
  // used as it is.
  static absl::StatusOr<std::unique_ptr<TempDir>> Create(
      const std::string& prefix);
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace ckpt::testing
