// The ckpt CLI's local file reads: `put` reads its files through read-only
// memory mappings, and takes their base names as tensor names only when
// they are plain file names.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/mapped_file.h"

namespace ckpt::cli {

// `put` maps its files with MappedFile (common/mapped_file.h).
using ::ckpt::MappedFile;

// `put`'s file base names become tensor names: INVALID_ARGUMENT for one
// that is no plain file name (empty, ".", "..", a '/' or a NUL). (`get`
// writes tensors as files through client/cli/output_tree.h.)
absl::Status CheckSafeFileName(absl::string_view name);

}  // namespace ckpt::cli
