// The one place where absl::Status and grpc::Status convert, for the
// server's gRPC edge and the client's transport alike: the same canonical
// code and the same message both ways, so what the server says reaches the
// caller unchanged. Only the gRPC edges include this header.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace ckpt {

// Codes outside the canonical 0..16 (never sent by a conforming peer)
// become UNKNOWN rather than an unnamed enum value.
grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace ckpt
