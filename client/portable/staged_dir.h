// StagedDirectory: the files of an export, written into one directory
// under hidden temporary names and given their final names together once
// all are complete, never over an existing file, so that an export either
// leaves all of its files or none. POSIX (Linux: renameat2).
//
// Crash behaviour: files are synced before they are renamed and the
// directory after, so a crash leaves either the final files complete or
// only hidden ".NAME.ckpt-export.tmp" files (never a final name with
// missing bytes). A Commit that fails midway (a final name created by
// someone else meanwhile) removes the files it had renamed.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/unique_fd.h"

namespace ckpt::client::portable {

// The names of the entries of the open directory `dir_fd` (not "." and
// ".."), in no particular order; errors quote `shown`.
absl::StatusOr<std::vector<std::string>> ListDirectory(int dir_fd,
                                                       absl::string_view shown);

// Not thread-safe.
class StagedDirectory {
 public:
  // Opens directory `dir`, creating it and its missing parents. Errors
  // name `dir`: FAILED_PRECONDITION when it is not a directory.
  static absl::StatusOr<std::unique_ptr<StagedDirectory>> Open(
      const std::string& dir);
  // Without a successful Commit: removes the temporary files and the
  // directories Open created (when empty).
  ~StagedDirectory();
  StagedDirectory(const StagedDirectory&) = delete;
  StagedDirectory& operator=(const StagedDirectory&) = delete;

  // The names of the directory's entries (not "." and "..").
  absl::StatusOr<std::vector<std::string>> List() const;

  // A new file that Commit names `name` (a plain file name), created empty
  // under a temporary name; returns its index for Append.
  absl::StatusOr<size_t> Create(const std::string& name);
  // Appends `bytes` to file `file`.
  absl::Status Append(size_t file, absl::string_view bytes);

  // Makes every file durable and closes it (no Append after).
  absl::Status Sync();
  // Syncs the files (if Sync was not called), renames each to its name
  // (ALREADY_EXISTS naming the file when that name exists: nothing is
  // overwritten) and syncs the directory.
  absl::Status Commit();

  // DIR/name, as shown to people.
  std::string PathOf(absl::string_view name) const;

 private:
  struct File {
    std::string name;
    std::string temp;
    UniqueFd fd;
  };
  struct PrivateTag {};

 public:
  StagedDirectory(PrivateTag, std::string dir, UniqueFd fd,
                  std::vector<std::string> created)
      : dir_(std::move(dir)),
        fd_(std::move(fd)),
        created_(std::move(created)) {}

 private:
  const std::string dir_;
  UniqueFd fd_;
  std::vector<std::string> created_;  // directories Open made, outermost first
  std::vector<File> files_;
  size_t renamed_ = 0;  // files_[0, renamed_) carry their final names
  bool committed_ = false;
};

}  // namespace ckpt::client::portable
