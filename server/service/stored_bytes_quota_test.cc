// StoredBytesQuota and UploadStreamQuota over a real RocksDbStore on disk.
#include "server/service/stored_bytes_quota.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>

#include "server/service/upload_stream_quota.h"
#include "server/storage/rocksdb_store.h"
#include "tests/testing/store_test_util.h"

namespace ckpt::server {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::IdOf;

class StoredBytesQuotaTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  // Opens the store on dir_ again and a quota over it (each tenant may
  // store 100 bytes, tenant "big" 1000).
  void Reopen() {
    quota_.reset();
    store_.reset();
    auto store = RocksDbStore::Open(dir_->path());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    TenantQuotas quotas;
    quotas.defaults.max_stored_bytes = 100;
    quotas.tenants["big"].max_stored_bytes = 1000;
    auto quota = StoredBytesQuota::Open(store_.get(), quotas);
    ASSERT_TRUE(quota.ok()) << quota.status();
    quota_ = *std::move(quota);
  }

  absl::StatusOr<bool> Put(absl::string_view tenant, const std::string& bytes) {
    return quota_->Put(tenant, IdOf(bytes), bytes);
  }

  std::unique_ptr<testing::TempDir> dir_ = testing::MakeTempDir();
  std::unique_ptr<RocksDbStore> store_;
  std::unique_ptr<StoredBytesQuota> quota_;
};

TEST_F(StoredBytesQuotaTest, RefusesANewChunkPastTheQuotaAndStoresNothing) {
  ASSERT_TRUE(Put("team", std::string(60, 'a')).ok());
  const std::string over(41, 'b');
  absl::StatusOr<bool> refused = Put("team", over);
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.status().message(),
              AllOf(HasSubstr("max_stored_bytes"), HasSubstr("'team'"),
                    HasSubstr("may store 100 bytes"), HasSubstr("stores 60"),
                    HasSubstr("41 more")));
  EXPECT_FALSE(store_->Contains("team", {IdOf(over)}).value()[0]);
  EXPECT_EQ(quota_->stored_bytes("team"), 60u);
  // Exactly up to the quota is allowed.
  EXPECT_TRUE(Put("team", std::string(40, 'c')).value());
  EXPECT_EQ(quota_->stored_bytes("team"), 100u);
}

TEST_F(StoredBytesQuotaTest, AChunkTheTenantHoldsCostsNothingAtTheQuota) {
  const std::string full(100, 'a');
  ASSERT_TRUE(Put("team", full).value());
  absl::StatusOr<bool> again = Put("team", full);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(*again);
  EXPECT_EQ(quota_->stored_bytes("team"), 100u);
}

TEST_F(StoredBytesQuotaTest, TenantsCountApartAndOverridesApply) {
  ASSERT_TRUE(Put("team", std::string(100, 'a')).ok());
  // The same bytes are a new chunk for another tenant, under its own quota.
  EXPECT_TRUE(Put("other", std::string(100, 'a')).value());
  EXPECT_TRUE(Put("big", std::string(900, 'a')).value());
  EXPECT_EQ(Put("big", std::string(101, 'x')).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(StoredBytesQuotaTest, DeleteGivesTheBytesBack) {
  const std::string first(70, 'a');
  ASSERT_TRUE(Put("team", first).ok());
  ASSERT_FALSE(Put("team", std::string(70, 'b')).ok());
  ASSERT_TRUE(quota_->Delete("team", IdOf(first)).ok());
  // Deleting what is gone already gives nothing back twice.
  ASSERT_TRUE(quota_->Delete("team", IdOf(first)).ok());
  EXPECT_EQ(quota_->stored_bytes("team"), 0u);
  EXPECT_TRUE(Put("team", std::string(70, 'b')).value());
}

// Garbage collection on a shared store deletes through
// DeleteIfUnusedSince: that must give the bytes back as Delete does.
TEST_F(StoredBytesQuotaTest, AGuardedDeleteGivesTheBytesBackOnce) {
  const std::string first(70, 'a');
  ASSERT_TRUE(Put("team", first).ok());
  auto deleted =
      quota_->DeleteIfUnusedSince("team", IdOf(first), absl::InfiniteFuture());
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_TRUE(*deleted);
  EXPECT_EQ(quota_->stored_bytes("team"), 0u);
  ASSERT_TRUE(
      quota_->DeleteIfUnusedSince("team", IdOf(first), absl::InfiniteFuture())
          .ok());
  EXPECT_EQ(quota_->stored_bytes("team"), 0u);
  EXPECT_TRUE(Put("team", std::string(70, 'b')).value());
}

TEST_F(StoredBytesQuotaTest, UsageIsCountedFromTheStoreWhenReopened) {
  ASSERT_TRUE(Put("team", std::string(30, 'a')).ok());
  ASSERT_TRUE(Put("team", std::string(50, 'b')).ok());
  ASSERT_TRUE(Put("big", std::string(500, 'b')).ok());
  ASSERT_TRUE(quota_->Sync().ok());
  Reopen();
  EXPECT_EQ(quota_->stored_bytes("team"), 80u);
  EXPECT_EQ(quota_->stored_bytes("big"), 500u);
  EXPECT_EQ(Put("team", std::string(21, 'c')).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(Put("team", std::string(20, 'c')).value());
}

TEST(UploadStreamQuotaTest, RefusesAStreamPastTheLimitUntilOneEnds) {
  TenantQuotas quotas;
  quotas.defaults.max_upload_streams = 2;
  quotas.tenants["solo"].max_upload_streams = 1;
  UploadStreamQuota quota(quotas);
  auto first = quota.Acquire("team");
  auto second = quota.Acquire("team");
  ASSERT_TRUE(first.ok() && second.ok());
  absl::StatusOr<UploadStreamQuota::Slot> third = quota.Acquire("team");
  ASSERT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(third.status().message(),
              AllOf(HasSubstr("max_upload_streams"), HasSubstr("'team'"),
                    HasSubstr("2 stream(s)")));
  ASSERT_TRUE(quota.Acquire("solo").ok());  // a temporary: released at once
  auto solo = quota.Acquire("solo");
  ASSERT_TRUE(solo.ok());
  EXPECT_FALSE(quota.Acquire("solo").ok());
  *first = UploadStreamQuota::Slot();
  EXPECT_EQ(quota.open_streams("team"), 1u);
  UploadStreamQuota::Slot moved = *std::move(second);
  EXPECT_EQ(quota.open_streams("team"), 1u);
  EXPECT_TRUE(quota.Acquire("team").ok());
}

}  // namespace
}  // namespace ckpt::server
