#include "common/manifest.h"

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/chunking.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr DType kAllDTypes[] = {
    DType::kUint8,   DType::kInt8,    DType::kInt16,     DType::kInt32,
    DType::kInt64,   DType::kFloat16, DType::kBFloat16,  DType::kFloat32,
    DType::kFloat64, DType::kBool,    DType::kComplex64, DType::kComplex128,
};

// ---------------------------------------------------------------- DType

TEST(DTypeTest, SizesMatchNumpy) {
  EXPECT_EQ(DTypeSize(DType::kUint8), 1u);
  EXPECT_EQ(DTypeSize(DType::kInt8), 1u);
  EXPECT_EQ(DTypeSize(DType::kInt16), 2u);
  EXPECT_EQ(DTypeSize(DType::kInt32), 4u);
  EXPECT_EQ(DTypeSize(DType::kInt64), 8u);
  EXPECT_EQ(DTypeSize(DType::kFloat16), 2u);
  EXPECT_EQ(DTypeSize(DType::kBFloat16), 2u);
  EXPECT_EQ(DTypeSize(DType::kFloat32), 4u);
  EXPECT_EQ(DTypeSize(DType::kFloat64), 8u);
  EXPECT_EQ(DTypeSize(DType::kBool), 1u);
  EXPECT_EQ(DTypeSize(DType::kComplex64), 8u);
  EXPECT_EQ(DTypeSize(DType::kComplex128), 16u);
}

TEST(DTypeTest, NamesMatchNumpy) {
  EXPECT_EQ(DTypeName(DType::kUint8), "uint8");
  EXPECT_EQ(DTypeName(DType::kInt8), "int8");
  EXPECT_EQ(DTypeName(DType::kInt16), "int16");
  EXPECT_EQ(DTypeName(DType::kInt32), "int32");
  EXPECT_EQ(DTypeName(DType::kInt64), "int64");
  EXPECT_EQ(DTypeName(DType::kFloat16), "float16");
  EXPECT_EQ(DTypeName(DType::kBFloat16), "bfloat16");
  EXPECT_EQ(DTypeName(DType::kFloat32), "float32");
  EXPECT_EQ(DTypeName(DType::kFloat64), "float64");
  EXPECT_EQ(DTypeName(DType::kBool), "bool");
  EXPECT_EQ(DTypeName(DType::kComplex64), "complex64");
  EXPECT_EQ(DTypeName(DType::kComplex128), "complex128");
}

TEST(DTypeTest, NameParsesBackForEveryDType) {
  absl::flat_hash_set<std::string> names;
  for (DType dtype : kAllDTypes) {
    SCOPED_TRACE(DTypeName(dtype));
    EXPECT_GT(DTypeSize(dtype), 0u);
    EXPECT_TRUE(names.insert(std::string(DTypeName(dtype))).second);
    auto parsed = ParseDType(DTypeName(dtype));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, dtype);
  }
}

TEST(DTypeTest, OutOfRangeValuesAreInvalid) {
  for (int raw : {0, 13, 255}) {
    DType dtype = static_cast<DType>(raw);
    EXPECT_EQ(DTypeSize(dtype), 0u) << raw;
    EXPECT_EQ(DTypeName(dtype), "invalid") << raw;
  }
}

TEST(DTypeTest, ParseRejectsUnknownNames) {
  for (absl::string_view name : {"", "float", "Float32", "FLOAT32", "float32 ",
                                 "fp32", "invalid", "int128", "uint16"}) {
    SCOPED_TRACE(name);
    auto parsed = ParseDType(name);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(CheckpointStateTest, Names) {
  EXPECT_EQ(CheckpointStateName(CheckpointState::kPending), "pending");
  EXPECT_EQ(CheckpointStateName(CheckpointState::kCommitted), "committed");
  EXPECT_EQ(CheckpointStateName(CheckpointState::kAborted), "aborted");
  EXPECT_EQ(CheckpointStateName(static_cast<CheckpointState>(0)), "invalid");
}

TEST(CheckpointRecordTest, EffectiveTimePrefersWriterTime) {
  CheckpointRecord record;
  record.commit_time = absl::FromUnixSeconds(2000);
  EXPECT_EQ(record.EffectiveTime(), absl::FromUnixSeconds(2000));
  record.metadata.writer_time = absl::FromUnixSeconds(1000);
  EXPECT_EQ(record.EffectiveTime(), absl::FromUnixSeconds(1000));
}

// ---------------------------------------------------------------- copy peers

TEST(ValidateCopyPeerTest, AcceptsAPrintableLabelAValidJobAndAStep) {
  EXPECT_TRUE(ValidateCopyPeer({"a.example:7000", "team/model", 0}).ok());
  EXPECT_TRUE(ValidateCopyPeer({std::string(kMaxCopyServerBytes, 's'),
                                "team/model", 1 << 30})
                  .ok());
  EXPECT_TRUE(ValidateCopyPeer({"serveur-\xc3\xa9t\xc3\xa9", "t/m", 5}).ok());
  EXPECT_EQ(CopyPeerText({"a:1", "team/model", 42}), "a:1 team/model@42");
}

TEST(ValidateCopyPeerTest, NamesTheFieldThatIsWrong) {
  struct Case {
    CopyPeer peer;
    std::string message_part;
  };
  const std::vector<Case> cases = {
      {{"", "t/m", 1}, "server must be 1-256 bytes"},
      {{std::string(kMaxCopyServerBytes + 1, 's'), "t/m", 1},
       "server must be 1-256 bytes"},
      {{"a\nforged log line", "t/m", 1}, "server must be"},
      {{"\x1b[2Jterminal", "t/m", 1}, "server must be"},
      {{"bad\xff", "t/m", 1}, "server must be"},
      {{"a", "no-tenant", 1}, "job: invalid job name 'no-tenant'"},
      {{"a", "", 1}, "job: invalid job name"},
      {{"a", "t/m", -1}, "step must be >= 0, got -1"},
  };
  for (const Case& c : cases) {
    const absl::Status status = ValidateCopyPeer(c.peer);
    EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
    EXPECT_THAT(std::string(status.message()),
                ::testing::HasSubstr(c.message_part));
  }
}

// ---------------------------------------------------------------- job names

TEST(ValidateJobNameTest, AcceptsValidNames) {
  for (absl::string_view job :
       {"research/resnet50", "t/a/b.c_d-1", "a/b", "A-Z.a_z-0/9.-_",
        "tenant/with/many/segments/x"}) {
    EXPECT_TRUE(ValidateJobName(job).ok())
        << job << ": " << ValidateJobName(job);
  }
}

TEST(ValidateJobNameTest, AcceptsLengthLimitsExactly) {
  std::string tenant64(64, 't');
  EXPECT_TRUE(ValidateJobName(tenant64 + "/x").ok());
  std::string total256 = "t/" + std::string(254, 'n');
  ASSERT_EQ(total256.size(), 256u);
  EXPECT_TRUE(ValidateJobName(total256).ok()) << ValidateJobName(total256);
}

TEST(ValidateJobNameTest, RejectsInvalidNames) {
  struct Case {
    std::string job;
    std::string why;  // a substring of the message
  };
  const std::vector<Case> cases = {
      {"", "no tenant"},
      {"resnet50", "no tenant"},
      {"/resnet50", "tenant must be 1-64"},
      {std::string(65, 't') + "/x", "tenant must be 1-64"},
      {"research/", "empty name"},
      {"research/resnet50/", "ends with '/'"},
      {"a//b", "empty path segment"},
      {"a/b//c", "empty path segment"},
      {"a b/c", "not allowed"},
      {"a/b c", "not allowed"},
      {"a/b\tc", "not allowed"},
      {std::string("a/b\0c", 5), "not allowed"},
      {std::string("a/bc\0", 5), "not allowed"},
      {"a/b:c", "not allowed"},
      {"a/b\\c", "not allowed"},
      {"a/\xc3\xa9", "not allowed"},
      {"t/" + std::string(255, 'n'), "longer than the 256-byte limit"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.job);
    absl::Status status = ValidateJobName(c.job);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(status.message(), HasSubstr(c.why));
  }
}

TEST(TenantOfTest, ReturnsPartBeforeFirstSlash) {
  EXPECT_EQ(TenantOf("research/resnet50"), "research");
  EXPECT_EQ(TenantOf("t/a/b.c_d-1"), "t");
  EXPECT_EQ(TenantOf(std::string(64, 'x') + "/y"), std::string(64, 'x'));
}

// ---------------------------------------------------------------- shards

ChunkRef Piece(uint64_t size) {
  return ChunkRef{Sha256(std::to_string(size)), size};
}

// A float32 [4, 6] tensor; this shard holds rows [2, 4): 48 bytes.
TensorEntry ValidTensor(std::string name = "layer.weight") {
  TensorEntry t;
  t.name = std::move(name);
  t.dtype = DType::kFloat32;
  t.global_shape = {4, 6};
  t.box = Box{{2, 0}, {2, 6}};
  t.pieces = {Piece(32), Piece(16)};
  return t;
}

ShardManifest ValidShard() {
  ShardManifest shard;
  shard.rank = 1;
  shard.tensors = {ValidTensor("a"), ValidTensor("b")};
  return shard;
}

TEST(ByteSizeTest, ProductOfBoxLengthsTimesElementSize) {
  TensorEntry t = ValidTensor();
  EXPECT_EQ(t.ByteSize(), 2u * 6 * 4);
  t.dtype = DType::kComplex128;
  EXPECT_EQ(t.ByteSize(), 2u * 6 * 16);
  t.box.lengths = {0, 6};
  EXPECT_EQ(t.ByteSize(), 0u);
  TensorEntry scalar;
  scalar.dtype = DType::kInt64;
  EXPECT_EQ(scalar.ByteSize(), 8u);  // rank 0: one element
  EXPECT_EQ(ValidShard().ByteSize(), 96u);
  EXPECT_EQ(ShardManifest().ByteSize(), 0u);
}

TEST(ReferencedChunksTest, EachChunkOnceInFirstUseOrder) {
  ShardManifest shard = ValidShard();  // a and b both use Piece(32), Piece(16)
  shard.tensors[1].pieces = {Piece(16), Piece(8), Piece(8), Piece(24)};
  EXPECT_THAT(ReferencedChunks(shard),
              ElementsAre(Piece(32), Piece(16), Piece(8), Piece(24)));
  EXPECT_THAT(ReferencedChunks(ShardManifest()), IsEmpty());
}

TEST(ValidateShardManifestTest, AcceptsValidShard) {
  EXPECT_TRUE(ValidateShardManifest(ValidShard(), 2).ok());
  EXPECT_TRUE(ValidateShardManifest(ValidShard(), 100).ok());
  ShardManifest empty;  // no tensors at all
  EXPECT_TRUE(ValidateShardManifest(empty, 1).ok());
}

struct ShardCase {
  std::string label;
  std::function<void(ShardManifest&)> mutate;
  int32_t world_size = 2;
  // Empty when the mutated shard must be valid; else a message substring.
  std::string error;
};

void PrintTo(const ShardCase& c, std::ostream* os) { *os << c.label; }

class ValidateShardManifestTableTest
    : public testing::TestWithParam<ShardCase> {};

TEST_P(ValidateShardManifestTableTest, Validates) {
  const ShardCase& c = GetParam();
  ShardManifest shard = ValidShard();
  c.mutate(shard);
  absl::Status status = ValidateShardManifest(shard, c.world_size);
  if (c.error.empty()) {
    EXPECT_TRUE(status.ok()) << status;
  } else {
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(status.message(), HasSubstr(c.error));
  }
}

constexpr int64_t kHuge = int64_t{1} << 48;
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kInt64Min = std::numeric_limits<int64_t>::min();

INSTANTIATE_TEST_SUITE_P(
    Cases, ValidateShardManifestTableTest,
    testing::ValuesIn(std::vector<ShardCase>{
        // Ranks and world size.
        {"RankZeroOfOne", [](ShardManifest& s) { s.rank = 0; }, 1, ""},
        {"LastRank", [](ShardManifest& s) { s.rank = 1; }, 2, ""},
        {"RankEqualsWorldSize", [](ShardManifest& s) { s.rank = 2; }, 2,
         "outside world_size"},
        {"RankAboveWorldSize", [](ShardManifest& s) { s.rank = 7; }, 2,
         "outside world_size"},
        {"NegativeRank", [](ShardManifest& s) { s.rank = -1; }, 2,
         "outside world_size"},
        {"WorldSizeZero", [](ShardManifest& s) { s.rank = 0; }, 0,
         "world_size must be >= 1"},
        {"WorldSizeNegative", [](ShardManifest& s) { s.rank = 0; }, -3,
         "world_size must be >= 1"},
        // Names.
        {"DuplicateName",
         [](ShardManifest& s) { s.tensors[1].name = s.tensors[0].name; }, 2,
         "duplicate tensor name"},
        {"EmptyName", [](ShardManifest& s) { s.tensors[1].name.clear(); }, 2,
         "empty tensor name"},
        {"NameOf1024Bytes",
         [](ShardManifest& s) { s.tensors[1].name = std::string(1024, 'n'); },
         2, ""},
        {"NameOver1024Bytes",
         [](ShardManifest& s) { s.tensors[1].name = std::string(1025, 'n'); },
         2, "longer than the 1024-byte limit"},
        // DType.
        {"UnknownDType",
         [](ShardManifest& s) { s.tensors[0].dtype = static_cast<DType>(0); },
         2, "unknown dtype"},
        {"DTypeChangesByteSize",
         [](ShardManifest& s) { s.tensors[0].dtype = DType::kFloat64; }, 2,
         "pieces hold 48 bytes but the box needs 96"},
        // Box rank.
        {"TooFewOffsets",
         [](ShardManifest& s) { s.tensors[0].box.offsets = {2}; }, 2,
         "1 offsets and 2 lengths for a tensor of 2 dimensions"},
        {"TooManyLengths",
         [](ShardManifest& s) {
           s.tensors[0].box.lengths = {2, 6, 1};
         },
         2, "2 offsets and 3 lengths"},
        {"ShapeRankDiffersFromBox",
         [](ShardManifest& s) {
           s.tensors[0].global_shape = {4, 6, 1};
         },
         2, "for a tensor of 3 dimensions"},
        // Box inside shape.
        {"BoxCoversWholeTensor",
         [](ShardManifest& s) {
           s.tensors[0].box = Box{{0, 0}, {4, 6}};
           s.tensors[0].pieces = {Piece(96)};
         },
         2, ""},
        {"BoxPastEnd",
         [](ShardManifest& s) {
           s.tensors[0].box.offsets = {3, 0};
         },
         2, "exceeds dimension 0"},
        {"BoxLengthPastEnd",
         [](ShardManifest& s) {
           s.tensors[0].box = Box{{2, 1}, {2, 6}};
         },
         2, "exceeds dimension 1"},
        {"OffsetPastEnd",
         [](ShardManifest& s) {
           s.tensors[0].box = Box{{5, 0}, {0, 6}};
           s.tensors[0].pieces = {};
         },
         2, "exceeds dimension 0"},
        {"ZeroLengthAtEndIsInside",
         [](ShardManifest& s) {
           s.tensors[0].box = Box{{4, 0}, {0, 6}};
           s.tensors[0].pieces = {};
         },
         2, ""},
        {"NegativeOffset",
         [](ShardManifest& s) {
           s.tensors[0].box.offsets = {-1, 0};
         },
         2, "exceeds dimension 0"},
        {"NegativeLength",
         [](ShardManifest& s) {
           s.tensors[0].box.lengths = {2, -6};
         },
         2, "exceeds dimension 1"},
        {"NegativeDimension",
         [](ShardManifest& s) {
           s.tensors[0].global_shape = {-4, 6};
         },
         2, "dimension 0 has size -4"},
        // Pieces.
        {"PiecesTooFew",
         [](ShardManifest& s) { s.tensors[0].pieces.pop_back(); }, 2,
         "pieces hold 32 bytes but the box needs 48"},
        {"PiecesTooMany",
         [](ShardManifest& s) { s.tensors[0].pieces.push_back(Piece(1)); }, 2,
         "pieces hold 49 bytes but the box needs 48"},
        {"NoPiecesForNonEmptyBox",
         [](ShardManifest& s) { s.tensors[0].pieces.clear(); }, 2,
         "pieces hold 0 bytes"},
        {"ZeroSizePiece",
         [](ShardManifest& s) { s.tensors[0].pieces.push_back(Piece(0)); }, 2,
         "piece of 0 bytes"},
        {"OnePieceIsEnough",
         [](ShardManifest& s) { s.tensors[0].pieces = {Piece(48)}; }, 2, ""},
        {"ManySmallPieces",
         [](ShardManifest& s) { s.tensors[0].pieces.assign(48, Piece(1)); }, 2,
         ""},
        // Scalars and empty boxes.
        {"ScalarTensor",
         [](ShardManifest& s) {
           s.tensors[0].dtype = DType::kFloat64;
           s.tensors[0].global_shape = {};
           s.tensors[0].box = Box{};
           s.tensors[0].pieces = {Piece(8)};
         },
         2, ""},
        {"ScalarTensorWithoutPieces",
         [](ShardManifest& s) {
           s.tensors[0].global_shape = {};
           s.tensors[0].box = Box{};
           s.tensors[0].pieces = {};
         },
         2, "pieces hold 0 bytes but the box needs 4"},
        {"ZeroLengthBoxNoPieces",
         [](ShardManifest& s) {
           s.tensors[0].box = Box{{0, 0}, {0, 6}};
           s.tensors[0].pieces = {};
         },
         2, ""},
        {"ZeroSizedTensorNoPieces",
         [](ShardManifest& s) {
           s.tensors[0].global_shape = {0, 6};
           s.tensors[0].box = Box{{0, 0}, {0, 6}};
           s.tensors[0].pieces = {};
         },
         2, ""},
        {"ZeroLengthBoxWithPiece",
         [](ShardManifest& s) {
           s.tensors[0].box = Box{{0, 0}, {0, 6}};
           s.tensors[0].pieces = {Piece(4)};
         },
         2, "pieces hold 4 bytes but the box needs 0"},
        // Overflow: rejected without crashing (UBSan checks the arithmetic).
        {"DimensionAbove2To48",
         [](ShardManifest& s) {
           s.tensors[0].global_shape = {kHuge + 1, 6};
         },
         2, "dimension 0 has size"},
        {"DimensionInt64Max",
         [](ShardManifest& s) {
           s.tensors[0].global_shape = {kInt64Max, 6};
           s.tensors[0].box = Box{{kInt64Max - 1, 0}, {1, 6}};
         },
         2, "dimension 0 has size"},
        {"DimensionInt64Min",
         [](ShardManifest& s) {
           s.tensors[0].global_shape = {kInt64Min, 6};
         },
         2, "dimension 0 has size"},
        {"OffsetPlusLengthOverflows",
         [](ShardManifest& s) {
           s.tensors[0].global_shape = {kHuge, 6};
           s.tensors[0].box = Box{{kHuge - 1, 0}, {kInt64Max, 6}};
         },
         2, "exceeds dimension 0"},
        {"OffsetInt64Min",
         [](ShardManifest& s) {
           s.tensors[0].box = Box{{kInt64Min, 0}, {2, 6}};
         },
         2, "exceeds dimension 0"},
        {"HugeBoxProductOverflows",
         [](ShardManifest& s) {
           s.tensors[0].global_shape = {kHuge, kHuge, kHuge};
           s.tensors[0].box = Box{{0, 0, 0}, {kHuge, kHuge, kHuge}};
           s.tensors[0].pieces = {Piece(1)};
         },
         2, "box too large"},
        {"BoxBytesJustAbove2To62",
         [](ShardManifest& s) {
           // 2^47 * 2^15 * 2 bytes = 2^63.
           s.tensors[0].dtype = DType::kInt16;
           s.tensors[0].global_shape = {int64_t{1} << 47, int64_t{1} << 15};
           s.tensors[0].box = Box{{0, 0}, {int64_t{1} << 47, int64_t{1} << 15}};
         },
         2, "box too large"},
        {"HugeButRepresentableBox",
         [](ShardManifest& s) {
           // 2^46 * 2^14 * 4 bytes = 2^62: allowed, pieces just do not match.
           s.tensors[0].global_shape = {int64_t{1} << 46, int64_t{1} << 14};
           s.tensors[0].box = Box{{0, 0}, {int64_t{1} << 46, int64_t{1} << 14}};
         },
         2, "but the box needs 4611686018427387904"},
        {"PieceLargerThanAChunk",
         [](ShardManifest& s) {
           s.tensors[0].dtype = DType::kUint8;
           s.tensors[0].global_shape = {kHuge};
           s.tensors[0].box = Box{{0}, {kHuge}};
           s.tensors[0].pieces = {Piece(uint64_t{1} << 47),
                                  Piece(uint64_t{1} << 47)};
         },
         2, "pieces hold 1 to"},
    }),
    [](const testing::TestParamInfo<ShardCase>& param_info) {
      return param_info.param.label;
    });

TEST(ValidateShardManifestTest, ErrorNamesTheTensorAndRank) {
  ShardManifest shard = ValidShard();
  shard.tensors[1].pieces.clear();
  absl::Status status = ValidateShardManifest(shard, 2);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("tensor 'b' of rank 1"));
}

// Piece sizes come from the client; their sum must not wrap around and
// match a small box.
TEST(ValidateShardManifestTest, RejectsPieceSizesThatWrapAround) {
  ShardManifest shard = ValidShard();
  // 48 bytes needed; (2^64 - 1) + 49 == 48 (mod 2^64).
  shard.tensors[0].pieces = {Piece(std::numeric_limits<uint64_t>::max()),
                             Piece(49)};
  EXPECT_EQ(ValidateShardManifest(shard, 2).code(),
            absl::StatusCode::kInvalidArgument);
}

// A row delta of the [2, 6] float32 box (rows of 24 bytes): a 32-byte
// header, then per row a 4-byte index and the row.
TEST(ValidateShardManifestTest, DeltaPiecesMustHoldWholeRowsOfTheBox) {
  ShardManifest shard = ValidShard();
  TensorEntry& delta = shard.tensors[0];
  delta.delta_base_step = 3;
  EXPECT_EQ(delta.RowBytes(), 24u);
  EXPECT_EQ(delta.ByteSize(), 48u);  // what it restores to
  for (uint64_t rows : {0, 1, 2}) {
    SCOPED_TRACE(rows);
    delta.pieces = {Piece(32 + rows * 28)};
    EXPECT_EQ(delta.StoredBytes(), 32 + rows * 28);
    EXPECT_TRUE(ValidateShardManifest(shard, 2).ok());
  }
  delta.pieces = {Piece(40), Piece(20)};  // 60: header + 1 row, in 2 pieces
  EXPECT_TRUE(ValidateShardManifest(shard, 2).ok());
  for (uint64_t bad : {0, 31, 33, 59, 32 + 3 * 28}) {
    SCOPED_TRACE(bad);
    delta.pieces =
        bad == 0 ? std::vector<ChunkRef>{} : std::vector<ChunkRef>{Piece(bad)};
    absl::Status status = ValidateShardManifest(shard, 2);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), HasSubstr("no row delta"));
  }
  delta.pieces = {Piece(60)};
  delta.delta_base_step = -1;
  EXPECT_THAT(ValidateShardManifest(shard, 2).message(), HasSubstr("negative"));
  // A scalar has no rows to replace.
  TensorEntry scalar;
  scalar.name = "scalar";
  scalar.dtype = DType::kInt64;
  scalar.pieces = {Piece(40)};
  scalar.delta_base_step = 1;
  shard.tensors = {scalar};
  EXPECT_THAT(ValidateShardManifest(shard, 2).message(),
              HasSubstr("needs a tensor with rows"));
}

// Fingerprint pieces must add up to the record the entry implies (dense:
// 32 + 16 per row; sparse: 32 + 20 per delta row), and GC, verify and
// copy see them through ReferencedChunks.
TEST(ValidateShardManifestTest, FingerprintPiecesMustHoldTheEntrysRecord) {
  ShardManifest shard = ValidShard();
  TensorEntry& full = shard.tensors[0];              // 2 rows of 24 bytes
  full.fingerprint_pieces = {Piece(40), Piece(24)};  // 32 + 2 * 16
  EXPECT_TRUE(ValidateShardManifest(shard, 2).ok());
  EXPECT_EQ(full.FingerprintBytes(), 64u);
  EXPECT_THAT(ReferencedChunks(shard),
              ElementsAre(Piece(32), Piece(16), Piece(40), Piece(24)));
  for (uint64_t bad : {48, 63, 65, 96}) {
    SCOPED_TRACE(bad);
    full.fingerprint_pieces = {Piece(bad)};
    absl::Status status = ValidateShardManifest(shard, 2);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), HasSubstr("fingerprint pieces hold"));
    EXPECT_THAT(status.message(), HasSubstr("tensor 'a'"));
  }
  full.fingerprint_pieces = {Piece(64), ChunkRef{Sha256("zero"), 0}};
  EXPECT_THAT(ValidateShardManifest(shard, 2).message(),
              HasSubstr("fingerprint piece of 0 bytes"));
  full.fingerprint_pieces = {ChunkRef{Sha256("huge"), kMaxChunkBytes + 1}};
  EXPECT_THAT(ValidateShardManifest(shard, 2).message(),
              HasSubstr("fingerprint piece of"));

  // A delta of one row: a sparse record of one row.
  full.delta_base_step = 3;
  full.pieces = {Piece(32 + 28)};
  full.fingerprint_pieces = {Piece(32 + 20)};
  EXPECT_TRUE(ValidateShardManifest(shard, 2).ok());
  full.fingerprint_pieces = {Piece(32 + 2 * 20)};
  EXPECT_THAT(ValidateShardManifest(shard, 2).message(),
              HasSubstr("the delta's rows need a record of 52"));

  // None on a quantized or a rowless entry.
  TensorEntry scalar;
  scalar.name = "scalar";
  scalar.dtype = DType::kInt64;
  scalar.pieces = {Piece(8)};
  scalar.fingerprint_pieces = {Piece(48)};
  shard.tensors = {scalar};
  EXPECT_THAT(ValidateShardManifest(shard, 2).message(),
              HasSubstr("without rows"));
}

// A quantized [2, 6] float32 box: 2 rows of 6 columns; at 4 bits a 40-byte
// header, then per row 8 bytes of range and 3 bytes of codes.
TEST(ValidateShardManifestTest, QuantizedPiecesMustHoldTheEncodedMatrix) {
  ShardManifest shard = ValidShard();
  TensorEntry& entry = shard.tensors[0];
  entry.quantization =
      Quantization{.bits = 4, .max_abs_error = 0.1, .relative_l2_error = 0.05};
  EXPECT_EQ(entry.QuantizedRows(), 2u);
  EXPECT_EQ(entry.QuantizedCols(), 6u);
  entry.pieces = {Piece(40 + 2 * 11)};
  EXPECT_TRUE(ValidateShardManifest(shard, 2).ok());
  entry.pieces = {Piece(30), Piece(32)};  // the same 62 bytes in two pieces
  EXPECT_TRUE(ValidateShardManifest(shard, 2).ok());
  // A quantized entry is never a delta's base: no row fingerprints.
  entry.fingerprint_pieces = {Piece(32 + 2 * 16)};
  EXPECT_THAT(ValidateShardManifest(shard, 2).message(),
              HasSubstr("quantized, but with row fingerprints"));
  entry.fingerprint_pieces.clear();
  for (uint64_t bad : {48, 61, 63}) {
    SCOPED_TRACE(bad);
    entry.pieces = {Piece(bad)};
    EXPECT_THAT(ValidateShardManifest(shard, 2).message(),
                HasSubstr("matrix quantized to 4 bits takes 62"));
  }
  entry.pieces = {Piece(62)};

  auto invalid = [&](const std::function<void(TensorEntry&)>& mutate,
                     absl::string_view message) {
    ShardManifest copy = shard;
    mutate(copy.tensors[0]);
    absl::Status status = ValidateShardManifest(copy, 2);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << message;
    EXPECT_THAT(status.message(), HasSubstr(message));
  };
  invalid([](TensorEntry& t) { t.quantization->bits = 5; }, "the widths are");
  invalid([](TensorEntry& t) { t.quantization->bits = 0; }, "the widths are");
  invalid([](TensorEntry& t) { t.dtype = DType::kInt32; },
          "only float32 tensors are quantized");
  invalid([](TensorEntry& t) { t.quantization->max_abs_error = -1; },
          "not finite and non-negative");
  invalid(
      [](TensorEntry& t) { t.quantization->relative_l2_error = std::nan(""); },
      "not finite and non-negative");
  invalid([](TensorEntry& t) { t.delta_base_step = 1; },
          "both a row delta and quantized");
  invalid(
      [](TensorEntry& t) {
        t.box.lengths = {0, 6};
        t.pieces = {Piece(40)};
      },
      "quantized but empty");

  // At most one dimension: a single row.
  TensorEntry vector;
  vector.name = "vector";
  vector.dtype = DType::kFloat32;
  vector.global_shape = {10};
  vector.box = Box{{0}, {10}};
  vector.quantization = Quantization{.bits = 8};
  vector.pieces = {Piece(40 + 8 + 10)};
  EXPECT_EQ(vector.QuantizedRows(), 1u);
  EXPECT_EQ(vector.QuantizedCols(), 10u);
  TensorEntry scalar = vector;
  scalar.name = "scalar";
  scalar.global_shape = {};
  scalar.box = Box{};
  scalar.pieces = {Piece(40 + 8 + 1)};
  EXPECT_EQ(scalar.QuantizedRows(), 1u);
  EXPECT_EQ(scalar.QuantizedCols(), 1u);
  shard.tensors = {vector, scalar};
  EXPECT_TRUE(ValidateShardManifest(shard, 2).ok());
}

}  // namespace
}  // namespace ckpt
