#include "tests/testing/temp_dir.h"

#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace ckpt::testing {

absl::StatusOr<std::unique_ptr<TempDir>> TempDir::Create(
    const std::string& prefix) {
  const char* base = std::getenv("TMPDIR");
  std::string pattern =
      prefix.starts_with("/")
          ? absl::StrCat(prefix, "-XXXXXX")
          : absl::StrCat(base != nullptr && *base != '\0' ? base : "/tmp", "/",
                         prefix, "-XXXXXX");
  if (::mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError(
        absl::StrCat("mkdtemp(", pattern, ") failed: ", strerror(errno)));
  }
  return std::make_unique<TempDir>(pattern);
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace ckpt::testing
