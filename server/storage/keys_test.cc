#include "server/storage/keys.h"

#include <string>
#include <tuple>

#include "common/sha256.h"
#include "gtest/gtest.h"

namespace ckpt::server {
namespace {

TEST(KeysTest, ChunkKeyIsTenantNulDigestAndDecodes) {
  const ChunkId id = Sha256("x");
  const std::string key = ChunkKey("acme", id);
  EXPECT_EQ(key, std::string("acme\0", 5) + std::string(id.bytes()));
  auto decoded = DecodeChunkKey(key);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->tenant, "acme");
  EXPECT_EQ(decoded->id, id);
}

TEST(KeysTest, ShardKeyDecodes) {
  for (const auto& [job, step, rank] :
       {std::tuple<std::string, int64_t, int32_t>{"t/j", 0, 0},
        {"a/b/c", 256, 65535},
        {"x/y", int64_t{1} << 40, 7}}) {
    const std::string key = ShardKey(job, step, rank);
    auto decoded = DecodeShardKey(key);  // points into `key`
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(decoded->job, job);
    EXPECT_EQ(decoded->step, step);
    EXPECT_EQ(decoded->rank, rank);
  }
  EXPECT_EQ(DecodeShardKey("short").status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeShardKey(CheckpointKey("t/j", 1)).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(KeysTest, MalformedChunkKeyIsDataLoss) {
  EXPECT_EQ(DecodeChunkKey("short").status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeChunkKey(std::string(40, 'a')).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(KeysTest, TenantPrefixesDoNotOverlapAndOrderByTenant) {
  const ChunkId id = Sha256("x");
  // "a" must sort before "a.b" and its prefix must not cover "a.b"'s keys.
  EXPECT_LT(ChunkKey("a", id), ChunkKey("a.b", id));
  EXPECT_NE(ChunkKey("a.b", id).rfind(ChunkKeyPrefix("a"), 0), 0u);
  EXPECT_EQ(ChunkKeyPrefix(""), "");
}

TEST(KeysTest, CheckpointKeysSortByStepAndShardKeysByRank) {
  EXPECT_EQ(CheckpointKey("t/j", 1),
            std::string("t/j\0\0\0\0\0\0\0\0\x01", 12));
  EXPECT_LT(CheckpointKey("t/j", 2), CheckpointKey("t/j", 256));
  EXPECT_LT(CheckpointKey("t/j", 255), CheckpointKey("t/j", 256));
  EXPECT_LT(CheckpointKey("t/j", 0), CheckpointKey("t/j", INT64_MAX));
  EXPECT_LT(ShardKey("t/j", 5, 1), ShardKey("t/j", 5, 256));
  EXPECT_EQ(ShardKey("t/j", 5, 3).substr(0, 12), CheckpointKey("t/j", 5));
  EXPECT_EQ(ShardKey("t/j", 5, 3).size(), 16u);
}

TEST(KeysTest, EventKeysSortBySequenceAndDecode) {
  EXPECT_EQ(EventKey("t/j", 1), std::string("t/j\0\0\0\0\0\0\0\0\x01", 12));
  EXPECT_LT(EventKey("t/j", 255), EventKey("t/j", 256));
  EXPECT_LT(EventKey("t/j", UINT64_MAX), PrefixSuccessor(JobKeyPrefix("t/j")));
  for (uint64_t sequence : {uint64_t{1}, uint64_t{256}, UINT64_MAX}) {
    auto decoded = DecodeEventSequence("t/j", EventKey("t/j", sequence));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, sequence);
  }
  // Another job's key, or a truncated one, is corrupt.
  EXPECT_EQ(DecodeEventSequence("t/j", EventKey("t/k", 1)).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeEventSequence("t/j", EventKey("t/j", 1).substr(0, 11))
                .status()
                .code(),
            absl::StatusCode::kDataLoss);
}

TEST(KeysTest, EventSequencerContinuesEachJobAndTrimsPastTheBound) {
  EventSequencer sequencer;
  int lookups = 0;
  auto last_stored = [&](absl::string_view job) -> absl::StatusOr<uint64_t> {
    ++lookups;
    return job == "t/full" ? uint64_t{kMaxEventsPerJob} : uint64_t{0};
  };
  EXPECT_EQ(*sequencer.Next("t/new", last_stored), 1u);
  EXPECT_EQ(*sequencer.Next("t/new", last_stored), 2u);
  EXPECT_TRUE(sequencer.Trims().empty());
  EXPECT_EQ(*sequencer.Next("t/full", last_stored), kMaxEventsPerJob + 1);
  EXPECT_EQ(*sequencer.Next("t/full", last_stored), kMaxEventsPerJob + 2);
  EXPECT_EQ(lookups, 2);  // once per job
  auto trims = sequencer.Trims();
  ASSERT_EQ(trims.size(), 1u);
  EXPECT_EQ(trims[0].job, "t/full");
  EXPECT_EQ(trims[0].keep_from, 3u);

  EventSequencer failing;
  auto broken = [](absl::string_view) -> absl::StatusOr<uint64_t> {
    return absl::DataLossError("bad key");
  };
  EXPECT_EQ(failing.Next("t/j", broken).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(KeysTest, PrefixSuccessorBoundsThePrefixRange) {
  EXPECT_EQ(PrefixSuccessor("ab"), "ac");
  EXPECT_EQ(PrefixSuccessor(std::string("a\xff\xff")), "b");
  EXPECT_EQ(PrefixSuccessor(std::string("\xff")), "");
  EXPECT_EQ(PrefixSuccessor(""), "");
  const std::string key = CheckpointKey("t/j", 255);  // ends in 0xff
  EXPECT_LT(ShardKey("t/j", 255, INT32_MAX), PrefixSuccessor(key));
  EXPECT_LT(PrefixSuccessor(key), CheckpointKey("t/j", 256));
}

TEST(KeysTest, ChunkChecksumsAreSixteenLittleEndianBytes) {
  EXPECT_EQ(EncodeChunkChecksum(ChunkChecksum{1, 2}),
            std::string("\x01\0\0\0\0\0\0\0"
                        "\x02\0\0\0\0\0\0\0",
                        16));
  const ChunkChecksum checksum = ComputeChunkChecksum("bytes");
  auto decoded = DecodeChunkChecksum(EncodeChunkChecksum(checksum));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, checksum);
  for (size_t size : {0, 15, 17}) {
    auto bad = DecodeChunkChecksum(std::string(size, 'x'));
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_NE(bad.status().message().find("expected 16"),
              absl::string_view::npos);
  }
}

TEST(KeysTest, ChunkIndexValuesCarryTheChecksumAndOldOnesStillDecode) {
  const ChunkChecksum checksum = ComputeChunkChecksum("some chunk bytes");
  EXPECT_NE(checksum, ComputeChunkChecksum("some chunk bytez"));
  for (uint64_t size : {uint64_t{0}, uint64_t{300}, uint64_t{16} << 20}) {
    const std::string value = EncodeChunkIndexValue(size, checksum);
    EXPECT_EQ(value.size(), EncodeVarint64(size).size() + 16);
    auto decoded = DecodeChunkIndexValue(value);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(decoded->size, size);
    ASSERT_TRUE(decoded->checksum.has_value());
    EXPECT_EQ(*decoded->checksum, checksum);
    // Written before checksums were recorded: the size alone.
    auto old = DecodeChunkIndexValue(EncodeVarint64(size));
    ASSERT_TRUE(old.ok()) << old.status();
    EXPECT_EQ(old->size, size);
    EXPECT_FALSE(old->checksum.has_value());
  }
  // Little-endian low then high, after the varint.
  const std::string value = EncodeChunkIndexValue(1, ChunkChecksum{1, 2});
  EXPECT_EQ(value, std::string("\x01"
                               "\x01\0\0\0\0\0\0\0"
                               "\x02\0\0\0\0\0\0\0",
                               17));
  for (const std::string& bad :
       {std::string(""), std::string("\x80"), std::string("\x01\x02"),
        EncodeChunkIndexValue(5, checksum) + "\x80",
        EncodeChunkIndexValue(5, checksum, 7) + "x",
        EncodeChunkIndexValue(5, checksum).substr(0, 10)}) {
    EXPECT_EQ(DecodeChunkIndexValue(bad).status().code(),
              absl::StatusCode::kDataLoss);
  }
}

TEST(KeysTest, ChunkIndexValuesNameTheChunkFileWhenThereIsOne) {
  const ChunkChecksum checksum = ComputeChunkChecksum("file chunk");
  for (uint64_t number :
       {uint64_t{0}, uint64_t{1}, uint64_t{300}, UINT64_MAX}) {
    auto decoded =
        DecodeChunkIndexValue(EncodeChunkIndexValue(4096, checksum, number));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(decoded->size, 4096u);
    EXPECT_EQ(decoded->checksum, checksum);
    EXPECT_EQ(decoded->file_number, number);
  }
  auto in_family = DecodeChunkIndexValue(EncodeChunkIndexValue(1, checksum));
  ASSERT_TRUE(in_family.ok());
  EXPECT_FALSE(in_family->file_number.has_value());
}

TEST(KeysTest, VarintRoundTripsAndRejectsGarbage) {
  for (uint64_t value : {uint64_t{0}, uint64_t{127}, uint64_t{128},
                         uint64_t{1} << 32, UINT64_MAX}) {
    auto decoded = DecodeVarint64(EncodeVarint64(value));
    ASSERT_TRUE(decoded.ok()) << value;
    EXPECT_EQ(*decoded, value);
  }
  EXPECT_EQ(EncodeVarint64(300), "\xac\x02");
  EXPECT_EQ(DecodeVarint64("").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeVarint64("\x80").status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeVarint64("\x01\x02").status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeVarint64(std::string(11, '\xff')).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(KeysTest, ValidateRejectsUnkeyableInput) {
  EXPECT_TRUE(ValidateTenant("acme").ok());
  EXPECT_EQ(ValidateTenant("").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateTenant(std::string("a\0b", 3)).code(),
            absl::StatusCode::kInvalidArgument);

  MetadataBatch negative_step;
  negative_step.DeleteCheckpoint("t/j", -1);
  EXPECT_EQ(ValidateBatch(negative_step).code(),
            absl::StatusCode::kInvalidArgument);
  MetadataBatch negative_rank;
  ShardManifest shard;
  shard.rank = -2;
  negative_rank.PutShard("t/j", 1, shard);
  EXPECT_EQ(ValidateBatch(negative_rank).code(),
            absl::StatusCode::kInvalidArgument);
  MetadataBatch ok;
  ok.PutJob(MakeJobRecord("t/j", absl::UnixEpoch()));
  EXPECT_TRUE(ValidateBatch(ok).ok());
}

}  // namespace
}  // namespace ckpt::server
