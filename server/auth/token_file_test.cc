// The token file: what parses, and that every refusal names its line and
// never repeats what the line holds (a token pasted in place of its hash
// would otherwise reach the log).

#include "server/auth/token_file.h"

#include <fstream>
#include <iterator>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string HashHex(absl::string_view token) { return Sha256(token).ToHex(); }

TEST(TokenTableTest, ParsesEntriesCommentsAndBlankLines) {
  const std::string text = absl::StrCat(
      "# ckpt tokens\n\n", HashHex("t-reader"), " ann reader alice/\n", "  ",
      HashHex("t-writer"), "\tjob-7 writer alice/exp1  # a job\r\n",
      HashHex("t-op"), " ops@example.com operator *\n");
  auto table = TokenTable::Parse(text);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->size(), 3u);
  const Principal* reader = table->Find("t-reader");
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(reader->name, "ann");
  EXPECT_EQ(reader->role, Role::kReader);
  EXPECT_EQ(reader->scope.ToString(), "alice/");
  const Principal* writer = table->Find("t-writer");
  ASSERT_NE(writer, nullptr);
  EXPECT_EQ(writer->role, Role::kWriter);
  EXPECT_TRUE(writer->scope.Covers("alice/exp1/run"));
  EXPECT_FALSE(writer->scope.Covers("alice/exp2"));
  const Principal* op = table->Find("t-op");
  ASSERT_NE(op, nullptr);
  EXPECT_EQ(op->role, Role::kOperator);
  EXPECT_TRUE(op->scope.IsAll());
  EXPECT_EQ(table->Find("t-unknown"), nullptr);
  // The table is keyed by the hash: the hash itself is not a token.
  EXPECT_EQ(table->Find(HashHex("t-reader")), nullptr);
}

TEST(TokenTableTest, UppercaseHexIsTheSameHash) {
  std::string hex = HashHex("tok");
  for (char& c : hex) c = static_cast<char>(std::toupper(c));
  auto table = TokenTable::Parse(absl::StrCat(hex, " p admin t/\n"));
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_NE(table->Find("tok"), nullptr);
}

TEST(TokenTableTest, EmptyFileHasNoTokens) {
  auto table = TokenTable::Parse("# nobody yet\n\n");
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->size(), 0u);
}

struct BadLine {
  std::string line;
  std::string says;
};

TEST(TokenTableTest, EachBadLineIsRefusedNamingItsNumberOnly) {
  const std::string hash = HashHex("secret-token-value");
  const BadLine cases[] = {
      {absl::StrCat(hash, " p reader"), "expected 4 fields"},
      {absl::StrCat(hash, " p reader t/ extra"), "expected 4 fields"},
      // The token itself where its hash belongs.
      {"secret-token-value p reader t/", "SHA-256 of the token"},
      {absl::StrCat(hash.substr(1), "g p reader t/"), "64 hex digits"},
      {absl::StrCat(hash, "0 p reader t/"), "64 hex digits"},
      {absl::StrCat(hash, " p!x reader t/"), "principal"},
      {absl::StrCat(hash, " ", std::string(65, 'p'), " reader t/"),
       "principal"},
      {absl::StrCat(hash, " p root t/"), "role"},
      {absl::StrCat(hash, " p Reader t/"), "role"},
      {absl::StrCat(hash, " p reader tenant"), "scope"},
      {absl::StrCat(hash, " p reader /job"), "scope"},
      {absl::StrCat(hash, " p reader t//x"), "scope"},
      {absl::StrCat(hash, " p reader t/a$b"), "scope"},
      {absl::StrCat(hash, " p reader *"), "only an operator"},
      {absl::StrCat(hash, " p admin *"), "only an operator"},
      {absl::StrCat(hash, " p operator t/"), "operator's scope must be '*'"},
  };
  for (const BadLine& bad : cases) {
    SCOPED_TRACE(bad.line);
    auto table = TokenTable::Parse(absl::StrCat(
        "# header\n\n", bad.line, "\n", HashHex("x"), " ok reader t/\n"));
    ASSERT_FALSE(table.ok());
    EXPECT_EQ(table.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(table.status().message(), HasSubstr("line 3: "));
    EXPECT_THAT(table.status().message(), HasSubstr(bad.says));
    EXPECT_THAT(table.status().message(), Not(HasSubstr(hash.substr(0, 16))));
    EXPECT_THAT(table.status().message(), Not(HasSubstr("secret")));
  }
}

TEST(TokenTableTest, ADuplicateHashNamesBothLines) {
  const std::string hash = HashHex("twice");
  auto table = TokenTable::Parse(
      absl::StrCat(hash, " a reader t/\n", hash, " b admin t/\n"));
  ASSERT_FALSE(table.ok());
  EXPECT_EQ(table.status().message(), "line 2: the same token hash as line 1");
}

TEST(TokenTableTest, APrincipalMayHoldSeveralTokens) {
  auto table = TokenTable::Parse(absl::StrCat(
      HashHex("old"), " p writer t/\n", HashHex("new"), " p writer t/\n"));
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->Find("old")->name, "p");
  EXPECT_EQ(table->Find("new")->name, "p");
}

TEST(TokenTableTest, TheDocumentedExampleParses) {
  std::ifstream in(CKPT_SECURITY_DOC);
  const std::string doc{std::istreambuf_iterator<char>(in),
                        std::istreambuf_iterator<char>()};
  const size_t start = doc.find("# SHA256_HEX_OF_TOKEN");
  ASSERT_NE(start, std::string::npos) << "no example in docs/security.md";
  const size_t end = doc.find("```", start);
  auto table = TokenTable::Parse(doc.substr(start, end - start));
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->size(), 4u);
  const Principal* trainer = table->Find("example-token-trainer");
  ASSERT_NE(trainer, nullptr);
  EXPECT_EQ(trainer->name, "alice-trainer");
  EXPECT_EQ(trainer->role, Role::kWriter);
  EXPECT_EQ(table->Find("example-token-ops")->role, Role::kOperator);
}

TEST(LoadTokenFileTest, AMissingFileIsAnError) {
  auto table = LoadTokenFile("/nonexistent/ckpt-tokens");
  EXPECT_EQ(table.status().code(), absl::StatusCode::kNotFound);
}

// A directory made std::ifstream throw, which aborted the server (at
// startup, or on a SIGHUP reload).
TEST(LoadTokenFileTest, ADirectoryIsAnErrorNotACrash) {
  auto table = LoadTokenFile("/");
  EXPECT_EQ(table.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(table.status().message(),
            "cannot read the token file /: is a directory");
}

}  // namespace
}  // namespace ckpt::server
