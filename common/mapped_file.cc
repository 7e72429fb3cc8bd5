#include "common/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/unique_fd.h"

namespace ckpt {
namespace {

absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  return absl::ErrnoToStatus(errno, absl::StrCat(what, " '", path, "'"));
}

absl::StatusOr<std::unique_ptr<MappedFile>> Map(UniqueFd fd,
                                                const std::string& shown) {
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoError("cannot stat", shown);
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", shown, "' is not a regular file"));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  void* data = nullptr;
  if (size > 0) {  // mmap of length 0 is an error
    data = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd.get(), 0);
    if (data == MAP_FAILED) return ErrnoError("cannot map", shown);
    // Uploads read it once, front to back.
    ::madvise(data, size, MADV_SEQUENTIAL);
  }
  // The mapping stays valid without the descriptor.
  return std::make_unique<MappedFile>(data, size);
}

}  // namespace

absl::StatusOr<std::unique_ptr<MappedFile>> MappedFile::Open(
    const std::string& path) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer (it is then
  // refused as not a regular file); it changes nothing for regular files.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd.valid()) return ErrnoError("cannot open", path);
  return Map(std::move(fd), path);
}

absl::StatusOr<std::unique_ptr<MappedFile>> MappedFile::OpenAt(
    int dir_fd, const std::string& name, const std::string& shown) {
  UniqueFd fd(::openat(dir_fd, name.c_str(),
                       O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  if (!fd.valid()) {
    if (errno == ELOOP) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", shown, "' is a symbolic link, which is not followed"));
    }
    return ErrnoError("cannot open", shown);
  }
  return Map(std::move(fd), shown);
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

}  // namespace ckpt
