#include "common/logging.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/logfmt.h"

namespace ckpt {
namespace {

using ::ckpt::testing::LogLine;
using ::ckpt::testing::ParseLogfmt;

TEST(FormatLogValueTest, LeavesPlainTokensBare) {
  EXPECT_EQ(FormatLogValue("NOT_FOUND"), "NOT_FOUND");
  EXPECT_EQ(FormatLogValue("research/llama-7b"), "research/llama-7b");
  EXPECT_EQ(FormatLogValue("127.0.0.1:7070"), "127.0.0.1:7070");
}

TEST(FormatLogValueTest, QuotesAndEscapesWhatCouldForgeAField) {
  EXPECT_EQ(FormatLogValue(""), "\"\"");
  EXPECT_EQ(FormatLogValue("a b"), "\"a b\"");
  EXPECT_EQ(FormatLogValue("code=OK"), "\"code=OK\"");
  EXPECT_EQ(FormatLogValue("say \"hi\""), "\"say \\\"hi\\\"\"");
  EXPECT_EQ(FormatLogValue("back\\slash"), "\"back\\\\slash\"");
  EXPECT_EQ(FormatLogValue("a\nb\r\tc"), "\"a\\nb\\r\\tc\"");
  EXPECT_EQ(FormatLogValue("\x1b[31m"), "\"\\x1b[31m\"");
  EXPECT_EQ(FormatLogValue(std::string("nul\0x", 5)), "\"nul\\x00x\"");
}

TEST(FormatLogValueTest, KeepsPrintableUtf8AndEscapesInvalidBytes) {
  EXPECT_EQ(FormatLogValue("modèle"), "\"modèle\"");
  // A lone continuation byte and a C1 control (U+009B, CSI) are shown as
  // bytes, so no terminal interprets them.
  EXPECT_EQ(FormatLogValue("a\x80"), "\"a\\x80\"");
  EXPECT_EQ(FormatLogValue("\xc2\x9b"), "\"\\xc2\\x9b\"");
}

TEST(FormatLogValueTest, CutsLongValues) {
  const std::string formatted = FormatLogValue(std::string(10000, 'a'), 100);
  EXPECT_EQ(formatted, std::string(97, 'a') + "...");
}

TEST(FormatLogLineTest, HostileValuesParseBackToThemselves) {
  const std::string hostile[] = {
      "evil job",
      "x\" principal=root",
      "x\nts=2026 level=error event=rpc_failed code=OK",
      "a=b=c",
      "\\\"\\",
      std::string("\0\x7f\xff", 3),
      "tenant/job\r\n",
  };
  for (const std::string& value : hostile) {
    const std::string line =
        FormatLogLine(LogLevel::kWarning, "rpc_failed",
                      {{"tenant", value}, {"code", "NOT_FOUND"}});
    EXPECT_EQ(line.find('\n'), std::string::npos) << line;
    std::optional<LogLine> parsed = ParseLogfmt(line);
    ASSERT_TRUE(parsed.has_value()) << line;
    EXPECT_EQ(parsed->size(), 4u) << line;
    EXPECT_EQ(parsed->at("level"), "warning");
    EXPECT_EQ(parsed->at("event"), "rpc_failed");
    EXPECT_EQ(parsed->at("tenant"), value);
    EXPECT_EQ(parsed->at("code"), "NOT_FOUND");
  }
}

TEST(FormatLogLineTest, ReplacesBadKeyBytes) {
  EXPECT_EQ(FormatLogLine(LogLevel::kInfo, "x", {{"a b=c", 1}}),
            "level=info event=x a_b_c=1");
}

TEST(FormatLogLineTest, FormatsNumbers) {
  EXPECT_EQ(FormatLogLine(LogLevel::kDebug, "gc",
                          {{"bytes", uint64_t{1} << 40}, {"seconds", 1.5}}),
            "level=debug event=gc bytes=1099511627776 seconds=1.5");
}

TEST(LogLevelTest, ParsesTheFourNamesOnly) {
  LogLevel level = LogLevel::kInfo;
  EXPECT_TRUE(ParseLogLevel("debug", &level));
  EXPECT_EQ(level, LogLevel::kDebug);
  EXPECT_TRUE(ParseLogLevel("error", &level));
  EXPECT_EQ(level, LogLevel::kError);
  EXPECT_FALSE(ParseLogLevel("ERROR", &level));
  EXPECT_FALSE(ParseLogLevel("verbose", &level));
  EXPECT_EQ(level, LogLevel::kError);
}

TEST(LogLevelTest, MinimumLevelFilters) {
  SetMinLogLevel(LogLevel::kWarning);
  EXPECT_FALSE(LogEnabled(LogLevel::kInfo));
  EXPECT_TRUE(LogEnabled(LogLevel::kWarning));
  EXPECT_TRUE(LogEnabled(LogLevel::kError));
  SetMinLogLevel(LogLevel::kDebug);
  EXPECT_TRUE(LogEnabled(LogLevel::kDebug));
  SetMinLogLevel(LogLevel::kInfo);
}

}  // namespace
}  // namespace ckpt
