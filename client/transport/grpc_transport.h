// The gRPC Transport: the only client code that includes grpcpp or names
// ckpt.v1 types. It sets up the connection (message limits, keepalive,
// connect_timeout, TLS, a short wait for it before a call made while not
// connected), puts the rpc_timeout deadline on unary calls (6
// hours on CollectGarbage), a stall watchdog (stream_stall_timeout) on each
// of the three streams and the bearer token on every call, converts messages
// through common/wire_format.h and statuses through common/grpc_status.h. This
// header names no gRPC type.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "client/transport.h"
#include "client/types.h"

namespace ckpt::client {

// A Transport to the ckpt-server at `address` (HOST:PORT, any gRPC target),
// on its own connection. INVALID_ARGUMENT for an empty address and for
// security settings CheckConnectSecurity (channel_security.h) refuses, such
// as a token over plaintext to another host; UNAVAILABLE
// when options.connect_timeout is set and runs out before the server is
// reachable (otherwise the connection is made on the first call).
absl::StatusOr<std::unique_ptr<Transport>> ConnectGrpcTransport(
    const std::string& address, const ConnectOptions& options);

}  // namespace ckpt::client
