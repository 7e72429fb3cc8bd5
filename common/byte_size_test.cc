#include "common/byte_size.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

namespace ckpt {
namespace {

using ::testing::HasSubstr;

TEST(ByteSizeTest, ZeroIsASizeOnlyWhereAllowed) {
  EXPECT_EQ(*ParseByteSize("--quota-bytes", "0", /*allow_zero=*/true), 0u);
  EXPECT_EQ(*ParseByteSize("--quota-bytes", "0G", /*allow_zero=*/true), 0u);
  EXPECT_EQ(*ParseByteSize("--quota-bytes", "1T", /*allow_zero=*/true),
            uint64_t{1} << 40);
  absl::StatusOr<uint64_t> zero =
      ParseByteSize("--max-upload-stream-bytes", "0");
  ASSERT_FALSE(zero.ok());
  EXPECT_THAT(zero.status().message(),
              HasSubstr("--max-upload-stream-bytes '0' is not a size: a "
                        "positive integer"));
  EXPECT_FALSE(ParseByteSize("--quota-bytes", "-1", true).ok());
  EXPECT_FALSE(ParseByteSize("--quota-bytes", "16777216T", true).ok());
  EXPECT_EQ(*ParseByteSize("--quota-bytes", "16777215T", true),
            uint64_t{16777215} << 40);
}

TEST(ByteSizeTest, ReadsPowersOf1024InEitherCaseAndRefusesAmbiguousUnits) {
  EXPECT_EQ(*ParseByteCount("0"), 0u);
  EXPECT_EQ(*ParseByteCount("1000"), 1000u);
  for (const char* text :
       {"64G", "64Gi", "64GiB", "64g", "64gi", "64gib", "64GIB"}) {
    EXPECT_EQ(*ParseByteCount(text), uint64_t{64} << 30) << text;
  }
  EXPECT_EQ(*ParseByteCount("3K"), 3072u);
  EXPECT_EQ(*ParseByteCount("5MiB"), 5u << 20);
  EXPECT_EQ(*ParseByteCount("1T"), uint64_t{1} << 40);
  EXPECT_EQ(*ParseByteCount("16383P"), uint64_t{16383} << 50);
  for (const char* text :
       {"", "-1", "+1", "1.5G", "1GB", "1gb", "1KB", "1 GiB", "GiB", "1X",
        "1Gi B", "1GiBs", "16384P", "99999999999999999999", "0x10"}) {
    absl::StatusOr<uint64_t> parsed = ParseByteCount(text);
    EXPECT_TRUE(absl::IsInvalidArgument(parsed.status())) << text;
    EXPECT_THAT(parsed.status().message(),
                HasSubstr(absl::StrCat("'", text, "'")));
  }
  EXPECT_THAT(ParseByteCount("1KB").status().message(),
              HasSubstr("refused as ambiguous"));
}

TEST(ByteSizeTest, FormatsTheShortestExactFormThatReadsBack) {
  EXPECT_EQ(FormatByteSize(uint64_t{64} << 30), "64GiB");
  EXPECT_EQ(FormatByteSize(1536 * 1024), "1536KiB");
  EXPECT_EQ(FormatByteSize(uint64_t{2048} << 50), "2048PiB");
  EXPECT_EQ(FormatByteSize(1000), "1000");
  EXPECT_EQ(FormatByteSize(0), "0");
  for (uint64_t value :
       {uint64_t{0}, uint64_t{1}, uint64_t{1024}, uint64_t{3} << 40,
        (uint64_t{1} << 62) + 1, UINT64_MAX, uint64_t{16383} << 50}) {
    EXPECT_EQ(*ParseByteCount(FormatByteSize(value)), value) << value;
  }
}

}  // namespace
}  // namespace ckpt
