#include "client/cli/progress.h"

#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(RenderProgressLineTest, FillsTheBarInProportionAndFitsTheWidth) {
  const std::string line =
      RenderProgressLine("reading", 1 << 20, 4 << 20, ProgressUnit::kBytes, 60);
  EXPECT_EQ(line.size(), 60u);
  EXPECT_THAT(line, StartsWith("reading  ["));
  EXPECT_THAT(line, HasSubstr(" 25%  1.0 MiB / 4.0 MiB"));
  const size_t open = line.find('['), close = line.find(']');
  const std::string bar = line.substr(open + 1, close - open - 1);
  EXPECT_EQ(std::count(bar.begin(), bar.end(), '#'),
            static_cast<long>(bar.size() / 4));
}

TEST(RenderProgressLineTest, CountsWithoutUnitsAndEmptyWorkIsDone) {
  EXPECT_THAT(RenderProgressLine("checking", 3, 12, ProgressUnit::kCount, 50),
              HasSubstr(" 25%  3 / 12"));
  EXPECT_THAT(RenderProgressLine("checking", 0, 0, ProgressUnit::kCount, 50),
              HasSubstr("100%  0 / 0"));
}

TEST(RenderProgressLineTest, DropsTheBarWhenNarrow) {
  EXPECT_EQ(RenderProgressLine("reading", 5, 10, ProgressUnit::kCount, 20),
            "reading   50%  5 / 10");
}

TEST(ProgressBarTest, RedrawsInPlaceAndClearsItsLine) {
  std::ostringstream out;
  {
    ProgressBar bar(&out, 40);
    bar.Update("checking", 1, 2, ProgressUnit::kCount);
    bar.Update("checking", 2, 2, ProgressUnit::kCount);  // the end: drawn
    bar.Update("reading", 0, 10, ProgressUnit::kBytes);  // new label: drawn
  }
  const std::string text = out.str();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\r'), 4);  // 3 + clear
  EXPECT_THAT(text, HasSubstr("2 / 2"));
  EXPECT_THAT(text, HasSubstr("reading"));
  EXPECT_THAT(text, testing::EndsWith("\r\x1b[K"));
}

TEST(ProgressBarTest, ThrottlesRedrawsOfTheSameLabel) {
  std::ostringstream out;
  ProgressBar bar(&out, 40);
  for (uint64_t i = 0; i < 1000; ++i) {
    bar.Update("reading", i, 1000, ProgressUnit::kCount);
  }
  const std::string text = out.str();
  EXPECT_LT(std::count(text.begin(), text.end(), '\r'), 20);
}

TEST(ProgressBarTest, DrawsNothingWithoutAStream) {
  ProgressBar bar(nullptr, 80);
  bar.Update("reading", 1, 2, ProgressUnit::kCount);
  bar.Clear();  // no crash, nothing to see
}

}  // namespace
}  // namespace ckpt::cli
