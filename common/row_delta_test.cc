#include "common/row_delta.h"

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/delta_policy.h"
#include "common/row_fingerprint.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt {
namespace {

using ::testing::HasSubstr;

std::string RandomBytes(size_t size, std::mt19937_64& rng) {
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(rng());
  return bytes;
}

absl::Span<const char> AsSpan(const std::string& s) {
  return absl::Span<const char>(s.data(), s.size());
}

absl::Span<char> AsMutableSpan(std::string& s) {
  return absl::Span<char>(s.data(), s.size());
}

// A random ascending subset of [0, rows): empty, all, or in between.
std::vector<uint64_t> RandomRowSet(uint64_t rows, std::mt19937_64& rng) {
  std::vector<uint64_t> set;
  const int kind = rng() % 4;
  if (kind == 0) return set;
  const double p =
      kind == 1 ? 1.0 : std::uniform_real_distribution<>(0, 1)(rng);
  for (uint64_t r = 0; r < rows; ++r) {
    if (std::uniform_real_distribution<>(0, 1)(rng) < p) set.push_back(r);
  }
  return set;
}

// `current` = `base` with the rows in `rows` replaced by random bytes.
std::string EditRows(const std::string& base, size_t row_bytes,
                     const std::vector<uint64_t>& rows, std::mt19937_64& rng) {
  std::string current = base;
  for (uint64_t r : rows) {
    current.replace(r * row_bytes, row_bytes, RandomBytes(row_bytes, rng));
  }
  return current;
}

absl::Status Apply(absl::string_view encoded, std::string& base) {
  absl::StatusOr<RowDeltaView> view = DecodeRowDelta(encoded);
  if (!view.ok()) return view.status();
  return ApplyRowDelta(*view, AsMutableSpan(base));
}

TEST(RowDeltaTest, RandomEncodeDecodeApplyRebuildsTheCurrentBytes) {
  std::mt19937_64 rng(2024);
  for (int trial = 0; trial < 300; ++trial) {
    const size_t row_bytes = trial % 5 == 0 ? 1 : 1 + rng() % 67;
    const uint64_t rows = rng() % 200;
    const std::string base = RandomBytes(row_bytes * rows, rng);
    const std::vector<uint64_t> changed = RandomRowSet(rows, rng);
    const std::string current = EditRows(base, row_bytes, changed, rng);

    auto encoded = EncodeRowDelta(AsSpan(current), row_bytes, changed);
    ASSERT_TRUE(encoded.ok()) << encoded.status();
    EXPECT_EQ(encoded->size(), RowDeltaBytes(rows, row_bytes, changed.size()));
    auto view = DecodeRowDelta(*encoded);
    ASSERT_TRUE(view.ok()) << view.status();
    EXPECT_EQ(view->row_bytes(), row_bytes);
    EXPECT_EQ(view->total_rows(), rows);
    ASSERT_EQ(view->row_count(), changed.size());
    for (size_t i = 0; i < changed.size(); ++i) {
      EXPECT_EQ(view->RowIndex(i), changed[i]);
      EXPECT_EQ(view->RowData(i), absl::string_view(current).substr(
                                      changed[i] * row_bytes, row_bytes));
    }
    std::string rebuilt = base;
    ASSERT_TRUE(ApplyRowDelta(*view, AsMutableSpan(rebuilt)).ok());
    ASSERT_EQ(rebuilt, current) << "trial " << trial;
  }
}

TEST(RowDeltaTest, ChainOfDeltasAppliedInOrderRebuildsEachStep) {
  std::mt19937_64 rng(7);
  const size_t row_bytes = 12;
  const uint64_t rows = 300;
  const std::string step0 = RandomBytes(row_bytes * rows, rng);
  std::vector<std::string> steps = {step0};
  std::vector<std::string> deltas;
  for (int s = 1; s <= 6; ++s) {
    const std::vector<uint64_t> changed = RandomRowSet(rows, rng);
    steps.push_back(EditRows(steps.back(), row_bytes, changed, rng));
    auto encoded = EncodeRowDelta(AsSpan(steps.back()), row_bytes, changed);
    ASSERT_TRUE(encoded.ok());
    deltas.push_back(*std::move(encoded));
  }
  std::string restored = step0;
  for (size_t d = 0; d < deltas.size(); ++d) {
    ASSERT_TRUE(Apply(deltas[d], restored).ok());
    EXPECT_EQ(restored, steps[d + 1]) << "after delta " << d;
  }
}

TEST(RowDeltaTest, SizePredictionMatchesTheFormat) {
  EXPECT_EQ(RowDeltaBytes(10, 256, 0), kRowDeltaHeaderBytes);
  EXPECT_EQ(RowDeltaBytes(10, 256, 3),
            kRowDeltaHeaderBytes + size_t{3} * (4 + 256));
  // u32 indices up to 2^32 rows, u64 beyond.
  EXPECT_EQ(RowDeltaBytes(uint64_t{1} << 32, 8, 2), kRowDeltaHeaderBytes + 24);
  EXPECT_EQ(RowDeltaBytes((uint64_t{1} << 32) + 1, 8, 2),
            kRowDeltaHeaderBytes + 32);
  EXPECT_EQ(RowDeltaBytes(~uint64_t{0}, ~uint64_t{0}, 2), ~uint64_t{0});
}

TEST(RowDeltaTest, RowCountIsReadOffTheSizeAlone) {
  for (uint64_t total_rows : {uint64_t{1}, uint64_t{10}, uint64_t{1} << 33}) {
    for (uint64_t rows : {uint64_t{0}, uint64_t{1}}) {
      EXPECT_EQ(
          RowDeltaRowCount(total_rows, 12, RowDeltaBytes(total_rows, 12, rows)),
          rows);
    }
  }
  // Encoded for real: the header's count is the one the size gives.
  std::string current(10 * 6, 'x');
  const uint64_t rows[] = {1, 4, 9};
  auto encoded = EncodeRowDelta(current, 6, rows);
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  EXPECT_EQ(RowDeltaRowCount(10, 6, encoded->size()), 3u);
  // Sizes no delta of the tensor has: nothing.
  EXPECT_EQ(RowDeltaRowCount(10, 6, kRowDeltaHeaderBytes - 1), std::nullopt);
  EXPECT_EQ(RowDeltaRowCount(10, 6, kRowDeltaHeaderBytes + 11), std::nullopt);
  EXPECT_EQ(RowDeltaRowCount(10, 6, RowDeltaBytes(10, 6, 11)), std::nullopt);
  EXPECT_EQ(RowDeltaRowCount(10, 0, kRowDeltaHeaderBytes), std::nullopt);
  EXPECT_EQ(RowDeltaRowCount(10, ~uint64_t{0}, ~uint64_t{0}), std::nullopt);
}

TEST(RowDeltaTest, EncodeRejectsBadRowSets) {
  const std::string bytes(40, 'a');  // 10 rows of 4
  for (const std::vector<uint64_t>& rows :
       {std::vector<uint64_t>{10}, std::vector<uint64_t>{3, 3},
        std::vector<uint64_t>{5, 2}}) {
    EXPECT_EQ(EncodeRowDelta(AsSpan(bytes), 4, rows).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(EncodeRowDelta(AsSpan(bytes), 0, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EncodeRowDelta(AsSpan(bytes), 3, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RowDeltaTest, ApplyRejectsAWrongSizedBaseAndLeavesItAlone) {
  const std::string current(40, 'n');
  auto encoded = EncodeRowDelta(AsSpan(current), 4, {1, 2});
  ASSERT_TRUE(encoded.ok());
  auto view = DecodeRowDelta(*encoded);
  ASSERT_TRUE(view.ok());
  std::string base(36, 'o');
  EXPECT_EQ(ApplyRowDelta(*view, AsMutableSpan(base)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(base, std::string(36, 'o'));
}

// A valid delta: 5 rows of 3 bytes, rows 1 and 3.
std::string ValidDelta() {
  const std::string current = "aaabbbcccdddeee";
  return *EncodeRowDelta(AsSpan(current), 3, {1, 3});
}

void ExpectDataLoss(const std::string& encoded, absl::string_view what) {
  auto view = DecodeRowDelta(encoded);
  EXPECT_EQ(view.status().code(), absl::StatusCode::kDataLoss) << what;
  EXPECT_THAT(view.status().message(), HasSubstr(what));
}

void PutU64(std::string& s, size_t offset, uint64_t value) {
  for (int b = 0; b < 8; ++b)
    s[offset + b] = static_cast<char>(value >> (8 * b));
}

TEST(RowDeltaTest, DecodeRejectsEveryCorruption) {
  const std::string valid = ValidDelta();
  ASSERT_TRUE(DecodeRowDelta(valid).ok());
  ASSERT_EQ(valid.size(), kRowDeltaHeaderBytes + size_t{2} * 4 + size_t{2} * 3);

  // Every truncation, from an empty buffer to one byte short.
  for (size_t size = 0; size < valid.size(); ++size) {
    EXPECT_EQ(DecodeRowDelta(valid.substr(0, size)).status().code(),
              absl::StatusCode::kDataLoss)
        << "size " << size;
  }
  ExpectDataLoss(valid + "x", "trailing bytes");

  std::string bad = valid;
  bad[0] = 'X';
  ExpectDataLoss(bad, "magic");
  bad = valid;
  bad[4] = 2;
  ExpectDataLoss(bad, "version 2");
  bad = valid;
  bad[6] = 8;  // u64 indices for 5 rows are not canonical
  ExpectDataLoss(bad, "index width");
  bad = valid;
  bad[7] = 1;
  ExpectDataLoss(bad, "reserved");
  bad = valid;
  PutU64(bad, 8, 0);
  ExpectDataLoss(bad, "row_bytes is 0");
  bad = valid;
  PutU64(bad, 8, uint64_t{1} << 62);  // row_bytes * total_rows overflows
  ExpectDataLoss(bad, "overflows");
  bad = valid;
  PutU64(bad, 24, 6);  // more rows than the tensor has
  ExpectDataLoss(bad, "exceeds total rows");
  bad = valid;
  PutU64(bad, 24, 1);  // fewer rows than the bytes hold
  ExpectDataLoss(bad, "trailing bytes");
  bad = valid;
  PutU64(bad, 16, 3);  // row 3 is now out of range
  ExpectDataLoss(bad, "out of range");
  bad = valid;
  bad[kRowDeltaHeaderBytes + 4] = 1;  // indices 1, 1
  ExpectDataLoss(bad, "not strictly ascending");
  bad = valid;
  bad[kRowDeltaHeaderBytes] = 4;  // indices 4, 3
  ExpectDataLoss(bad, "not strictly ascending");
}

TEST(RowDeltaTest, Version1BytesAreStable) {
  // 3 rows of 3 bytes, rows 0 and 2: the format in row_delta.h, by hand.
  const std::string golden(
      "CKRD\x01\x00\x04\x00"
      "\x03\x00\x00\x00\x00\x00\x00\x00"
      "\x03\x00\x00\x00\x00\x00\x00\x00"
      "\x02\x00\x00\x00\x00\x00\x00\x00"
      "\x00\x00\x00\x00\x02\x00\x00\x00"
      "aaaccc",
      kRowDeltaHeaderBytes + 8 + 6);
  const std::string current = "aaabbbccc";
  auto encoded = EncodeRowDelta(AsSpan(current), 3, {0, 2});
  ASSERT_TRUE(encoded.ok());
  EXPECT_EQ(*encoded, golden);
  std::string base = "xxxbbbyyy";
  ASSERT_TRUE(Apply(golden, base).ok());
  EXPECT_EQ(base, current);
}

TEST(RowDeltaTest, FingerprintedChangesPolicyAndDeltaRebuildTheTable) {
  // The pieces together, as a save and a restore will use them.
  std::mt19937_64 rng(11);
  const size_t row_bytes = 32;
  const uint64_t rows = 1000;
  const std::string base = RandomBytes(row_bytes * rows, rng);
  std::vector<uint64_t> edited;
  for (uint64_t r = 0; r < rows; r += 1 + rng() % 40) edited.push_back(r);
  const std::string current = EditRows(base, row_bytes, edited, rng);

  auto old_fp = RowFingerprints(AsSpan(base), row_bytes);
  auto new_fp = RowFingerprints(AsSpan(current), row_bytes);
  ASSERT_TRUE(old_fp.ok() && new_fp.ok());
  auto changed = ChangedRows(*old_fp, *new_fp);
  ASSERT_TRUE(changed.ok());
  EXPECT_EQ(*changed, edited);  // random bytes: every edited row differs

  DeltaHistory history;
  history.baseline_step = 10;
  history.previous_step = 10;
  history.full_bytes = current.size();
  history.delta_bytes = RowDeltaBytes(rows, row_bytes, changed->size());
  auto decision = DecideDelta(history, DeltaPolicyOptions());
  ASSERT_TRUE(decision.ok());
  ASSERT_EQ(decision->kind, DeltaDecision::Kind::kDelta) << decision->reason;
  EXPECT_EQ(decision->base_step, 10);

  auto encoded = EncodeRowDelta(AsSpan(current), row_bytes, *changed);
  ASSERT_TRUE(encoded.ok());
  EXPECT_EQ(encoded->size(), history.delta_bytes);
  std::string restored = base;
  ASSERT_TRUE(Apply(*encoded, restored).ok());
  EXPECT_EQ(restored, current);
}

}  // namespace
}  // namespace ckpt
