#include "common/byte_size.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace ckpt
