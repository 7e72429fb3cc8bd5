#include "server/storage/fault_injecting_store.h"

#include "gtest/gtest.h"
#include "server/storage/memory_store.h"
#include "tests/testing/store_test_util.h"

namespace ckpt::server {
namespace {

using ::ckpt::server::testing::IdOf;
using ::ckpt::server::testing::MakeJob;
using Op = FaultInjectingStore::Op;

class FaultInjectingStoreTest : public ::testing::Test {
 protected:
  MemoryStore wrapped_;
  FaultInjectingStore store_{&wrapped_, &wrapped_};
};

TEST_F(FaultInjectingStoreTest, FailsTheNextNCallsWithoutForwardingThem) {
  store_.FailNext(Op::kPut, absl::ResourceExhaustedError("disk full"), 2);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(store_.Put("acme", IdOf("x"), "x").status().code(),
              absl::StatusCode::kResourceExhausted);
  }
  auto contains = wrapped_.Contains("acme", {IdOf("x")});
  ASSERT_TRUE(contains.ok());
  EXPECT_FALSE((*contains)[0]) << "a failed Put reached the wrapped store";

  auto put = store_.Put("acme", IdOf("x"), "x");
  ASSERT_TRUE(put.ok());
  EXPECT_TRUE(*put);
  EXPECT_EQ(store_.calls(Op::kPut), 3);
}

TEST_F(FaultInjectingStoreTest, FailAfterLetsTheFirstCallsThrough) {
  store_.FailAfter(Op::kDelete, 2, absl::InternalError("crash"));
  for (absl::string_view bytes : {"a", "b", "c", "d"}) {
    ASSERT_TRUE(store_.Put("acme", IdOf(bytes), bytes).ok());
  }
  EXPECT_TRUE(store_.Delete("acme", IdOf("a")).ok());
  EXPECT_TRUE(store_.Delete("acme", IdOf("b")).ok());
  EXPECT_EQ(store_.Delete("acme", IdOf("c")).code(),
            absl::StatusCode::kInternal);
  EXPECT_TRUE(store_.Delete("acme", IdOf("d")).ok());
  auto contains =
      wrapped_.Contains("acme", {IdOf("a"), IdOf("b"), IdOf("c"), IdOf("d")});
  ASSERT_TRUE(contains.ok());
  EXPECT_EQ(*contains, (std::vector<bool>{false, false, true, false}));
}

TEST_F(FaultInjectingStoreTest, FailedApplyChangesNothing) {
  store_.FailNext(Op::kApply, absl::UnavailableError("injected"));
  MetadataBatch batch;
  batch.PutJob(MakeJob("acme/j"));
  EXPECT_EQ(store_.Apply(batch).code(), absl::StatusCode::kUnavailable);
  auto job = wrapped_.GetJob("acme/j");
  ASSERT_TRUE(job.ok());
  EXPECT_FALSE(job->has_value());
  EXPECT_TRUE(store_.Apply(batch).ok());
  job = store_.GetJob("acme/j");
  ASSERT_TRUE(job.ok());
  EXPECT_TRUE(job->has_value());
}

TEST_F(FaultInjectingStoreTest, FailuresAreScopedToTheirOperation) {
  store_.FailNext(Op::kSync, absl::InternalError("injected"));
  EXPECT_TRUE(store_.Put("acme", IdOf("y"), "y").ok());
  EXPECT_TRUE(store_.Get("acme", IdOf("y")).ok());
  EXPECT_EQ(store_.Sync().code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(store_.Sync().ok());
}

TEST_F(FaultInjectingStoreTest, ClearFailuresDisarmsEverything) {
  store_.FailNext(Op::kGetJob, absl::InternalError("injected"), 5);
  store_.FailNext(Op::kListPending, absl::InternalError("injected"));
  store_.ClearFailures();
  EXPECT_TRUE(store_.GetJob("acme/j").ok());
  EXPECT_TRUE(store_.ListPending().ok());
}

}  // namespace
}  // namespace ckpt::server
