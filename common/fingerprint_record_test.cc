#include "common/fingerprint_record.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt {
namespace {

using ::testing::HasSubstr;

std::vector<RowFingerprint> Numbered(size_t count, uint64_t salt) {
  std::vector<RowFingerprint> out;
  for (size_t i = 0; i < count; ++i) {
    out.push_back(RowFingerprint{i * 0x9E3779B97F4A7C15ull + salt, ~i ^ salt});
  }
  return out;
}

TEST(FingerprintRecordTest, DenseRoundTripsAndHasItsDocumentedSize) {
  const std::vector<RowFingerprint> fingerprints = Numbered(1000, 3);
  auto encoded = EncodeDenseFingerprints(256, fingerprints);
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  EXPECT_EQ(encoded->size(), 32u + 1000u * 16u);
  EXPECT_EQ(encoded->size(), DenseFingerprintRecordBytes(1000));
  EXPECT_EQ(encoded->substr(0, 4), "CKFP");
  auto view = DecodeFingerprintRecord(*encoded);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_TRUE(view->dense());
  EXPECT_EQ(view->row_bytes(), 256u);
  EXPECT_EQ(view->total_rows(), 1000u);
  EXPECT_EQ(view->row_count(), 1000u);
  std::vector<RowFingerprint> out(1000);
  ASSERT_TRUE(OverlayFingerprints(*view, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, fingerprints);
  // Little-endian low half first, as the format says.
  EXPECT_EQ(static_cast<unsigned char>((*encoded)[32]),
            fingerprints[0].low & 0xff);
  EXPECT_EQ(static_cast<unsigned char>((*encoded)[40]),
            fingerprints[0].high & 0xff);
}

TEST(FingerprintRecordTest, SparseOverlaysOnlyItsRows) {
  std::vector<RowFingerprint> base = Numbered(100, 1);
  const std::vector<uint64_t> rows = {0, 7, 99};
  const std::vector<RowFingerprint> changed = Numbered(3, 77);
  auto encoded = EncodeSparseFingerprints(64, 100, rows, changed);
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  EXPECT_EQ(encoded->size(), 32u + 3u * (4u + 16u));
  EXPECT_EQ(encoded->size(), SparseFingerprintRecordBytes(100, 3));
  auto view = DecodeFingerprintRecord(*encoded);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_FALSE(view->dense());
  EXPECT_EQ(view->RowIndex(1), 7u);
  std::vector<RowFingerprint> expected = base;
  expected[0] = changed[0];
  expected[7] = changed[1];
  expected[99] = changed[2];
  ASSERT_TRUE(OverlayFingerprints(*view, absl::MakeSpan(base)).ok());
  EXPECT_EQ(base, expected);
  // Eight-byte indices past 2^32 rows.
  EXPECT_EQ(SparseFingerprintRecordBytes(uint64_t{1} << 33, 2),
            32u + 2u * (8u + 16u));
  auto wide = EncodeSparseFingerprints(
      8, uint64_t{1} << 33, {uint64_t{1} << 32, (uint64_t{1} << 33) - 1},
      Numbered(2, 5));
  ASSERT_TRUE(wide.ok());
  auto wide_view = DecodeFingerprintRecord(*wide);
  ASSERT_TRUE(wide_view.ok()) << wide_view.status();
  EXPECT_EQ(wide_view->RowIndex(1), (uint64_t{1} << 33) - 1);
}

TEST(FingerprintRecordTest, EncodersRefuseBadInput) {
  EXPECT_EQ(EncodeDenseFingerprints(0, Numbered(2, 0)).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto unsorted = EncodeSparseFingerprints(8, 10, {3, 3}, Numbered(2, 0));
  EXPECT_EQ(unsorted.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unsorted.status().message(), HasSubstr("strictly ascending"));
  EXPECT_EQ(
      EncodeSparseFingerprints(8, 10, {10}, Numbered(1, 0)).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      EncodeSparseFingerprints(8, 10, {1, 2}, Numbered(1, 0)).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(FingerprintRecordTest, OverlayRefusesAnotherRowCount) {
  auto encoded = EncodeDenseFingerprints(8, Numbered(5, 0));
  ASSERT_TRUE(encoded.ok());
  auto view = DecodeFingerprintRecord(*encoded);
  ASSERT_TRUE(view.ok());
  std::vector<RowFingerprint> four(4);
  EXPECT_EQ(OverlayFingerprints(*view, absl::MakeSpan(four)).code(),
            absl::StatusCode::kInvalidArgument);
}

// Hostile bytes: every header field broken in turn gives DATA_LOSS naming
// it, and no truncation of a valid record decodes.
TEST(FingerprintRecordTest, DecodeRefusesEveryMalformedRecord) {
  auto sparse = EncodeSparseFingerprints(16, 50, {2, 9, 40}, Numbered(3, 9));
  ASSERT_TRUE(sparse.ok());
  auto expect_loss = [](std::string bytes, absl::string_view what) {
    auto view = DecodeFingerprintRecord(bytes);
    EXPECT_EQ(view.status().code(), absl::StatusCode::kDataLoss) << what;
    EXPECT_THAT(view.status().message(), HasSubstr(what));
  };
  for (size_t n = 0; n < sparse->size(); ++n) {
    EXPECT_FALSE(DecodeFingerprintRecord(sparse->substr(0, n)).ok()) << n;
  }
  expect_loss(*sparse + "x", "trailing bytes");
  std::string bad = *sparse;
  bad[0] = 'X';
  expect_loss(bad, "magic");
  bad = *sparse;
  bad[4] = 2;
  expect_loss(bad, "version");
  bad = *sparse;
  bad[6] = 8;  // 8-byte indices for 50 rows
  expect_loss(bad, "index width 8");
  bad = *sparse;
  bad[7] = 2;
  expect_loss(bad, "algorithm 2");
  bad = *sparse;
  for (int i = 8; i < 16; ++i) bad[i] = 0;
  expect_loss(bad, "row_bytes is 0");
  bad = *sparse;
  bad[24] = 60;  // row count past the total
  expect_loss(bad, "exceeds total rows");
  bad = *sparse;
  bad[32 + 4] = 1;  // second index below the first
  expect_loss(bad, "not strictly ascending");
  bad = *sparse;
  bad[32 + 8] = 50;  // third index out of range
  expect_loss(bad, "out of range");
  auto dense = EncodeDenseFingerprints(16, Numbered(4, 1));
  ASSERT_TRUE(dense.ok());
  bad = *dense;
  bad[24] = 3;  // a dense record must cover every row
  expect_loss(bad, "dense record of 3");
  bad = *dense;
  for (int i = 16; i < 32; ++i) bad[i] = static_cast<char>(0xff);
  expect_loss(bad, "truncated");  // huge counts: sizes saturate, not wrap
}

}  // namespace
}  // namespace ckpt
