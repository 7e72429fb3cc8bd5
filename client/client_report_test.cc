// Client::RestoreShard(job, step, rank) reports the restore (ReportRestore)
// only once it succeeded, and what it does when the report fails.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "client/client.h"
#include "common/sha256.h"
#include "gtest/gtest.h"
#include "tests/testing/client_tensors.h"
#include "tests/testing/fake_transport.h"

namespace ckpt::client {
namespace {

using ::ckpt::testing::FakeTransport;
using ::ckpt::testing::PatternBytes;
using ::ckpt::testing::Uint8Tensor;
using Reported = FakeTransport::ReportedRestore;

constexpr char kJob[] = "team/model";

class RestoreReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto owned = std::make_unique<FakeTransport>();
    fake_ = owned.get();
    client_ = Client::WithTransport(std::move(owned),
                                    {.shared_memory_restore = false});
    SaveOptions options;
    options.chunk_bytes = 100;
    ASSERT_TRUE(
        client_->SaveShard(kJob, 7, {Uint8Tensor("a", bytes_)}, options).ok());
  }

  const std::string bytes_ = PatternBytes(1000, 1);
  FakeTransport* fake_ = nullptr;
  std::unique_ptr<Client> client_;
};

TEST_F(RestoreReportTest, ASuccessfulRestoreIsReportedOnce) {
  auto restored = client_->RestoreShard(kJob, 7, 0);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(fake_->reported_restores(), (std::vector<Reported>{{kJob, 7, 0}}));
  // `latest` is reported as the step it resolved to.
  ASSERT_TRUE(client_->RestoreShard(kJob, std::nullopt, 0).ok());
  EXPECT_EQ(fake_->reported_restores().back(), (Reported{kJob, 7, 0}));
  EXPECT_TRUE(fake_->restoring_ranks().empty());
}

TEST_F(RestoreReportTest, AFailedRestoreIsNotReported) {
  // A rank the checkpoint does not have.
  EXPECT_TRUE(
      absl::IsInvalidArgument(client_->RestoreShard(kJob, 7, 1).status()));
  // A chunk answered by another one.
  const std::string first = bytes_.substr(0, 100);
  fake_->AnswerWith(Sha256(first), Sha256("other"), std::string(100, 'x'));
  EXPECT_FALSE(client_->RestoreShard(kJob, 7, 0).ok());
  EXPECT_TRUE(fake_->reported_restores().empty());
  EXPECT_TRUE(fake_->restoring_ranks().empty());
}

TEST_F(RestoreReportTest,
       AReportNotFoundUnimplementedOrDiskFullKeepsTheRestore) {
  for (const absl::Status& refusal :
       {absl::NotFoundError("deleted meanwhile"),
        absl::UnimplementedError("an older server"),
        absl::ResourceExhaustedError("the server's disk is full")}) {
    fake_->FailRestoreReports(refusal);
    auto restored = client_->RestoreShard(kJob, 7, 0);
    ASSERT_TRUE(restored.ok()) << refusal << ": " << restored.status();
    EXPECT_EQ(restored->size(), 1u);
  }
}

TEST_F(RestoreReportTest, OtherReportErrorsAreReturned) {
  fake_->FailRestoreReports(absl::UnavailableError("server went away"));
  auto restored = client_->RestoreShard(kJob, 7, 0);
  EXPECT_TRUE(absl::IsUnavailable(restored.status())) << restored.status();
}

TEST_F(RestoreReportTest, ReportRestoreNeedsACommittedCheckpoint) {
  EXPECT_TRUE(client_->ReportRestore(kJob, 7, 5).ok());
  EXPECT_TRUE(absl::IsNotFound(client_->ReportRestore(kJob, 8, 0)));
  EXPECT_EQ(fake_->reported_restores(), (std::vector<Reported>{{kJob, 7, 5}}));
}

}  // namespace
}  // namespace ckpt::client
