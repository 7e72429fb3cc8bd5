#include "common/quote.h"

#include <string>
#include <vector>

#include "absl/strings/escaping.h"
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

TEST(IsPrintableUtf8Test, AcceptsPrintableTextInAnyLanguage) {
  EXPECT_TRUE(IsPrintableUtf8(""));
  EXPECT_TRUE(IsPrintableUtf8("grpc://a.example:7000 ~!@#$%^&*()"));
  EXPECT_TRUE(
      IsPrintableUtf8("pr\xc3\xa9"
                      "empt\xc3\xa9"));                      // U+00E9
  EXPECT_TRUE(IsPrintableUtf8("\xe6\x9c\x8d\xe5\x8a\xa1"));  // 2 CJK
  EXPECT_TRUE(IsPrintableUtf8("\xf0\x9f\x98\x80"));          // U+1F600
  EXPECT_TRUE(IsPrintableUtf8("\xc2\xa0"));  // U+00A0, past the C1 block
}

TEST(IsPrintableUtf8Test, RefusesControlCharactersAndMalformedUtf8) {
  for (const std::string& bad : std::vector<std::string>{
           "a\nb", std::string("a\0b", 3), "\x1b[2J", "tab\t", "del\x7f",
           "\xc2\x85",          // U+0085 (NEL), a C1 control
           "\xc2\x9b",          // U+009B (CSI), a C1 control
           "\x80",              // a lone continuation byte
           "\xc3",              // cut short
           "\xe6\x9c",          // cut short
           "\xc0\xaf",          // overlong '/'
           "\xe0\x80\xaf",      // overlong '/'
           "\xed\xa0\x80",      // a surrogate
           "\xf4\x90\x80\x80",  // past U+10FFFF
           "\xff", "a\xc3(b"}) {
    EXPECT_FALSE(IsPrintableUtf8(bad)) << absl::CHexEscape(bad);
  }
}

}  // namespace
}  // namespace ckpt
