// A server that keeps the connection (it answers keepalive pings) but stops
// serving a stream: tests/integration/stalling_proxy.py in front of a real
// ckpt-server. HTTP/2 keepalive cannot see it; the client's stall bound
// (ConnectOptions::stream_stall_timeout) ends the call with
// DEADLINE_EXCEEDED naming the server, within the bound, instead of
// hanging the training job forever. The proxy stalls only its first call of
// the kind, so the same client then succeeds: the server recovered.
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/client_tensors.h"
#include "tests/testing/real_server_test.h"
#include "tests/testing/stalling_proxy.h"

namespace ckpt::testing {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kStallBound = absl::Seconds(2);
// What "within the bound" allows on a loaded two-core machine.
constexpr absl::Duration kSlack = absl::Seconds(15);
constexpr char kJob[] = "team/model";

class StalledServerTest : public RealServerTest {
 protected:
  void TearDown() override {
    stalled_client_.reset();
    proxy_.reset();
    RealServerTest::TearDown();
  }

  // The real server, the proxy in `mode` in front of it, and
  // stalled_client_ connected to the proxy with the short stall bound.
  void StartBehindProxy(const std::string& mode) {
    StartServer();
    auto proxy = StallingProxy::Start(server_->address(), dir_->path(), mode);
    ASSERT_TRUE(proxy.ok()) << proxy.status();
    proxy_ = *std::move(proxy);
    proxy_address_ = proxy_->address();
    client::ConnectOptions options;
    options.connect_timeout = absl::Seconds(10);
    options.stream_stall_timeout = kStallBound;
    auto client = client::Client::Connect(proxy_address_, options);
    ASSERT_TRUE(client.ok()) << client.status();
    stalled_client_ = *std::move(client);
  }

  // Saves `bytes` as one tensor of step `step` through the proxy; the
  // status, and how long it took.
  absl::Status SaveThroughProxy(int64_t step, const std::string& bytes,
                                absl::Duration* took) {
    const absl::Time start = absl::Now();
    auto saved =
        stalled_client_->SaveShard(kJob, step, {Uint8Tensor("w", bytes)}, {});
    *took = absl::Now() - start;
    return saved.status();
  }

  std::unique_ptr<StallingProxy> proxy_;
  std::string proxy_address_;
  std::unique_ptr<client::Client> stalled_client_;
};

// The proxy accepts the upload and never reads a message: the client's
// writes block on HTTP/2 flow control once the windows are full (64 MiB
// is far more than they hold).
TEST_F(StalledServerTest, ASaveWhoseServerStopsReadingTheUploadEnds) {
  StartBehindProxy("upload");
  const std::string weights = PatternBytes(64 << 20, 1);
  absl::Duration took;
  const absl::Status saved = SaveThroughProxy(1, weights, &took);
  ASSERT_EQ(saved.code(), absl::StatusCode::kDeadlineExceeded) << saved;
  EXPECT_THAT(saved.message(), HasSubstr(absl::StrCat(
                                   "PutChunks: the server at ", proxy_address_,
                                   " made no progress on the upload for 2s")));
  EXPECT_GE(took, kStallBound);
  EXPECT_LT(took, kStallBound + kSlack);
  // The server answers again: the same client saves, and it restores.
  ASSERT_TRUE(SaveThroughProxy(2, weights, &took).ok());
  auto restored = client_->RestoreShard(kJob, 2, 0);
  ASSERT_TRUE(restored.ok()) << restored.status();
  ASSERT_EQ(restored->size(), 1u);
  const absl::Span<char> bytes = (*restored)[0].bytes;
  EXPECT_TRUE(absl::string_view(bytes.data(), bytes.size()) == weights);
}

// The proxy reads every message of the upload, then never answers: the
// client waits for the call's status, which the bound covers too.
TEST_F(StalledServerTest, ASaveWhoseServerNeverAnswersTheUploadEnds) {
  StartBehindProxy("finish");
  const std::string weights = PatternBytes(8 << 20, 2);
  absl::Duration took;
  const absl::Status saved = SaveThroughProxy(1, weights, &took);
  ASSERT_EQ(saved.code(), absl::StatusCode::kDeadlineExceeded) << saved;
  EXPECT_THAT(
      saved.message(),
      HasSubstr(absl::StrCat("PutChunks: the server at ", proxy_address_)));
  EXPECT_GE(took, kStallBound);
  EXPECT_LT(took, kStallBound + kSlack);
  ASSERT_TRUE(SaveThroughProxy(2, weights, &took).ok());
}

// The proxy accepts the verify and never forwards a message (no progress,
// no heartbeat, no report).
TEST_F(StalledServerTest, AVerifyWhoseServerSendsNothingEnds) {
  StartBehindProxy("verify");
  const std::string weights = PatternBytes(1 << 20, 3);
  ASSERT_TRUE(
      client_->SaveShard(kJob, 1, {Uint8Tensor("w", weights)}, {}).ok());
  VerifyOptions options;
  options.read_data = true;
  const absl::Time start = absl::Now();
  auto verified = stalled_client_->VerifyCheckpoints(options);
  const absl::Duration took = absl::Now() - start;
  ASSERT_EQ(verified.status().code(), absl::StatusCode::kDeadlineExceeded)
      << verified.status();
  EXPECT_THAT(verified.status().message(),
              HasSubstr(absl::StrCat(
                  "VerifyCheckpoints: no message from the server at ",
                  proxy_address_, " for 2s")));
  EXPECT_GE(took, kStallBound);
  EXPECT_LT(took, kStallBound + kSlack);
  verified = stalled_client_->VerifyCheckpoints(options);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->checkpoints_checked, 1);
}

}  // namespace
}  // namespace ckpt::testing
