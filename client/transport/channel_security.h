// The client's rules for how a connection is secured, apart from the gRPC
// code that applies them (grpc_transport.cc) so that they are unit-tested:
// which gRPC targets are loopback, and which combinations of TLS settings
// and bearer token ConnectOptions may hold. Pure; no gRPC.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "client/types.h"

namespace ckpt::client {

// Whether the gRPC target `target` reaches this host without leaving it: a
// Unix socket (unix:, unix-abstract:), or a target whose every address is
// 127.0.0.0/8, ::1 or ::ffff:127.x.y.z, or the name "localhost" (which
// RFC 6761 reserves for loopback). Forms: HOST:PORT, [IPV6]:PORT, dns:,
// dns:///, ipv4: and ipv6: (comma-separated lists); "localhost" only when
// the system's resolver looks it up (not dns://SERVER/localhost). Any other
// name, and anything unparsed, is not loopback.
bool IsLoopbackTarget(absl::string_view target);

// OK when `options`' security settings make sense for `address`:
//   - tls_cert_pem and tls_key_pem come together, and, like
//     tls_server_name, only with tls_ca_pem; the PEM texts parse and the
//     key belongs to the certificate;
//   - the token is printable ASCII without spaces (it goes in a header);
//   - a token goes over TLS, or to a loopback target (IsLoopbackTarget),
//     never in clear across a network.
// INVALID_ARGUMENT naming the ConnectOptions field otherwise; the message
// never contains the token.
absl::Status CheckConnectSecurity(absl::string_view address,
                                  const ConnectOptions& options);

}  // namespace ckpt::client
