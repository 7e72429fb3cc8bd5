// SharedFileSocket: the server's shared-memory socket, where clients on
// this host pass their restore memfds (SCM_RIGHTS) and get the handles
// ReadChunksIntoFile names (common/shared_file_protocol.h has the
// protocol, server/service/shared_file_registry.h the files). A Unix
// SOCK_SEQPACKET socket with an abstract name of 128 random bits chosen at
// start, served by one thread of its own with poll(); no gRPC here.
//
// A connection gets kHandshakeTimeout to register its first file; the
// peer's uid (SO_PEERCRED) is recorded with each file and bounds how many
// connections one user may hold, so one local user cannot use up the
// slots of the others. Thread-safe.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/shared_file.h"
#include "common/unique_fd.h"
#include "server/service/shared_file_registry.h"

namespace ckpt::server {

struct SharedFileSocketOptions {
  // Connections open at once. Default: 256.
  size_t max_connections = 256;
  // Connections open at once from one uid. Default: 64.
  size_t max_connections_per_uid = 64;
  // Time from connect to the first registered file. Default: 10 s.
  absl::Duration handshake_timeout = absl::Seconds(10);
};

class SharedFileSocket {
 public:
  // Binds a new random abstract name and starts serving it into
  // `registry`, which must outlive this object. UNAVAILABLE when the socket
  // cannot be made.
  static absl::StatusOr<std::unique_ptr<SharedFileSocket>> Start(
      SharedFileRegistry* registry, SharedFileSocketOptions options = {});

  ~SharedFileSocket();
  SharedFileSocket(const SharedFileSocket&) = delete;
  SharedFileSocket& operator=(const SharedFileSocket&) = delete;

  // The socket's name and a fresh ticket for it (what
  // GetSharedFileEndpoint answers). INTERNAL if the random generator fails.
  absl::StatusOr<SharedFileEndpoint> NewEndpoint() const;

  // The files registered here.
  const SharedFileRegistry& registry() const { return *registry_; }

  // Connections open now.
  size_t connections() const { return connections_.load(); }

  // Stops the thread and closes every connection (dropping their files).
  // Idempotent.
  void Stop();

 private:
  struct Connection;
  SharedFileSocket(SharedFileRegistry* registry,
                   SharedFileSocketOptions options, std::string name,
                   std::string key, UniqueFd listener, UniqueFd wake);
  void Run();
  void Accept();
  // False when the connection is to be closed.
  bool Serve(Connection& connection);

  SharedFileRegistry* const registry_;
  const SharedFileSocketOptions options_;
  const std::string name_;
  const std::string key_;  // derives tickets; never leaves the server
  const UniqueFd listener_;
  const UniqueFd wake_;  // an eventfd; Stop signals it
  // Only the thread touches open_ and next_id_.
  std::vector<std::unique_ptr<Connection>> open_;
  uint64_t next_id_ = 1;
  std::atomic<size_t> connections_{0};
  std::atomic<bool> stopped_{false};
  std::thread thread_;
};

}  // namespace ckpt::server
