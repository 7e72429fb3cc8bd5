#include "server/storage/chunk_files.h"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/storage/rocksdb_status.h"

namespace ckpt::server {
namespace {

constexpr size_t kNameDigits = 16;

// The number a file name spells, or nullopt for any other name.
std::optional<uint64_t> ParseName(absl::string_view name) {
  if (name.size() != kNameDigits) return std::nullopt;
  uint64_t number = 0;
  for (char c : name) {
    const bool digit = c >= '0' && c <= '9';
    const bool hex = c >= 'a' && c <= 'f';
    if (!digit && !hex) return std::nullopt;
    number =
        number * 16 + static_cast<uint64_t>(digit ? c - '0' : c - 'a' + 10);
  }
  return number;
}

}  // namespace

ChunkFiles::ChunkFiles(std::shared_ptr<rocksdb::FileSystem> fs,
                       std::string root)
    : fs_(std::move(fs)), root_(std::move(root)) {}

std::string ChunkFiles::DirOf(uint64_t number) const {
  return absl::StrFormat("%s/%02x", root_, number % kFanOut);
}

std::string ChunkFiles::PathOf(uint64_t number) const {
  return absl::StrFormat("%s/%016x", DirOf(number), number);
}

absl::StatusOr<std::unique_ptr<ChunkFiles>> ChunkFiles::Open(
    std::shared_ptr<rocksdb::FileSystem> fs, std::string root) {
  auto files = std::make_unique<ChunkFiles>(std::move(fs), root);
  const rocksdb::IOOptions io;
  CKPT_RETURN_IF_ERROR(
      FromRocksDb(files->fs_->CreateDirIfMissing(root, io, nullptr),
                  "creating the chunk file directory"));
  for (uint64_t i = 0; i < kFanOut; ++i) {
    const std::string dir = files->DirOf(i);
    CKPT_RETURN_IF_ERROR(
        FromRocksDb(files->fs_->CreateDirIfMissing(dir, io, nullptr),
                    "creating a chunk file directory"));
    CKPT_RETURN_IF_ERROR(FromRocksDb(
        files->fs_->NewDirectory(dir, io, &files->dirs_[i], nullptr),
        "opening a chunk file directory"));
  }
  // The directories themselves durable (the root's entries, and the root's
  // in its parent) before any file in them is.
  const std::string parent = std::filesystem::path(root).parent_path().string();
  for (const std::string& dir : {root, parent}) {
    std::unique_ptr<rocksdb::FSDirectory> handle;
    rocksdb::IOStatus status =
        files->fs_->NewDirectory(dir, io, &handle, nullptr);
    if (status.ok()) {
      status =
          handle->FsyncWithDirOptions(io, nullptr, rocksdb::DirFsyncOptions());
    }
    CKPT_RETURN_IF_ERROR(
        FromRocksDb(status, "syncing the chunk file directories"));
  }
  return files;
}

absl::StatusOr<uint64_t> ChunkFiles::Write(absl::string_view bytes) {
  const uint64_t number = next_number_.fetch_add(1, std::memory_order_relaxed);
  const std::string path = PathOf(number);
  const rocksdb::IOOptions io;
  std::unique_ptr<rocksdb::FSWritableFile> file;
  rocksdb::IOStatus status =
      fs_->NewWritableFile(path, rocksdb::FileOptions(), &file, nullptr);
  if (status.ok()) {
    status =
        file->Append(rocksdb::Slice(bytes.data(), bytes.size()), io, nullptr);
  }
  // Starts writeback now (sync_file_range), so the disk works while the
  // upload goes on and Sync finds little left to wait for.
  if (status.ok()) status = file->RangeSync(0, bytes.size(), io, nullptr);
  if (!status.ok()) {
    if (file != nullptr) file->Close(io, nullptr).PermitUncheckedError();
    fs_->DeleteFile(path, io, nullptr).PermitUncheckedError();
    return FromRocksDb(status, absl::StrCat("writing chunk file ", number));
  }
  bytes_.fetch_add(bytes.size(), std::memory_order_relaxed);
  absl::MutexLock lock(&unsynced_mu_);
  unsynced_[number] = std::move(file);
  return number;
}

std::vector<absl::Status> ChunkFiles::Sync(absl::Span<const uint64_t> numbers) {
  std::vector<std::unique_ptr<rocksdb::FSWritableFile>> files(numbers.size());
  {
    absl::MutexLock lock(&unsynced_mu_);
    for (size_t i = 0; i < numbers.size(); ++i) {
      auto it = unsynced_.find(numbers[i]);
      if (it == unsynced_.end()) continue;
      files[i] = std::move(it->second);
      unsynced_.erase(it);
    }
  }
  const rocksdb::IOOptions io;
  std::vector<absl::Status> statuses(numbers.size());
  std::vector<bool> dir_needed(kFanOut, false);
  for (size_t i = 0; i < numbers.size(); ++i) {
    if (files[i] == nullptr) continue;
    rocksdb::IOStatus status = files[i]->Sync(io, nullptr);
    if (!status.ok()) {
      files[i]->Close(io, nullptr).PermitUncheckedError();
    } else {
      status = files[i]->Close(io, nullptr);
    }
    if (!status.ok()) {
      statuses[i] =
          FromRocksDb(status, absl::StrCat("syncing chunk file ", numbers[i]));
      continue;
    }
    dir_needed[numbers[i] % kFanOut] = true;
  }
  // The directory entries: only then may an index name the files.
  for (size_t dir = 0; dir < kFanOut; ++dir) {
    if (!dir_needed[dir]) continue;
    const rocksdb::IOStatus status = dirs_[dir]->FsyncWithDirOptions(
        io, nullptr, rocksdb::DirFsyncOptions());
    if (status.ok()) continue;
    const absl::Status failed =
        FromRocksDb(status, "syncing a chunk file directory");
    for (size_t i = 0; i < numbers.size(); ++i) {
      if (files[i] != nullptr && numbers[i] % kFanOut == dir &&
          statuses[i].ok()) {
        statuses[i] = failed;
      }
    }
  }
  return statuses;
}

absl::StatusOr<std::string> ChunkFiles::Read(uint64_t number,
                                             uint64_t expected_size) {
  const std::string context = absl::StrCat("reading chunk file ", number);
  std::unique_ptr<rocksdb::FSRandomAccessFile> file;
  rocksdb::IOStatus status = fs_->NewRandomAccessFile(
      PathOf(number), rocksdb::FileOptions(), &file, nullptr);
  if (status.IsPathNotFound() || status.IsNotFound()) {
    return absl::NotFoundError(
        absl::StrCat("chunk file ", number, " does not exist"));
  }
  CKPT_RETURN_IF_ERROR(FromRocksDb(status, context));
  // The index's size is not trusted with an allocation before the file
  // agrees (a damaged index entry could ask for any size).
  uint64_t file_size = 0;
  CKPT_RETURN_IF_ERROR(
      FromRocksDb(fs_->GetFileSize(PathOf(number), rocksdb::IOOptions(),
                                   &file_size, nullptr),
                  context));
  if (file_size != expected_size) {
    return absl::DataLossError(
        absl::StrCat("chunk file ", number, " holds ", file_size,
                     " bytes; the index recorded ", expected_size));
  }
  // One byte more than expected, to see a file that grew meanwhile.
  std::string buffer(expected_size + 1, '\0');
  rocksdb::Slice result;
  CKPT_RETURN_IF_ERROR(
      FromRocksDb(file->Read(0, buffer.size(), rocksdb::IOOptions(), &result,
                             buffer.data(), nullptr),
                  context));
  if (result.size() != expected_size) {
    return absl::DataLossError(absl::StrCat(
        "chunk file ", number, " holds ",
        result.size() > expected_size ? "more than " : "",
        result.size() > expected_size ? expected_size : result.size(),
        " bytes; the index recorded ", expected_size));
  }
  if (result.data() != buffer.data()) {
    std::copy(result.data(), result.data() + result.size(), buffer.data());
  }
  buffer.resize(expected_size);
  return buffer;
}

absl::Status ChunkFiles::Remove(uint64_t number) {
  const std::string path = PathOf(number);
  const rocksdb::IOOptions io;
  std::unique_ptr<rocksdb::FSWritableFile> unsynced;
  {
    absl::MutexLock lock(&unsynced_mu_);
    if (auto it = unsynced_.find(number); it != unsynced_.end()) {
      unsynced = std::move(it->second);
      unsynced_.erase(it);
    }
  }
  if (unsynced != nullptr) unsynced->Close(io, nullptr).PermitUncheckedError();
  uint64_t size = 0;
  const bool sized = fs_->GetFileSize(path, io, &size, nullptr).ok();
  rocksdb::IOStatus status = fs_->DeleteFile(path, io, nullptr);
  if (status.IsPathNotFound() || status.IsNotFound()) return absl::OkStatus();
  CKPT_RETURN_IF_ERROR(
      FromRocksDb(status, absl::StrCat("removing chunk file ", number)));
  if (sized) bytes_.fetch_sub(std::min(size, bytes()));
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> ChunkFiles::RemoveUnreferenced(
    const absl::flat_hash_set<uint64_t>& live, bool remove) {
  uint64_t highest = 0;
  for (uint64_t number : live) highest = std::max(highest, number);
  uint64_t removed = 0;
  uint64_t kept_bytes = 0;
  const rocksdb::IOOptions io;
  for (uint64_t i = 0; i < kFanOut; ++i) {
    std::vector<rocksdb::FileAttributes> children;
    CKPT_RETURN_IF_ERROR(FromRocksDb(
        fs_->GetChildrenFileAttributes(DirOf(i), io, &children, nullptr),
        "listing chunk files"));
    for (const rocksdb::FileAttributes& child : children) {
      const std::optional<uint64_t> number = ParseName(child.name);
      if (!number.has_value() || *number % kFanOut != i) {
        CKPT_LOG(Warning, "chunk file directory ", DirOf(i),
                 " holds a file ckpt did not write: ", child.name,
                 " (left alone)");
        continue;
      }
      highest = std::max(highest, *number);
      if (!remove || live.contains(*number)) {
        kept_bytes += child.size_bytes;
        continue;
      }
      // One file that cannot go must not keep the store from opening.
      if (absl::Status status = Remove(*number); !status.ok()) {
        CKPT_LOG(Warning, "could not remove chunk file ", *number,
                 " that no index entry names: ", status.ToString());
        continue;
      }
      ++removed;
    }
  }
  bytes_.store(kept_bytes, std::memory_order_relaxed);
  next_number_.store(highest + 1, std::memory_order_relaxed);
  return removed;
}

}  // namespace ckpt::server
