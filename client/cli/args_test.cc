// The parsers the ckpt CLI's verbs share (client/cli/args.h): what each
// accepts, what it refuses, and that every refusal is INVALID_ARGUMENT
// naming the flag and the offending text.
#include "client/cli/args.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Optional;

// An ok StatusOr whose value matches `inner`.
MATCHER_P(IsOkAndHolds, inner, "") {
  if (!arg.ok()) {
    *result_listener << "status " << arg.status();
    return false;
  }
  return ::testing::ExplainMatchResult(inner, *arg, result_listener);
}

// `result` is INVALID_ARGUMENT and its message holds `text`.
template <typename T>
void ExpectInvalid(const absl::StatusOr<T>& result, const std::string& text) {
  ASSERT_FALSE(result.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(result.status())) << result.status();
  EXPECT_THAT(result.status().message(), HasSubstr(text));
}

TEST(ParseStepTest, AcceptsNonNegativeIntegers) {
  EXPECT_THAT(ParseStep("0"), IsOkAndHolds(0));
  EXPECT_THAT(ParseStep("42"), IsOkAndHolds(42));
  EXPECT_THAT(ParseStep("9223372036854775807"),
              IsOkAndHolds(INT64_C(9223372036854775807)));
}

TEST(ParseStepTest, RefusesNegativeNonIntegerAndOverflowingSteps) {
  for (const char* text :
       {"-1", "x", "", "1.5", "latest", "7x", "9223372036854775808"}) {
    ExpectInvalid(
        ParseStep(text),
        std::string("STEP must be a non-negative integer, got '") + text + "'");
  }
}

TEST(ParseStepOrLatestTest, LatestIsNoStepAndNumbersAreSteps) {
  absl::StatusOr<std::optional<int64_t>> latest = ParseStepOrLatest("latest");
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(*latest, std::nullopt);
  EXPECT_THAT(ParseStepOrLatest("12"), IsOkAndHolds(Optional(12)));
}

TEST(ParseStepOrLatestTest, RefusesOtherWordsAndNegativeSteps) {
  ExpectInvalid(ParseStepOrLatest("Latest"), "got 'Latest'");
  ExpectInvalid(ParseStepOrLatest("newest"), "got 'newest'");
  ExpectInvalid(ParseStepOrLatest("-3"), "got '-3'");
  ExpectInvalid(ParseStepOrLatest(""), "got ''");
}

TEST(ParseStepListTest, TakesCommaSeparatedStepsOnceEach) {
  EXPECT_THAT(ParseStepList("100"), IsOkAndHolds(ElementsAre(100)));
  EXPECT_THAT(ParseStepList("300,100, 200,100"),
              IsOkAndHolds(ElementsAre(300, 100, 200)));
  for (const char* text : {"", "100,", ",100", "1,-2", "1;2", "latest"}) {
    ExpectInvalid(ParseStepList(text), std::string("got '") + text + "'");
  }
}

TEST(ParseByteRateTest, TakesBytesWithBinarySuffixes) {
  EXPECT_THAT(ParseByteRate("--limit-rate", "1000"), IsOkAndHolds(1000u));
  EXPECT_THAT(ParseByteRate("--limit-rate", "500k"), IsOkAndHolds(512000u));
  EXPECT_THAT(ParseByteRate("--limit-rate", "2M"),
              IsOkAndHolds(uint64_t{2} << 20));
  EXPECT_THAT(ParseByteRate("--limit-rate", "1g"),
              IsOkAndHolds(uint64_t{1} << 30));
  for (const char* text :
       {"", "0", "-5", "M", "1.5M", "10MB", "17179869184G", "fast"}) {
    ExpectInvalid(ParseByteRate("--limit-rate", text),
                  std::string("--limit-rate takes bytes per second"));
    ExpectInvalid(ParseByteRate("--limit-rate", text),
                  std::string("got '") + text + "'");
  }
}

TEST(ParseDurationFlagTest, TakesFinitePositiveDurations) {
  EXPECT_THAT(ParseDurationFlag("--stall-timeout", "30s"),
              IsOkAndHolds(absl::Seconds(30)));
  EXPECT_THAT(ParseDurationFlag("--stall-timeout", "1h30m"),
              IsOkAndHolds(absl::Minutes(90)));
  EXPECT_THAT(ParseDurationFlag("--stall-timeout", "500ms"),
              IsOkAndHolds(absl::Milliseconds(500)));
  for (const char* text : {"", "0", "0s", "-5s", "5", "inf", "soon"}) {
    ExpectInvalid(ParseDurationFlag("--stall-timeout", text),
                  std::string("--stall-timeout takes a positive duration"));
  }
}

TEST(ParseByteSizeTest, ReadsBinarySuffixes) {
  EXPECT_EQ(*ParseByteSize("--max-file-size", "1"), 1u);
  EXPECT_EQ(*ParseByteSize("--max-file-size", "600K"), 600u << 10);
  EXPECT_EQ(*ParseByteSize("--max-file-size", "500MiB"), 500u << 20);
  EXPECT_EQ(*ParseByteSize("--max-file-size", "5G"), uint64_t{5} << 30);
  EXPECT_EQ(*ParseByteSize("--max-file-size", "2TiB"), uint64_t{2} << 40);
  EXPECT_EQ(*ParseByteSize("--max-file-size", "5g"), uint64_t{5} << 30);
  EXPECT_EQ(*ParseByteSize("--max-file-size", "3kib"), 3u << 10);
}

TEST(ParseByteSizeTest, RefusesZeroSignsOtherUnitsAndOverflow) {
  for (const char* text : {"", "0", "0G", "-1", "+1", "1.5G", "5GB", "5gb", "G",
                           "16777216T", "99999999999999999999"}) {
    absl::StatusOr<uint64_t> parsed = ParseByteSize("--max-file-size", text);
    EXPECT_TRUE(absl::IsInvalidArgument(parsed.status())) << text;
    EXPECT_THAT(
        parsed.status().message(),
        HasSubstr(absl::StrCat("--max-file-size '", text, "' is not a size")));
  }
}

TEST(SplitAssignmentTest, SplitsAtTheFirstEquals) {
  using Pair = std::pair<std::string, std::string>;
  EXPECT_THAT(SplitAssignment("--tag", "k=v"), IsOkAndHolds(Pair("k", "v")));
  EXPECT_THAT(SplitAssignment("--tag", "k="), IsOkAndHolds(Pair("k", "")));
  EXPECT_THAT(SplitAssignment("--tag", "k=a=b"),
              IsOkAndHolds(Pair("k", "a=b")));
}

TEST(SplitAssignmentTest, RefusesAMissingNameOrEqualsNamingTheFlag) {
  ExpectInvalid(SplitAssignment("--tag", "=v"),
                "--tag expects NAME=VALUE, got '=v'");
  ExpectInvalid(SplitAssignment("--metric", "loss"),
                "--metric expects NAME=VALUE, got 'loss'");
  ExpectInvalid(SplitAssignment("--metric", ""), "got ''");
}

TEST(ParseMetadataTest, ParsesMetricsTagsAndTime) {
  absl::StatusOr<CheckpointMetadata> metadata =
      ParseMetadata({"loss=0.25", "acc=1e-3", "loss=0.5"}, {"k=v", "empty="},
                    "2024-05-01T12:00:00+02:00");
  ASSERT_TRUE(metadata.ok()) << metadata.status();
  // A later metric of the same name wins.
  EXPECT_EQ(metadata->metrics,
            (std::map<std::string, double>{{"acc", 1e-3}, {"loss", 0.5}}));
  EXPECT_EQ(metadata->tags,
            (std::map<std::string, std::string>{{"empty", ""}, {"k", "v"}}));
  ASSERT_TRUE(metadata->writer_time.has_value());
  EXPECT_EQ(*metadata->writer_time,
            absl::FromCivil(absl::CivilSecond(2024, 5, 1, 10, 0, 0),
                            absl::UTCTimeZone()));
}

TEST(ParseMetadataTest, NoTimeLeavesTheWriterTimeUnset) {
  absl::StatusOr<CheckpointMetadata> metadata = ParseMetadata({}, {}, "");
  ASSERT_TRUE(metadata.ok()) << metadata.status();
  EXPECT_THAT(metadata->metrics, IsEmpty());
  EXPECT_THAT(metadata->tags, IsEmpty());
  EXPECT_EQ(metadata->writer_time, std::nullopt);
}

TEST(ParseMetadataTest, RefusesNonNumbersMalformedPairsAndBadTimes) {
  ExpectInvalid(ParseMetadata({"loss=abc"}, {}, ""),
                "--metric loss: 'abc' is not a number");
  ExpectInvalid(ParseMetadata({"loss="}, {}, ""),
                "--metric loss: '' is not a number");
  ExpectInvalid(ParseMetadata({"loss"}, {}, ""), "--metric expects NAME=VALUE");
  ExpectInvalid(ParseMetadata({}, {"=v"}, ""), "--tag expects NAME=VALUE");
  ExpectInvalid(ParseMetadata({}, {}, "2024-05-01"),
                "--time '2024-05-01' is not RFC 3339");
}

TEST(AnyPolicyFlagTest, TrueWhenAnyOneFlagIsGiven) {
  EXPECT_FALSE(AnyPolicyFlag({}));
  for (std::string PolicyFlags::*field :
       {&PolicyFlags::max_to_keep, &PolicyFlags::keep_every,
        &PolicyFlags::keep_within, &PolicyFlags::keep_hourly,
        &PolicyFlags::keep_daily, &PolicyFlags::keep_weekly,
        &PolicyFlags::keep_monthly, &PolicyFlags::keep_best,
        &PolicyFlags::metric, &PolicyFlags::mode}) {
    PolicyFlags flags;
    flags.*field = "x";
    EXPECT_TRUE(AnyPolicyFlag(flags));
  }
  PolicyFlags tags;
  tags.keep_tags = {"release"};
  EXPECT_TRUE(AnyPolicyFlag(tags));
}

TEST(ParseCountTest, AcceptsPositiveIntsOnly) {
  EXPECT_THAT(ParseCount("--keep-best", "1"), IsOkAndHolds(1));
  EXPECT_THAT(ParseCount("--keep-best", "2147483647"),
              IsOkAndHolds(2147483647));
  for (const char* text : {"0", "-2", "", "3.0", "two", "2147483648"}) {
    ExpectInvalid(ParseCount("--keep-best", text),
                  std::string("--keep-best must be a positive integer, got '") +
                      text + "'");
  }
}

TEST(ParsePolicyFlagsTest, NoFlagsIsAPolicyWithoutRules) {
  absl::StatusOr<RetentionPolicy> policy = ParsePolicyFlags({});
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_EQ(policy->max_to_keep, std::nullopt);
  EXPECT_EQ(policy->keep_every, std::nullopt);
  EXPECT_EQ(policy->keep_best, std::nullopt);
}

TEST(ParsePolicyFlagsTest, KeepLastErrorsNameTheFlag) {
  PolicyFlags flags;
  flags.max_to_keep = "3";
  EXPECT_THAT(ParsePolicyFlags(flags)->max_to_keep, Optional(3));
  flags.max_to_keep = "0";
  ExpectInvalid(ParsePolicyFlags(flags),
                "--keep-last must be a positive integer, got '0'");
}

// --keep-every and its alias --keep-every-n-hours are one flag: a duration,
// or a plain number of hours as --keep-every-n-hours always took.
TEST(ParsePolicyFlagsTest, KeepEveryTakesDurationsOrHours) {
  PolicyFlags flags;
  for (const auto& [text, expected] :
       std::vector<std::pair<std::string, absl::Duration>>{
           {"6h", absl::Hours(6)},
           {"30m", absl::Minutes(30)},
           {"1h30m", absl::Minutes(90)},
           {"90s", absl::Seconds(90)},
           {"1d", absl::Hours(24)},
           {"2w", absl::Hours(24 * 14)},
           {"6", absl::Hours(6)},
           {"1.5", absl::Minutes(90)}}) {
    flags.keep_every = text;
    EXPECT_THAT(ParsePolicyFlags(flags)->keep_every, Optional(expected))
        << text;
  }
  for (const char* text : {"0s", "0", "-5m", "-1", "nan", "bogus", "6 h"}) {
    flags.keep_every = text;
    ExpectInvalid(ParsePolicyFlags(flags),
                  std::string("--keep-every takes a positive duration such as "
                              "30m, 6h, 1d or 2w (or a number of hours); got "
                              "'") +
                      text + "'");
  }
}

TEST(ParsePolicyFlagsTest, ResticRulesParseAndNameTheirFlags) {
  PolicyFlags flags;
  flags.keep_within = "2w";
  flags.keep_hourly = "24";
  flags.keep_daily = "7";
  flags.keep_weekly = "4";
  flags.keep_monthly = "12";
  flags.keep_tags = {"release", "best"};
  absl::StatusOr<RetentionPolicy> policy = ParsePolicyFlags(flags);
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_THAT(policy->keep_within, Optional(absl::Hours(24 * 14)));
  EXPECT_THAT(policy->keep_hourly, Optional(24));
  EXPECT_THAT(policy->keep_daily, Optional(7));
  EXPECT_THAT(policy->keep_weekly, Optional(4));
  EXPECT_THAT(policy->keep_monthly, Optional(12));
  EXPECT_THAT(policy->keep_tags, ElementsAre("release", "best"));
  flags.keep_within = "6";  // no unit: only --keep-every reads hours
  ExpectInvalid(ParsePolicyFlags(flags),
                "--keep-within takes a positive duration such as 30m, 6h, 1d "
                "or 2w; got '6'");
  flags.keep_within = "1d";
  for (std::string PolicyFlags::*field :
       {&PolicyFlags::keep_hourly, &PolicyFlags::keep_daily,
        &PolicyFlags::keep_weekly, &PolicyFlags::keep_monthly}) {
    PolicyFlags bad = flags;
    bad.*field = "-1";
    absl::StatusOr<RetentionPolicy> refused = ParsePolicyFlags(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(refused.status()));
    EXPECT_THAT(refused.status().message(),
                HasSubstr("must be a positive integer, got '-1'"));
  }
  flags.keep_monthly = "0";
  ExpectInvalid(ParsePolicyFlags(flags),
                "--keep-monthly must be a positive integer, got '0'");
}

TEST(ParsePolicyFlagsTest, KeepBestNeedsAMetricAndAKnownMode) {
  using Mode = RetentionPolicy::KeepBest::Mode;
  PolicyFlags flags;
  flags.keep_best = "2";
  flags.metric = "val_loss";
  for (const auto& [text, mode] :
       std::vector<std::pair<std::string, Mode>>{{"", Mode::kAuto},
                                                 {"auto", Mode::kAuto},
                                                 {"min", Mode::kMin},
                                                 {"max", Mode::kMax}}) {
    flags.mode = text;
    absl::StatusOr<RetentionPolicy> policy = ParsePolicyFlags(flags);
    ASSERT_TRUE(policy.ok()) << policy.status();
    ASSERT_TRUE(policy->keep_best.has_value());
    EXPECT_EQ(policy->keep_best->k, 2);
    EXPECT_EQ(policy->keep_best->metric, "val_loss");
    EXPECT_EQ(policy->keep_best->mode, mode) << text;
  }
  flags.mode = "Min";
  ExpectInvalid(ParsePolicyFlags(flags),
                "--mode must be min, max or auto, got 'Min'");
  flags.mode = "";
  flags.keep_best = "0";
  ExpectInvalid(ParsePolicyFlags(flags),
                "--keep-best must be a positive integer, got '0'");
  flags.keep_best = "2";
  flags.metric = "";
  ExpectInvalid(ParsePolicyFlags(flags), "--keep-best needs --metric NAME");
}

TEST(ParseMetricModeTest, AcceptsMinMaxAutoAndNothing) {
  EXPECT_THAT(ParseMetricMode("--mode", ""), IsOkAndHolds(MetricMode::kAuto));
  EXPECT_THAT(ParseMetricMode("--mode", "auto"),
              IsOkAndHolds(MetricMode::kAuto));
  EXPECT_THAT(ParseMetricMode("--mode", "min"), IsOkAndHolds(MetricMode::kMin));
  EXPECT_THAT(ParseMetricMode("--mode", "max"), IsOkAndHolds(MetricMode::kMax));
  ExpectInvalid(ParseMetricMode("--mode", "MAX"),
                "--mode must be min, max or auto, got 'MAX'");
  ExpectInvalid(ParseMetricMode("--sort-mode", "lowest"), "--sort-mode must");
}

TEST(ParsePolicyFlagsTest, MetricOrModeWithoutKeepBestIsRefused) {
  PolicyFlags metric_only;
  metric_only.metric = "loss";
  ExpectInvalid(ParsePolicyFlags(metric_only),
                "--metric and --mode go with --keep-best K");
  PolicyFlags mode_only;
  mode_only.mode = "min";
  ExpectInvalid(ParsePolicyFlags(mode_only),
                "--metric and --mode go with --keep-best K");
}

TEST(ParsePolicyFlagsTest, CombinesRulesAndChecksInFlagOrder) {
  PolicyFlags flags;
  flags.max_to_keep = "5";
  flags.keep_every = "1h";
  flags.keep_best = "1";
  flags.metric = "acc";
  flags.mode = "max";
  absl::StatusOr<RetentionPolicy> policy = ParsePolicyFlags(flags);
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_THAT(policy->max_to_keep, Optional(5));
  EXPECT_THAT(policy->keep_every, Optional(absl::Hours(1)));
  ASSERT_TRUE(policy->keep_best.has_value());
  EXPECT_EQ(policy->keep_best->metric, "acc");
  // With several bad flags the count is reported first.
  flags.max_to_keep = "none";
  flags.keep_every = "bogus";
  ExpectInvalid(ParsePolicyFlags(flags), "--keep-last");
}

TEST(ParseRowListTest, EmptyListIsNoRows) {
  EXPECT_THAT(ParseRowList("t", "", 10), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(ParseRowList("t", "", 0), IsOkAndHolds(IsEmpty()));
}

TEST(ParseRowListTest, IndicesAndInclusiveRangesComeBackSortedWithoutRepeats) {
  EXPECT_THAT(ParseRowList("t", "5", 10), IsOkAndHolds(ElementsAre(5)));
  EXPECT_THAT(ParseRowList("t", "7-9", 10), IsOkAndHolds(ElementsAre(7, 8, 9)));
  EXPECT_THAT(ParseRowList("t", "4-4", 10), IsOkAndHolds(ElementsAre(4)));
  EXPECT_THAT(ParseRowList("t", "9,3,1-2,2,3,0-1", 10),
              IsOkAndHolds(ElementsAre(0, 1, 2, 3, 9)));
  EXPECT_THAT(ParseRowList("t", "007", 10), IsOkAndHolds(ElementsAre(7)));
}

TEST(ParseRowListTest, TheLastRowIsAllowedAndOnePastItIsNot) {
  EXPECT_THAT(ParseRowList("t", "9", 10), IsOkAndHolds(ElementsAre(9)));
  EXPECT_THAT(ParseRowList("t", "8-9", 10), IsOkAndHolds(ElementsAre(8, 9)));
  ExpectInvalid(ParseRowList("emb", "10", 10),
                "--dirty-rows emb: row 10 is past its last row (it has 10 "
                "rows)");
  // A range is refused by its end, without expanding it.
  ExpectInvalid(ParseRowList("emb", "5-18446744073709551615", 10),
                "row 18446744073709551615 is past its last row");
  ExpectInvalid(ParseRowList("emb", "0", 0), "(it has 0 rows)");
}

// 12,000 ranges of 100,000 rows each fit in one argument; expanded one by
// one they were 1.2e9 rows (9.6 GB) before being sorted. Merged, they are
// the 100,000 rows once.
TEST(ParseRowListTest, RepeatedWideRangesAreMergedNotExpandedEach) {
  std::string list = "0-99999";
  for (int i = 1; i < 12000; ++i) list += i % 2 ? ",1-99998" : ",0-99999";
  absl::StatusOr<std::vector<uint64_t>> rows =
      ParseRowList("emb", list, 100000);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 100000u);
  for (size_t i = 0; i < rows->size(); ++i) ASSERT_EQ((*rows)[i], i);
}

TEST(ParseRowListTest, RefusesMalformedItemsNamingTheItemAndTheList) {
  for (const char* item : {"x", "-1", "5-", "-", "9-7", "+1", " 1", "1 ",
                           "1-2-3", "0x1", "18446744073709551616", "1.0"}) {
    const std::string list = std::string("2,") + item;
    ExpectInvalid(ParseRowList("emb", list, 100),
                  "--dirty-rows emb: '" + std::string(item) +
                      "' is not a row index or an ascending range A-B in '" +
                      list + "'");
  }
  // A long list (up to 128 KiB fit in one argument) is quoted cut short.
  std::string long_list = "x";
  for (int row = 0; row < 20000; ++row) absl::StrAppend(&long_list, ",", row);
  absl::StatusOr<std::vector<uint64_t>> refused =
      ParseRowList("emb", long_list, 100000);
  ExpectInvalid(refused,
                "--dirty-rows emb: 'x' is not a row index or an ascending "
                "range A-B in 'x,0,1,2,");
  EXPECT_THAT(refused.status().message(),
              HasSubstr(absl::StrCat("...' (", long_list.size(), " bytes)")));
  EXPECT_LT(refused.status().message().size(), 200u);
  // An empty item between commas, or at either end.
  for (const char* list : {"1,,2", ",1", "1,"}) {
    ExpectInvalid(ParseRowList("emb", list, 100),
                  "'' is not a row index or an ascending range");
  }
}

class ParseDirtyRowsTest : public ::testing::Test {
 protected:
  // Two row matrices: "a.bin" of 4 rows, "b.bin" of 100.
  ParseDirtyRowsTest() {
    for (const auto& [name, rows] :
         std::vector<std::pair<std::string, int64_t>>{{"a.bin", 4},
                                                      {"b.bin", 100}}) {
      client::TensorData tensor;
      tensor.name = name;
      tensor.global_shape = {rows, 8};
      tensor.box = Box{{0, 0}, {rows, 8}};
      tensors_.push_back(tensor);
    }
  }
  std::vector<client::TensorData> tensors_;
};

TEST_F(ParseDirtyRowsTest, GivesRowsPerTensorAndNoneForTheOthers) {
  absl::StatusOr<GivenRows> given = ParseDirtyRows({"b.bin=50-52,7"}, tensors_);
  ASSERT_TRUE(given.ok()) << given.status();
  ASSERT_EQ(given->size(), 2u);
  EXPECT_EQ((*given)[0], std::nullopt);
  EXPECT_THAT((*given)[1], Optional(ElementsAre(7, 50, 51, 52)));

  given = ParseDirtyRows({}, tensors_);
  ASSERT_TRUE(given.ok()) << given.status();
  EXPECT_EQ(*given, GivenRows(2));
}

TEST_F(ParseDirtyRowsTest, AnEmptyListIsGivenAndDiffersFromNone) {
  absl::StatusOr<GivenRows> given =
      ParseDirtyRows({"a.bin=", "b.bin=3"}, tensors_);
  ASSERT_TRUE(given.ok()) << given.status();
  EXPECT_THAT((*given)[0], Optional(IsEmpty()));
  EXPECT_THAT((*given)[1], Optional(ElementsAre(3)));
}

TEST_F(ParseDirtyRowsTest, EachTensorsRowsAreBoundByItsOwnRowCount) {
  EXPECT_TRUE(ParseDirtyRows({"b.bin=99"}, tensors_).ok());
  ExpectInvalid(ParseDirtyRows({"a.bin=4"}, tensors_),
                "--dirty-rows a.bin: row 4 is past its last row (it has 4 "
                "rows)");
}

TEST_F(ParseDirtyRowsTest, RefusesUnknownNamesRepeatsAndMalformedEntries) {
  ExpectInvalid(ParseDirtyRows({"c.bin=1"}, tensors_),
                "--dirty-rows c.bin: no FILE is put as tensor 'c.bin'");
  ExpectInvalid(ParseDirtyRows({"a.bin=1", "a.bin=2"}, tensors_),
                "--dirty-rows names 'a.bin' twice; list its rows once");
  // Twice even when both lists are empty or equal.
  ExpectInvalid(ParseDirtyRows({"a.bin=", "a.bin="}, tensors_), "twice");
  ExpectInvalid(ParseDirtyRows({"a.bin"}, tensors_),
                "--dirty-rows expects NAME=VALUE, got 'a.bin'");
  ExpectInvalid(ParseDirtyRows({"=1"}, tensors_),
                "--dirty-rows expects NAME=VALUE, got '=1'");
  ExpectInvalid(ParseDirtyRows({"b.bin=1,,2"}, tensors_),
                "--dirty-rows b.bin: '' is not a row index");
}

}  // namespace
TEST(ArgsTest, SubsetSpecTakesResticsThreeForms) {
  auto part = ParseSubsetSpec("2/5");
  ASSERT_TRUE(part.ok()) << part.status();
  EXPECT_EQ(part->part, (ReadDataSubset{2, 5}));
  auto percent = ParseSubsetSpec("12.5%");
  ASSERT_TRUE(percent.ok()) << percent.status();
  EXPECT_EQ(percent->percent, 12.5);
  EXPECT_FALSE(percent->part.has_value());
  auto all = ParseSubsetSpec("100%");
  ASSERT_TRUE(all.ok()) << all.status();
  auto size = ParseSubsetSpec("500M");
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_EQ(size->bytes, uint64_t{500} << 20);
}

TEST(ArgsTest, SubsetSpecRefusesNonsense) {
  for (const char* bad :
       {"",     "0%",   "0.0%", "100.1%", "150%",   "-5%", "%",
        "abc%", "nan%", "inf%", "1e2%",   "1.2.3%", " 5%", "0",
        "0M",   "-1G",  "5X",   "1.5G",   "0/5",    "6/5", "1/0",
        "a/b",  "1/",   "/3",   "10%%"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(ParseSubsetSpec(bad).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST(ArgsTest, ResolveSubsetReadsAtLeastThePercentageOrAboutTheSize) {
  auto pick_last = [](uint32_t parts) { return parts; };
  auto pick_zero = [](uint32_t) { return uint32_t{0}; };  // clamped to 1
  EXPECT_EQ(ResolveSubset(*ParseSubsetSpec("3/7"), 0, pick_last),
            (ReadDataSubset{3, 7}));
  EXPECT_EQ(ResolveSubset(*ParseSubsetSpec("10%"), 0, pick_last),
            (ReadDataSubset{10, 10}));
  EXPECT_EQ(ResolveSubset(*ParseSubsetSpec("30%"), 0, pick_zero),
            (ReadDataSubset{1, 3}));  // 1/3 >= 30%
  EXPECT_EQ(ResolveSubset(*ParseSubsetSpec("60%"), 0, pick_last),
            (ReadDataSubset{1, 1}));  // 1/2 would read less than 60%
  EXPECT_EQ(ResolveSubset(*ParseSubsetSpec("100%"), 0, pick_last),
            (ReadDataSubset{1, 1}));
  EXPECT_EQ(ResolveSubset(*ParseSubsetSpec("0.001%"), 0, pick_last).t, 100000u);
  // 10 GiB stored, 1G asked: a tenth.
  EXPECT_EQ(
      ResolveSubset(*ParseSubsetSpec("1G"), uint64_t{10} << 30, pick_last),
      (ReadDataSubset{10, 10}));
  // More asked than stored: everything.
  EXPECT_EQ(ResolveSubset(*ParseSubsetSpec("2G"), uint64_t{1} << 30, pick_last),
            (ReadDataSubset{1, 1}));
  EXPECT_EQ(ResolveSubset(*ParseSubsetSpec("1K"), 0, pick_last),
            (ReadDataSubset{1, 1}));
}

}  // namespace ckpt::cli
