#include "common/row_fingerprint.h"

#include <xxhash.h>  // the shared library's XXH3, as the reference

#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string RandomBytes(size_t size, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(rng());
  return bytes;
}

absl::Span<const char> AsSpan(const std::string& s) {
  return absl::Span<const char>(s.data(), s.size());
}

RowFingerprint LibraryFingerprint(const char* data, size_t size) {
  const XXH128_hash_t hash = XXH3_128bits(data, size);
  return RowFingerprint{hash.low64, hash.high64};
}

std::vector<RowFingerprint> Reference(const std::string& bytes,
                                      size_t row_bytes) {
  std::vector<RowFingerprint> hashes;
  for (size_t off = 0; off < bytes.size(); off += row_bytes) {
    hashes.push_back(LibraryFingerprint(bytes.data() + off, row_bytes));
  }
  return hashes;
}

// Fingerprints whose low halves are `lows` and high halves all 7.
std::vector<RowFingerprint> Lows(std::initializer_list<uint64_t> lows) {
  std::vector<RowFingerprint> out;
  for (uint64_t low : lows) out.push_back(RowFingerprint{low, 7});
  return out;
}

std::vector<Xxh3Kernel> Kernels() {
  std::vector<Xxh3Kernel> kernels = {Xxh3Kernel::kAuto, Xxh3Kernel::kGeneric};
  if (Avx2KernelAvailable()) kernels.push_back(Xxh3Kernel::kAvx2);
  return kernels;
}

TEST(RowFingerprintsTest, EqualTheLibraryXxh3OfEachRowOnEveryKernel) {
  // Sizes on both sides of XXH3's 16/128/240-byte internal boundaries.
  for (size_t row_bytes : {1, 3, 16, 17, 128, 129, 240, 241, 256, 1000}) {
    const std::string bytes = RandomBytes(row_bytes * 37, row_bytes);
    for (Xxh3Kernel kernel : Kernels()) {
      auto fingerprints = RowFingerprints(AsSpan(bytes), row_bytes, 1, kernel);
      ASSERT_TRUE(fingerprints.ok()) << fingerprints.status();
      EXPECT_EQ(*fingerprints, Reference(bytes, row_bytes))
          << "row_bytes " << row_bytes << " kernel "
          << static_cast<int>(kernel);
    }
  }
}

TEST(RowFingerprintsTest, ThreadsGiveTheSameResultAsOne) {
  // 40 MiB: large enough that 3 threads are really used (16 MiB each min).
  const size_t row_bytes = 256;
  const std::string bytes = RandomBytes(size_t{40} << 20, 7);
  auto one = RowFingerprints(AsSpan(bytes), row_bytes, 1);
  auto three = RowFingerprints(AsSpan(bytes), row_bytes, 3);
  ASSERT_TRUE(one.ok());
  ASSERT_TRUE(three.ok());
  EXPECT_EQ(*one, *three);
  EXPECT_EQ(one->size(), bytes.size() / row_bytes);
  EXPECT_EQ((*one)[12345],
            LibraryFingerprint(bytes.data() + 12345 * row_bytes, row_bytes));
}

TEST(RowFingerprintsTest, IntoFillsTheCallersBufferAndChecksItsSize) {
  const std::string bytes = RandomBytes(size_t{64} * 300, 3);
  std::vector<RowFingerprint> out(300);
  ASSERT_TRUE(RowFingerprintsInto(AsSpan(bytes), 64, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, Reference(bytes, 64));
  std::vector<RowFingerprint> short_out(299);
  auto status =
      RowFingerprintsInto(AsSpan(bytes), 64, absl::MakeSpan(short_out));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("room for 299"));
}

TEST(RowFingerprintsTest, EmptyInputGivesNoFingerprints) {
  auto fingerprints = RowFingerprints(absl::Span<const char>(), 8, 4);
  ASSERT_TRUE(fingerprints.ok());
  EXPECT_THAT(*fingerprints, IsEmpty());
}

TEST(RowFingerprintsTest, RejectsSizeNotAMultipleOfTheRow) {
  const std::string bytes(10, 'x');
  auto fingerprints = RowFingerprints(AsSpan(bytes), 4);
  EXPECT_EQ(fingerprints.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(fingerprints.status().message(), HasSubstr("multiple"));
  EXPECT_EQ(RowFingerprints(AsSpan(bytes), 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RowFingerprints(AsSpan(bytes), 5, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ChangedRowsTest, FindsExactlyTheRandomlyEditedRows) {
  std::mt19937_64 rng(42);
  for (int trial = 0; trial < 20; ++trial) {
    const size_t row_bytes = 1 + rng() % 300;
    const size_t rows = 1 + rng() % 500;
    std::string before = RandomBytes(row_bytes * rows, trial);
    std::string after = before;
    std::set<uint64_t> edited;
    const size_t edits = rng() % (rows + 1);
    for (size_t e = 0; e < edits; ++e) {
      const uint64_t row = rng() % rows;
      const size_t byte = rng() % row_bytes;
      // Flip one bit, so the row really differs.
      after[row * row_bytes + byte] ^= static_cast<char>(1 << (rng() % 8));
      if (after.compare(row * row_bytes, row_bytes, before, row * row_bytes,
                        row_bytes) != 0) {
        edited.insert(row);
      } else {
        edited.erase(row);  // flipped back by a second edit
      }
    }
    auto old_fp = RowFingerprints(AsSpan(before), row_bytes);
    auto new_fp = RowFingerprints(AsSpan(after), row_bytes);
    ASSERT_TRUE(old_fp.ok() && new_fp.ok());
    auto changed = ChangedRows(*old_fp, *new_fp);
    ASSERT_TRUE(changed.ok());
    EXPECT_EQ(*changed, std::vector<uint64_t>(edited.begin(), edited.end()))
        << "trial " << trial;
  }
}

TEST(ChangedRowsTest, RejectsDifferentRowCounts) {
  const std::vector<RowFingerprint> two = Lows({1, 2});
  const std::vector<RowFingerprint> three = Lows({1, 2, 3});
  EXPECT_EQ(ChangedRows(two, three).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(*ChangedRows(three, Lows({1, 5, 3})), ElementsAre(1));
  // A difference in the high half alone is a change too.
  std::vector<RowFingerprint> high_differs = three;
  high_differs[2].high = 8;
  EXPECT_THAT(*ChangedRows(three, high_differs), ElementsAre(2));
}

}  // namespace
}  // namespace ckpt
