#include "common/grpc_status.h"

#include "gtest/gtest.h"

namespace ckpt {
namespace {

TEST(GrpcStatusTest, EveryCanonicalCodeAndItsMessageRoundTrip) {
  for (int code = 1; code <= 16; ++code) {
    const absl::Status status(static_cast<absl::StatusCode>(code),
                              "step 7 of job t/a: why");
    const grpc::Status wire = ToGrpcStatus(status);
    EXPECT_EQ(static_cast<int>(wire.error_code()), code);
    EXPECT_EQ(wire.error_message(), "step 7 of job t/a: why");
    EXPECT_EQ(FromGrpcStatus(wire), status);
  }
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
}

TEST(GrpcStatusTest, NonCanonicalCodesBecomeUnknown) {
  EXPECT_EQ(ToGrpcStatus(absl::Status(static_cast<absl::StatusCode>(42), "x"))
                .error_code(),
            grpc::StatusCode::UNKNOWN);
  // 20 is outside the canonical codes yet inside grpc::StatusCode's range of
  // values (an unscoped enum up to 31), so making it is defined behaviour.
  const absl::Status from_peer = FromGrpcStatus(
      grpc::Status(static_cast<grpc::StatusCode>(20), "from a strange peer"));
  EXPECT_EQ(from_peer.code(), absl::StatusCode::kUnknown);
  EXPECT_EQ(from_peer.message(), "from a strange peer");
}

}  // namespace
}  // namespace ckpt
