// RadosCluster: a server's one connection to a Ceph cluster and the pool
// that holds its chunks and metadata (RadosChunkStore, RadosMetadataStore).
// librados types stay behind it: the stores' .cc files reach them through
// rados_io.h.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace ckpt::server {

struct RadosOptions {
  std::string conf_path;       // ceph.conf (mon addresses, auth)
  std::string user = "admin";  // cephx name without "client."
  std::string keyring;         // optional; else the conf's keyring
  std::string pool;            // must exist
  // librados waits forever by default; a server must fail instead.
  absl::Duration connect_timeout = absl::Seconds(30);
  absl::Duration op_timeout = absl::Seconds(60);
};

// Thread-safe.
class RadosCluster {
 public:
  // Connects and opens the pool: UNAVAILABLE when no monitor answers within
  // connect_timeout, PERMISSION_DENIED for bad credentials, NOT_FOUND for a
  // missing pool, each naming the conf, user and pool.
  static absl::StatusOr<std::unique_ptr<RadosCluster>> Connect(
      const RadosOptions& options);
  ~RadosCluster();
  RadosCluster(const RadosCluster&) = delete;
  RadosCluster& operator=(const RadosCluster&) = delete;

  const RadosOptions& options() const { return options_; }
  // "client.<global id>": how this connection appears as a lock holder.
  std::string ClientName() const;

  struct Handles;  // rados_io.h
  Handles& handles() { return *handles_; }

  // Only Connect can make one.
  class Passkey {
    friend class RadosCluster;
    Passkey() = default;
  };
  RadosCluster(Passkey, RadosOptions options, std::unique_ptr<Handles> handles);

 private:
  const RadosOptions options_;
  std::unique_ptr<Handles> handles_;
};

}  // namespace ckpt::server
