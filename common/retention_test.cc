// Tests of the retention function (common/retention.h): its rules one by one,
// TF CheckpointManager parity, and the property tests over random histories.
// Over 600 lines because it is one job: retention is a pure function whose
// every rule and combination is tested exhaustively in one place.
#include "common/retention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/retention_test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt {
namespace {

using Mode = RetentionPolicy::KeepBest::Mode;
using retention_testing::At;
using retention_testing::AtHours;
using retention_testing::Ckpt;
using retention_testing::DecisionFor;
using retention_testing::Kept;
using retention_testing::KeptSet;
using retention_testing::KeptSteps;
using retention_testing::ReferenceManager;
using retention_testing::SortedByStep;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Steps 1..n, one hour apart starting at hour 0.
std::vector<RetentionInput> Hourly(int n) {
  std::vector<RetentionInput> out;
  for (int i = 1; i <= n; ++i) out.push_back(Ckpt(i, AtHours(i - 1)));
  return out;
}

RetentionPolicy MaxToKeep(int n, std::optional<absl::Duration> every = {}) {
  RetentionPolicy policy;
  policy.max_to_keep = n;
  policy.keep_every = every;
  return policy;
}

RetentionPolicy Best(int k, std::string metric, Mode mode) {
  RetentionPolicy policy;
  policy.keep_best = RetentionPolicy::KeepBest{
      .k = k, .metric = std::move(metric), .mode = mode};
  return policy;
}

RetentionPolicy EveryAlone(absl::Duration every) {
  RetentionPolicy policy;
  policy.keep_every = every;
  return policy;
}

// ------------------------------------------------------------ table tests

struct Case {
  std::string name;
  RetentionPolicy policy;
  std::vector<RetentionInput> in;
  std::optional<absl::Time> clock_start;
  std::vector<int64_t> kept;
};

TEST(RetentionPolicyTest, TableOfRulesAndCombinations) {
  const std::map<std::string, double> none;
  const std::vector<Case> cases = {
      {"empty input", MaxToKeep(3), {}, {}, {}},
      {"empty policy keeps all",
       RetentionPolicy{},
       Hourly(5),
       {},
       {1, 2, 3, 4, 5}},
      {"single checkpoint", MaxToKeep(1, absl::Hours(1)), Hourly(1), {}, {1}},
      {"max_to_keep larger than history",
       MaxToKeep(10),
       Hourly(4),
       {},
       {1, 2, 3, 4}},
      {"max_to_keep 1", MaxToKeep(1), Hourly(4), {}, {4}},
      {"max_to_keep 2", MaxToKeep(2), Hourly(5), {}, {4, 5}},
      // Clock start = hour 0 (step 1). Step 1 is 0h after it: deleted; step
      // 3 (2h) preserved; step 4 (3h) is 1h after 3: deleted; 5 preserved.
      {"every 2h", MaxToKeep(1, absl::Hours(2)), Hourly(7), {}, {3, 5, 7}},
      {"every 2h with an earlier clock start",
       MaxToKeep(1, absl::Hours(2)),
       Hourly(7),
       AtHours(-2),
       {1, 3, 5, 7}},
      {"preserved ones do not count toward max_to_keep",
       MaxToKeep(2, absl::Hours(3)),
       Hourly(10),
       {},
       {4, 7, 9, 10}},
      {"exactly N hours counts (>=)",
       MaxToKeep(1, absl::Hours(1)),
       {Ckpt(1, At(0)), Ckpt(2, At(3600)), Ckpt(3, At(3600 + 3599)),
        Ckpt(4, At(9000))},
       {},
       {2, 4}},
      {"order is by step, not by input order",
       MaxToKeep(2),
       {Ckpt(30, AtHours(3)), Ckpt(10, AtHours(1)), Ckpt(20, AtHours(2))},
       {},
       {20, 30}},
      {"best 2 min",
       Best(2, "val_loss", Mode::kMin),
       {Ckpt(1, AtHours(1), {{"val_loss", 0.5}}),
        Ckpt(2, AtHours(2), {{"val_loss", 0.2}}),
        Ckpt(3, AtHours(3), {{"val_loss", 0.9}}),
        Ckpt(4, AtHours(4), {{"val_loss", 0.3}}),
        Ckpt(5, AtHours(5), {{"val_loss", 0.8}})},
       {},
       {2, 4, 5}},
      {"best 1 max",
       Best(1, "acc", Mode::kMax),
       {Ckpt(1, AtHours(1), {{"acc", 0.5}}),
        Ckpt(2, AtHours(2), {{"acc", 0.9}}),
        Ckpt(3, AtHours(3), {{"acc", 0.7}})},
       {},
       {2, 3}},
      {"best auto resolves acc to max",
       Best(1, "val_accuracy", Mode::kAuto),
       {Ckpt(1, AtHours(1), {{"val_accuracy", 0.5}}),
        Ckpt(2, AtHours(2), {{"val_accuracy", 0.9}}),
        Ckpt(3, AtHours(3), {{"val_accuracy", 0.7}}),
        Ckpt(4, AtHours(4), {{"val_accuracy", 0.1}})},
       {},
       {2, 4}},
      {"best auto resolves loss to min",
       Best(1, "loss", Mode::kAuto),
       {Ckpt(1, AtHours(1), {{"loss", 0.5}}),
        Ckpt(2, AtHours(2), {{"loss", 0.9}}),
        Ckpt(3, AtHours(3), {{"loss", 0.7}})},
       {},
       {1, 3}},
      {"ties go to the older checkpoint",
       Best(1, "loss", Mode::kMin),
       {Ckpt(1, AtHours(1), {{"loss", 0.9}}),
        Ckpt(2, AtHours(2), {{"loss", 0.2}}),
        Ckpt(3, AtHours(3), {{"loss", 0.2}}),
        Ckpt(4, AtHours(4), {{"loss", 0.5}})},
       {},
       {2, 4}},
      {"NaN is never best",
       Best(1, "loss", Mode::kMin),
       {Ckpt(1, AtHours(1), {{"loss", kNaN}}),
        Ckpt(2, AtHours(2), {{"loss", 0.7}}),
        Ckpt(3, AtHours(3), {{"loss", kNaN}}),
        Ckpt(4, AtHours(4), {{"loss", 0.9}})},
       {},
       {2, 4}},
      // No value anywhere: keep_best decides nothing, as without a metric.
      {"NaN everywhere keeps everything",
       Best(2, "loss", Mode::kMax),
       {Ckpt(1, AtHours(1), {{"loss", kNaN}}),
        Ckpt(2, AtHours(2), {{"loss", kNaN}})},
       {},
       {1, 2}},
      {"infinities compare normally",
       Best(1, "loss", Mode::kMin),
       {Ckpt(1, AtHours(1),
             {{"loss", -std::numeric_limits<double>::infinity()}}),
        Ckpt(2, AtHours(2), {{"loss", 0.0}}),
        Ckpt(3, AtHours(3), {{"loss", 1.0}})},
       {},
       {1, 3}},
      {"missing metric is kept",
       Best(1, "loss", Mode::kMin),
       {Ckpt(1, AtHours(1), {{"loss", 0.1}}), Ckpt(2, AtHours(2), none),
        Ckpt(3, AtHours(3), {{"loss", 0.5}}),
        Ckpt(4, AtHours(4), {{"acc", 0.5}})},
       {},
       {1, 2, 4}},
      {"newest is kept even when worst (unlike Orbax #526)",
       Best(1, "loss", Mode::kMin),
       {Ckpt(1, AtHours(1), {{"loss", 0.1}}),
        Ckpt(2, AtHours(2), {{"loss", 0.5}}),
        Ckpt(3, AtHours(3), {{"loss", 9.0}})},
       {},
       {1, 3}},
      {"pins survive max_to_keep",
       MaxToKeep(1),
       {Ckpt(1, AtHours(1), {}, true), Ckpt(2, AtHours(2)),
        Ckpt(3, AtHours(3), {}, true), Ckpt(4, AtHours(4))},
       {},
       {1, 3, 4}},
      {"pins survive keep_best",
       Best(1, "loss", Mode::kMin),
       {Ckpt(1, AtHours(1), {{"loss", 0.1}}),
        Ckpt(2, AtHours(2), {{"loss", 0.9}}, true),
        Ckpt(3, AtHours(3), {{"loss", 0.5}})},
       {},
       {1, 2, 3}},
      {"pins still occupy the active set",
       MaxToKeep(2),
       {Ckpt(1, AtHours(1)), Ckpt(2, AtHours(2)), Ckpt(3, AtHours(3), {}, true),
        Ckpt(4, AtHours(4))},
       {},
       {3, 4}},
      {"pins on an empty policy",
       RetentionPolicy{},
       {Ckpt(1, AtHours(1), {}, true), Ckpt(2, AtHours(2))},
       {},
       {1, 2}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(Kept(c.policy, c.in, c.clock_start), ElementsAreArray(c.kept));
  }
}

TEST(RetentionPolicyTest, RulesCombineByUnion) {
  RetentionPolicy policy = MaxToKeep(2, absl::Hours(6));
  policy.keep_best = RetentionPolicy::KeepBest{
      .k = 1, .metric = "val_loss", .mode = Mode::kAuto};
  std::vector<RetentionInput> in;
  // 20 saves, 2.5h apart; val_loss lowest at step 3; step 8 pinned, step 12
  // without the metric.
  for (int s = 1; s <= 20; ++s) {
    std::map<std::string, double> metrics;
    if (s != 12) metrics["val_loss"] = s == 3 ? 0.01 : 1.0 + s;
    in.push_back(Ckpt(s, AtHours(2.5 * (s - 1)), metrics, s == 8));
  }
  absl::StatusOr<std::vector<RetentionDecision>> ds =
      EvaluateRetention(policy, in, std::nullopt);
  ASSERT_TRUE(ds.ok()) << ds.status();
  // Preserved by time: first time >= 6h after the clock start (hour 0) is
  // step 4 (7.5h), then step 7 (15h), 10 (22.5h), 13 (30h), 16 (37.5h); the
  // active set is 19 and 20.
  EXPECT_THAT(KeptSteps(*ds), ElementsAre(3, 4, 7, 8, 10, 12, 13, 16, 19, 20));
  EXPECT_THAT(DecisionFor(*ds, 3).reasons,
              ElementsAre("best 1 by val_loss (min)"));
  EXPECT_THAT(DecisionFor(*ds, 4).reasons, ElementsAre("preserved: every 6h"));
  EXPECT_THAT(DecisionFor(*ds, 8).reasons, ElementsAre("pinned"));
  EXPECT_THAT(DecisionFor(*ds, 12).reasons, ElementsAre("no metric val_loss"));
  EXPECT_THAT(DecisionFor(*ds, 19).reasons,
              ElementsAre("among the 2 most recent"));
  EXPECT_THAT(DecisionFor(*ds, 20).reasons,
              ElementsAre("among the 2 most recent", "newest"));
  const RetentionDecision& deleted = DecisionFor(*ds, 5);
  EXPECT_FALSE(deleted.keep);
  EXPECT_THAT(deleted.reasons,
              ElementsAre(HasSubstr("not preserved: less than 6h"),
                          "not best 1 by val_loss (min)"));
}

TEST(RetentionPolicyTest, ReasonsNameEveryRuleThatKeeps) {
  RetentionPolicy policy = MaxToKeep(1);
  policy.keep_best =
      RetentionPolicy::KeepBest{.k = 1, .metric = "loss", .mode = Mode::kMin};
  absl::StatusOr<std::vector<RetentionDecision>> ds =
      EvaluateRetention(policy,
                        {Ckpt(1, AtHours(1), {{"loss", 0.5}}),
                         Ckpt(2, AtHours(2), {{"loss", 0.1}}, true)},
                        std::nullopt);
  ASSERT_TRUE(ds.ok()) << ds.status();
  ASSERT_EQ(ds->size(), 2u);
  EXPECT_FALSE((*ds)[0].keep);
  EXPECT_THAT((*ds)[0].reasons, ElementsAre("not among the 1 most recent",
                                            "not best 1 by loss (min)"));
  EXPECT_THAT((*ds)[1].reasons,
              ElementsAre("among the 1 most recent", "best 1 by loss (min)",
                          "pinned", "newest"));
}

TEST(RetentionPolicyTest, EmptyPolicySaysSo) {
  absl::StatusOr<std::vector<RetentionDecision>> ds =
      EvaluateRetention(RetentionPolicy{}, Hourly(2), std::nullopt);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_THAT((*ds)[0].reasons, ElementsAre("no retention policy"));
  EXPECT_THAT((*ds)[1].reasons, ElementsAre("newest", "no retention policy"));
}

TEST(RetentionPolicyTest, NaNDeletionSaysWhy) {
  absl::StatusOr<std::vector<RetentionDecision>> ds = EvaluateRetention(
      Best(1, "loss", Mode::kMin),
      {Ckpt(1, AtHours(1), {{"loss", kNaN}}), Ckpt(2, AtHours(2), {}),
       Ckpt(3, AtHours(3), {{"loss", 0.5}})},
      std::nullopt);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_FALSE((*ds)[0].keep);
  EXPECT_THAT((*ds)[0].reasons,
              ElementsAre("loss is NaN, never among the best"));
  EXPECT_THAT((*ds)[1].reasons, ElementsAre("no metric loss"));
}

TEST(RetentionPolicyTest, OutputIsSortedByStepWithOneDecisionPerInput) {
  absl::StatusOr<std::vector<RetentionDecision>> ds = EvaluateRetention(
      MaxToKeep(1),
      {Ckpt(7, AtHours(3)), Ckpt(2, AtHours(1)), Ckpt(5, AtHours(2))},
      std::nullopt);
  ASSERT_TRUE(ds.ok()) << ds.status();
  ASSERT_EQ(ds->size(), 3u);
  EXPECT_EQ((*ds)[0].step, 2);
  EXPECT_EQ((*ds)[1].step, 5);
  EXPECT_EQ((*ds)[2].step, 7);
}

TEST(RetentionPolicyTest, RejectsDuplicateSteps) {
  absl::StatusOr<std::vector<RetentionDecision>> ds = EvaluateRetention(
      MaxToKeep(1), {Ckpt(1, AtHours(1)), Ckpt(1, AtHours(2))}, std::nullopt);
  EXPECT_EQ(ds.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ds.status().message(), HasSubstr("step 1 twice"));
}

TEST(RetentionPolicyTest, ToRetentionInputUsesEffectiveTime) {
  CheckpointRecord record;
  record.step = 42;
  record.commit_time = AtHours(5);
  record.metadata.metrics["loss"] = 0.5;
  RetentionInput in = ToRetentionInput(record, /*pinned=*/true);
  EXPECT_EQ(in.step, 42);
  EXPECT_EQ(in.time, AtHours(5));
  EXPECT_EQ(in.metrics, record.metadata.metrics);
  EXPECT_TRUE(in.pinned);
  record.metadata.writer_time = AtHours(1);
  EXPECT_EQ(ToRetentionInput(record, false).time, AtHours(1));
}

// ------------------------------------------------------------- validation

TEST(RetentionPolicyValidationTest, TableOfInvalidPolicies) {
  struct Bad {
    std::string name;
    RetentionPolicy policy;
    std::string message;
  };
  const std::vector<Bad> bad = {
      {"max_to_keep 0", MaxToKeep(0), "max_to_keep must be at least 1"},
      {"max_to_keep negative", MaxToKeep(-3), "max_to_keep"},
      {"keep_every zero", MaxToKeep(2, absl::ZeroDuration()), "keep_every"},
      {"keep_every negative", MaxToKeep(2, absl::Hours(-1)), "keep_every"},
      {"keep_every infinite", MaxToKeep(2, absl::InfiniteDuration()),
       "keep_every"},
      {"keep_every alone", EveryAlone(absl::Hours(1)), "needs max_to_keep"},
      {"k zero", Best(0, "loss", Mode::kMin), "k must be at least 1"},
      {"empty metric", Best(1, "", Mode::kMax), "metric name is empty"},
      {"auto unknown metric", Best(1, "perplexity", Mode::kAuto),
       "keep_best: cannot tell whether metric 'perplexity'"},
      {"auto ambiguous metric", Best(1, "accumulated_loss", Mode::kAuto),
       "pass mode min or max"},
  };
  for (const Bad& b : bad) {
    SCOPED_TRACE(b.name);
    absl::Status status = ValidateRetentionPolicy(b.policy);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), HasSubstr(b.message));
    EXPECT_EQ(
        EvaluateRetention(b.policy, Hourly(3), std::nullopt).status().code(),
        absl::StatusCode::kInvalidArgument);
  }
}

TEST(RetentionPolicyValidationTest, AcceptsValidPolicies) {
  EXPECT_TRUE(ValidateRetentionPolicy(RetentionPolicy{}).ok());
  EXPECT_TRUE(ValidateRetentionPolicy(MaxToKeep(1)).ok());
  EXPECT_TRUE(ValidateRetentionPolicy(MaxToKeep(5, absl::Seconds(1))).ok());
  EXPECT_TRUE(ValidateRetentionPolicy(Best(3, "perplexity", Mode::kMin)).ok());
  EXPECT_TRUE(ValidateRetentionPolicy(Best(3, "val_acc", Mode::kAuto)).ok());
}

TEST(RetentionPolicyValidationTest, AutoModeFollowsKerasNames) {
  struct Name {
    std::string metric;
    std::optional<Mode> resolved;  // nullopt: INVALID_ARGUMENT
  };
  const std::vector<Name> names = {
      {"acc", Mode::kMax},
      {"val_acc", Mode::kMax},
      {"accuracy", Mode::kMax},
      {"val_sparse_categorical_accuracy", Mode::kMax},
      {"fmeasure", Mode::kMax},
      {"fmeasure_macro", Mode::kMax},
      {"loss", Mode::kMin},
      {"val_loss", Mode::kMin},
      {"reconstruction_loss", Mode::kMin},
      {"val_fmeasure", std::nullopt},  // Keras: only a prefix counts
      {"Accuracy", std::nullopt},      // case-sensitive, as Keras
      {"perplexity", std::nullopt},
      {"mse", std::nullopt},
      {"accumulated_loss", std::nullopt},  // both: ambiguous
  };
  for (const Name& n : names) {
    SCOPED_TRACE(n.metric);
    absl::StatusOr<Mode> mode = ResolveMetricMode(n.metric, Mode::kAuto);
    if (n.resolved.has_value()) {
      ASSERT_TRUE(mode.ok()) << mode.status();
      EXPECT_EQ(*mode, *n.resolved);
    } else {
      EXPECT_EQ(mode.status().code(), absl::StatusCode::kInvalidArgument);
      // Not only keep_best resolves modes (best_step, save_best_only,
      // `ckpt ls --sort`): the caller names the setting.
      EXPECT_THAT(mode.status().message(),
                  AllOf(HasSubstr("pass mode min or max"),
                        Not(HasSubstr("keep_best"))));
    }
    // An explicit mode is always taken as given.
    EXPECT_EQ(*ResolveMetricMode(n.metric, Mode::kMin), Mode::kMin);
    EXPECT_EQ(*ResolveMetricMode(n.metric, Mode::kMax), Mode::kMax);
  }
}

// ------------------------------------- TensorFlow CheckpointManager tests
// Restatements of tensorflow/python/checkpoint/checkpoint_management_test.py
// (CheckpointManagerTest) and the Saver's keep_checkpoint_every_n_hours
// test. A fresh TF manager sets _last_preserved_timestamp to its creation
// time minus one second; the ports pass that as the clock start.

// testDeletion: max_to_keep=3, four saves: the first is deleted.
TEST(RetentionTfPortTest, Deletion) {
  EXPECT_THAT(Kept(MaxToKeep(3), Hourly(4)), ElementsAre(2, 3, 4));
}

// testKeepAll: max_to_keep=None keeps all four saves; a manager with
// max_to_keep=3 then saves a fifth, and only the three newest remain.
TEST(RetentionTfPortTest, KeepAll) {
  EXPECT_THAT(Kept(RetentionPolicy{}, Hourly(3)), ElementsAre(1, 2, 3));
  EXPECT_THAT(Kept(RetentionPolicy{}, Hourly(4)), ElementsAre(1, 2, 3, 4));
  EXPECT_THAT(Kept(MaxToKeep(3), Hourly(5)), ElementsAre(3, 4, 5));
}

// testSaveRestoreState: manager created at t=3 (last preserved 2); saves at
// 10000, +3610, +0.2h, +0.5h, +0.5h, +10s with max_to_keep=2 and (from the
// third save on) keep_checkpoint_every_n_hours=1.5. ckpt-1 is preserved
// (10000 - 5400 >= 2), 2 and 3 are deleted (not 1.5h after 10000), 4 is
// preserved when the sixth save pushes it out; 5 and 6 are active. The first
// two saves never sweep (two checkpoints, max_to_keep=2), so applying
// keep_every to the whole history is the same.
TEST(RetentionTfPortTest, SaveRestoreState) {
  const double first = 10000, second = first + 3610,
               third = second + 3600 * 0.2, fourth = third + 3600 * 0.5,
               fifth = fourth + 3600 * 0.5, sixth = fifth + 10;
  std::vector<RetentionInput> in = {Ckpt(1, At(first)), Ckpt(2, At(second)),
                                    Ckpt(3, At(third)), Ckpt(4, At(fourth)),
                                    Ckpt(5, At(fifth)), Ckpt(6, At(sixth))};
  const RetentionPolicy policy = MaxToKeep(2, absl::Hours(1.5));
  absl::StatusOr<std::vector<RetentionDecision>> ds =
      EvaluateRetention(policy, in, At(3 - 1));
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_THAT(KeptSteps(*ds), ElementsAre(1, 4, 5, 6));
  EXPECT_THAT(DecisionFor(*ds, 1).reasons,
              ElementsAre("preserved: every 1h30m"));
  EXPECT_THAT(DecisionFor(*ds, 4).reasons,
              ElementsAre("preserved: every 1h30m"));
  // The intermediate states the TF test checks, as prefixes of the history.
  EXPECT_THAT(Kept(policy, {in.begin(), in.begin() + 3}, At(2)),
              ElementsAre(1, 2, 3));
  EXPECT_THAT(Kept(policy, {in.begin(), in.begin() + 4}, At(2)),
              ElementsAre(1, 3, 4));
  EXPECT_THAT(Kept(policy, {in.begin(), in.begin() + 5}, At(2)),
              ElementsAre(1, 4, 5));
  // With the clock starting at the job's first checkpoint (our default),
  // ckpt-1 is 0h after it and is not preserved; 2 and 3 are not 1.5h after
  // the clock start either, 4 is (16130 - 5400 >= 10000).
  EXPECT_THAT(Kept(policy, in), ElementsAre(4, 5, 6));
}

// testContinueFromUnmanaged: two checkpoints written outside the manager
// survive; the manager (max_to_keep=2) then saves three and deletes only its
// own oldest. Here "outside the policy's reach" is a pin.
TEST(RetentionTfPortTest, ContinueFromUnmanaged) {
  std::vector<RetentionInput> in = Hourly(5);
  in[0].pinned = true;
  in[1].pinned = true;
  EXPECT_THAT(Kept(MaxToKeep(2), in), ElementsAre(1, 2, 4, 5));
}

// testClockReset, first half: manager created at 10000 (last preserved
// 9999), max_to_keep=1, every 1h; saves at 10000, 13600, 17200: the first is
// deleted (not 1h after 9999), the second preserved (last preserved 13600).
// Second half: the clock goes back to 5000 and two more saves follow at 5010
// and 5020 (TF's new manager has no keep_every; it clamps the old timestamps
// and erring on the side of keeping, never deletes 2 or 3). Under one policy
// the outcome is the same: 2 and 3 survive, the backwards-in-time 4 is not
// preserved, 5 is the active one.
TEST(RetentionTfPortTest, ClockReset) {
  const RetentionPolicy policy = MaxToKeep(1, absl::Hours(1));
  std::vector<RetentionInput> in = {Ckpt(1, At(10000)), Ckpt(2, At(13600)),
                                    Ckpt(3, At(17200))};
  EXPECT_THAT(Kept(policy, in, At(9999)), ElementsAre(2, 3));
  in.push_back(Ckpt(4, At(5010)));
  in.push_back(Ckpt(5, At(5020)));
  EXPECT_THAT(Kept(policy, in, At(9999)), ElementsAre(2, 3, 5));
}

// saver_test.py KeepCheckpointEveryNHoursTest.testNonSharded: max_to_keep=2,
// every 0.7s, clock at start; all four saves at start+1s. s3's save pushes s1
// out, 1s after the start: preserved. s4's pushes s2 out, 0s after s1:
// deleted.
TEST(RetentionTfPortTest, SaverKeepCheckpointEveryNHours) {
  const std::vector<RetentionInput> in = {Ckpt(1, At(1)), Ckpt(2, At(1)),
                                          Ckpt(3, At(1)), Ckpt(4, At(1))};
  EXPECT_THAT(Kept(MaxToKeep(2, absl::Milliseconds(700)), in, At(0)),
              ElementsAre(1, 3, 4));
}

// -------------------------------------------------------- property tests

struct RandomJob {
  RetentionPolicy policy;
  std::vector<RetentionInput> saves;  // shuffled
  absl::Time clock_start;
};

// Steps strictly increasing with random gaps; times mostly increasing with
// random gaps (sometimes equal, sometimes going back, as a reset clock).
RandomJob MakeRandomJob(std::mt19937_64& rng, bool with_best_and_pins) {
  auto uniform = [&](int lo, int hi) {
    return std::uniform_int_distribution<int>(lo, hi)(rng);
  };
  RandomJob job;
  if (uniform(0, 5) != 0) {
    job.policy.max_to_keep = uniform(1, 6);
    if (uniform(0, 3) != 0) {
      job.policy.keep_every = absl::Minutes(uniform(1, 12 * 60));
    }
  }
  const int n = uniform(0, 40);
  const absl::Time start = AtHours(uniform(0, 1000));
  absl::Time t = start;
  int64_t step = uniform(0, 3);
  for (int i = 0; i < n; ++i) {
    const int kind = uniform(0, 19);
    if (kind == 0) {
      t -= absl::Minutes(uniform(1, 300));
    } else if (kind > 1) {
      t += absl::Minutes(uniform(1, 240));
    }
    std::map<std::string, double> metrics;
    bool pinned = false;
    if (with_best_and_pins) {
      const int m = uniform(0, 9);
      if (m == 0) {
        metrics["val_loss"] = kNaN;
      } else if (m > 1) {
        metrics["val_loss"] = uniform(0, 20) / 4.0;  // ties are common
      }
      pinned = uniform(0, 9) == 0;
    }
    job.saves.push_back(Ckpt(step, t, metrics, pinned));
    step += uniform(1, 100);
  }
  if (with_best_and_pins && uniform(0, 2) != 0) {
    const Mode modes[] = {Mode::kMin, Mode::kMax, Mode::kAuto};
    job.policy.keep_best = RetentionPolicy::KeepBest{
        .k = uniform(1, 4), .metric = "val_loss", .mode = modes[uniform(0, 2)]};
    // keep_best decides from the first save that has a value on; a job
    // whose first save has none would see the rule decide nothing at its
    // first commits and delete what it keeps later. Either every save
    // lacks one (the rule never decides) or the first has one.
    if (uniform(0, 9) == 0) {
      for (RetentionInput& save : job.saves) save.metrics.clear();
    } else if (!job.saves.empty()) {
      job.saves.front().metrics["val_loss"] = uniform(0, 20) / 4.0;
    }
  }
  job.clock_start = uniform(0, 1) == 0 || job.saves.empty()
                        ? (job.saves.empty() ? start : job.saves.front().time)
                        : start - absl::Minutes(uniform(-120, 600));
  std::shuffle(job.saves.begin(), job.saves.end(), rng);
  return job;
}

// Applying the policy again to what it kept deletes nothing.
void ExpectSurvivorsAllKept(const RandomJob& job,
                            const std::set<int64_t>& kept) {
  std::vector<RetentionInput> survivors;
  for (const RetentionInput& in : job.saves) {
    if (kept.count(in.step)) survivors.push_back(in);
  }
  absl::StatusOr<std::vector<RetentionDecision>> again =
      EvaluateRetention(job.policy, survivors, job.clock_start);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(KeptSet(*again), kept);
}

TEST(RetentionPropertyTest, MatchesReferenceCheckpointManager) {
  std::mt19937_64 rng(20240607);
  for (int iter = 0; iter < 5000; ++iter) {
    RandomJob job = MakeRandomJob(rng, /*with_best_and_pins=*/false);
    SCOPED_TRACE(absl::StrCat("iteration ", iter));
    absl::StatusOr<std::vector<RetentionDecision>> ds =
        EvaluateRetention(job.policy, job.saves, job.clock_start);
    ASSERT_TRUE(ds.ok()) << ds.status();
    ASSERT_EQ(ds->size(), job.saves.size());
    EXPECT_EQ(KeptSet(*ds),
              ReferenceManager(job.policy, job.saves, job.clock_start));
  }
}

TEST(RetentionPropertyTest, DefaultClockStartIsTheFirstCheckpointTime) {
  std::mt19937_64 rng(7);
  for (int iter = 0; iter < 1000; ++iter) {
    RandomJob job = MakeRandomJob(rng, /*with_best_and_pins=*/false);
    if (job.saves.empty()) continue;
    SCOPED_TRACE(absl::StrCat("iteration ", iter));
    const absl::Time first =
        std::min_element(job.saves.begin(), job.saves.end(),
                         [](const RetentionInput& a, const RetentionInput& b) {
                           return a.step < b.step;
                         })
            ->time;
    absl::StatusOr<std::vector<RetentionDecision>> ds =
        EvaluateRetention(job.policy, job.saves, std::nullopt);
    ASSERT_TRUE(ds.ok()) << ds.status();
    EXPECT_EQ(KeptSet(*ds), ReferenceManager(job.policy, job.saves, first));
  }
}

TEST(RetentionPropertyTest, InvariantsHoldForRandomPolicies) {
  std::mt19937_64 rng(1234567);
  for (int iter = 0; iter < 3000; ++iter) {
    RandomJob job = MakeRandomJob(rng, /*with_best_and_pins=*/true);
    SCOPED_TRACE(absl::StrCat("iteration ", iter));
    absl::StatusOr<std::vector<RetentionDecision>> ds =
        EvaluateRetention(job.policy, job.saves, job.clock_start);
    ASSERT_TRUE(ds.ok()) << ds.status();
    ASSERT_EQ(ds->size(), job.saves.size());
    const std::set<int64_t> kept = KeptSet(*ds);

    // Sorted by step, every reason list non-empty.
    for (size_t i = 0; i < ds->size(); ++i) {
      if (i > 0) {
        EXPECT_LT((*ds)[i - 1].step, (*ds)[i].step);
      }
      EXPECT_THAT((*ds)[i].reasons, ::testing::Not(IsEmpty()));
    }
    // Pinned and newest are kept.
    int64_t newest = std::numeric_limits<int64_t>::min();
    for (const RetentionInput& in : job.saves) {
      if (in.pinned) {
        EXPECT_TRUE(kept.count(in.step)) << "pinned " << in.step;
      }
      newest = std::max(newest, in.step);
    }
    if (!job.saves.empty()) {
      EXPECT_TRUE(kept.count(newest));
    }

    // Union: the kept set is exactly the union of each rule on its own.
    std::set<int64_t> each_rule;
    RetentionPolicy tf_only = job.policy;
    tf_only.keep_best.reset();
    RetentionPolicy best_only;
    best_only.keep_best = job.policy.keep_best;
    // A keep_best without any value decides nothing.
    const bool best_decides = job.policy.keep_best.has_value() &&
                              RetentionWarnings(job.policy, job.saves).empty();
    if (!best_decides) best_only.keep_best.reset();
    for (const RetentionPolicy& single : {tf_only, best_only}) {
      if (!single.max_to_keep.has_value() && !single.keep_best.has_value()) {
        continue;  // an empty policy keeps everything: not a rule
      }
      absl::StatusOr<std::vector<RetentionDecision>> one =
          EvaluateRetention(single, job.saves, job.clock_start);
      ASSERT_TRUE(one.ok()) << one.status();
      const std::set<int64_t> one_kept = KeptSet(*one);
      EXPECT_TRUE(std::includes(kept.begin(), kept.end(), one_kept.begin(),
                                one_kept.end()));
      each_rule.insert(one_kept.begin(), one_kept.end());
    }
    if (job.policy.max_to_keep.has_value() || best_decides) {
      EXPECT_EQ(kept, each_rule);
    } else {
      EXPECT_EQ(kept.size(), job.saves.size());
    }

    ExpectSurvivorsAllKept(job, kept);
  }
}

// One commit as the server handles it: `save` joins the surviving
// checkpoints `alive`, the policy is evaluated on them and what it does not
// keep is deleted.
void CommitAndApplyPolicy(const RandomJob& job, const RetentionInput& save,
                          std::vector<RetentionInput>& alive) {
  alive.push_back(save);
  absl::StatusOr<std::vector<RetentionDecision>> ds =
      EvaluateRetention(job.policy, alive, job.clock_start);
  ASSERT_TRUE(ds.ok()) << ds.status();
  const std::set<int64_t> kept = KeptSet(*ds);
  std::erase_if(alive,
                [&](const RetentionInput& in) { return !kept.count(in.step); });
}

// The server applies the policy at every commit to what is left; that must
// end where one evaluation of the whole history does.
TEST(RetentionPropertyTest, ApplyingAtEverySaveEqualsApplyingOnce) {
  std::mt19937_64 rng(99);
  for (int iter = 0; iter < 2000; ++iter) {
    RandomJob job = MakeRandomJob(rng, /*with_best_and_pins=*/true);
    SCOPED_TRACE(absl::StrCat("iteration ", iter));
    std::vector<RetentionInput> alive;
    for (const RetentionInput& save : SortedByStep(job.saves)) {
      ASSERT_NO_FATAL_FAILURE(CommitAndApplyPolicy(job, save, alive));
    }
    std::set<int64_t> incremental;
    for (const RetentionInput& in : alive) incremental.insert(in.step);
    absl::StatusOr<std::vector<RetentionDecision>> once =
        EvaluateRetention(job.policy, job.saves, job.clock_start);
    ASSERT_TRUE(once.ok()) << once.status();
    EXPECT_EQ(incremental, KeptSet(*once));
  }
}

// Random row-delta bases: in step order, about half of the saves are deltas
// against one or two earlier saves (the last full one, the previous one, or
// any older one).
void AddRandomBases(std::mt19937_64& rng, std::vector<RetentionInput>& saves) {
  std::vector<RetentionInput*> by_step;
  by_step.reserve(saves.size());
  for (RetentionInput& save : saves) by_step.push_back(&save);
  std::sort(by_step.begin(), by_step.end(),
            [](const RetentionInput* a, const RetentionInput* b) {
              return a->step < b->step;
            });
  auto uniform = [&](size_t lo, size_t hi) {
    return std::uniform_int_distribution<size_t>(lo, hi)(rng);
  };
  int64_t last_full = -1;
  for (size_t i = 0; i < by_step.size(); ++i) {
    RetentionInput& save = *by_step[i];
    save.base_steps.clear();
    if (i == 0 || uniform(0, 1) == 0) {
      last_full = save.step;
      continue;
    }
    switch (uniform(0, 2)) {
      case 0:
        save.base_steps = {last_full};
        break;
      case 1:
        save.base_steps = {by_step[i - 1]->step};
        break;
      default:
        save.base_steps = {by_step[uniform(0, i - 1)]->step};
        if (uniform(0, 3) == 0 && by_step[i - 1]->step > save.base_steps[0]) {
          save.base_steps.push_back(by_step[i - 1]->step);
        }
        break;
    }
  }
}

// With bases, the kept set is what the rules keep plus, transitively, the
// bases of everything kept; and keeping it is stable: evaluating again on
// the survivors deletes nothing.
TEST(RetentionPropertyTest, BasesOfKeptCheckpointsAreKeptAndNothingMore) {
  std::mt19937_64 rng(424242);
  for (int iter = 0; iter < 3000; ++iter) {
    RandomJob job = MakeRandomJob(rng, /*with_best_and_pins=*/true);
    SCOPED_TRACE(absl::StrCat("iteration ", iter));
    const std::vector<RetentionInput> without_bases = job.saves;
    AddRandomBases(rng, job.saves);
    absl::StatusOr<std::vector<RetentionDecision>> ds =
        EvaluateRetention(job.policy, job.saves, job.clock_start);
    ASSERT_TRUE(ds.ok()) << ds.status();
    const std::set<int64_t> kept = KeptSet(*ds);

    absl::StatusOr<std::vector<RetentionDecision>> rules_only =
        EvaluateRetention(job.policy, without_bases, job.clock_start);
    ASSERT_TRUE(rules_only.ok()) << rules_only.status();
    std::map<int64_t, std::vector<int64_t>> bases_of;
    for (const RetentionInput& in : job.saves)
      bases_of[in.step] = in.base_steps;
    std::set<int64_t> closure = KeptSet(*rules_only);
    std::vector<int64_t> todo(closure.begin(), closure.end());
    while (!todo.empty()) {
      const int64_t step = todo.back();
      todo.pop_back();
      for (int64_t base : bases_of[step]) {
        if (closure.insert(base).second) todo.push_back(base);
      }
    }
    EXPECT_EQ(kept, closure);
    for (const RetentionDecision& d : *ds) {
      if (d.keep && !KeptSet(*rules_only).count(d.step)) {
        EXPECT_THAT(d.reasons, Contains(HasSubstr("base of step")));
      }
    }
    ExpectSurvivorsAllKept(job, kept);
  }
}

// Bases for the next save, as a client picks them, among the checkpoints
// still committed (`alive`, in step order): none (a full save) about half
// the time, else the newest surviving full save, the previous save, or any
// survivor, sometimes with the previous save as a second base.
std::vector<int64_t> RandomBasesAmong(
    std::mt19937_64& rng, const std::vector<RetentionInput>& alive) {
  auto uniform = [&](size_t lo, size_t hi) {
    return std::uniform_int_distribution<size_t>(lo, hi)(rng);
  };
  if (alive.empty() || uniform(0, 1) == 0) return {};
  const int64_t previous = alive.back().step;
  switch (uniform(0, 2)) {
    case 0: {
      auto full = std::find_if(
          alive.rbegin(), alive.rend(),
          [](const RetentionInput& in) { return in.base_steps.empty(); });
      if (full == alive.rend()) return {};
      return {full->step};
    }
    case 1:
      return {previous};
    default: {
      const int64_t any = alive[uniform(0, alive.size() - 1)].step;
      if (any < previous && uniform(0, 3) == 0) return {any, previous};
      return {any};
    }
  }
}

// "1 2<-1 3<-1,2": each save's step and its bases, for failure messages.
std::string HistoryText(const std::vector<RetentionInput>& history) {
  std::vector<std::string> parts;
  parts.reserve(history.size());
  for (const RetentionInput& in : history) {
    parts.push_back(
        in.base_steps.empty()
            ? absl::StrCat(in.step)
            : absl::StrCat(in.step, "<-", absl::StrJoin(in.base_steps, ",")));
  }
  return absl::StrJoin(parts, " ");
}

// With delta bases, applying the policy at every commit still leaves, after
// every commit, exactly what one evaluation of the history so far keeps, as
// long as the history is one a server can produce: a delta commits only
// against a base that is still committed, so each save draws its bases from
// the survivors at that moment (a client whose base is gone saves in full).
// Without that condition it fails: with max_to_keep=1, saves 1, 2 and then
// 3 as a delta against 1 (deleted when 2 committed) would make one
// evaluation keep 1, which the server no longer has.
//
// Why the strong form holds although the survivors include checkpoints kept
// only as bases: such a checkpoint left the rules when it fell out of the
// max_to_keep newest (which always survive) without passing its keep_every
// test, which depends only on older checkpoints, and outside the k best,
// which more saves only push it further from. So the rules keep the same
// checkpoints from the survivors as from the whole history. A kept
// checkpoint keeps its bases at every evaluation, so the bases of every
// survivor survive and the transitive closure of the rules' picks is the
// same on both sides. A checkpoint kept only as a base goes as soon as
// nothing kept depends on it, in the step-by-step run and in the single
// evaluation alike.
//
// Equality alone would not notice base-keeping broken (both sides would
// ignore bases alike), so each commit also checks that every survivor's
// bases survive: its deltas stay restorable.
TEST(RetentionPropertyTest, WithBasesApplyingAtEverySaveEqualsApplyingOnce) {
  std::mt19937_64 rng(31337);
  for (int iter = 0; iter < 2000; ++iter) {
    const RandomJob job = MakeRandomJob(rng, /*with_best_and_pins=*/true);
    SCOPED_TRACE(absl::StrCat("iteration ", iter));
    std::vector<RetentionInput> history;
    std::vector<RetentionInput> alive;
    for (RetentionInput save : SortedByStep(job.saves)) {
      save.base_steps = RandomBasesAmong(rng, alive);
      history.push_back(save);
      ASSERT_NO_FATAL_FAILURE(CommitAndApplyPolicy(job, save, alive));
      SCOPED_TRACE(absl::StrCat("policy ", RetentionPolicyText(job.policy),
                                ", saves ", HistoryText(history)));
      std::set<int64_t> survivors;
      for (const RetentionInput& in : alive) survivors.insert(in.step);
      for (const RetentionInput& in : alive) {
        for (int64_t base : in.base_steps) {
          ASSERT_TRUE(survivors.count(base))
              << "step " << in.step << " survives without its base " << base;
        }
      }
      absl::StatusOr<std::vector<RetentionDecision>> once =
          EvaluateRetention(job.policy, history, job.clock_start);
      ASSERT_TRUE(once.ok()) << once.status();
      ASSERT_EQ(survivors, KeptSet(*once));
    }
  }
}

TEST(RetentionPolicyTest, TextNamesEveryRuleOnOneLine) {
  EXPECT_EQ(RetentionPolicyText(RetentionPolicy{}), "keep everything");
  RetentionPolicy policy;
  policy.max_to_keep = 3;
  EXPECT_EQ(RetentionPolicyText(policy), "max_to_keep=3");
  policy.keep_every = absl::Hours(6);
  policy.keep_best = RetentionPolicy::KeepBest{2, "val_loss", Mode::kMin};
  EXPECT_EQ(RetentionPolicyText(policy),
            "max_to_keep=3 keep_every=6h keep_best=2 by val_loss (min)");
  policy.max_to_keep.reset();
  policy.keep_every.reset();
  policy.keep_best->mode = Mode::kAuto;
  EXPECT_EQ(RetentionPolicyText(policy), "keep_best=2 by val_loss (auto)");
}

// ------------------------------------------------------------ delta bases

// A checkpoint saved at hour step-1 whose row deltas use `bases`.
RetentionInput Delta(int64_t step, std::vector<int64_t> bases,
                     bool pinned = false) {
  RetentionInput in =
      Ckpt(step, AtHours(static_cast<double>(step - 1)), {}, pinned);
  in.base_steps = std::move(bases);
  return in;
}

// Decisions for `in`; as many as inputs, or none when evaluation failed.
std::vector<RetentionDecision> Decisions(
    const RetentionPolicy& policy, const std::vector<RetentionInput>& in,
    const std::map<int64_t, std::vector<int64_t>>& pending_bases = {}) {
  absl::StatusOr<std::vector<RetentionDecision>> ds =
      EvaluateRetention(policy, in, std::nullopt, pending_bases);
  EXPECT_TRUE(ds.ok()) << ds.status();
  return ds.value_or(std::vector<RetentionDecision>{});
}

TEST(RetentionBasesTest, IntermittentDeltasKeepTheirFullBase) {
  // Full save 1, then deltas 2..5 each against 1 (Check-N-Run intermittent).
  std::vector<RetentionInput> in = {Delta(1, {}), Delta(2, {1}), Delta(3, {1}),
                                    Delta(4, {1}), Delta(5, {1})};
  const std::vector<RetentionDecision> ds = Decisions(MaxToKeep(2), in);
  ASSERT_EQ(ds.size(), in.size());
  EXPECT_THAT(KeptSteps(ds), ElementsAre(1, 4, 5));
  EXPECT_THAT(DecisionFor(ds, 1).reasons, ElementsAre("base of steps 4, 5"));
  // The deleted deltas 2 and 3 keep nothing.
  EXPECT_FALSE(DecisionFor(ds, 2).keep);
  EXPECT_FALSE(DecisionFor(ds, 3).keep);
}

TEST(RetentionBasesTest, ConsecutiveChainIsKeptWhole) {
  std::vector<RetentionInput> in = {Delta(1, {}), Delta(2, {1}), Delta(3, {2}),
                                    Delta(4, {3}), Delta(5, {4})};
  const std::vector<RetentionDecision> ds = Decisions(MaxToKeep(1), in);
  ASSERT_EQ(ds.size(), in.size());
  EXPECT_THAT(KeptSteps(ds), ElementsAre(1, 2, 3, 4, 5));
  EXPECT_THAT(DecisionFor(ds, 1).reasons, ElementsAre("base of step 2"));
  EXPECT_THAT(DecisionFor(ds, 4).reasons, ElementsAre("base of step 5"));
}

TEST(RetentionBasesTest, NewFullSaveReleasesTheOldChain) {
  std::vector<RetentionInput> in = {Delta(1, {}), Delta(2, {1}), Delta(3, {}),
                                    Delta(4, {3})};
  EXPECT_THAT(Kept(MaxToKeep(1), in), ElementsAre(3, 4));
}

TEST(RetentionBasesTest, PinnedDeltaKeepsItsBase) {
  std::vector<RetentionInput> in = {Delta(1, {}), Delta(2, {1}, true),
                                    Delta(3, {}), Delta(4, {})};
  const std::vector<RetentionDecision> ds = Decisions(MaxToKeep(1), in);
  ASSERT_EQ(ds.size(), in.size());
  EXPECT_THAT(KeptSteps(ds), ElementsAre(1, 2, 4));
  EXPECT_THAT(DecisionFor(ds, 1).reasons, ElementsAre("base of step 2"));
}

TEST(RetentionBasesTest, BaseKeptByARuleAlsoSaysItIsABase) {
  std::vector<RetentionInput> in = {Delta(1, {}), Delta(2, {1})};
  const std::vector<RetentionDecision> ds = Decisions(MaxToKeep(2), in);
  ASSERT_EQ(ds.size(), in.size());
  EXPECT_THAT(DecisionFor(ds, 1).reasons,
              ElementsAre("among the 2 most recent", "base of step 2"));
}

TEST(RetentionBasesTest, PendingCheckpointsKeepTheirBasesAndChains) {
  std::vector<RetentionInput> in = {Delta(1, {}), Delta(2, {1}), Delta(3, {}),
                                    Delta(4, {})};
  const std::vector<RetentionDecision> ds =
      Decisions(MaxToKeep(1), in, {{6, {2}}, {7, {2, 4}}});
  ASSERT_EQ(ds.size(), in.size());
  EXPECT_THAT(KeptSteps(ds), ElementsAre(1, 2, 4));
  EXPECT_THAT(DecisionFor(ds, 2).reasons,
              ElementsAre("base of pending steps 6, 7"));
  EXPECT_THAT(DecisionFor(ds, 1).reasons, ElementsAre("base of step 2"));
}

TEST(RetentionBasesTest, ToRetentionInputCarriesBaseSteps) {
  CheckpointRecord record;
  record.step = 9;
  record.base_steps = {3, 7};
  EXPECT_THAT(ToRetentionInput(record, false).base_steps, ElementsAre(3, 7));
}

}  // namespace
}  // namespace ckpt
