#include "common/quote.h"

#include <string>

#include "gtest/gtest.h"

namespace ckpt {
namespace {

TEST(QuoteTruncatedTest, QuotesShortTextWhole) {
  EXPECT_EQ(QuoteTruncated("research/resnet"), "'research/resnet'");
  EXPECT_EQ(QuoteTruncated(""), "''");
  EXPECT_EQ(QuoteTruncated(std::string(64, 'a')),
            "'" + std::string(64, 'a') + "'");
}

TEST(QuoteTruncatedTest, CutsLongTextToItsPrefixAndLength) {
  EXPECT_EQ(QuoteTruncated(std::string(10000, 'x')),
            "'" + std::string(64, 'x') + "...' (10000 bytes)");
}

TEST(QuoteTruncatedTest, EscapesControlBytesAndQuotes) {
  EXPECT_EQ(QuoteTruncated("a\nb'c\x01"), "'a\\nb\\'c\\x01'");
}

TEST(BoundedTextTest, EscapesControlBytesOnlyAndBounds) {
  EXPECT_EQ(BoundedText("rank 3 died\n\x1b[2J", 100), "rank 3 died\\n\\x1b[2J");
  const std::string utf8 =
      "pr\xc3\xa9"
      "empt\xc3\xa9 'x' \\";
  EXPECT_EQ(BoundedText(utf8, 100), utf8);
  EXPECT_EQ(BoundedText(std::string(50, 'r'), 10), std::string(7, 'r') + "...");
}

}  // namespace
}  // namespace ckpt
