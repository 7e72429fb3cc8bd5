// The ckpt CLI's local file reads: `put` reads its files through read-only
// memory mappings, and takes their base names as tensor names only when
// they are plain file names. POSIX only.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ckpt::cli {

// A read-only memory mapping of a whole regular file, so `ckpt put` uploads
// straight from the page cache without copying the file into a buffer. The
// bytes stay valid, and unchanged unless another process writes the file,
// until it is destroyed.
class MappedFile {
 public:
  // errno's status ("cannot open 'PATH': ...") when it cannot be opened,
  // statted or mapped; INVALID_ARGUMENT when it is not a regular file.
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(
      const std::string& path);

  MappedFile(void* data, size_t size) : data_(data), size_(size) {}
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  absl::string_view bytes() const {
    return {static_cast<const char*>(data_), size_};
  }

 private:
  void* data_;  // null for an empty file
  size_t size_;
};

// `put`'s file base names become tensor names: INVALID_ARGUMENT for one
// that is no plain file name (empty, ".", "..", a '/' or a NUL). (`get`
// writes tensors as files through client/cli/output_tree.h.)
absl::Status CheckSafeFileName(absl::string_view name);

}  // namespace ckpt::cli
