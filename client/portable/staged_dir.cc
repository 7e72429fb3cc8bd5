#include "client/portable/staged_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace ckpt::client::portable {
namespace {

absl::Status ErrnoError(absl::string_view what, absl::string_view path) {
  return absl::ErrnoToStatus(errno, absl::StrCat(what, " '", path, "'"));
}

// Renames `from` to `to` in directory `dir` unless `to` exists (EEXIST).
int RenameNoReplace(int dir, const char* from, const char* to) {
  if (::renameat2(dir, from, dir, to, RENAME_NOREPLACE) == 0) return 0;
  if (errno != EINVAL && errno != ENOSYS) return -1;
  // A file system without RENAME_NOREPLACE: a hard link fails on an
  // existing name just the same.
  if (::linkat(dir, from, dir, to, 0) != 0) return -1;
  ::unlinkat(dir, from, 0);
  return 0;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ListDirectory(
    int dir_fd, absl::string_view shown) {
  const int copy = ::dup(dir_fd);
  if (copy < 0) return ErrnoError("cannot list", shown);
  DIR* listing = ::fdopendir(copy);
  if (listing == nullptr) {
    ::close(copy);
    return ErrnoError("cannot list", shown);
  }
  ::rewinddir(listing);
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* entry = ::readdir(listing)) {
    const absl::string_view name = entry->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  const int error = errno;
  ::closedir(listing);
  if (error != 0) {
    errno = error;
    return ErrnoError("cannot list", shown);
  }
  return names;
}

absl::StatusOr<std::unique_ptr<StagedDirectory>> StagedDirectory::Open(
    const std::string& dir) {
  if (dir.empty()) {
    return absl::InvalidArgumentError("the directory to write is empty");
  }
  // The missing ancestors, innermost first, then created outermost first.
  std::vector<std::string> missing;
  std::string path = dir;
  while (!path.empty() && path != "/" && path != ".") {
    struct stat st;
    if (::stat(path.c_str(), &st) == 0) break;
    if (errno != ENOENT) return ErrnoError("cannot stat", path);
    missing.push_back(path);
    const size_t slash = path.find_last_of('/');
    path = slash == std::string::npos ? "" : path.substr(0, slash);
  }
  std::vector<std::string> created;
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (::mkdir(it->c_str(), 0777) != 0 && errno != EEXIST) {
      absl::Status status = ErrnoError("cannot create directory", *it);
      for (auto made = created.rbegin(); made != created.rend(); ++made) {
        ::rmdir(made->c_str());
      }
      return status;
    }
    created.push_back(*it);
  }
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) {
    absl::Status status = errno == ENOTDIR
                              ? absl::FailedPreconditionError(absl::StrCat(
                                    "'", dir, "' is not a directory"))
                              : ErrnoError("cannot open directory", dir);
    for (auto made = created.rbegin(); made != created.rend(); ++made) {
      ::rmdir(made->c_str());
    }
    return status;
  }
  return std::make_unique<StagedDirectory>(PrivateTag{}, dir, std::move(fd),
                                           std::move(created));
}

StagedDirectory::~StagedDirectory() {
  if (committed_) return;
  for (size_t i = 0; i < files_.size(); ++i) {
    const std::string& name = i < renamed_ ? files_[i].name : files_[i].temp;
    ::unlinkat(fd_.get(), name.c_str(), 0);
  }
  for (auto made = created_.rbegin(); made != created_.rend(); ++made) {
    ::rmdir(made->c_str());
  }
}

absl::StatusOr<std::vector<std::string>> StagedDirectory::List() const {
  return ListDirectory(fd_.get(), dir_);
}

absl::StatusOr<size_t> StagedDirectory::Create(const std::string& name) {
  const std::string temp = absl::StrCat(".", name, ".", ::getpid(), "-",
                                        files_.size(), ".ckpt-export.tmp");
  UniqueFd fd(::openat(fd_.get(), temp.c_str(),
                       O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                       0666));
  if (!fd.valid()) return ErrnoError("cannot create", PathOf(temp));
  files_.push_back(File{name, temp, std::move(fd)});
  return files_.size() - 1;
}

absl::Status StagedDirectory::Append(size_t file, absl::string_view bytes) {
  File& target = files_[file];
  while (!bytes.empty()) {
    const ssize_t wrote = ::write(target.fd.get(), bytes.data(), bytes.size());
    if (wrote < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("cannot write", PathOf(target.temp));
    }
    bytes.remove_prefix(static_cast<size_t>(wrote));
  }
  return absl::OkStatus();
}

absl::Status StagedDirectory::Sync() {
  for (File& file : files_) {
    if (!file.fd.valid()) continue;
    if (::fdatasync(file.fd.get()) != 0) {
      return ErrnoError("cannot sync", PathOf(file.temp));
    }
    file.fd.Reset();
  }
  return absl::OkStatus();
}

absl::Status StagedDirectory::Commit() {
  CKPT_RETURN_IF_ERROR(Sync());
  for (; renamed_ < files_.size(); ++renamed_) {
    const File& file = files_[renamed_];
    if (RenameNoReplace(fd_.get(), file.temp.c_str(), file.name.c_str()) != 0) {
      if (errno == EEXIST) {
        return absl::AlreadyExistsError(
            absl::StrCat("'", PathOf(file.name),
                         "' appeared while the export was written; nothing "
                         "was overwritten, and the export's files are "
                         "removed"));
      }
      return ErrnoError("cannot rename into", PathOf(file.name));
    }
  }
  if (::fsync(fd_.get()) != 0) return ErrnoError("cannot sync", dir_);
  committed_ = true;
  return absl::OkStatus();
}

std::string StagedDirectory::PathOf(absl::string_view name) const {
  return absl::StrCat(dir_, dir_.back() == '/' ? "" : "/", name);
}

}  // namespace ckpt::client::portable
