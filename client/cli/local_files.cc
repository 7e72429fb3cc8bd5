#include "client/cli/local_files.h"

#include "absl/strings/str_cat.h"

namespace ckpt::cli {

absl::Status CheckSafeFileName(absl::string_view name) {
  if (name.empty() || name == "." || name == ".." ||
      name.find('/') != absl::string_view::npos ||
      name.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("refusing to store a file named '", name,
                     "' as a tensor: its name is not a plain file name"));
  }
  return absl::OkStatus();
}

}  // namespace ckpt::cli
