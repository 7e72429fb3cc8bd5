// Where `ckpt get` writes its files: each under OUTDIR at the relative path
// a tensor name spells, nested for names with '/' (PyTorch's
// "model/0.weight"), written so that a get either writes every file or
// none. POSIX only.
//
// - A path is relative and made of segments that are not empty, ".", or
//   "..", hold no control character (a NUL, a newline, an escape) and are
//   at most NAME_MAX bytes; no two files share a
//   path and no file is another's directory. Plan checks this before
//   anything is fetched.
// - Nothing outside OUTDIR is touched: below OUTDIR, directories are opened
//   one segment at a time with O_NOFOLLOW (a symbolic link planted inside
//   OUTDIR is refused, never followed), files are created with O_EXCL |
//   O_NOFOLLOW under temporary names and renamed over their final names
//   (which replaces a link there rather than writing through it).
// - Stage writes a file under a temporary name, creating directories as
//   needed; Commit renames every staged file into place. An OutputTree
//   destroyed without a successful Commit removes its temporary files and
//   the directories it created (OUTDIR included), so a failed get leaves
//   nothing. A Commit that fails midway (a rename refused: rare, as every
//   rename stays in one directory and CheckExisting found no directory in
//   the way) leaves the files renamed before it.
// Not thread-safe. Files are not synced: a crash may lose them.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/unique_fd.h"

namespace ckpt::cli {

// OK when tensor name `name` can be written as a file under OUTDIR at the
// path it spells; INVALID_ARGUMENT naming it and saying why otherwise.
absl::Status CheckTensorPath(absl::string_view name);

class OutputTree {
 public:
  // REQUIRES: !out_dir.empty().
  explicit OutputTree(std::string out_dir);
  ~OutputTree();
  OutputTree(const OutputTree&) = delete;
  OutputTree& operator=(const OutputTree&) = delete;

  // Reserves `path` (relative to OUTDIR) for tensor `tensor`.
  // INVALID_ARGUMENT naming the tensor(s) when the path is unsafe
  // (CheckTensorPath), already reserved, or crosses another's file.
  absl::Status Plan(const std::string& path, absl::string_view tensor);

  // Checks what already exists along the planned paths, creating nothing:
  // OUTDIR (if present) is a directory; every existing directory below it
  // on a planned path is a real directory (not a link, not a file); no
  // planned file is an existing directory.
  absl::Status CheckExisting() const;

  // Writes `bytes` as planned `path`, under a temporary name beside it.
  absl::Status Stage(const std::string& path, absl::string_view bytes);

  // Renames every staged file over its planned path, in staging order.
  absl::Status Commit();

  // OUTDIR/path, as shown to people.
  std::string FullPath(const std::string& path) const;

 private:
  struct Staged {
    std::string path;  // planned, relative to OUTDIR
    std::string temp;  // the temporary name, in the same directory
  };

  // OUTDIR opened (created, recording what was created, when `create`).
  absl::StatusOr<UniqueFd> OpenRoot(bool create);
  // The directory of `path` below `root`, opened segment by segment without
  // following links (created, and recorded, when `create`).
  absl::StatusOr<UniqueFd> OpenParent(int root, const std::string& path,
                                      bool create);
  void RollBack();

  const std::string out_dir_;
  std::map<std::string, std::string> files_;  // path -> tensor
  std::map<std::string, std::string> dirs_;   // path -> a tensor under it
  std::vector<Staged> staged_;
  size_t renamed_ = 0;  // staged_[0, renamed_) are in place
  // Created by Stage, in creation order: OUTDIR and its missing ancestors
  // (absolute or as given), then directories below OUTDIR (relative).
  std::vector<std::string> created_roots_;
  std::vector<std::string> created_dirs_;
  bool committed_ = false;
  int temp_counter_ = 0;
};

}  // namespace ckpt::cli
