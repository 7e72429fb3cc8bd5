#include "common/tags.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt {
namespace {

using ::testing::HasSubstr;

TEST(TagsTest, NamesAreOneTo256BytesOfPrintableUtf8WithoutEquals) {
  EXPECT_TRUE(ValidateTagName("best").ok());
  EXPECT_TRUE(ValidateTagName("release candidate/ü").ok());
  EXPECT_TRUE(ValidateTagName(std::string(kMaxTagNameBytes, 'a')).ok());
  for (const std::string& bad :
       {std::string(), std::string(kMaxTagNameBytes + 1, 'a'),
        std::string("a\nb"), std::string("tab\t"), std::string("\x1b[2J"),
        std::string("del\x7f"), std::string("k=v"), std::string("="),
        // Not UTF-8 (a proto3 string must be), and a C1 control character.
        std::string("caf\xe9"), std::string("\xc0\xaf"),
        std::string("\xc2\x9b")}) {
    SCOPED_TRACE(bad);
    const absl::Status status = ValidateTagName(bad);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), HasSubstr("tag name"));
  }
}

TEST(TagsTest, TagsAreBoundedInValueAndCount) {
  Tags tags = {{"a", std::string(kMaxTagValueBytes, 'x')}};
  EXPECT_TRUE(ValidateTags(tags).ok());
  tags["a"] += "x";
  EXPECT_THAT(ValidateTags(tags).message(), HasSubstr("at most 4096"));
  tags.clear();
  for (size_t i = 0; i < kMaxTagsPerCheckpoint; ++i) {
    tags[std::to_string(i)] = "";
  }
  EXPECT_TRUE(ValidateTags(tags).ok());
  tags["one-more"] = "";
  EXPECT_THAT(ValidateTags(tags).message(), HasSubstr("at most 256 tags"));
  EXPECT_FALSE(ValidateTags({{"a=b", "c"}}).ok());
}

TEST(TagsTest, TagsAreBoundedInBytesAltogether) {
  // Four values of the largest size fit; a fifth passes every other limit
  // but not the total, which bounds what a listing of the job carries.
  Tags tags;
  for (const char* name : {"a", "b", "c"}) {
    tags[name] = std::string(kMaxTagValueBytes, 'x');
  }
  EXPECT_TRUE(ValidateTags(tags).ok());
  EXPECT_EQ(TagBytes(tags), 3 + 3 * kMaxTagValueBytes);
  tags["d"] = std::string(kMaxTagValueBytes - 4, 'x');
  EXPECT_TRUE(ValidateTags(tags).ok());
  tags["e"] = std::string(kMaxTagValueBytes, 'x');
  EXPECT_THAT(ValidateTags(tags).message(),
              HasSubstr("at most 16384 bytes of names and values together"));
}

TEST(TagsTest, ValuesArePrintableUtf8) {
  EXPECT_TRUE(ValidateTagValue("k", "").ok());
  EXPECT_TRUE(ValidateTagValue("k", "run 7 / ü").ok());
  for (const std::string& bad :
       {std::string("\x1b]0;pwned\x07"), std::string("a\nb"),
        std::string("caf\xe9"), std::string("\xc2\x9b")}) {
    SCOPED_TRACE(bad);
    const absl::Status status = ValidateTagValue("k", bad);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), HasSubstr("without control characters"));
  }
}

TEST(TagsTest, ParseTagSplitsAtTheFirstEquals) {
  auto bare = ParseTag("release");
  ASSERT_TRUE(bare.ok()) << bare.status();
  EXPECT_EQ(*bare, std::make_pair(std::string("release"), std::string()));
  auto valued = ParseTag("run=a=b");
  ASSERT_TRUE(valued.ok()) << valued.status();
  EXPECT_EQ(*valued, std::make_pair(std::string("run"), std::string("a=b")));
  auto empty_value = ParseTag("k=");
  ASSERT_TRUE(empty_value.ok());
  EXPECT_EQ(empty_value->second, "");
  EXPECT_FALSE(ParseTag("").ok());
  EXPECT_FALSE(ParseTag("=v").ok());
  EXPECT_FALSE(ParseTag("a\x01=v").ok());
}

TEST(TagsTest, QueryMatchesNameOrExactValue) {
  const Tags tags = {{"release", ""}, {"run", "a=b"}};
  EXPECT_TRUE(MatchesTag(tags, "release"));
  EXPECT_TRUE(MatchesTag(tags, "release="));
  EXPECT_TRUE(MatchesTag(tags, "run"));
  EXPECT_TRUE(MatchesTag(tags, "run=a=b"));
  EXPECT_FALSE(MatchesTag(tags, "run=a"));
  EXPECT_FALSE(MatchesTag(tags, "release=x"));
  EXPECT_FALSE(MatchesTag(tags, "rel"));
  EXPECT_FALSE(MatchesTag({}, "release"));
}

}  // namespace
}  // namespace ckpt
