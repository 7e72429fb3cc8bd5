// CheckpointServer: runs ckpt.v1.CheckpointService (plus the standard gRPC
// health service and proto reflection) over a CheckpointService. The public
// API mentions no gRPC type.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/auth/authenticator.h"
#include "server/observability/metrics.h"
#include "server/rpc/stream_limits.h"
#include "server/service/checkpoint_service.h"
#include "server/service/tenant_quotas.h"

namespace ckpt::server {

// TLS of the listening port, as PEM text (ckpt-server's main reads the
// files and checks them with common/tls_pem.h first).
struct ServerTlsOptions {
  // The server's certificate chain (its own certificate first) and its
  // private key.
  std::string cert_chain_pem;
  std::string private_key_pem;
  // Non-empty: mutual TLS. Every client must present a certificate that
  // chains to one of these CA certificates, or the handshake fails.
  // Default: empty (clients are not asked for a certificate).
  std::string client_ca_pem;
};

struct ServerOptions {
  // HOST:PORT to listen on. Port 0 picks a free port; see port().
  // Default: "127.0.0.1:7070".
  std::string listen_address = "127.0.0.1:7070";
  // Set: the port speaks only TLS (gRPC's OpenSSL-backed credentials); a
  // plaintext client fails at the handshake, before any call is read.
  // Default: nullopt (plaintext HTTP/2).
  std::optional<ServerTlsOptions> tls;
  // Largest message received or sent. Chunks are at most kMaxChunkBytes
  // (16 MiB), so this leaves room for framing and batching. Default: 64 MiB.
  int max_message_bytes = 64 << 20;
  StreamLimits limits;
  // Calls (streams) one client connection may have open at once
  // (GRPC_ARG_MAX_CONCURRENT_STREAMS); further ones wait in the client until
  // one ends. Flag --max-concurrent-streams. Default: 100.
  int max_concurrent_streams = 100;
  // Memory gRPC may use for its buffers, all connections and calls
  // together (grpc::ResourceQuota); under pressure it shrinks flow-control
  // windows, refuses new calls and, past it, closes connections (GOAWAY)
  // instead of growing. Upload messages once read are not in it but in
  // StreamLimits::upload_buffer_bytes. Flag --grpc-memory-quota.
  // Default: 2 GiB.
  uint64_t grpc_memory_quota_bytes = uint64_t{2} << 30;
  // Whether gRPC probes each connection's bandwidth-delay product to grow
  // its receive windows (GRPC_ARG_HTTP2_BDP_PROBE). Off by default: see
  // server.cc. Flag --grpc-bdp-probe.
  bool grpc_bdp_probe = false;
  // A connection without calls for this long is closed (GOAWAY;
  // GRPC_ARG_MAX_CONNECTION_IDLE_MS), so clients that went away without
  // closing do not hold sockets forever; a client reconnects on its next
  // call. Flag --max-connection-idle-seconds. Default: 900 s.
  absl::Duration max_connection_idle = absl::Seconds(900);
  // Each tenant's quotas. The server enforces max_upload_streams; the
  // tenant's max_stored_bytes is enforced by the ChunkStore the service
  // writes to, wrapped in a StoredBytesQuota (ckpt-server's main does so).
  // Default: unlimited.
  TenantQuotas quotas;
  // Who may call, and what each caller may do. Must outlive the server.
  // Default: nullptr, a server without tokens serving only clients on its
  // own host, with full rights (Authenticator::WithoutTokens(false)).
  const Authenticator* authenticator = nullptr;
  // Threads that do the calls' work, so that gRPC's callback threads never
  // block: every unary call (CommitShard's sync included), PutChunks'
  // hashing and stores, ReadChunks' reads. Hashing wants the cores while
  // RocksDB writes and syncs wait on the disk, hence twice the cores. Work
  // beyond them waits in line (one task per call at most). 0 picks twice the
  // machine's cores, at least 4. Default: 0.
  int request_threads = 0;
  // Threads for CollectGarbage and VerifyCheckpoints, which may run for
  // minutes reading the whole store. Kept apart from request_threads so that
  // maintenance never holds a thread ordinary calls need; more maintenance
  // calls than threads wait in line; at least 1. Default: 2 (a collection
  // and a verify at once; two collections never run together anyway).
  int maintenance_threads = 2;
  // Where calls are counted (server/observability/metrics.h); must outlive
  // the server. Every call that fails is logged either way (call_log.h).
  // Default: nullptr (counted nowhere).
  Metrics* metrics = nullptr;
};

// Whether a listening address (HOST:PORT, [IPV6]:PORT, unix:PATH) can be
// reached from this host only: an IPv4 loopback literal (127.x.x.x), ::1,
// localhost, or a Unix socket (not an abstract one, which IsLocalPeer does
// not trust either). Anything else (0.0.0.0, ::, host names, other
// addresses) may be reachable from elsewhere.
bool IsLoopbackListenAddress(absl::string_view address);

// The request threads `options` asks for, with 0 resolved.
int RequestThreads(const ServerOptions& options);

// Thread-safe.
class CheckpointServer {
 public:
  // Binds and starts serving. UNAVAILABLE when the address cannot be bound
  // (address reuse is disabled, so an occupied port fails rather than being
  // silently shared) or gRPC refuses options.tls. `service` must outlive the
  // returned server.
  static absl::StatusOr<std::unique_ptr<CheckpointServer>> Start(
      const ServerOptions& options, CheckpointService* service);

  // Shuts down (cancelling calls still running) if Shutdown was not called.
  ~CheckpointServer();

  CheckpointServer(const CheckpointServer&) = delete;
  CheckpointServer& operator=(const CheckpointServer&) = delete;

  // The bound port (the chosen one when the address asked for port 0).
  int port() const;

  // Refuses new calls (UNAVAILABLE), lets running and queued ones finish
  // until `deadline`, then cancels the rest and closes every connection, and
  // finally stops the executor threads once every call has finished (a
  // running collection is not interruptible: it is waited for). The health
  // service reports NOT_SERVING from the start. Blocks until done;
  // idempotent.
  void Shutdown(absl::Time deadline);

  // Blocks until the server has shut down.
  void Wait();

  // The gRPC health service's answer for "ckpt.v1.CheckpointService":
  // SERVING while the store can take writes, NOT_SERVING (with `reason`
  // logged once) while it cannot, e.g. on a full disk; ckpt-server sets it
  // from RocksDbStore::Health every --health-check-interval-seconds. The
  // overall service "" stays SERVING while the process serves (a liveness
  // check: restarting does not free a disk); both turn NOT_SERVING for
  // good once Shutdown starts, whatever this is told later.
  void SetWritable(bool writable, absl::string_view reason);

  // Tasks waiting for a request thread now: unary calls and stream steps
  // (StreamLimits::max_queued_calls bounds the unary calls that join them).
  // For monitoring and tests.
  size_t requests_queued() const;

  // Restore memfds clients on this host have registered now (each is
  // dropped when the connection that passed it closes). For monitoring and
  // tests.
  size_t shared_files_registered() const;

 private:
  struct Impl;
  // Only Start constructs; the tag keeps the constructor usable by
  // std::make_unique without making it callable from outside.
  struct PrivateTag {};

 public:
  CheckpointServer(PrivateTag, std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace ckpt::server
