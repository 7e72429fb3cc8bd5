// The one place the client turns a grpc::Status into an absl::Status.
// Private to the client library (the public header mentions no gRPC type).
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace ckpt::client {

// Same canonical code and message; the server's messages already name what
// went wrong, so nothing is added.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace ckpt::client
