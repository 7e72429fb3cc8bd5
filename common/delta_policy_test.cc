#include "common/delta_policy.h"

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt {
namespace {

using ::testing::HasSubstr;
using Kind = DeltaDecision::Kind;

DeltaHistory History(uint64_t full, uint64_t delta, int chain = 0) {
  DeltaHistory h;
  h.baseline_step = 100;
  h.previous_step = 100 + 10 * chain;
  h.chain_length = chain;
  h.full_bytes = full;
  h.delta_bytes = delta;
  return h;
}

DeltaPolicyOptions Mode(DeltaMode mode) {
  DeltaPolicyOptions options;
  options.mode = mode;
  return options;
}

TEST(DeltaPolicyTest, FirstSaveIsFull) {
  for (DeltaMode mode : {DeltaMode::kIntermittent, DeltaMode::kConsecutive}) {
    DeltaHistory h = History(1000, 1);
    h.baseline_step.reset();
    auto decision = DecideDelta(h, Mode(mode));
    ASSERT_TRUE(decision.ok());
    EXPECT_EQ(decision->kind, Kind::kFull);
    EXPECT_FALSE(decision->base_step.has_value());
    EXPECT_THAT(decision->reason, HasSubstr("no baseline"));
  }
}

TEST(DeltaPolicyTest, IntermittentDeltasAreAgainstTheBaseline) {
  auto decision =
      DecideDelta(History(1000, 100, 5), Mode(DeltaMode::kIntermittent));
  ASSERT_TRUE(decision.ok());
  EXPECT_EQ(decision->kind, Kind::kDelta);
  EXPECT_EQ(decision->base_step, 100);
  EXPECT_THAT(decision->reason, HasSubstr("baseline step 100"));
}

TEST(DeltaPolicyTest, IntermittentResetsExactlyAtTheDefaultHalf) {
  const DeltaPolicyOptions options = Mode(DeltaMode::kIntermittent);
  ASSERT_EQ(options.max_delta_fraction, 0.5);
  EXPECT_EQ(DecideDelta(History(1000, 499), options)->kind, Kind::kDelta);
  auto at_half = DecideDelta(History(1000, 500), options);
  EXPECT_EQ(at_half->kind, Kind::kFull);
  EXPECT_THAT(at_half->reason, HasSubstr("500 B >= 0.5 x full 1000 B"));
  // Odd full size: 0.5 x 1001 = 500.5, so 500 stays a delta and 501 resets.
  EXPECT_EQ(DecideDelta(History(1001, 500), options)->kind, Kind::kDelta);
  EXPECT_EQ(DecideDelta(History(1001, 501), options)->kind, Kind::kFull);
}

TEST(DeltaPolicyTest, IntermittentIgnoresChainLength) {
  auto decision =
      DecideDelta(History(1000, 10, 1000), Mode(DeltaMode::kIntermittent));
  EXPECT_EQ(decision->kind, Kind::kDelta);
}

TEST(DeltaPolicyTest, ConfiguredFractionMovesTheReset) {
  DeltaPolicyOptions options = Mode(DeltaMode::kIntermittent);
  options.max_delta_fraction = 0.25;
  EXPECT_EQ(DecideDelta(History(1000, 249), options)->kind, Kind::kDelta);
  EXPECT_EQ(DecideDelta(History(1000, 250), options)->kind, Kind::kFull);
  options.max_delta_fraction = 1.0;
  EXPECT_EQ(DecideDelta(History(1000, 999), options)->kind, Kind::kDelta);
}

TEST(DeltaPolicyTest, DeltaNotSmallerThanFullIsAlwaysAFullSave) {
  DeltaPolicyOptions options = Mode(DeltaMode::kConsecutive);
  options.max_delta_fraction = 1.0;
  auto decision = DecideDelta(History(1000, 1000, 1), options);
  EXPECT_EQ(decision->kind, Kind::kFull);
  EXPECT_THAT(decision->reason, HasSubstr("not smaller"));
  EXPECT_EQ(DecideDelta(History(0, 0), options)->kind, Kind::kFull);
}

TEST(DeltaPolicyTest, ConsecutiveDeltasAreAgainstThePreviousStep) {
  auto decision =
      DecideDelta(History(1000, 10, 3), Mode(DeltaMode::kConsecutive));
  ASSERT_TRUE(decision.ok());
  EXPECT_EQ(decision->kind, Kind::kDelta);
  EXPECT_EQ(decision->base_step, 130);
  // Right after the baseline, the previous step is the baseline.
  EXPECT_EQ(DecideDelta(History(1000, 10, 0), Mode(DeltaMode::kConsecutive))
                ->base_step,
            100);
}

TEST(DeltaPolicyTest, ConsecutiveResetsExactlyAfterMaxChainLength) {
  DeltaPolicyOptions options = Mode(DeltaMode::kConsecutive);
  options.max_chain_length = 3;
  EXPECT_EQ(DecideDelta(History(1000, 10, 2), options)->kind, Kind::kDelta);
  auto decision = DecideDelta(History(1000, 10, 3), options);
  EXPECT_EQ(decision->kind, Kind::kFull);
  EXPECT_THAT(decision->reason, HasSubstr("max_chain_length 3"));
}

TEST(DeltaPolicyTest, ConsecutiveResetsOnALargeDeltaBeforeTheChainIsLong) {
  auto decision =
      DecideDelta(History(1000, 600, 1), Mode(DeltaMode::kConsecutive));
  EXPECT_EQ(decision->kind, Kind::kFull);
}

TEST(DeltaPolicyTest, SimulatedIntermittentRunResetsWhenDeltaReachesHalf) {
  // The union of changed rows grows by 120 B per save of a 1000 B tensor:
  // deltas 120, 240, 360, 480, then 600 >= 500 -> baseline, and again.
  const DeltaPolicyOptions options = Mode(DeltaMode::kIntermittent);
  std::optional<int64_t> baseline;
  uint64_t union_bytes = 0;
  std::vector<int64_t> baselines;
  for (int64_t step = 0; step < 12; ++step) {
    DeltaHistory h;
    h.baseline_step = baseline;
    h.previous_step = step - 1;
    h.full_bytes = 1000;
    h.delta_bytes = union_bytes + 120;
    auto decision = DecideDelta(h, options);
    ASSERT_TRUE(decision.ok());
    if (decision->kind == Kind::kFull) {
      baseline = step;
      baselines.push_back(step);
      union_bytes = 0;
    } else {
      EXPECT_EQ(decision->base_step, baseline);
      union_bytes += 120;
    }
  }
  EXPECT_EQ(baselines, (std::vector<int64_t>{0, 5, 10}));
}

TEST(DeltaPolicyTest, RejectsBadOptionsAndHistory) {
  DeltaPolicyOptions options;
  for (double fraction : {0.0, -0.1, 1.5, std::nan("")}) {
    options.max_delta_fraction = fraction;
    EXPECT_EQ(DecideDelta(History(1000, 1), options).status().code(),
              absl::StatusCode::kInvalidArgument)
        << fraction;
  }
  options = DeltaPolicyOptions();
  options.max_chain_length = 0;
  EXPECT_EQ(DecideDelta(History(1000, 1), options).status().code(),
            absl::StatusCode::kInvalidArgument);
  DeltaHistory h = History(1000, 1);
  h.chain_length = -1;
  EXPECT_EQ(DecideDelta(h, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  h = History(1000, 1);
  h.previous_step = 99;
  EXPECT_EQ(DecideDelta(h, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(DeltaPolicyTest, ModeNames) {
  EXPECT_EQ(DeltaModeName(DeltaMode::kIntermittent), "intermittent");
  EXPECT_EQ(DeltaModeName(DeltaMode::kConsecutive), "consecutive");
}

}  // namespace
}  // namespace ckpt
