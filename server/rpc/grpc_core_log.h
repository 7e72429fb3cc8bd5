// gRPC core's own log lines (gpr_log) in the server's logfmt log, as
// event=grpc_core, instead of gRPC's raw format; and a scope in which its
// errors are only debug lines, for a step whose failure the server reports
// itself, once and clearly (binding the listening port).
#pragma once

namespace ckpt::server {

// Routes gpr_log into common/logging.h. Process-wide; idempotent.
void RouteGrpcCoreLogs();

// While one exists, gRPC core's error lines are logged at debug level.
class QuietGrpcCoreErrors {
 public:
  QuietGrpcCoreErrors();
  ~QuietGrpcCoreErrors();
  QuietGrpcCoreErrors(const QuietGrpcCoreErrors&) = delete;
  QuietGrpcCoreErrors& operator=(const QuietGrpcCoreErrors&) = delete;
};

}  // namespace ckpt::server
