// PowerLossFs (power_loss_fs.h): the file and directory wrappers that
// report writes and syncs, and the crash: what is dropped and how.
#include "tests/testing/power_loss_fs.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"

namespace ckpt::testing {
namespace {

using rocksdb::IODebugContext;
using rocksdb::IOOptions;
using rocksdb::IOStatus;
using rocksdb::Slice;

// Renamed-over files larger than this are not kept for an undo: the rename
// is then durable at once.
constexpr uintmax_t kMaxKeptReplacedBytes = uintmax_t{1} << 20;

// One spelling per path, so that a file and its directory match however
// RocksDB joined them.
std::string Normal(const std::string& name) {
  std::filesystem::path path = std::filesystem::path(name).lexically_normal();
  if (!path.has_filename() && path.has_parent_path()) {
    path = path.parent_path();
  }
  return path.string();
}

std::string DirOf(const std::string& normal) {
  return std::filesystem::path(normal).parent_path().string();
}

bool Exists(const std::string& path) {
  std::error_code error;
  return std::filesystem::exists(path, error);
}

// A file open for writing: reports how far it was written and what each
// sync covered.
class TrackedFile final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  TrackedFile(std::unique_ptr<rocksdb::FSWritableFile> file, PowerLossFs* fs,
              std::string path, uint64_t end)
      : FSWritableFileOwnerWrapper(std::move(file)),
        fs_(fs),
        path_(std::move(path)),
        end_(end) {}

  IOStatus Append(const Slice& data, const IOOptions& options,
                  IODebugContext* dbg) override {
    IOStatus status = fs_->BeginChange();
    if (status.ok()) status = target()->Append(data, options, dbg);
    if (status.ok()) fs_->Wrote(path_, end_ += data.size());
    return status;
  }
  IOStatus Append(const Slice& data, const IOOptions& options,
                  const rocksdb::DataVerificationInfo& info,
                  IODebugContext* dbg) override {
    IOStatus status = fs_->BeginChange();
    if (status.ok()) status = target()->Append(data, options, info, dbg);
    if (status.ok()) fs_->Wrote(path_, end_ += data.size());
    return status;
  }
  IOStatus PositionedAppend(const Slice& data, uint64_t offset,
                            const IOOptions& options,
                            IODebugContext* dbg) override {
    IOStatus status = fs_->BeginChange();
    if (status.ok()) {
      status = target()->PositionedAppend(data, offset, options, dbg);
    }
    if (status.ok()) WroteAt(offset + data.size());
    return status;
  }
  IOStatus PositionedAppend(const Slice& data, uint64_t offset,
                            const IOOptions& options,
                            const rocksdb::DataVerificationInfo& info,
                            IODebugContext* dbg) override {
    IOStatus status = fs_->BeginChange();
    if (status.ok()) {
      status = target()->PositionedAppend(data, offset, options, info, dbg);
    }
    if (status.ok()) WroteAt(offset + data.size());
    return status;
  }
  IOStatus Truncate(uint64_t size, const IOOptions& options,
                    IODebugContext* dbg) override {
    IOStatus status = fs_->BeginChange();
    if (status.ok()) status = target()->Truncate(size, options, dbg);
    if (status.ok()) {
      end_ = size;
      fs_->Truncated(path_, size);
    }
    return status;
  }
  IOStatus Sync(const IOOptions& options, IODebugContext* dbg) override {
    IOStatus status = fs_->BeginChange();
    if (!status.ok()) return status;
    const uint64_t length = fs_->Written(path_);
    status = target()->Sync(options, dbg);
    return status.ok() ? fs_->Synced(path_, length) : status;
  }
  IOStatus Fsync(const IOOptions& options, IODebugContext* dbg) override {
    IOStatus status = fs_->BeginChange();
    if (!status.ok()) return status;
    const uint64_t length = fs_->Written(path_);
    status = target()->Fsync(options, dbg);
    return status.ok() ? fs_->Synced(path_, length) : status;
  }
  // Writes pages back, but makes nothing durable (see the header).
  IOStatus RangeSync(uint64_t offset, uint64_t nbytes, const IOOptions& options,
                     IODebugContext* dbg) override {
    IOStatus status = fs_->BeginChange();
    return status.ok() ? target()->RangeSync(offset, nbytes, options, dbg)
                       : status;
  }
  IOStatus Allocate(uint64_t offset, uint64_t len, const IOOptions& options,
                    IODebugContext* dbg) override {
    IOStatus status = fs_->BeginChange();
    return status.ok() ? target()->Allocate(offset, len, options, dbg) : status;
  }

 private:
  void WroteAt(uint64_t end) {
    uint64_t now = end_.load();
    while (now < end && !end_.compare_exchange_weak(now, end)) {
    }
    fs_->Wrote(path_, end_.load());
  }

  PowerLossFs* fs_;
  const std::string path_;
  std::atomic<uint64_t> end_;
};

// A directory: its fsync makes the creates and renames in it durable.
class TrackedDirectory final : public rocksdb::FSDirectoryWrapper {
 public:
  TrackedDirectory(std::unique_ptr<rocksdb::FSDirectory> dir, PowerLossFs* fs,
                   std::string path)
      : FSDirectoryWrapper(std::move(dir)), fs_(fs), path_(std::move(path)) {}

  IOStatus Fsync(const IOOptions& options, IODebugContext* dbg) override {
    IOStatus status = fs_->BeginChange();
    if (!status.ok()) return status;
    const uint64_t before = fs_->NextChange();
    status = FSDirectoryWrapper::Fsync(options, dbg);
    return status.ok() ? fs_->DirSynced(path_, before) : status;
  }
  IOStatus FsyncWithDirOptions(
      const IOOptions& options, IODebugContext* dbg,
      const rocksdb::DirFsyncOptions& dir_options) override {
    IOStatus status = fs_->BeginChange();
    if (!status.ok()) return status;
    const uint64_t before = fs_->NextChange();
    status = FSDirectoryWrapper::FsyncWithDirOptions(options, dbg, dir_options);
    return status.ok() ? fs_->DirSynced(path_, before) : status;
  }

 private:
  PowerLossFs* fs_;
  const std::string path_;
};

}  // namespace

PowerLossFs::PowerLossFs(const std::shared_ptr<rocksdb::FileSystem>& base)
    : FileSystemWrapper(base) {}

void PowerLossFs::Crash() {
  absl::MutexLock lock(&mu_);
  crashed_ = true;
}

void PowerLossFs::CrashAfterOps(uint64_t k) {
  absl::MutexLock lock(&mu_);
  crash_at_op_ = k == 0 ? 0 : ops_ + k;
}

bool PowerLossFs::crashed() const {
  absl::MutexLock lock(&mu_);
  return crashed_;
}

uint64_t PowerLossFs::ops() const {
  absl::MutexLock lock(&mu_);
  return ops_;
}

IOStatus PowerLossFs::CrashError() const {
  return IOStatus::IOError("simulated power loss");
}

bool PowerLossFs::PoweredLocked() const { return !crashed_; }

IOStatus PowerLossFs::BeginChange() {
  absl::MutexLock lock(&mu_);
  if (crashed_) return CrashError();
  ++ops_;
  if (crash_at_op_ != 0 && ops_ >= crash_at_op_) {
    crashed_ = true;
    return CrashError();
  }
  return IOStatus::OK();
}

void PowerLossFs::Wrote(const std::string& path, uint64_t end) {
  absl::MutexLock lock(&mu_);
  files_[path].written = end;
}

void PowerLossFs::Truncated(const std::string& path, uint64_t size) {
  absl::MutexLock lock(&mu_);
  FileState& file = files_[path];
  file.written = size;
  file.synced = std::min(file.synced, size);
}

uint64_t PowerLossFs::NextChange() const {
  absl::MutexLock lock(&mu_);
  return next_change_;
}

uint64_t PowerLossFs::Written(const std::string& path) const {
  absl::MutexLock lock(&mu_);
  auto it = files_.find(path);
  return it == files_.end() ? 0 : it->second.written;
}

IOStatus PowerLossFs::Synced(const std::string& path, uint64_t length) {
  absl::MutexLock lock(&mu_);
  if (!PoweredLocked()) return CrashError();
  auto it = files_.find(path);
  if (it != files_.end()) {
    it->second.synced = std::max(it->second.synced, length);
  }
  return IOStatus::OK();
}

IOStatus PowerLossFs::DirSynced(const std::string& dir, uint64_t before) {
  absl::MutexLock lock(&mu_);
  if (!PoweredLocked()) return CrashError();
  std::erase_if(changes_, [&](const Change& change) {
    return change.dir == dir && change.number < before;
  });
  return IOStatus::OK();
}

IOStatus PowerLossFs::NewWritableFile(
    const std::string& name, const rocksdb::FileOptions& options,
    std::unique_ptr<rocksdb::FSWritableFile>* result, IODebugContext* dbg) {
  return OpenWritable(name, options, result, dbg, /*reopen=*/false);
}

IOStatus PowerLossFs::ReopenWritableFile(
    const std::string& name, const rocksdb::FileOptions& options,
    std::unique_ptr<rocksdb::FSWritableFile>* result, IODebugContext* dbg) {
  return OpenWritable(name, options, result, dbg, /*reopen=*/true);
}

IOStatus PowerLossFs::OpenWritable(
    const std::string& name, const rocksdb::FileOptions& options,
    std::unique_ptr<rocksdb::FSWritableFile>* result, IODebugContext* dbg,
    bool reopen) {
  IOStatus status = BeginChange();
  if (!status.ok()) return status;
  const std::string path = Normal(name);
  const bool existed = Exists(path);
  std::unique_ptr<rocksdb::FSWritableFile> file;
  status = reopen ? target()->ReopenWritableFile(name, options, &file, dbg)
                  : target()->NewWritableFile(name, options, &file, dbg);
  if (!status.ok()) return status;
  // Reopened, a file keeps its bytes; new, it starts empty.
  std::error_code error;
  const uintmax_t size =
      reopen && existed ? std::filesystem::file_size(path, error) : 0;
  const uint64_t end = error ? 0 : size;
  {
    absl::MutexLock lock(&mu_);
    if (reopen) {
      // A file this file system did not write is durable as it is.
      files_.try_emplace(path, FileState{end, end});
    } else {
      files_[path] = FileState{};
    }
    if (!existed) {
      changes_.push_back(
          Change{Change::Kind::kCreate, next_change_++, DirOf(path), path,
                 /*from=*/"", /*replaced=*/false, /*replaced_content=*/""});
    }
  }
  *result = std::make_unique<TrackedFile>(std::move(file), this, path, end);
  return status;
}

IOStatus PowerLossFs::ReuseWritableFile(
    const std::string&, const std::string&, const rocksdb::FileOptions&,
    std::unique_ptr<rocksdb::FSWritableFile>*, IODebugContext*) {
  return IOStatus::NotSupported("PowerLossFs does not recycle files");
}

IOStatus PowerLossFs::NewRandomRWFile(const std::string&,
                                      const rocksdb::FileOptions&,
                                      std::unique_ptr<rocksdb::FSRandomRWFile>*,
                                      IODebugContext*) {
  return IOStatus::NotSupported("PowerLossFs has no random-write files");
}

IOStatus PowerLossFs::NewDirectory(
    const std::string& name, const IOOptions& options,
    std::unique_ptr<rocksdb::FSDirectory>* result, IODebugContext* dbg) {
  std::unique_ptr<rocksdb::FSDirectory> dir;
  IOStatus status = target()->NewDirectory(name, options, &dir, dbg);
  if (!status.ok()) return status;
  *result =
      std::make_unique<TrackedDirectory>(std::move(dir), this, Normal(name));
  return status;
}

IOStatus PowerLossFs::DeleteFile(const std::string& name,
                                 const IOOptions& options,
                                 IODebugContext* dbg) {
  IOStatus status = BeginChange();
  if (!status.ok()) return status;
  status = target()->DeleteFile(name, options, dbg);
  if (!status.ok()) return status;
  const std::string path = Normal(name);
  absl::MutexLock lock(&mu_);
  // Deletes are durable at once (not modelled): the file is gone for good.
  files_.erase(path);
  std::erase_if(changes_, [&](const Change& change) {
    return change.kind == Change::Kind::kCreate && change.path == path;
  });
  return status;
}

IOStatus PowerLossFs::Truncate(const std::string& name, size_t size,
                               const IOOptions& options, IODebugContext* dbg) {
  IOStatus status = BeginChange();
  if (!status.ok()) return status;
  status = target()->Truncate(name, size, options, dbg);
  if (!status.ok()) return status;
  const std::string path = Normal(name);
  absl::MutexLock lock(&mu_);
  auto it = files_.find(path);
  if (it != files_.end()) {
    it->second.written = size;
    it->second.synced = std::min<uint64_t>(it->second.synced, size);
  } else {
    // Shrinking a durable file: only what stays is known durable.
    files_[path] = FileState{size, size};
  }
  return status;
}

IOStatus PowerLossFs::RenameFile(const std::string& from, const std::string& to,
                                 const IOOptions& options,
                                 IODebugContext* dbg) {
  IOStatus status = BeginChange();
  if (!status.ok()) return status;
  const std::string from_path = Normal(from);
  const std::string to_path = Normal(to);
  // Held across the rename, so the replaced bytes and the state move with
  // it as one step.
  absl::MutexLock lock(&mu_);
  Change change{Change::Kind::kRename,  0, DirOf(to_path), to_path, from_path,
                /*replaced=*/false,
                /*replaced_content=*/""};
  bool undoable = true;
  if (Exists(to_path)) {
    std::error_code error;
    const uintmax_t size = std::filesystem::file_size(to_path, error);
    if (error || size > kMaxKeptReplacedBytes) {
      undoable = false;
    } else {
      std::ifstream in(to_path, std::ios::binary);
      change.replaced = true;
      change.replaced_content.assign(std::istreambuf_iterator<char>(in),
                                     std::istreambuf_iterator<char>());
    }
  }
  status = target()->RenameFile(from, to, options, dbg);
  if (!status.ok()) return status;
  files_.erase(to_path);
  if (auto node = files_.extract(from_path); !node.empty()) {
    node.key() = to_path;
    files_.insert(std::move(node));
  }
  if (undoable && DirOf(from_path) == change.dir) {
    change.number = next_change_++;
    changes_.push_back(std::move(change));
  }
  return status;
}

IOStatus PowerLossFs::LinkFile(const std::string& from, const std::string& to,
                               const IOOptions& options, IODebugContext* dbg) {
  IOStatus status = BeginChange();
  return status.ok() ? target()->LinkFile(from, to, options, dbg) : status;
}

IOStatus PowerLossFs::CreateDir(const std::string& name,
                                const IOOptions& options, IODebugContext* dbg) {
  IOStatus status = BeginChange();
  return status.ok() ? target()->CreateDir(name, options, dbg) : status;
}

IOStatus PowerLossFs::CreateDirIfMissing(const std::string& name,
                                         const IOOptions& options,
                                         IODebugContext* dbg) {
  IOStatus status = BeginChange();
  return status.ok() ? target()->CreateDirIfMissing(name, options, dbg)
                     : status;
}

IOStatus PowerLossFs::DeleteDir(const std::string& name,
                                const IOOptions& options, IODebugContext* dbg) {
  IOStatus status = BeginChange();
  return status.ok() ? target()->DeleteDir(name, options, dbg) : status;
}

absl::StatusOr<PowerLossFs::Dropped> PowerLossFs::RestoreAfterCrash() {
  absl::MutexLock lock(&mu_);
  Dropped dropped;
  std::error_code error;
  // Newest first, so a file created and then renamed goes back to its
  // first name before its create is undone.
  for (auto it = changes_.rbegin(); it != changes_.rend(); ++it) {
    const Change& change = *it;
    if (change.kind == Change::Kind::kCreate) {
      std::filesystem::remove(change.path, error);
      if (error) {
        return absl::InternalError(
            absl::StrCat("removing ", change.path, ": ", error.message()));
      }
      files_.erase(change.path);
      ++dropped.creates_undone;
      continue;
    }
    if (Exists(change.path)) {
      std::filesystem::rename(change.path, change.from, error);
      if (error) {
        return absl::InternalError(
            absl::StrCat("renaming ", change.path, " back: ", error.message()));
      }
    }
    if (auto moved = files_.find(change.path); moved != files_.end()) {
      const FileState state = moved->second;
      files_.erase(moved);
      files_[change.from] = state;
    }
    if (change.replaced) {
      std::ofstream out(change.path, std::ios::binary | std::ios::trunc);
      out << change.replaced_content;
      if (!out.good()) {
        return absl::InternalError(
            absl::StrCat("restoring ", change.path, " failed"));
      }
    }
    ++dropped.renames_undone;
  }
  for (const auto& [path, file] : files_) {
    if (!Exists(path)) continue;
    const uintmax_t size = std::filesystem::file_size(path, error);
    if (error) {
      return absl::InternalError(
          absl::StrCat("size of ", path, ": ", error.message()));
    }
    if (size <= file.synced) continue;
    std::filesystem::resize_file(path, file.synced, error);
    if (error) {
      return absl::InternalError(
          absl::StrCat("truncating ", path, ": ", error.message()));
    }
    ++dropped.files_truncated;
    dropped.bytes_dropped += size - file.synced;
  }
  files_.clear();
  changes_.clear();
  crashed_ = false;
  crash_at_op_ = 0;
  return dropped;
}

}  // namespace ckpt::testing
