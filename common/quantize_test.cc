#include "common/quantize.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt {
namespace {

using ::testing::HasSubstr;

std::string Bytes(const std::vector<float>& values) {
  std::string bytes(values.size() * sizeof(float), '\0');
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

std::vector<float> Floats(const std::string& bytes) {
  std::vector<float> values(bytes.size() / sizeof(float));
  std::memcpy(values.data(), bytes.data(), bytes.size());
  return values;
}

absl::Span<const char> AsSpan(const std::string& s) {
  return absl::Span<const char>(s.data(), s.size());
}

// Embedding-like rows: mostly normal values plus a few outliers, which is
// where narrowing the range pays.
std::vector<float> EmbeddingLike(size_t rows, size_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  std::vector<float> values(rows * cols);
  for (float& v : values) v = normal(rng);
  for (size_t r = 0; r < rows; ++r) values[r * cols + rng() % cols] *= 12;
  return values;
}

QuantizeOptions Bits(int bits, bool range_search = true) {
  QuantizeOptions options;
  options.bits = bits;
  options.range_search = range_search;
  return options;
}

struct Measured {
  double max_abs = 0;
  double squared_error = 0;
  double relative_l2 = 0;
};

Measured Measure(const std::vector<float>& x, const std::vector<float>& y) {
  Measured m;
  double norm = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = double{x[i]} - y[i];
    m.max_abs = std::max(m.max_abs, std::abs(d));
    m.squared_error += d * d;
    norm += double{x[i]} * x[i];
  }
  m.relative_l2 = norm > 0 ? std::sqrt(m.squared_error / norm) : 0;
  return m;
}

TEST(QuantizeTest, RoundTripErrorIsWhatWasRecordedForEveryWidth) {
  const size_t rows = 50;
  const size_t cols = 37;  // odd: 3-bit codes straddle bytes, rows pad
  const std::vector<float> x = EmbeddingLike(rows, cols, 1);
  double previous_l2 = std::numeric_limits<double>::infinity();
  for (int bits : {2, 3, 4, 8}) {
    auto q = QuantizeRows(AsSpan(Bytes(x)), cols, Bits(bits));
    ASSERT_TRUE(q.ok()) << q.status();
    EXPECT_EQ(q->bytes.size(), QuantizedBytes(rows, cols, bits));
    auto header = ReadQuantizedHeader(q->bytes);
    ASSERT_TRUE(header.ok()) << header.status();
    EXPECT_EQ(header->bits, bits);
    EXPECT_EQ(header->rows, rows);
    EXPECT_EQ(header->cols, cols);
    EXPECT_EQ(header->error.max_abs_error, q->error.max_abs_error);
    EXPECT_EQ(header->error.relative_l2_error, q->error.relative_l2_error);

    auto restored = Dequantize(q->bytes);
    ASSERT_TRUE(restored.ok()) << restored.status();
    ASSERT_EQ(restored->size(), x.size() * sizeof(float));
    const Measured m = Measure(x, Floats(*restored));
    EXPECT_DOUBLE_EQ(m.max_abs, q->error.max_abs_error) << bits;
    EXPECT_NEAR(m.relative_l2, q->error.relative_l2_error, 1e-9) << bits;
    EXPECT_GT(m.relative_l2, 0) << bits;
    // More bits, less error; 8 bits within 1% for this data.
    EXPECT_LT(m.relative_l2, previous_l2) << bits;
    previous_l2 = m.relative_l2;
  }
  EXPECT_LT(previous_l2, 0.01);
}

TEST(QuantizeTest, PlainMinMaxErrorIsAtMostHalfAStep) {
  const size_t cols = 29;
  const std::vector<float> x = EmbeddingLike(40, cols, 2);
  for (int bits : {2, 3, 4, 8}) {
    auto q = QuantizeRows(AsSpan(Bytes(x)), cols, Bits(bits, false));
    ASSERT_TRUE(q.ok());
    const std::vector<float> y = Floats(*Dequantize(q->bytes));
    for (size_t r = 0; r < 40; ++r) {
      float lo = x[r * cols];
      float hi = lo;
      for (size_t c = 0; c < cols; ++c) {
        lo = std::min(lo, x[r * cols + c]);
        hi = std::max(hi, x[r * cols + c]);
      }
      const double half_step = (double{hi} - lo) / ((1 << bits) - 1) / 2;
      for (size_t c = 0; c < cols; ++c) {
        ASSERT_LE(std::abs(double{x[r * cols + c]} - y[r * cols + c]),
                  half_step * (1 + 1e-5) + 1e-9)
            << "bits " << bits << " row " << r << " col " << c;
      }
    }
  }
}

TEST(QuantizeTest, RangeSearchNeverRaisesL2ErrorAndHelpsWithOutliers) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 20; ++trial) {
    const size_t cols = 1 + rng() % 100;
    const std::vector<float> x = EmbeddingLike(10, cols, trial);
    for (int bits : {2, 3, 4, 8}) {
      auto plain = QuantizeRows(AsSpan(Bytes(x)), cols, Bits(bits, false));
      auto searched = QuantizeRows(AsSpan(Bytes(x)), cols, Bits(bits, true));
      ASSERT_TRUE(plain.ok() && searched.ok());
      // Per row as well: compare the restored rows' squared errors.
      const std::vector<float> yp = Floats(*Dequantize(plain->bytes));
      const std::vector<float> ys = Floats(*Dequantize(searched->bytes));
      for (size_t r = 0; r < 10; ++r) {
        const std::vector<float> xr(x.begin() + r * cols,
                                    x.begin() + (r + 1) * cols);
        const std::vector<float> pr(yp.begin() + r * cols,
                                    yp.begin() + (r + 1) * cols);
        const std::vector<float> sr(ys.begin() + r * cols,
                                    ys.begin() + (r + 1) * cols);
        EXPECT_LE(Measure(xr, sr).squared_error, Measure(xr, pr).squared_error)
            << "trial " << trial << " bits " << bits << " row " << r;
      }
    }
  }
  // With one large outlier per row of 64, at 2 bits, narrowing helps a lot.
  const std::vector<float> x = EmbeddingLike(100, 64, 99);
  auto plain = QuantizeRows(AsSpan(Bytes(x)), 64, Bits(2, false));
  auto searched = QuantizeRows(AsSpan(Bytes(x)), 64, Bits(2, true));
  EXPECT_LT(searched->error.relative_l2_error,
            0.9 * plain->error.relative_l2_error);
}

TEST(QuantizeTest, ThreadsGiveTheSameRowsAsOne) {
  const size_t cols = 19;
  const std::vector<float> x = EmbeddingLike(101, cols, 5);
  QuantizeOptions options = Bits(3);
  auto one = QuantizeRows(AsSpan(Bytes(x)), cols, options);
  ASSERT_TRUE(one.ok());
  for (int threads : {2, 3, 200}) {  // 200 > rows: one row per thread
    options.threads = threads;
    auto many = QuantizeRows(AsSpan(Bytes(x)), cols, options);
    ASSERT_TRUE(many.ok()) << many.status();
    ASSERT_EQ(many->bytes.size(), one->bytes.size());
    // All but the recorded relative L2 error (bytes 32..39) are identical.
    EXPECT_EQ(many->bytes.substr(0, 32), one->bytes.substr(0, 32));
    EXPECT_EQ(many->bytes.substr(40), one->bytes.substr(40)) << threads;
    EXPECT_NEAR(many->error.relative_l2_error, one->error.relative_l2_error,
                1e-12);
  }
  options.threads = 0;
  EXPECT_EQ(QuantizeRows(AsSpan(Bytes(x)), cols, options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(QuantizeTest, ConstantRowsAndZerosAreExact) {
  const std::vector<float> x = {0,      0,      0,      0,  //
                                3.25f,  3.25f,  3.25f,  3.25f,
                                -1e30f, -1e30f, -1e30f, -1e30f};
  for (int bits : {2, 3, 4, 8}) {
    auto q = QuantizeRows(AsSpan(Bytes(x)), 4, Bits(bits));
    ASSERT_TRUE(q.ok());
    EXPECT_EQ(Floats(*Dequantize(q->bytes)), x);
    EXPECT_EQ(q->error.max_abs_error, 0);
    EXPECT_EQ(q->error.relative_l2_error, 0);
  }
  auto zeros = QuantizeRows(AsSpan(Bytes(std::vector<float>(12, 0.0f))), 3);
  ASSERT_TRUE(zeros.ok());
  EXPECT_EQ(Floats(*Dequantize(zeros->bytes)), std::vector<float>(12, 0.0f));
  EXPECT_EQ(zeros->error.relative_l2_error, 0);
}

TEST(QuantizeTest, ExtremeRangeStaysFinite) {
  const float big = std::numeric_limits<float>::max();
  const std::vector<float> x = {-big, 0, big, big / 3};
  for (int bits : {2, 8}) {
    auto q = QuantizeRows(AsSpan(Bytes(x)), 4, Bits(bits));
    ASSERT_TRUE(q.ok());
    for (float y : Floats(*Dequantize(q->bytes))) EXPECT_TRUE(std::isfinite(y));
    EXPECT_TRUE(std::isfinite(q->error.max_abs_error));
  }
}

TEST(QuantizeTest, EmptyMatrixRoundTrips) {
  auto q = QuantizeRows(absl::Span<const char>(), 5);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->bytes.size(), kQuantizedHeaderBytes);
  EXPECT_EQ(*Dequantize(q->bytes), "");
}

TEST(QuantizeTest, RejectsNonFiniteValuesAndBadArguments) {
  for (float bad : {std::numeric_limits<float>::quiet_NaN(),
                    std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    const std::vector<float> x = {1, 2, 3, bad, 5, 6};
    auto q = QuantizeRows(AsSpan(Bytes(x)), 3);
    EXPECT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(q.status().message(), HasSubstr("row 1, column 0"));
  }
  const std::string six = Bytes({1, 2, 3, 4, 5, 6});
  EXPECT_EQ(QuantizeRows(AsSpan(six), 4).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(QuantizeRows(AsSpan(six), 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(QuantizeRows(AsSpan(six), 3, Bits(5)).status().code(),
            absl::StatusCode::kInvalidArgument);
  QuantizeOptions options;
  options.range_search_max_shrink = 1.0;
  EXPECT_EQ(QuantizeRows(AsSpan(six), 3, options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

void PutU64(std::string& s, size_t offset, uint64_t value) {
  for (int b = 0; b < 8; ++b)
    s[offset + b] = static_cast<char>(value >> (8 * b));
}

void ExpectDataLoss(const std::string& encoded, absl::string_view what) {
  auto restored = Dequantize(encoded);
  EXPECT_EQ(restored.status().code(), absl::StatusCode::kDataLoss) << what;
  EXPECT_THAT(restored.status().message(), HasSubstr(what));
}

TEST(QuantizeTest, DequantizeIntoWritesTheSameValuesAndChecksTheSize) {
  std::vector<float> x(size_t{7} * 5);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * i);
  auto q =
      QuantizeRows(absl::MakeConstSpan(reinterpret_cast<const char*>(x.data()),
                                       x.size() * sizeof(float)),
                   5, {.bits = 3});
  ASSERT_TRUE(q.ok()) << q.status();
  std::string into(x.size() * sizeof(float), '\x7f');
  ASSERT_TRUE(DequantizeInto(q->bytes, absl::MakeSpan(into)).ok());
  EXPECT_EQ(into, *Dequantize(q->bytes));
  std::string short_by_one(into.size() - 1, '\0');
  EXPECT_EQ(DequantizeInto(q->bytes, absl::MakeSpan(short_by_one)).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(QuantizeTest, DequantizeRejectsCorruptInput) {
  // 2 rows x 3 cols at 3 bits: each row 8 + 2 bytes, 7 padding bits.
  const std::string x = Bytes({0.1f, 0.5f, 0.9f, -2, 0, 2});
  auto q = QuantizeRows(AsSpan(x), 3, Bits(3));
  ASSERT_TRUE(q.ok());
  const std::string valid = q->bytes;
  ASSERT_EQ(valid.size(), kQuantizedHeaderBytes + size_t{2} * 10);
  ASSERT_TRUE(Dequantize(valid).ok());

  for (size_t size = 0; size < valid.size(); ++size) {
    EXPECT_EQ(Dequantize(valid.substr(0, size)).status().code(),
              absl::StatusCode::kDataLoss)
        << "size " << size;
  }
  ExpectDataLoss(valid + "x", "trailing bytes");
  std::string bad = valid;
  bad[1] = 'X';
  ExpectDataLoss(bad, "magic");
  bad = valid;
  bad[4] = 9;
  ExpectDataLoss(bad, "version 9");
  bad = valid;
  bad[6] = 5;
  ExpectDataLoss(bad, "bits 5");
  bad = valid;
  bad[7] = 1;
  ExpectDataLoss(bad, "reserved");
  bad = valid;
  PutU64(bad, 16, 0);
  ExpectDataLoss(bad, "cols is 0");
  bad = valid;
  PutU64(bad, 8, uint64_t{1} << 61);  // rows: size overflows
  ExpectDataLoss(bad, "bytes");
  bad = valid;
  PutU64(bad, 24, 0xfff0000000000000);  // max_abs_error = -inf
  ExpectDataLoss(bad, "recorded error");
  bad = valid;
  const size_t row1 = kQuantizedHeaderBytes + 10;
  bad[row1 + 7] = static_cast<char>(0xff);  // scale = NaN
  ExpectDataLoss(bad, "row 1 has min");
  bad = valid;
  bad[row1 + 4 + 3] = static_cast<char>(0x80 | bad[row1 + 4 + 3]);  // -scale
  ExpectDataLoss(bad, "row 1 has min");
  bad = valid;
  bad[row1 + 9] = static_cast<char>(bad[row1 + 9] | 0x80);  // padding bit
  ExpectDataLoss(bad, "padding");
}

TEST(QuantizeTest, Version1BytesAreStable) {
  // 1 row {0, 1, 3} at 2 bits, plain range: min 0, scale 1, codes 0 1 3
  // packed LSB first as 0b00'11'01'00 = 0x34; exact, so both errors are 0.
  const std::string golden(
      "CKQZ\x01\x00\x02\x00"
      "\x01\x00\x00\x00\x00\x00\x00\x00"
      "\x03\x00\x00\x00\x00\x00\x00\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x00"
      "\x00\x00\x00\x00\x00\x00\x80\x3f"
      "\x34",
      kQuantizedHeaderBytes + 9);
  const std::vector<float> x = {0, 1, 3};
  auto q = QuantizeRows(AsSpan(Bytes(x)), 3, Bits(2, false));
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->bytes, golden);
  EXPECT_EQ(Floats(*Dequantize(golden)), x);
}

TEST(QuantizeTest, HugeColsWithZeroRowsDoesNotAllocate) {
  // rows = 0 makes any cols consistent with a header-only buffer.
  auto q = QuantizeRows(absl::Span<const char>(), 5);
  ASSERT_TRUE(q.ok());
  std::string bad = q->bytes;
  PutU64(bad, 16, uint64_t{1} << 40);
  auto restored = Dequantize(bad);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(*restored, "");
}

TEST(QuantizeTest, BitsForExpectedRestoresFollowsTheSqrtBudget) {
  EXPECT_EQ(BitsForExpectedRestores(0), 2);
  EXPECT_EQ(BitsForExpectedRestores(0.14), 2);
  EXPECT_EQ(BitsForExpectedRestores(0.15), 3);
  EXPECT_EQ(BitsForExpectedRestores(0.76), 3);
  EXPECT_EQ(BitsForExpectedRestores(0.77), 4);
  EXPECT_EQ(BitsForExpectedRestores(1), 4);
  EXPECT_EQ(BitsForExpectedRestores(3.5), 4);
  EXPECT_EQ(BitsForExpectedRestores(3.6), 8);
  EXPECT_EQ(BitsForExpectedRestores(1016), 8);
  EXPECT_EQ(BitsForExpectedRestores(1017), std::nullopt);
  EXPECT_EQ(BitsForExpectedRestores(-1), std::nullopt);
  EXPECT_EQ(BitsForExpectedRestores(std::nan("")), std::nullopt);
}

}  // namespace
}  // namespace ckpt
