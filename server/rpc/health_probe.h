// ProbeHealth: `ckpt-server --health-probe`, the client side of the
// standard gRPC health service (grpc.health.v1.Health/Check), over the
// server's own transport (plaintext, TLS or mutual TLS), for a container's
// HEALTHCHECK or an exec probe where the orchestrator's own gRPC probe
// cannot speak TLS.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ckpt::server {

struct HealthProbeOptions {
  // HOST:PORT to dial.
  std::string address;
  // The service asked about; "" is the server as a whole.
  // Default: "ckpt.v1.CheckpointService".
  std::string service = "ckpt.v1.CheckpointService";
  // Non-empty: TLS, trusting these PEM CA certificates.
  std::string tls_ca_pem;
  // Mutual TLS: the probe's PEM certificate chain and key.
  std::string tls_cert_pem;
  std::string tls_key_pem;
  // The name the server's certificate must carry, when not the host
  // dialed. Default: empty.
  std::string tls_server_name;
  // Default: 5 s.
  absl::Duration timeout = absl::Seconds(5);
};

// OK when the server answers SERVING for options.service; otherwise
// UNAVAILABLE with a one-line reason (NOT_SERVING, unknown service, the
// connection or handshake error, or the timeout).
absl::Status ProbeHealth(const HealthProbeOptions& options);

// The address a probe on this host dials for a server listening on
// `listen`: a wildcard host (0.0.0.0, [::], or none) becomes the loopback
// address of its family; anything else is dialed as is.
std::string ProbeAddressFor(absl::string_view listen);

}  // namespace ckpt::server
