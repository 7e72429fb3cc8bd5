#include "common/grpc_status.h"

#include <string>

namespace ckpt {
namespace {

// absl and gRPC share the canonical code numbering (0 OK .. 16
// UNAUTHENTICATED).
constexpr int kLastCanonicalCode =
    static_cast<int>(absl::StatusCode::kUnauthenticated);
static_assert(static_cast<int>(grpc::StatusCode::UNAUTHENTICATED) ==
              kLastCanonicalCode);

int CanonicalOrUnknown(int code) {
  if (code < 0 || code > kLastCanonicalCode) {
    return static_cast<int>(absl::StatusCode::kUnknown);
  }
  return code;
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(
                          CanonicalOrUnknown(static_cast<int>(status.code()))),
                      std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(CanonicalOrUnknown(
                          static_cast<int>(status.error_code()))),
                      status.error_message());
}

}  // namespace ckpt
