// Tests of the best-checkpoint ranking (common/best_checkpoint.h): it must
// agree with keep-best retention on modes, NaN, missing metrics and ties.
#include "common/best_checkpoint.h"

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

CheckpointRecord Record(int64_t step, std::optional<double> value,
                        const std::string& metric = "val_loss") {
  CheckpointRecord record;
  record.job = "t/j";
  record.step = step;
  record.state = CheckpointState::kCommitted;
  if (value.has_value()) record.metadata.metrics[metric] = *value;
  return record;
}

std::vector<int64_t> Steps(const std::vector<CheckpointRecord>& records) {
  std::vector<int64_t> steps;
  for (const CheckpointRecord& record : records) steps.push_back(record.step);
  return steps;
}

TEST(BestCheckpointTest, MinModeByNameTiesGoToTheOlder) {
  const std::vector<CheckpointRecord> records = {
      Record(10, 0.5), Record(20, 0.3), Record(30, 0.3), Record(40, 0.9)};
  absl::StatusOr<CheckpointRecord> best =
      BestCheckpoint(records, "val_loss", MetricMode::kAuto);
  ASSERT_TRUE(best.ok()) << best.status();
  EXPECT_EQ(best->step, 20);
}

TEST(BestCheckpointTest, MaxModeForAccuracy) {
  const std::vector<CheckpointRecord> records = {Record(1, 0.7, "val_acc"),
                                                 Record(2, 0.9, "val_acc"),
                                                 Record(3, 0.8, "val_acc")};
  EXPECT_EQ(BestCheckpoint(records, "val_acc", MetricMode::kAuto)->step, 2);
  EXPECT_EQ(BestCheckpoint(records, "val_acc", MetricMode::kMin)->step, 1);
}

TEST(BestCheckpointTest, NaNIsNeverBestAndMissingIsNotRanked) {
  const std::vector<CheckpointRecord> records = {
      Record(1, kNaN), Record(2, std::nullopt), Record(3, 4.0)};
  EXPECT_EQ(BestCheckpoint(records, "val_loss", MetricMode::kMin)->step, 3);
  absl::StatusOr<std::vector<CheckpointRecord>> sorted =
      SortByMetric(records, "val_loss", MetricMode::kMin);
  ASSERT_TRUE(sorted.ok());
  EXPECT_THAT(Steps(*sorted), ElementsAre(3, 1, 2));
}

TEST(BestCheckpointTest, PendingCheckpointsAreIgnored) {
  std::vector<CheckpointRecord> records = {Record(1, 2.0), Record(2, 1.0)};
  records[1].state = CheckpointState::kPending;
  EXPECT_EQ(BestCheckpoint(records, "val_loss", MetricMode::kMin)->step, 1);
}

TEST(BestCheckpointTest, NoRankableValueIsNotFoundSayingWhy) {
  absl::StatusOr<CheckpointRecord> none =
      BestCheckpoint({Record(1, std::nullopt)}, "val_loss", MetricMode::kMin);
  EXPECT_TRUE(absl::IsNotFound(none.status()));
  EXPECT_THAT(none.status().message(), HasSubstr("none of the 1"));
  absl::StatusOr<CheckpointRecord> all_nan =
      BestCheckpoint({Record(1, kNaN)}, "val_loss", MetricMode::kMin);
  EXPECT_TRUE(absl::IsNotFound(all_nan.status()));
  EXPECT_THAT(all_nan.status().message(), HasSubstr("NaN"));
}

TEST(BestCheckpointTest, UnresolvableAutoModeIsInvalidArgument) {
  absl::StatusOr<CheckpointRecord> best = BestCheckpoint(
      {Record(1, 1.0, "perplexity")}, "perplexity", MetricMode::kAuto);
  EXPECT_TRUE(absl::IsInvalidArgument(best.status()));
}

TEST(BestCheckpointTest, ImprovesOnIsStrict) {
  EXPECT_TRUE(ImprovesOn(1.0, std::nullopt, MetricMode::kMin));
  EXPECT_TRUE(ImprovesOn(0.5, 1.0, MetricMode::kMin));
  EXPECT_FALSE(ImprovesOn(1.0, 1.0, MetricMode::kMin));
  EXPECT_FALSE(ImprovesOn(kNaN, std::nullopt, MetricMode::kMin));
  EXPECT_TRUE(ImprovesOn(2.0, 1.0, MetricMode::kMax));
  EXPECT_TRUE(ImprovesOn(2.0, kNaN, MetricMode::kMax));
}

}  // namespace
}  // namespace ckpt
