// CheckHealth: asks a server's standard gRPC health service
// (grpc.health.v1.Health/Check) about one service, as a load balancer or
// Kubernetes probe would. The messages are encoded by hand: gRPC 1.51 as
// packaged installs no generated stub for health.proto.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"

namespace ckpt::testing {

// grpc.health.v1.HealthCheckResponse.ServingStatus.
enum class ServingStatus { kUnknown = 0, kServing = 1, kNotServing = 2 };

// The status `service` ("" for the server as a whole) has at `address`
// (HOST:PORT, plaintext); the call's error otherwise.
inline absl::StatusOr<ServingStatus> CheckHealth(const std::string& address,
                                                 const std::string& service) {
  auto channel =
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  // HealthCheckRequest { string service = 1; }
  std::string request = {'\x0a', static_cast<char>(service.size())};
  request += service;
  grpc::Slice slice(request);
  grpc::ByteBuffer request_buffer(&slice, 1);
  grpc::ByteBuffer response_buffer;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  grpc::Status status;
  absl::Notification done;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", {}, &request_buffer,
                 &response_buffer, [&](grpc::Status s) {
                   status = std::move(s);
                   done.Notify();
                 });
  done.WaitForNotification();
  if (!status.ok()) {
    return absl::UnavailableError(
        absl::StrCat("health check failed: ", status.error_code(), " ",
                     status.error_message()));
  }
  grpc::Slice response;
  if (!response_buffer.TrySingleSlice(&response).ok() &&
      !response_buffer.DumpToSingleSlice(&response).ok()) {
    return absl::InternalError("unreadable health response");
  }
  // HealthCheckResponse { ServingStatus status = 1; }: absent means 0.
  const std::string bytes(reinterpret_cast<const char*>(response.begin()),
                          response.size());
  if (bytes.empty()) return ServingStatus::kUnknown;
  if (bytes.size() != 2 || bytes[0] != '\x08') {
    return absl::InternalError("unexpected health response");
  }
  return static_cast<ServingStatus>(bytes[1]);
}

}  // namespace ckpt::testing
