// Tests of restic's `forget` rules in the retention function
// (common/retention.h): keep_within, the hourly/daily/weekly/monthly
// calendar buckets and keep_tags, one by one on hand-checked histories, and
// against a reference written apart from EvaluateRetention over random
// histories; plus keep_best on a job where no checkpoint has the metric.
// TF's rules are tested in retention_test.cc.
#include <algorithm>
#include <cmath>
#include <cstdint>
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
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "common/retention.h"
#include "common/retention_test_util.h"
#include "common/tags.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt {
namespace {

using Mode = RetentionPolicy::KeepBest::Mode;
using retention_testing::AtHours;
using retention_testing::Ckpt;
using retention_testing::DecisionFor;
using retention_testing::Kept;
using retention_testing::KeptSet;
using retention_testing::ReferenceManager;
using retention_testing::SortedByStep;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

absl::Time Utc(int year, int month, int day, int hour, int minute = 0) {
  return absl::FromCivil(absl::CivilSecond(year, month, day, hour, minute, 0),
                         absl::UTCTimeZone());
}

RetentionInput Tagged(int64_t step, absl::Time time,
                      std::vector<std::string> tags) {
  RetentionInput in = Ckpt(step, time);
  in.tags = std::move(tags);
  std::sort(in.tags.begin(), in.tags.end());
  return in;
}

std::vector<RetentionDecision> Decide(const RetentionPolicy& policy,
                                      const std::vector<RetentionInput>& in) {
  absl::StatusOr<std::vector<RetentionDecision>> ds =
      EvaluateRetention(policy, in, std::nullopt);
  EXPECT_TRUE(ds.ok()) << ds.status();
  return ds.value_or(std::vector<RetentionDecision>{});
}

// ----------------------------------------------------------- keep_within

TEST(RetentionResticTest, KeepWithinCountsFromTheNewestCheckpoint) {
  RetentionPolicy policy;
  policy.keep_within = absl::Hours(3);
  std::vector<RetentionInput> in;
  for (int i = 0; i <= 10; ++i) in.push_back(Ckpt(i, AtHours(i)));
  // Newest at hour 10: after hour 7 strictly (restic's After).
  EXPECT_THAT(Kept(policy, in), ElementsAre(8, 9, 10));
  const std::vector<RetentionDecision> ds = Decide(policy, in);
  EXPECT_THAT(DecisionFor(ds, 8).reasons,
              ElementsAre("within 3h of the newest"));
  EXPECT_THAT(DecisionFor(ds, 7).reasons,
              ElementsAre("not within 3h of the newest"));
}

TEST(RetentionResticTest, KeepWithinUsesTheLatestTimeNotTheHighestStep) {
  RetentionPolicy policy;
  policy.keep_within = absl::Hours(24);
  // Step 3's writer clock ran ahead: it is the newest by time.
  std::vector<RetentionInput> in = {Ckpt(1, AtHours(100)),
                                    Ckpt(2, AtHours(110)),
                                    Ckpt(3, AtHours(200)), Ckpt(4, AtHours(5))};
  // Step 4 is kept as the newest step, whatever its time.
  EXPECT_THAT(Kept(policy, in), ElementsAre(3, 4));
}

// A checkpoint dated in the future (a writer's clock far ahead) must not
// push every other one out of the window: the newest time is capped at now.
TEST(RetentionResticTest, KeepWithinIsCappedAtNow) {
  RetentionPolicy policy;
  policy.keep_within = absl::Hours(3);
  std::vector<RetentionInput> in = {Ckpt(1, AtHours(8)), Ckpt(2, AtHours(9)),
                                    Ckpt(3, AtHours(10)),
                                    Ckpt(4, AtHours(10 + 24 * 365 * 70))};
  absl::StatusOr<std::vector<RetentionDecision>> uncapped =
      EvaluateRetention(policy, in, std::nullopt);
  ASSERT_TRUE(uncapped.ok()) << uncapped.status();
  EXPECT_THAT(KeptSet(*uncapped), ElementsAre(4));  // restic's outcome
  absl::StatusOr<std::vector<RetentionDecision>> capped =
      EvaluateRetention(policy, in, std::nullopt, {}, AtHours(10.5));
  ASSERT_TRUE(capped.ok()) << capped.status();
  EXPECT_THAT(KeptSet(*capped), ElementsAre(1, 2, 3, 4));
  // A now later than the newest checkpoint changes nothing.
  capped =
      EvaluateRetention(policy, in, std::nullopt, {}, AtHours(24 * 365 * 80));
  ASSERT_TRUE(capped.ok()) << capped.status();
  EXPECT_THAT(KeptSet(*capped), ElementsAre(4));
}

// ------------------------------------------------------ calendar buckets

TEST(RetentionResticTest, DailyKeepsTheNewestOfEachOfTheNewestDays) {
  const std::vector<RetentionInput> in = {
      Ckpt(1, Utc(2026, 12, 1, 9)), Ckpt(2, Utc(2026, 12, 1, 23)),
      Ckpt(3, Utc(2026, 12, 2, 1)), Ckpt(4, Utc(2026, 12, 3, 5)),
      Ckpt(5, Utc(2026, 12, 3, 6))};
  RetentionPolicy policy;
  policy.keep_daily = 2;
  EXPECT_THAT(Kept(policy, in), ElementsAre(3, 5));
  const std::vector<RetentionDecision> ds = Decide(policy, in);
  EXPECT_THAT(DecisionFor(ds, 3).reasons,
              ElementsAre("daily: newest of 2026-12-02"));
  EXPECT_THAT(DecisionFor(ds, 4).reasons,
              ElementsAre("daily: a newer checkpoint is kept for 2026-12-03"));
  EXPECT_THAT(DecisionFor(ds, 2).reasons,
              ElementsAre("daily: older than the 2 newest days"));
  policy.keep_daily = 5;
  EXPECT_THAT(Kept(policy, in), ElementsAre(2, 3, 5));
}

TEST(RetentionResticTest, HourlyBucketsAreUtcHours) {
  const std::vector<RetentionInput> in = {
      Ckpt(1, Utc(2026, 3, 29, 0, 10)), Ckpt(2, Utc(2026, 3, 29, 0, 50)),
      Ckpt(3, Utc(2026, 3, 29, 1, 5)), Ckpt(4, Utc(2026, 3, 29, 2, 59)),
      Ckpt(5, Utc(2026, 3, 29, 3, 0))};
  RetentionPolicy policy;
  policy.keep_hourly = 3;
  EXPECT_THAT(Kept(policy, in), ElementsAre(3, 4, 5));
  policy.keep_hourly = 24;
  EXPECT_THAT(Kept(policy, in), ElementsAre(2, 3, 4, 5));
}

TEST(RetentionResticTest, WeeklyBucketsAreIsoWeeks) {
  // 2020-12-28 (Mon) and 2021-01-03 (Sun) are both 2020-W53; 2021-01-04 is
  // 2021-W01.
  std::vector<RetentionInput> in = {Ckpt(1, Utc(2020, 12, 28, 8)),
                                    Ckpt(2, Utc(2021, 1, 3, 20)),
                                    Ckpt(3, Utc(2021, 1, 4, 0, 30))};
  RetentionPolicy policy;
  policy.keep_weekly = 5;
  EXPECT_THAT(Kept(policy, in), ElementsAre(2, 3));
  EXPECT_THAT(DecisionFor(Decide(policy, in), 2).reasons,
              ElementsAre("weekly: newest of 2020-W53"));
  // 2024-12-29 (Sun) is 2024-W52; 2024-12-30 (Mon) and 2025-01-05 (Sun)
  // are 2025-W01.
  in = {Ckpt(1, Utc(2024, 12, 29, 12)), Ckpt(2, Utc(2024, 12, 30, 12)),
        Ckpt(3, Utc(2025, 1, 5, 12))};
  policy.keep_weekly = 2;
  EXPECT_THAT(Kept(policy, in), ElementsAre(1, 3));
  EXPECT_THAT(DecisionFor(Decide(policy, in), 3).reasons,
              ElementsAre("weekly: newest of 2025-W01", "newest"));
}

TEST(RetentionResticTest, MonthlyBucketsAreCalendarMonths) {
  const std::vector<RetentionInput> in = {
      Ckpt(1, Utc(2026, 1, 31, 23, 59)), Ckpt(2, Utc(2026, 2, 1, 0)),
      Ckpt(3, Utc(2026, 2, 28, 12)), Ckpt(4, Utc(2026, 4, 1, 0))};
  RetentionPolicy policy;
  policy.keep_monthly = 3;
  // April, February (its newest: step 3) and January; March has none.
  EXPECT_THAT(Kept(policy, in), ElementsAre(1, 3, 4));
}

TEST(RetentionResticTest, EqualTimesKeepTheHigherStep) {
  const std::vector<RetentionInput> in = {Ckpt(1, Utc(2026, 5, 1, 10)),
                                          Ckpt(2, Utc(2026, 5, 1, 10)),
                                          Ckpt(3, Utc(2026, 5, 2, 10))};
  RetentionPolicy policy;
  policy.keep_daily = 2;
  EXPECT_THAT(Kept(policy, in), ElementsAre(2, 3));
}

TEST(RetentionResticTest, BucketsFollowTimesNotSteps) {
  // Step 3's clock was reset: by time it is the oldest, in its own day.
  const std::vector<RetentionInput> in = {
      Ckpt(1, Utc(2026, 5, 2, 10)), Ckpt(2, Utc(2026, 5, 3, 10)),
      Ckpt(3, Utc(2026, 5, 1, 10)), Ckpt(4, Utc(2026, 5, 3, 11))};
  RetentionPolicy policy;
  policy.keep_daily = 2;
  EXPECT_THAT(Kept(policy, in), ElementsAre(1, 4));
}

// --------------------------------------------------------------- keep_tags

TEST(RetentionResticTest, KeepTagsKeepsEveryCheckpointCarryingATag) {
  RetentionPolicy policy;
  policy.max_to_keep = 1;
  policy.keep_tags = {"release", "best"};
  const std::vector<RetentionInput> in = {
      Tagged(1, AtHours(1), {"release"}), Tagged(2, AtHours(2), {"other"}),
      Tagged(3, AtHours(3), {"best", "release"}), Tagged(4, AtHours(4), {}),
      Tagged(5, AtHours(5), {})};
  EXPECT_THAT(Kept(policy, in), ElementsAre(1, 3, 5));
  const std::vector<RetentionDecision> ds = Decide(policy, in);
  EXPECT_THAT(DecisionFor(ds, 3).reasons, ElementsAre("tagged release, best"));
  EXPECT_THAT(
      DecisionFor(ds, 2).reasons,
      ElementsAre("not among the 1 most recent", "not tagged release or best"));
}

TEST(RetentionResticTest, ToRetentionInputCarriesTagNames) {
  CheckpointRecord record;
  record.step = 3;
  record.metadata.tags = {{"release", "v1"}, {"approved", ""}};
  EXPECT_THAT(ToRetentionInput(record, false).tags,
              ElementsAre("approved", "release"));
}

// ------------------------------------------- keep_best without the metric

RetentionPolicy BestByValLoss() {
  RetentionPolicy policy;
  policy.keep_best = RetentionPolicy::KeepBest{
      .k = 1, .metric = "val_loss", .mode = Mode::kMin};
  return policy;
}

TEST(RetentionNoMetricTest, KeepBestWithoutTheMetricLeavesTheOtherRules) {
  RetentionPolicy policy = BestByValLoss();
  policy.max_to_keep = 2;
  std::vector<RetentionInput> in;
  for (int i = 1; i <= 5; ++i) in.push_back(Ckpt(i, AtHours(i), {{"loss", 1}}));
  EXPECT_THAT(Kept(policy, in), ElementsAre(4, 5));
  const std::vector<RetentionDecision> ds = Decide(policy, in);
  EXPECT_THAT(DecisionFor(ds, 1).reasons,
              ElementsAre("not among the 2 most recent",
                          "keep_best decides nothing: no checkpoint has "
                          "metric val_loss"));
  EXPECT_THAT(RetentionWarnings(policy, in),
              ElementsAre("keep_best decides nothing: no checkpoint has "
                          "metric val_loss"));
}

TEST(RetentionNoMetricTest, KeepBestAloneWithoutTheMetricKeepsEverything) {
  std::vector<RetentionInput> in = {Ckpt(1, AtHours(1)),
                                    Ckpt(2, AtHours(2), {{"val_loss", kNaN}})};
  EXPECT_THAT(Kept(BestByValLoss(), in), ElementsAre(1, 2));
  EXPECT_THAT(DecisionFor(Decide(BestByValLoss(), in), 1).reasons,
              ElementsAre("keep_best decides nothing: no checkpoint has "
                          "metric val_loss"));
  EXPECT_THAT(RetentionWarnings(BestByValLoss(), in), testing::SizeIs(1));
}

TEST(RetentionNoMetricTest, NoWarningWithAValueOrWithoutCheckpoints) {
  EXPECT_THAT(RetentionWarnings(BestByValLoss(), {}), IsEmpty());
  EXPECT_THAT(RetentionWarnings(BestByValLoss(),
                                {Ckpt(1, AtHours(1)),
                                 Ckpt(2, AtHours(2), {{"val_loss", 0.5}})}),
              IsEmpty());
  RetentionPolicy no_best;
  no_best.max_to_keep = 1;
  EXPECT_THAT(RetentionWarnings(no_best, {Ckpt(1, AtHours(1))}), IsEmpty());
}

// ----------------------------------------------------- validation, text

TEST(RetentionResticValidationTest, RefusesHostileValuesNamingTheField) {
  struct Bad {
    std::string name;
    RetentionPolicy policy;
    std::string message;
  };
  std::vector<Bad> bad;
  auto add = [&](std::string name, auto set, std::string message) {
    RetentionPolicy policy;
    set(policy);
    bad.push_back({std::move(name), std::move(policy), std::move(message)});
  };
  add(
      "within zero", [](auto& p) { p.keep_within = absl::ZeroDuration(); },
      "keep_within must be positive");
  add(
      "within negative", [](auto& p) { p.keep_within = absl::Hours(-1); },
      "keep_within must be positive");
  add(
      "within absurd", [](auto& p) { p.keep_within = absl::Hours(24e6); },
      "keep_within must be positive and at most 100 years, got ");
  add(
      "within infinite",
      [](auto& p) { p.keep_within = absl::InfiniteDuration(); }, "keep_within");
  add(
      "hourly zero", [](auto& p) { p.keep_hourly = 0; }, "keep_hourly must be");
  add(
      "daily negative", [](auto& p) { p.keep_daily = -3; },
      "keep_daily must be 1 to 1000000 (or unset), got -3");
  add(
      "weekly huge", [](auto& p) { p.keep_weekly = 2'000'000'000; },
      "keep_weekly must be");
  add(
      "monthly negative", [](auto& p) { p.keep_monthly = -1; },
      "keep_monthly must be");
  add(
      "empty tag", [](auto& p) { p.keep_tags = {""}; },
      "keep_tags: a tag name");
  add(
      "long tag", [](auto& p) { p.keep_tags = {std::string(257, 'a')}; },
      "keep_tags: a tag name must be 1-256 bytes");
  add(
      "control tag", [](auto& p) { p.keep_tags = {"a\nb"}; },
      "keep_tags: a tag name must be UTF-8 without control characters");
  add(
      "tag with =", [](auto& p) { p.keep_tags = {"best=yes"}; },
      "keep_tags: a tag name must not hold '='");
  add(
      "repeated tag",
      [](auto& p) {
        p.keep_tags = {"a", "b", "a"};
      },
      "keep_tags: 'a' is given twice");
  add(
      "too many tags",
      [](auto& p) {
        for (int i = 0; i < 65; ++i) p.keep_tags.push_back(absl::StrCat(i));
      },
      "keep_tags: at most 64 tags, got 65");
  for (const Bad& b : bad) {
    SCOPED_TRACE(b.name);
    absl::Status status = ValidateRetentionPolicy(b.policy);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), HasSubstr(b.message));
  }
}

TEST(RetentionResticValidationTest, AcceptsTheLimits) {
  RetentionPolicy policy;
  policy.keep_within = kMaxKeepWithin;
  policy.keep_hourly = 1;
  policy.keep_daily = kMaxKeepCount;
  policy.keep_weekly = 1;
  policy.keep_monthly = 1;
  for (size_t i = 0; i < kMaxKeepTags; ++i) {
    policy.keep_tags.push_back(absl::StrCat("t", i));
  }
  policy.keep_tags.back() = std::string(kMaxTagNameBytes, 'x');
  policy.keep_tags.front() = "étiquette";
  EXPECT_TRUE(ValidateRetentionPolicy(policy).ok());
}

TEST(RetentionResticValidationTest, TextNamesTheNewRules) {
  RetentionPolicy policy;
  policy.keep_within = absl::Hours(48);
  policy.keep_hourly = 24;
  policy.keep_daily = 7;
  policy.keep_weekly = 4;
  policy.keep_monthly = 12;
  policy.keep_tags = {"release", "best"};
  EXPECT_EQ(RetentionPolicyText(policy),
            "keep_within=2d keep_hourly=24 keep_daily=7 keep_weekly=4 "
            "keep_monthly=12 keep_tags=release,best");
  // Tags that hold the separator are quoted: two lists, two texts (the
  // text is what tells policies apart, server/service/policy_owner.h).
  RetentionPolicy one;
  one.keep_tags = {"a,b"};
  RetentionPolicy two;
  two.keep_tags = {"a", "b"};
  EXPECT_EQ(RetentionPolicyText(one), "keep_tags=\"a,b\"");
  EXPECT_EQ(RetentionPolicyText(two), "keep_tags=a,b");
  one.keep_tags = {"say \"hi\"", "\xc2\x85"};
  EXPECT_EQ(RetentionPolicyText(one),
            "keep_tags=\"say \\\"hi\\\"\",\"\\xc2\\x85\"");
  // So is a metric that could pose as the rest of the text.
  RetentionPolicy best;
  best.keep_best =
      RetentionPolicy::KeepBest{.k = 1, .metric = "loss (max) keep_within=1d"};
  EXPECT_EQ(RetentionPolicyText(best),
            "keep_best=1 by \"loss (max) keep_within=1d\" (auto)");
}

// ---------------------------------------------------------- property tests

// restic's `forget`, written from its documentation rather than from
// EvaluateRetention: buckets are integer keys computed by arithmetic (the
// ISO week by the Thursday rule), and each bucket rule keeps the newest
// checkpoint of each of the N greatest keys, which is what restic's
// newest-first walk amounts to because buckets are contiguous in time.
int64_t FloorDiv(int64_t a, int64_t b) {
  return a / b - ((a % b != 0) && ((a < 0) != (b < 0)) ? 1 : 0);
}
int64_t HourKey(absl::Time t) { return FloorDiv(absl::ToUnixSeconds(t), 3600); }
int64_t DayKey(absl::Time t) { return FloorDiv(absl::ToUnixSeconds(t), 86400); }
int64_t IsoWeekKey(absl::Time t) {
  const int64_t day = DayKey(t);
  const int64_t monday0 = ((day % 7) + 7 + 3) % 7;  // 1970-01-01: Thursday
  const int64_t thursday = day - monday0 + 3;       // decides the ISO year
  const absl::CivilDay epoch(1970, 1, 1);
  const int64_t year = (epoch + thursday).year();
  const int64_t jan1 = absl::CivilDay(year, 1, 1) - epoch;
  return year * 100 + (thursday - jan1) / 7 + 1;
}
int64_t MonthKey(absl::Time t) {
  const absl::CivilSecond civil = absl::ToCivilSecond(t, absl::UTCTimeZone());
  return civil.year() * 12 + civil.month() - 1;
}

std::set<int64_t> ReferenceBuckets(const std::vector<RetentionInput>& saves,
                                   int64_t (*key)(absl::Time), int count) {
  // Per key, the newest (time, step).
  std::map<int64_t, std::pair<absl::Time, int64_t>> newest;
  for (const RetentionInput& in : saves) {
    auto [it, fresh] =
        newest.try_emplace(key(in.time), std::make_pair(in.time, in.step));
    if (!fresh) it->second = std::max(it->second, {in.time, in.step});
  }
  std::set<int64_t> kept;
  for (auto it = newest.rbegin(); it != newest.rend() && count > 0;
       ++it, --count) {
    kept.insert(it->second.second);
  }
  return kept;
}

std::set<int64_t> ReferenceKeepBest(const RetentionPolicy::KeepBest& best,
                                    const std::vector<RetentionInput>& saves) {
  std::vector<std::pair<double, int64_t>> valued;  // (value, step)
  std::set<int64_t> kept;
  for (const RetentionInput& in : saves) {
    auto it = in.metrics.find(best.metric);
    if (it == in.metrics.end()) {
      kept.insert(in.step);  // no metric: kept, as Orbax does
    } else if (!std::isnan(it->second)) {
      valued.push_back({it->second, in.step});
    }
  }
  if (valued.empty()) return {};  // decides nothing
  const Mode mode = *ResolveMetricMode(best.metric, best.mode);
  std::sort(valued.begin(), valued.end(), [&](auto a, auto b) {
    if (a.first != b.first) {
      return mode == Mode::kMin ? a.first < b.first : a.first > b.first;
    }
    return a.second < b.second;  // ties: the older step
  });
  for (size_t i = 0; i < valued.size() && i < static_cast<size_t>(best.k); ++i)
    kept.insert(valued[i].second);
  return kept;
}

// Every rule apart, then their union with pins and the newest step; with
// no rule that decides, everything.
std::set<int64_t> ReferencePolicy(const RetentionPolicy& policy,
                                  const std::vector<RetentionInput>& saves,
                                  absl::Time clock_start) {
  std::set<int64_t> kept;
  bool decided = false;
  auto add = [&](const std::set<int64_t>& some) {
    kept.insert(some.begin(), some.end());
    decided = true;
  };
  if (policy.max_to_keep.has_value()) {
    add(ReferenceManager(policy, saves, clock_start));
  }
  if (policy.keep_best.has_value()) {
    std::set<int64_t> best = ReferenceKeepBest(*policy.keep_best, saves);
    const bool any_value =
        std::any_of(saves.begin(), saves.end(), [&](const RetentionInput& in) {
          auto it = in.metrics.find(policy.keep_best->metric);
          return it != in.metrics.end() && !std::isnan(it->second);
        });
    if (any_value) add(best);
  }
  if (policy.keep_within.has_value()) {
    std::set<int64_t> within;
    absl::Time newest = absl::InfinitePast();
    for (const RetentionInput& in : saves) newest = std::max(newest, in.time);
    for (const RetentionInput& in : saves) {
      if (newest - in.time < *policy.keep_within) within.insert(in.step);
    }
    add(within);
  }
  if (policy.keep_hourly)
    add(ReferenceBuckets(saves, HourKey, *policy.keep_hourly));
  if (policy.keep_daily)
    add(ReferenceBuckets(saves, DayKey, *policy.keep_daily));
  if (policy.keep_weekly) {
    add(ReferenceBuckets(saves, IsoWeekKey, *policy.keep_weekly));
  }
  if (policy.keep_monthly) {
    add(ReferenceBuckets(saves, MonthKey, *policy.keep_monthly));
  }
  if (!policy.keep_tags.empty()) {
    std::set<int64_t> tagged;
    for (const RetentionInput& in : saves) {
      for (const std::string& tag : in.tags) {
        if (std::count(policy.keep_tags.begin(), policy.keep_tags.end(), tag)) {
          tagged.insert(in.step);
        }
      }
    }
    add(tagged);
  }
  int64_t newest_step = std::numeric_limits<int64_t>::min();
  for (const RetentionInput& in : saves) {
    if (!decided || in.pinned) kept.insert(in.step);
    newest_step = std::max(newest_step, in.step);
  }
  if (!saves.empty()) kept.insert(newest_step);
  return kept;
}

struct RandomJob {
  RetentionPolicy policy;
  std::vector<RetentionInput> saves;  // shuffled
  absl::Time clock_start;
};

// A random subset of every rule over saves spaced by minutes, hours or days
// (so that each bucket kind sees several buckets), with repeated and
// backwards times, tags, pins and metrics. When keep_best is set, either no
// save has a value or the first has one (see retention_test.cc's
// MakeRandomJob for why).
RandomJob MakeRandomJob(std::mt19937_64& rng) {
  auto uniform = [&](int lo, int hi) {
    return std::uniform_int_distribution<int>(lo, hi)(rng);
  };
  auto maybe = [&](int one_in) { return uniform(1, one_in) == 1; };
  RandomJob job;
  RetentionPolicy& policy = job.policy;
  if (maybe(4)) {
    policy.max_to_keep = uniform(1, 5);
    if (maybe(2)) policy.keep_every = absl::Minutes(uniform(1, 48 * 60));
  }
  if (maybe(3)) policy.keep_within = absl::Minutes(uniform(1, 60 * 24 * 40));
  if (maybe(3)) policy.keep_hourly = uniform(1, 6);
  if (maybe(3)) policy.keep_daily = uniform(1, 6);
  if (maybe(3)) policy.keep_weekly = uniform(1, 4);
  if (maybe(3)) policy.keep_monthly = uniform(1, 3);
  if (maybe(4)) policy.keep_tags = {"release"};
  if (maybe(8)) policy.keep_tags.push_back("best");
  const bool best = maybe(4);
  if (best) {
    policy.keep_best = RetentionPolicy::KeepBest{
        .k = uniform(1, 3), .metric = "val_loss", .mode = Mode::kAuto};
  }
  const absl::Duration gap_unit[] = {absl::Minutes(1), absl::Minutes(20),
                                     absl::Hours(6), absl::Hours(30)};
  const absl::Duration unit = gap_unit[uniform(0, 3)];
  const int n = uniform(0, 40);
  absl::Time t = Utc(2020 + uniform(0, 6), uniform(1, 12), uniform(1, 28),
                     uniform(0, 23), uniform(0, 59));
  const absl::Time start = t;
  const bool no_values = maybe(8);
  int64_t step = uniform(0, 3);
  for (int i = 0; i < n; ++i) {
    const int kind = uniform(0, 19);
    if (kind == 0) {
      t -= unit * uniform(1, 30);  // a reset clock
    } else if (kind > 1) {         // kind 1: the same time again
      t += unit * uniform(1, 60) + absl::Seconds(uniform(0, 59));
    }
    std::map<std::string, double> metrics;
    const int m = uniform(0, 9);
    if (!no_values && (i == 0 || m > 1)) {
      metrics["val_loss"] = uniform(0, 20) / 4.0;
    } else if (m == 0) {
      metrics["val_loss"] = kNaN;
    }
    std::vector<std::string> tags;
    if (maybe(6)) tags.push_back("release");
    if (maybe(6)) tags.push_back("best");
    if (maybe(6)) tags.push_back("other");
    RetentionInput in = Tagged(step, t, tags);
    in.metrics = std::move(metrics);
    in.pinned = maybe(15);
    job.saves.push_back(std::move(in));
    step += uniform(1, 100);
  }
  job.clock_start = job.saves.empty() || maybe(2)
                        ? start
                        : start - absl::Minutes(uniform(-120, 600));
  std::shuffle(job.saves.begin(), job.saves.end(), rng);
  return job;
}

int ConfiguredRules(const RetentionPolicy& policy) {
  int rules = 0;
  rules += policy.max_to_keep.has_value();
  rules += policy.keep_best.has_value();
  rules += policy.keep_within.has_value();
  for (const auto& [name, count] : CalendarCounts(policy)) {
    rules += count.has_value();
  }
  rules += !policy.keep_tags.empty();
  return rules;
}

TEST(RetentionResticPropertyTest, MatchesTheResticReference) {
  std::mt19937_64 rng(20261203);
  for (int iter = 0; iter < 5000; ++iter) {
    const RandomJob job = MakeRandomJob(rng);
    SCOPED_TRACE(absl::StrCat("iteration ", iter, ", policy ",
                              RetentionPolicyText(job.policy)));
    absl::StatusOr<std::vector<RetentionDecision>> ds =
        EvaluateRetention(job.policy, job.saves, job.clock_start);
    ASSERT_TRUE(ds.ok()) << ds.status();
    ASSERT_EQ(ds->size(), job.saves.size());
    EXPECT_EQ(KeptSet(*ds),
              ReferencePolicy(job.policy, job.saves, job.clock_start));
    // A deletion says why each configured rule did not keep it.
    for (const RetentionDecision& d : *ds) {
      if (!d.keep) {
        EXPECT_EQ(d.reasons.size(),
                  static_cast<size_t>(ConfiguredRules(job.policy)))
            << "step " << d.step;
      }
    }
  }
}

// The server applies the policy at every commit to what is left: that ends
// where one evaluation of the whole history does, and what one evaluation
// keeps, evaluated again, is all kept.
TEST(RetentionResticPropertyTest, ApplyingAtEverySaveEqualsApplyingOnce) {
  std::mt19937_64 rng(1712);
  for (int iter = 0; iter < 2000; ++iter) {
    const RandomJob job = MakeRandomJob(rng);
    SCOPED_TRACE(absl::StrCat("iteration ", iter, ", policy ",
                              RetentionPolicyText(job.policy)));
    std::vector<RetentionInput> alive;
    for (const RetentionInput& save : SortedByStep(job.saves)) {
      alive.push_back(save);
      absl::StatusOr<std::vector<RetentionDecision>> ds =
          EvaluateRetention(job.policy, alive, job.clock_start);
      ASSERT_TRUE(ds.ok()) << ds.status();
      const std::set<int64_t> kept = KeptSet(*ds);
      std::erase_if(alive, [&](const RetentionInput& in) {
        return !kept.count(in.step);
      });
    }
    std::set<int64_t> incremental;
    for (const RetentionInput& in : alive) incremental.insert(in.step);
    absl::StatusOr<std::vector<RetentionDecision>> once =
        EvaluateRetention(job.policy, job.saves, job.clock_start);
    ASSERT_TRUE(once.ok()) << once.status();
    EXPECT_EQ(incremental, KeptSet(*once));
    absl::StatusOr<std::vector<RetentionDecision>> again =
        EvaluateRetention(job.policy, alive, job.clock_start);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(KeptSet(*again), incremental);
  }
}

TEST(RetentionResticPropertyTest, ReferenceBucketKeysMatchKnownIsoWeeks) {
  // The reference's own arithmetic, checked on dates whose ISO week is
  // known, so that a shared mistake cannot hide.
  EXPECT_EQ(IsoWeekKey(Utc(2021, 1, 3, 12)), 202053);
  EXPECT_EQ(IsoWeekKey(Utc(2021, 1, 4, 0)), 202101);
  EXPECT_EQ(IsoWeekKey(Utc(2024, 12, 30, 0)), 202501);
  EXPECT_EQ(IsoWeekKey(Utc(2026, 12, 31, 23)), 202653);
  EXPECT_EQ(IsoWeekKey(Utc(2027, 1, 3, 23)), 202653);
  EXPECT_EQ(IsoWeekKey(Utc(2023, 1, 1, 0)), 202252);
  EXPECT_EQ(MonthKey(Utc(2026, 12, 3, 0)), 2026 * 12 + 11);
}

}  // namespace
}  // namespace ckpt
