// SharedFileRegistry: the restore memfds clients on this host have passed
// to the server (over the shared-memory socket, server/rpc/
// shared_file_socket.h), each under a random handle that ReadChunksIntoFile
// names. A file stays registered while the connection that passed it stays
// open: the socket drops a connection's files when it closes, so a client
// that exits or dies leaves nothing behind. The handle is a capability:
// whoever names it may have verified chunks written into that file, and it
// is bound to nothing else. Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/unique_fd.h"
#include "server/service/shared_file.h"

namespace ckpt::server {

// Who passed a file, as the kernel reports the socket's peer (SO_PEERCRED,
// at connect time; pid 0 when the peer is in another pid namespace).
struct PeerCredentials {
  int32_t pid = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
};

struct SharedFileRegistryLimits {
  // Files one connection may have registered at once (a restore registers
  // one). Default: 8.
  size_t max_files_per_connection = 8;
  // Files registered at once over all connections. Default: 1024.
  size_t max_files = 1024;
};

class SharedFileRegistry {
 public:
  explicit SharedFileRegistry(SharedFileRegistryLimits limits = {})
      : limits_(limits) {}

  // Checks `fd` (SharedFileWriter::Adopt: FAILED_PRECONDITION for anything
  // but a writable, sealed memfd) and registers it for `connection`; the
  // new handle (shared_file_protocol::kHandleBytes random bytes).
  // RESOURCE_EXHAUSTED over a limit. `fd` is closed on any error.
  absl::StatusOr<std::string> Register(uint64_t connection, UniqueFd fd,
                                       const PeerCredentials& peer);

  // Drops every file `connection` registered. The descriptors close once
  // no write in flight holds them.
  void DropConnection(uint64_t connection);

  // The file registered under `handle`, held open while the caller keeps
  // it. FAILED_PRECONDITION for any other handle, with a message that
  // says nothing about the handles that do exist.
  absl::StatusOr<std::shared_ptr<const SharedFileWriter>> Find(
      absl::string_view handle) const;

  // Files registered now.
  size_t size() const;

 private:
  struct Entry {
    uint64_t connection = 0;
    PeerCredentials peer;
    std::shared_ptr<const SharedFileWriter> file;
  };

  const SharedFileRegistryLimits limits_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> by_handle_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, size_t> per_connection_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ckpt::server
