// The one place the server turns an absl::Status into a grpc::Status. Every
// handler's result passes through here, so codes and messages reach the
// client unchanged.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace ckpt::server {

// Same canonical code, same message. Non-canonical codes become UNKNOWN.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace ckpt::server
