#include "client/cli/output_tree.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/quote.h"
#include "common/status_macros.h"

namespace ckpt::cli {
namespace {

absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  return absl::ErrnoToStatus(errno, absl::StrCat(what, " '", path, "'"));
}

// The directories a path passes through: "a/b/c" gives "a", "a/b".
std::vector<std::string> Ancestors(const std::string& path) {
  std::vector<std::string> out;
  for (size_t slash = path.find('/'); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    out.push_back(path.substr(0, slash));
  }
  return out;
}

std::string LastSegment(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

absl::Status CheckTensorPath(absl::string_view name) {
  auto refuse = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("refusing to write tensor ", QuoteTruncated(name),
                     " as a file under OUTDIR: its name ", why));
  };
  if (name.empty()) return refuse("is empty");
  if (name.front() == '/') return refuse("is an absolute path");
  for (absl::string_view segment : absl::StrSplit(name, '/')) {
    if (segment.empty()) {
      return refuse("has an empty segment (a doubled or trailing '/')");
    }
    if (segment == "." || segment == "..") {
      return refuse(absl::StrCat("has a '", segment, "' segment"));
    }
    if (std::any_of(segment.begin(), segment.end(), [](char c) {
          return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
        })) {
      // A NUL ends the name a system call sees; a newline or an escape
      // sequence in a file name misleads whoever lists the directory.
      return refuse("holds a control character");
    }
    if (segment.size() > NAME_MAX) {
      return refuse(absl::StrCat("has a segment longer than ", NAME_MAX,
                                 " bytes, the file name limit"));
    }
  }
  return absl::OkStatus();
}

OutputTree::OutputTree(std::string out_dir) : out_dir_(std::move(out_dir)) {}

OutputTree::~OutputTree() {
  if (!committed_) RollBack();
}

std::string OutputTree::FullPath(const std::string& path) const {
  return (std::filesystem::path(out_dir_) / path).string();
}

absl::Status OutputTree::Plan(const std::string& path,
                              absl::string_view tensor) {
  CKPT_RETURN_IF_ERROR(CheckTensorPath(path));
  if (auto it = files_.find(path); it != files_.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensors ", QuoteTruncated(it->second), " and ", QuoteTruncated(tensor),
        " would both be written to ", QuoteTruncated(FullPath(path))));
  }
  if (auto it = dirs_.find(path); it != dirs_.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor ", QuoteTruncated(tensor), " would be written to ",
                     QuoteTruncated(FullPath(path)), ", which tensor ",
                     QuoteTruncated(it->second), " needs as a directory"));
  }
  const std::vector<std::string> ancestors = Ancestors(path);
  for (const std::string& dir : ancestors) {
    if (auto it = files_.find(dir); it != files_.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor ", QuoteTruncated(it->second), " would be written to ",
          QuoteTruncated(FullPath(dir)), ", which tensor ",
          QuoteTruncated(tensor), " needs as a directory"));
    }
  }
  files_.emplace(path, std::string(tensor));
  for (const std::string& dir : ancestors) {
    dirs_.emplace(dir, std::string(tensor));
  }
  return absl::OkStatus();
}

absl::Status OutputTree::CheckExisting() const {
  struct stat st;
  if (::stat(out_dir_.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();  // all of it is created
    return ErrnoError("cannot look at", out_dir_);
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("OUTDIR '", out_dir_, "' is not a directory"));
  }
  UniqueFd root(::open(out_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) return ErrnoError("cannot open", out_dir_);
  std::set<std::string> checked;
  for (const auto& [path, tensor] : files_) {
    bool present = true;
    for (const std::string& dir : Ancestors(path)) {
      if (checked.contains(dir)) continue;
      if (::fstatat(root.get(), dir.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno != ENOENT) return ErrnoError("cannot look at", FullPath(dir));
        present = false;
        break;
      }
      if (S_ISLNK(st.st_mode) || !S_ISDIR(st.st_mode)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "'", FullPath(dir), "' is ",
            S_ISLNK(st.st_mode) ? "a symbolic link" : "not a directory",
            ", and tensor ", QuoteTruncated(tensor),
            " would be written below it; refusing to write through it"));
      }
      checked.insert(dir);
    }
    if (present &&
        ::fstatat(root.get(), path.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISDIR(st.st_mode)) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", FullPath(path), "' is a directory; tensor ",
                       QuoteTruncated(tensor), " cannot be written there"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> OutputTree::OpenRoot(bool create) {
  if (create) {
    // OUTDIR and its missing ancestors, outermost first.
    std::vector<std::string> missing;
    struct stat st;
    for (std::filesystem::path p(out_dir_); !p.empty() && p != p.parent_path();
         p = p.parent_path()) {
      if (::stat(p.c_str(), &st) == 0) break;
      missing.push_back(p.string());
    }
    for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
      if (::mkdir(it->c_str(), 0755) != 0) {
        if (errno == EEXIST) continue;
        return ErrnoError("cannot create", *it);
      }
      created_roots_.push_back(*it);
    }
  }
  UniqueFd root(::open(out_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) return ErrnoError("cannot open", out_dir_);
  return root;
}

absl::StatusOr<UniqueFd> OutputTree::OpenParent(int root,
                                                const std::string& path,
                                                bool create) {
  UniqueFd dir(::fcntl(root, F_DUPFD_CLOEXEC, 0));
  if (!dir.valid()) return ErrnoError("cannot open", out_dir_);
  for (const std::string& prefix : Ancestors(path)) {
    const std::string segment = LastSegment(prefix);
    constexpr int kFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    int fd = ::openat(dir.get(), segment.c_str(), kFlags);
    if (fd < 0 && errno == ENOENT && create) {
      if (::mkdirat(dir.get(), segment.c_str(), 0755) == 0) {
        created_dirs_.push_back(prefix);
      } else if (errno != EEXIST) {
        return ErrnoError("cannot create", FullPath(prefix));
      }
      fd = ::openat(dir.get(), segment.c_str(), kFlags);
    }
    if (fd < 0) {
      if (errno == ELOOP || errno == ENOTDIR) {
        return absl::InvalidArgumentError(
            absl::StrCat("'", FullPath(prefix),
                         "' is a symbolic link or not a directory; refusing "
                         "to write through it"));
      }
      return ErrnoError("cannot open", FullPath(prefix));
    }
    dir.Reset(fd);
  }
  return dir;
}

absl::Status OutputTree::Stage(const std::string& path,
                               absl::string_view bytes) {
  if (!files_.contains(path)) {
    return absl::InternalError(
        absl::StrCat("'", path, "' was not planned before it was staged"));
  }
  CKPT_ASSIGN_OR_RETURN(UniqueFd root, OpenRoot(/*create=*/true));
  CKPT_ASSIGN_OR_RETURN(UniqueFd dir,
                        OpenParent(root.get(), path, /*create=*/true));
  UniqueFd file;
  std::string temp;
  // A fixed-length name, whatever the final one's length; O_EXCL never
  // reuses a file someone else made.
  for (int attempt = 0; attempt < 100 && !file.valid(); ++attempt) {
    temp = absl::StrCat(".ckpt-get-", ::getpid(), "-", ++temp_counter_);
    file.Reset(::openat(dir.get(), temp.c_str(),
                        O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                        0644));
    if (!file.valid() && errno != EEXIST) {
      return ErrnoError("cannot create a file in the directory of",
                        FullPath(path));
    }
  }
  if (!file.valid())
    return ErrnoError("cannot create a file for", FullPath(path));
  staged_.push_back(Staged{path, temp});
  while (!bytes.empty()) {
    const ssize_t n = ::write(file.get(), bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("cannot write", FullPath(path));
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  if (::close(file.Release()) != 0) {
    return ErrnoError("cannot write", FullPath(path));
  }
  return absl::OkStatus();
}

absl::Status OutputTree::Commit() {
  CKPT_ASSIGN_OR_RETURN(UniqueFd root, OpenRoot(/*create=*/false));
  for (; renamed_ < staged_.size(); ++renamed_) {
    const Staged& next = staged_[renamed_];
    CKPT_ASSIGN_OR_RETURN(UniqueFd dir,
                          OpenParent(root.get(), next.path, /*create=*/false));
    if (::renameat(dir.get(), next.temp.c_str(), dir.get(),
                   LastSegment(next.path).c_str()) != 0) {
      return ErrnoError("cannot rename a file into", FullPath(next.path));
    }
  }
  committed_ = true;
  return absl::OkStatus();
}

void OutputTree::RollBack() {
  UniqueFd root(::open(out_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (root.valid()) {
    for (size_t i = renamed_; i < staged_.size(); ++i) {
      absl::StatusOr<UniqueFd> dir =
          OpenParent(root.get(), staged_[i].path, /*create=*/false);
      if (dir.ok()) ::unlinkat(dir->get(), staged_[i].temp.c_str(), 0);
    }
    // Innermost first; one holding files renamed into place stays.
    for (auto it = created_dirs_.rbegin(); it != created_dirs_.rend(); ++it) {
      absl::StatusOr<UniqueFd> parent =
          OpenParent(root.get(), *it, /*create=*/false);
      if (parent.ok()) {
        ::unlinkat(parent->get(), LastSegment(*it).c_str(), AT_REMOVEDIR);
      }
    }
  }
  for (auto it = created_roots_.rbegin(); it != created_roots_.rend(); ++it) {
    ::rmdir(it->c_str());
  }
}

}  // namespace ckpt::cli
