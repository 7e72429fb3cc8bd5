// The encodings of policy ownership (issue 17): a job record's policy
// origin and its memory of ignored writers' policies, which listings never
// show, a tenant's record, and the origin text people read. Apart from
// wire_format_test.cc, which is long enough.
#include <string>

#include "ckpt/v1/ckpt.pb.h"
#include "common/policy_origin.h"
#include "common/wire_format.h"
#include "gtest/gtest.h"

namespace ckpt {
namespace {

JobRecord OwnedJob() {
  JobRecord job = MakeJobRecord("team/model", absl::FromUnixSeconds(100));
  job.retention_policy = RetentionPolicy{};
  job.retention_policy->max_to_keep = 10;
  job.policy_origin = PolicyOrigin{PolicyOrigin::Source::kOperator, "ops",
                                   absl::FromUnixSeconds(200), false};
  job.ignored_policy_digests = {std::string(16, 'a'), std::string(16, 'b')};
  return job;
}

TEST(WireFormatPolicyTest, AJobRecordKeepsItsOriginAndIgnoredPolicies) {
  const JobRecord job = OwnedJob();
  auto decoded = DecodeJobRecord(EncodeJobRecord(job));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, job);
  // Without a policy the digests still persist, and no origin appears.
  JobRecord no_policy = MakeJobRecord("team/new", absl::FromUnixSeconds(1));
  no_policy.ignored_policy_digests = {std::string(16, 'c')};
  decoded = DecodeJobRecord(EncodeJobRecord(no_policy));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, no_policy);
}

TEST(WireFormatPolicyTest, ListingsShowTheOriginButNotTheServersBookkeeping) {
  JobSummary summary;
  summary.job = OwnedJob();
  v1::JobInfo info;
  ToProto(summary, &info);
  EXPECT_EQ(info.policy_origin().source(), v1::POLICY_SOURCE_OPERATOR);
  EXPECT_EQ(info.policy_origin().principal(), "ops");
  EXPECT_EQ(info.policy_origin().time_micros(), 200000000);
  EXPECT_EQ(info.policy_origin().ignored_policy_digests_size(), 0);
  const JobSummary back = FromProto(info);
  EXPECT_EQ(back.job.policy_origin, summary.job.policy_origin);
  summary.job.retention_policy.reset();
  summary.job.policy_origin.reset();
  ToProto(summary, &info);
  EXPECT_FALSE(info.has_policy_origin());
}

TEST(WireFormatPolicyTest, ARecordWithoutOriginDecodesWithout) {
  v1::JobInfo old;
  old.set_format_version(1);
  old.set_name("team/old");
  old.mutable_retention_policy()->set_max_to_keep(3);
  auto decoded = DecodeJobRecord(old.SerializeAsString());
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->policy_origin, std::nullopt);
  EXPECT_TRUE(decoded->ignored_policy_digests.empty());
  // An unknown future source reads as an operator's: the safe owner.
  v1::PolicyOrigin future;
  future.set_source(static_cast<v1::PolicySource>(99));
  EXPECT_EQ(FromProto(future).source, PolicyOrigin::Source::kOperator);
}

TEST(WireFormatPolicyTest, ATenantRecordRoundTripsAndCorruptionIsDataLoss) {
  TenantRecord tenant;
  tenant.name = "team";
  tenant.default_policy = RetentionPolicy{};
  tenant.default_policy->max_to_keep = 2;
  tenant.default_policy_origin = PolicyOrigin{
      PolicyOrigin::Source::kOperator, "ops", absl::FromUnixSeconds(5), false};
  auto decoded = DecodeTenantRecord(EncodeTenantRecord(tenant));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, tenant);
  EXPECT_EQ(DecodeTenantRecord("\xff\xff").status().code(),
            absl::StatusCode::kDataLoss);
  v1::TenantInfo newer;
  newer.set_format_version(kFormatVersion + 1);
  EXPECT_EQ(DecodeTenantRecord(newer.SerializeAsString()).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(WireFormatPolicyTest, TheOriginTextNamesWhoAndWhen) {
  PolicyOrigin origin{PolicyOrigin::Source::kWriter, "bob",
                      absl::FromUnixSeconds(1764756000), false};
  EXPECT_EQ(PolicyOriginText(origin), "writer bob at 2025-12-03 10:00:00 UTC");
  origin.inferred = true;
  EXPECT_EQ(PolicyOriginText(origin),
            "writer (inferred from the job's events) bob at 2025-12-03 "
            "10:00:00 UTC");
  EXPECT_EQ(PolicyOriginText(PolicyOrigin{PolicyOrigin::Source::kOperator, "",
                                          std::nullopt, true}),
            "operator (assumed: set before origins were recorded)");
}

}  // namespace
}  // namespace ckpt
