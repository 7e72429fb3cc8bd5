#include "common/verify.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "common/wire_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt {
namespace {

using ::testing::HasSubstr;

std::vector<ChunkId> ManyIds(int count) {
  std::vector<ChunkId> ids;
  ids.reserve(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) ids.push_back(Sha256(absl::StrCat(i)));
  return ids;
}

TEST(ReadDataSubsetTest, PartsAreDisjointAndCoverEveryChunk) {
  const std::vector<ChunkId> ids = ManyIds(2000);
  for (uint32_t t : {1u, 2u, 3u, 7u, 16u}) {
    std::vector<int> parts_holding(ids.size(), 0);
    for (uint32_t n = 1; n <= t; ++n) {
      int in_part = 0;
      for (size_t i = 0; i < ids.size(); ++i) {
        if (ReadDataSubset{n, t}.Contains(ids[i])) {
          ++parts_holding[i];
          ++in_part;
        }
      }
      // Hash prefixes are uniform: every part gets its share (loosely).
      EXPECT_GT(in_part, static_cast<int>(ids.size() / t / 2)) << n << "/" << t;
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      EXPECT_EQ(parts_holding[i], 1) << "chunk " << i << " with t=" << t;
    }
  }
}

TEST(ReadDataSubsetTest, PartIsTheBigEndianPrefixModT) {
  std::array<uint8_t, ChunkId::kSize> digest{};
  digest[7] = 10;  // prefix 10: part 10 % 4 + 1 = 3 of 4
  const ChunkId id(digest);
  EXPECT_TRUE((ReadDataSubset{3, 4}.Contains(id)));
  EXPECT_FALSE((ReadDataSubset{2, 4}.Contains(id)));
  digest[7] = 0;
  digest[0] = 1;  // prefix 2^56, divisible by 4: part 1
  EXPECT_TRUE((ReadDataSubset{1, 4}.Contains(ChunkId(digest))));
}

TEST(ReadDataSubsetTest, ParsesNOverT) {
  auto subset = ParseReadDataSubset("2/5");
  ASSERT_TRUE(subset.ok()) << subset.status();
  EXPECT_EQ(*subset, (ReadDataSubset{2, 5}));
  EXPECT_EQ(subset->ToString(), "2/5");
  EXPECT_TRUE(ParseReadDataSubset("1/1").ok());
}

TEST(ReadDataSubsetTest, RejectsMalformedOrOutOfRange) {
  for (const char* text : {"", "3", "0/3", "4/3", "1/0", "a/b", "1/2/3", "-1/3",
                           "1/", "/3", "1.5/3"}) {
    auto subset = ParseReadDataSubset(text);
    EXPECT_TRUE(absl::IsInvalidArgument(subset.status())) << text;
  }
  EXPECT_THAT(ParseReadDataSubset("4/3").status().message(),
              HasSubstr("1 <= n <= t"));
  EXPECT_TRUE(
      absl::IsInvalidArgument(ValidateReadDataSubset(ReadDataSubset{0, 0})));
}

TEST(VerifyWireFormatTest, ReportRoundTrips) {
  VerifyReport report;
  report.read_data = true;
  report.read_data_subset = ReadDataSubset{2, 3};
  report.checkpoints_checked = 4;
  report.pending_skipped = 1;
  report.chunks_checked = 40;
  report.chunks_read = 13;
  report.bytes_read = 1 << 20;
  report.damaged_chunks.push_back(
      VerifyReport::DamagedChunk{"team",
                                 Sha256("x"),
                                 7,
                                 ChunkProblem::kCorrupt,
                                 "hashes to abc",
                                 {{"team/a", 1}, {"team/b", 2}}});
  report.damaged_chunk_count = 1;
  // Filled member by member: GCC 12 -O3 warns (maybe-uninitialized) on the
  // aggregate temporary.
  VerifyReport::DamagedCheckpoint damaged;
  damaged.checkpoint = {"team/a", 1};
  damaged.missing_chunks = 0;
  damaged.corrupt_chunks = 1;
  damaged.problems = {"no shard of rank 1"};
  report.damaged_checkpoints.push_back(std::move(damaged));
  v1::VerifyReport proto;
  ToProto(report, &proto);
  auto back = FromProto(proto);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, report);
  EXPECT_FALSE(back->ok());
}

TEST(VerifyWireFormatTest, OptionsAndProgressRoundTrip) {
  VerifyOptions options;
  options.job = "team/a";
  options.step = 0;  // step 0 is a step, not "absent"
  options.read_data_subset = ReadDataSubset{1, 2};
  v1::VerifyRequest request;
  ToProto(options, &request);
  VerifyOptions back = FromProto(request);
  EXPECT_EQ(back.job, "team/a");
  EXPECT_EQ(back.step, std::optional<int64_t>(0));
  EXPECT_TRUE(back.reads_data());
  EXPECT_EQ(back.read_data_subset, options.read_data_subset);

  const VerifyProgress progress{VerifyStage::kReadData, 3, 9, 300, 900};
  v1::VerifyProgress proto;
  ToProto(progress, &proto);
  auto progress_back = FromProto(proto);
  ASSERT_TRUE(progress_back.ok());
  EXPECT_EQ(*progress_back, progress);
  proto.set_stage(v1::VERIFY_STAGE_UNSPECIFIED);
  EXPECT_TRUE(absl::IsInvalidArgument(FromProto(proto).status()));
}

}  // namespace
}  // namespace ckpt
