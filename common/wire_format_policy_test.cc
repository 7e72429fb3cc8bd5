// The encodings of policy ownership (issue 17): a job record's policy
// origin and its memory of ignored writers' policies, which listings never
// show, a tenant's record, the origin text people read, and the
// format_version that keeps records with restic's rules from servers that
// would drop them. Apart from wire_format_test.cc, which is long enough.
#include <string>

#include "ckpt/v1/ckpt.pb.h"
#include "common/policy_origin.h"
#include "common/wire_format.h"
#include "gmock/gmock.h"
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
  newer.set_format_version(kRecordWithResticRulesVersion + 1);
  EXPECT_EQ(DecodeTenantRecord(newer.SerializeAsString()).status().code(),
            absl::StatusCode::kDataLoss);
}

// Servers that predate restic's rules read format_version <= 1: they
// refuse such a record rather than drop the rules and delete what they keep.
TEST(WireFormatPolicyTest, AJobRecordWithResticRulesIsVersion2) {
  JobRecord job = MakeJobRecord("research/resnet50",
                                absl::FromUnixMicros(1700000000654321));
  RetentionPolicy policy;
  policy.max_to_keep = 3;
  job.retention_policy = policy;
  v1::JobInfo proto;
  ASSERT_TRUE(proto.ParseFromString(EncodeJobRecord(job)));
  EXPECT_EQ(proto.format_version(), kFormatVersion);
  policy.keep_within = absl::Hours(48);
  policy.keep_hourly = 24;
  policy.keep_daily = 7;
  policy.keep_weekly = 4;
  policy.keep_monthly = 12;
  policy.keep_tags = {"release", "best"};
  job.retention_policy = policy;
  const std::string encoded = EncodeJobRecord(job);
  ASSERT_TRUE(proto.ParseFromString(encoded));
  EXPECT_EQ(proto.format_version(), kRecordWithResticRulesVersion);
  EXPECT_GT(proto.format_version(), kFormatVersion);
  EXPECT_EQ(proto.retention_policy().keep_within_micros(), 48 * 3600e6);
  EXPECT_THAT(proto.retention_policy().keep_tags(),
              ::testing::ElementsAre("release", "best"));
  absl::StatusOr<JobRecord> back = DecodeJobRecord(encoded);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, job);
  for (int field = 0; field < 6; ++field) {
    RetentionPolicy one;
    if (field == 0) one.keep_within = absl::Minutes(30);
    if (field == 1) one.keep_hourly = 1;
    if (field == 2) one.keep_daily = 1;
    if (field == 3) one.keep_weekly = 1;
    if (field == 4) one.keep_monthly = 1;
    if (field == 5) one.keep_tags = {"x"};
    job.retention_policy = one;
    ASSERT_TRUE(proto.ParseFromString(EncodeJobRecord(job)));
    EXPECT_EQ(proto.format_version(), kRecordWithResticRulesVersion) << field;
  }
}

TEST(WireFormatPolicyTest, ATenantDefaultWithResticRulesIsVersion2) {
  TenantRecord tenant;
  tenant.name = "team";
  tenant.default_policy = RetentionPolicy{};
  tenant.default_policy->max_to_keep = 2;
  v1::TenantInfo proto;
  ASSERT_TRUE(proto.ParseFromString(EncodeTenantRecord(tenant)));
  EXPECT_EQ(proto.format_version(), kFormatVersion);
  tenant.default_policy->keep_daily = 7;
  tenant.default_policy->keep_tags = {"release"};
  const std::string encoded = EncodeTenantRecord(tenant);
  ASSERT_TRUE(proto.ParseFromString(encoded));
  EXPECT_EQ(proto.format_version(), kRecordWithResticRulesVersion);
  EXPECT_EQ(proto.default_policy().keep_daily(), 7);
  auto decoded = DecodeTenantRecord(encoded);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, tenant);
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
