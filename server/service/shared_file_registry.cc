#include "server/service/shared_file_registry.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/shared_file_protocol.h"
#include "common/status_macros.h"

namespace ckpt::server {

absl::StatusOr<std::string> SharedFileRegistry::Register(
    uint64_t connection, UniqueFd fd, const PeerCredentials& peer) {
  CKPT_ASSIGN_OR_RETURN(SharedFileWriter writer,
                        SharedFileWriter::Adopt(std::move(fd)));
  auto file = std::make_shared<const SharedFileWriter>(std::move(writer));
  absl::MutexLock lock(&mu_);
  if (by_handle_.size() >= limits_.max_files) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the server holds ", limits_.max_files,
                     " shared files already; try again when restores finish"));
  }
  size_t& mine = per_connection_[connection];
  if (mine >= limits_.max_files_per_connection) {
    return absl::ResourceExhaustedError(
        absl::StrCat("a connection may register at most ",
                     limits_.max_files_per_connection, " files at once"));
  }
  std::string handle;
  do {  // a collision of 128 random bits does not happen; if it did, retry
    CKPT_ASSIGN_OR_RETURN(handle, shared_file_protocol::RandomBytes(
                                      shared_file_protocol::kHandleBytes));
  } while (by_handle_.contains(handle));
  by_handle_.emplace(handle, Entry{connection, peer, std::move(file)});
  ++mine;
  return handle;
}

void SharedFileRegistry::DropConnection(uint64_t connection) {
  // Released outside the lock: closing a descriptor may take a moment.
  std::vector<std::shared_ptr<const SharedFileWriter>> dropped;
  absl::MutexLock lock(&mu_);
  if (per_connection_.erase(connection) == 0) return;
  for (auto it = by_handle_.begin(); it != by_handle_.end();) {
    if (it->second.connection == connection) {
      dropped.push_back(std::move(it->second.file));
      by_handle_.erase(it++);
    } else {
      ++it;
    }
  }
}

absl::StatusOr<std::shared_ptr<const SharedFileWriter>>
SharedFileRegistry::Find(absl::string_view handle) const {
  absl::MutexLock lock(&mu_);
  auto it = by_handle_.find(handle);
  if (it == by_handle_.end()) {
    return absl::FailedPreconditionError(
        "file_handle names no registered shared file (register the restore "
        "memfd at the server's shared-memory socket first; a file is dropped "
        "when the connection that registered it closes)");
  }
  return it->second.file;
}

size_t SharedFileRegistry::size() const {
  absl::MutexLock lock(&mu_);
  return by_handle_.size();
}

}  // namespace ckpt::server
