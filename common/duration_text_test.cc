#include "common/duration_text.h"

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt {
namespace {

using ::testing::HasSubstr;

TEST(DurationTextTest, ReadsEveryUnitAndCompounds) {
  struct Case {
    std::string text;
    absl::Duration want;
  };
  const std::vector<Case> cases = {
      {"30m", absl::Minutes(30)},
      {"6h", absl::Hours(6)},
      {"1d", absl::Hours(24)},
      {"2w", absl::Hours(24 * 14)},
      {"90s", absl::Seconds(90)},
      {"250ms", absl::Milliseconds(250)},
      {"1h30m", absl::Minutes(90)},
      {"1.5h", absl::Minutes(90)},
      {"1w2d3h", absl::Hours(24 * 9 + 3)},
      {"0.5d", absl::Hours(12)},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    absl::StatusOr<absl::Duration> got = ParseDurationText(c.text);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, c.want);
  }
}

TEST(DurationTextTest, PlainNumberNeedsADefaultUnit) {
  EXPECT_EQ(*ParseDurationText("6", absl::Hours(1)), absl::Hours(6));
  EXPECT_EQ(*ParseDurationText("0.25", absl::Hours(1)), absl::Minutes(15));
  absl::StatusOr<absl::Duration> bare = ParseDurationText("6");
  EXPECT_EQ(bare.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bare.status().message(), HasSubstr("needs a unit"));
}

TEST(DurationTextTest, RefusesGarbageZeroNegativeAndAbsurd) {
  for (const char* text :
       {"", "h", "-1h", "+1h", "1 h", "1x", "1h-", "0s", "0", "1..5h", ".h",
        "1e3h", "99999999w", "nan", "inf", "1h30", "\x1b[31m1h"}) {
    SCOPED_TRACE(text);
    absl::StatusOr<absl::Duration> got =
        ParseDurationText(text, absl::Hours(1));
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(got.status().message(), HasSubstr("is not a duration"));
  }
}

TEST(DurationTextTest, FlagErrorNamesTheFlag) {
  absl::StatusOr<absl::Duration> got =
      ParseDurationFlag("--keep-within", "soon");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(got.status().message(),
              HasSubstr("--keep-within takes a positive duration such as 30m, "
                        "6h, 1d or 2w; got 'soon'"));
  EXPECT_THAT(
      ParseDurationFlag("--keep-every", "x", absl::Hours(1)).status().message(),
      HasSubstr("(or a number of hours)"));
}

TEST(DurationTextTest, FormatIsShortestAndReadsBack) {
  EXPECT_EQ(FormatDurationText(absl::Hours(24 * 14)), "2w");
  EXPECT_EQ(FormatDurationText(absl::Hours(36)), "1d12h");
  EXPECT_EQ(FormatDurationText(absl::Minutes(90)), "1h30m");
  EXPECT_EQ(FormatDurationText(absl::Seconds(90)), "1m30s");
  EXPECT_EQ(FormatDurationText(absl::Milliseconds(250)), "250ms");
  for (absl::Duration d :
       {absl::Minutes(30), absl::Hours(6), absl::Hours(24 * 9 + 3),
        absl::Milliseconds(86400001), absl::Hours(24 * 366 * 100)}) {
    SCOPED_TRACE(absl::FormatDuration(d));
    EXPECT_EQ(*ParseDurationText(FormatDurationText(d)), d);
  }
}

}  // namespace
}  // namespace ckpt
