// MappedFile: a read-only memory mapping of a whole regular file, so that
// `ckpt put` and `ckpt import` upload straight from the page cache without
// copying files into buffers. POSIX only.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ckpt {

// The bytes stay valid, and unchanged unless another process writes the
// file, until it is destroyed (a file truncated meanwhile raises SIGBUS on
// a read past its new end, as with any mapping).
class MappedFile {
 public:
  // errno's status ("cannot open 'PATH': ...") when it cannot be opened,
  // statted or mapped; INVALID_ARGUMENT when it is not a regular file.
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(
      const std::string& path);
  // The same for the entry `name` of the open directory `dir_fd`, never
  // following a symbolic link (INVALID_ARGUMENT "is a symbolic link");
  // errors quote `shown` (e.g. DIR/name).
  static absl::StatusOr<std::unique_ptr<MappedFile>> OpenAt(
      int dir_fd, const std::string& name, const std::string& shown);

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

}  // namespace ckpt
