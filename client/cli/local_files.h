// The ckpt CLI's local file I/O: `put` reads its files through read-only
// memory mappings, `get` writes tensors back as files, and tensor names
// become file names only when they are plain file names. POSIX only.
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

// Creates or truncates `path` (mode 0644) and writes `bytes`; errno's
// status naming the path on failure, which may leave it partly written. Not
// synced: a crash may lose it.
absl::Status WriteFile(const std::string& path, absl::string_view bytes);

// Tensor names become file names under OUTDIR (and file base names become
// tensor names): INVALID_ARGUMENT for anything that could escape it or name
// a directory (empty, ".", "..", a '/' or a NUL).
absl::Status CheckSafeFileName(absl::string_view name);

}  // namespace ckpt::cli
