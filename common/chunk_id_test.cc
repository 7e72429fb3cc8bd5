#include "common/chunk_id.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash_testing.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt {
namespace {

using ::testing::HasSubstr;

// A digest whose byte i is `first + i`.
ChunkId Sequential(uint8_t first) {
  std::array<uint8_t, ChunkId::kSize> digest;
  for (size_t i = 0; i < digest.size(); ++i) {
    digest[i] = static_cast<uint8_t>(first + i);
  }
  return ChunkId(digest);
}

constexpr absl::string_view kSequentialHex =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

TEST(ChunkIdTest, DefaultIsAllZeros) {
  EXPECT_EQ(ChunkId().ToHex(), std::string(64, '0'));
  EXPECT_EQ(ChunkId().bytes(), std::string(32, '\0'));
}

TEST(ChunkIdTest, FromBytesAcceptsExactly32Bytes) {
  std::string raw;
  for (int i = 0; i < 32; ++i) raw.push_back(static_cast<char>(i));
  auto id = ChunkId::FromBytes(raw);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->bytes(), raw);
  EXPECT_EQ(*id, Sequential(0));
  EXPECT_EQ(id->ToHex(), kSequentialHex);
}

TEST(ChunkIdTest, FromBytesKeepsHighBytes) {
  std::string raw(32, '\xff');
  auto id = ChunkId::FromBytes(raw);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->ToHex(), std::string(64, 'f'));
}

TEST(ChunkIdTest, FromBytesRejectsOtherLengths) {
  for (size_t size : {0, 1, 16, 31, 33, 64}) {
    SCOPED_TRACE(size);
    auto id = ChunkId::FromBytes(std::string(size, 'x'));
    EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(id.status().message(), HasSubstr("32 bytes"));
  }
}

TEST(ChunkIdTest, HexRoundTrips) {
  for (const ChunkId& id :
       {ChunkId(), Sequential(0), Sequential(0xe0), Sha256("round trip")}) {
    SCOPED_TRACE(id.ToHex());
    auto parsed = ChunkId::FromHex(id.ToHex());
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, id);
    EXPECT_EQ(parsed->bytes(), id.bytes());
  }
}

TEST(ChunkIdTest, ToHexIsLowercase) {
  EXPECT_EQ(Sequential(0xe0).ToHex(),
            "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
}

TEST(ChunkIdTest, FromHexAcceptsUppercase) {
  std::string upper(kSequentialHex);
  std::transform(upper.begin(), upper.end(), upper.begin(),
                 [](char c) { return c >= 'a' && c <= 'f' ? c - 32 : c; });
  ASSERT_NE(upper, kSequentialHex);
  auto id = ChunkId::FromHex(upper);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, Sequential(0));
  EXPECT_EQ(id->ToHex(), kSequentialHex);  // ToHex normalises to lowercase
}

TEST(ChunkIdTest, FromHexRejectsWrongLength) {
  std::string hex(kSequentialHex);
  for (const std::string& bad :
       {std::string(), hex.substr(0, 62), hex.substr(0, 63), hex + "0",
        hex + "00", hex + hex}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(ChunkId::FromHex(bad).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST(ChunkIdTest, FromHexRejectsNonHexCharacters) {
  // Every position and a variety of characters just outside the hex ranges.
  for (char bad :
       {'g', 'G', 'z', ' ', '-', '/', ':', '@', '`', '\0', 'x', '\xff'}) {
    for (size_t pos : {size_t{0}, size_t{1}, size_t{31}, size_t{63}}) {
      std::string hex(kSequentialHex);
      hex[pos] = bad;
      SCOPED_TRACE(testing::Message()
                   << "char " << static_cast<int>(bad) << " at " << pos);
      auto id = ChunkId::FromHex(hex);
      EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
  EXPECT_THAT(ChunkId::FromHex(std::string(64, 'g')).status().message(),
              HasSubstr("not a hex digit"));
}

TEST(ChunkIdTest, ShortHexIsFirstTwelveDigits) {
  EXPECT_EQ(Sequential(0).ShortHex(), "000102030405");
}

TEST(ChunkIdTest, EqualityComparesAllBytes) {
  std::array<uint8_t, ChunkId::kSize> a{};
  std::array<uint8_t, ChunkId::kSize> b{};
  EXPECT_EQ(ChunkId(a), ChunkId(b));
  EXPECT_FALSE(ChunkId(a) != ChunkId(b));
  b[31] = 1;  // differs only in the last byte
  EXPECT_NE(ChunkId(a), ChunkId(b));
  EXPECT_FALSE(ChunkId(a) == ChunkId(b));
}

TEST(ChunkIdTest, OrderingIsLexicographicOnBytes) {
  std::array<uint8_t, ChunkId::kSize> low{};
  std::array<uint8_t, ChunkId::kSize> high{};
  low[0] = 0x01;
  low[31] = 0xff;
  high[0] = 0x02;  // the first byte decides even though the last is smaller
  EXPECT_LT(ChunkId(low), ChunkId(high));
  EXPECT_FALSE(ChunkId(high) < ChunkId(low));
  EXPECT_FALSE(ChunkId(low) < ChunkId(low));

  // Bytes compare as unsigned: 0x80 sorts after 0x7f.
  std::array<uint8_t, ChunkId::kSize> x7f{};
  std::array<uint8_t, ChunkId::kSize> x80{};
  x7f[0] = 0x7f;
  x80[0] = 0x80;
  EXPECT_LT(ChunkId(x7f), ChunkId(x80));

  std::vector<ChunkId> ids = {Sequential(3), Sequential(1), Sequential(2)};
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(
      ids, (std::vector<ChunkId>{Sequential(1), Sequential(2), Sequential(3)}));
  // Sorting by id equals sorting by hex.
  EXPECT_LT(Sequential(1).ToHex(), Sequential(2).ToHex());
}

TEST(ChunkIdTest, ImplementsAbslHashCorrectly) {
  EXPECT_TRUE(absl::VerifyTypeImplementsAbslHashCorrectly({
      ChunkId(),
      Sequential(0),
      Sequential(1),
      Sha256(""),
      Sha256("abc"),
      *ChunkId::FromHex(kSequentialHex),
  }));
}

TEST(ChunkIdTest, UsableInFlatHashSet) {
  absl::flat_hash_set<ChunkId> set;
  for (int i = 0; i < 1000; ++i) {
    EXPECT_TRUE(set.insert(Sha256(std::to_string(i))).second);
  }
  EXPECT_EQ(set.size(), 1000u);
  // Equal ids built independently are found.
  EXPECT_FALSE(set.insert(Sha256("7")).second);
  EXPECT_TRUE(set.contains(*ChunkId::FromHex(Sha256("42").ToHex())));
  EXPECT_FALSE(set.contains(Sha256("1000")));
  EXPECT_EQ(set.erase(Sha256("0")), 1u);
  EXPECT_EQ(set.size(), 999u);
}

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Sha256("").ToHex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256("abc").ToHex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // FIPS 180-2, two-block message.
  EXPECT_EQ(Sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")
                .ToHex(),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // One million 'a's.
  EXPECT_EQ(Sha256(std::string(1000000, 'a')).ToHex(),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256Test, HashesEmbeddedNulBytes) {
  // The whole view is hashed, not a C string.
  EXPECT_NE(Sha256(absl::string_view("a\0b", 3)), Sha256("a"));
  EXPECT_EQ(Sha256(absl::string_view("a\0b", 3)),
            Sha256(std::string("a\0b", 3)));
}

}  // namespace
}  // namespace ckpt
