// DecodeChunkAnswer on well-formed and hostile ReadChunks answers: the
// bytes land in every destination only when the answer is exactly the
// requested chunk, and nothing is written past a destination.
#include "client/transport/chunk_answer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ckpt/v1/ckpt.pb.h"
#include "common/sha256.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace ckpt::client {
namespace {

using ::testing::HasSubstr;

// Raw protobuf wire pieces, for answers the generated code would not write.
std::string Varint(uint64_t value) {
  uint8_t bytes[10];
  const uint8_t* end =
      google::protobuf::io::CodedOutputStream::WriteVarint64ToArray(value,
                                                                    bytes);
  return std::string(reinterpret_cast<const char*>(bytes), end - bytes);
}
std::string Field(int number, const std::string& bytes) {
  return Varint(static_cast<uint64_t>(number) << 3 | 2) + Varint(bytes.size()) +
         bytes;
}

class ChunkAnswerTest : public ::testing::Test {
 protected:
  // A 300-byte chunk wanted in two places of `memory_`, each followed by
  // guard bytes a decode must never touch.
  ChunkAnswerTest() : chunk_(Chunk()), memory_(2 * (300 + 64), '\xee') {
    sink_.id = Sha256(chunk_);
    sink_.size = chunk_.size();
    sink_.destinations = {memory_.data(), memory_.data() + 300 + 64};
  }

  static std::string Chunk() {
    std::string bytes(300, '\0');
    for (size_t i = 0; i < bytes.size(); ++i) {
      bytes[i] = static_cast<char>(i * 7 + 1);
    }
    return bytes;
  }
  std::string Id() const { return std::string(sink_.id.bytes()); }
  std::string Answer() const {
    v1::ReadChunksResponse response;
    response.mutable_chunk()->set_sha256(Id());
    response.mutable_chunk()->set_data(chunk_);
    return response.SerializeAsString();
  }
  // Decodes `wire` handed over in pieces of `piece` bytes (gRPC's slices).
  absl::Status Decode(const std::string& wire, int piece = 64) {
    google::protobuf::io::ArrayInputStream stream(
        wire.data(), static_cast<int>(wire.size()), piece);
    return DecodeChunkAnswer(&stream, sink_, 3);
  }
  bool Delivered() const {
    return memory_.substr(0, 300) == chunk_ &&
           memory_.substr(364, 300) == chunk_;
  }
  bool GuardsIntact() const {
    return memory_.substr(300, 64) == std::string(64, '\xee') &&
           memory_.substr(664, 64) == std::string(64, '\xee');
  }
  void ExpectRefused(const std::string& wire, const std::string& why) {
    absl::Status status = Decode(wire);
    EXPECT_TRUE(absl::IsDataLoss(status)) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr("answer 3"));
    EXPECT_THAT(std::string(status.message()), HasSubstr(why));
    EXPECT_TRUE(GuardsIntact());
  }

  const std::string chunk_;
  std::string memory_;
  ChunkSink sink_;
};

TEST_F(ChunkAnswerTest, TheRequestedChunkLandsInEveryDestination) {
  for (int piece : {1, 7, 64, 4096}) {
    memory_.assign(memory_.size(), '\xee');
    ASSERT_TRUE(Decode(Answer(), piece).ok()) << piece;
    EXPECT_TRUE(Delivered()) << piece;
    EXPECT_TRUE(GuardsIntact()) << piece;
  }
}

TEST_F(ChunkAnswerTest, FieldOrderAndUnknownFieldsAreAsProtobufReadsThem) {
  // Data before id, and fields this build does not know at both levels
  // (a newer server's), of every wire type.
  const std::string unknown = Varint(9 << 3 | 0) + Varint(300) +
                              Varint(10 << 3 | 1) + std::string(8, 'x') +
                              Varint(11 << 3 | 5) + std::string(4, 'y') +
                              Field(12, "later");
  const std::string chunk = Field(2, chunk_) + unknown + Field(1, Id());
  ASSERT_TRUE(Decode(unknown + Field(1, chunk) + unknown).ok());
  EXPECT_TRUE(Delivered());
}

TEST_F(ChunkAnswerTest, AnotherChunkIsRefused) {
  std::string other = chunk_;
  other[0] ^= 1;
  ExpectRefused(
      Field(1, Field(1, std::string(Sha256(other).bytes())) + Field(2, chunk_)),
      "another chunk than the requested");
  ExpectRefused(Field(1, Field(1, Id()) + Field(2, chunk_ + "!")),
                "301 bytes of another chunk");
  ExpectRefused(Field(1, Field(1, Id()) + Field(2, chunk_.substr(1))),
                "299 bytes of another chunk");
  ExpectRefused(Field(1, Field(1, Id())), "0 bytes of another chunk");
  ExpectRefused(Field(1, Field(2, chunk_)), "another chunk");
  ExpectRefused("", "holds no chunk");
  ExpectRefused(Field(5, Answer()), "holds no chunk");
}

TEST_F(ChunkAnswerTest, AFieldGivenTwiceIsRefused) {
  ExpectRefused(Answer() + Answer(), "two chunks");
  ExpectRefused(Field(1, Field(1, Id()) + Field(2, chunk_) + Field(2, chunk_)),
                "two data fields");
  ExpectRefused(Field(1, Field(1, Id()) + Field(1, Id()) + Field(2, chunk_)),
                "two ids");
}

TEST_F(ChunkAnswerTest, EveryTruncationIsRefused) {
  // With a trailing unknown field in the chunk, so that a cut inside it
  // (after the data) must be seen too.
  const std::string whole =
      Field(1, Field(1, Id()) + Field(2, chunk_) + Field(12, "tail"));
  ASSERT_TRUE(Decode(whole).ok());
  for (size_t cut = 0; cut < whole.size(); ++cut) {
    absl::Status status = Decode(whole.substr(0, cut));
    EXPECT_TRUE(absl::IsDataLoss(status)) << cut << ": " << status;
    EXPECT_TRUE(GuardsIntact()) << cut;
  }
}

TEST_F(ChunkAnswerTest, LengthsPastTheMessageOrTheLimitsAreRefusedUnread) {
  // A length claiming 4 GiB, a 5 GiB varint, a length running past the
  // chunk's own, an id longer than a digest, a truncated varint.
  ExpectRefused(Varint(1 << 3 | 2) + Varint(0xffffffffu), "truncated");
  ExpectRefused(Varint(1 << 3 | 2) + Varint(5ull << 30), "truncated");
  ExpectRefused(
      Field(1, Field(1, Id()) + Varint(2 << 3 | 2) + Varint(300)) + chunk_,
      "truncated");
  ExpectRefused(Field(1, Field(1, std::string(65, 'i')) + Field(2, chunk_)),
                "a 65-byte chunk id");
  ExpectRefused(Field(1, Field(1, Id()) + Varint(2 << 3 | 2) + "\xff\xff"),
                "truncated");
  // A tag of field 0 is no field at all.
  ExpectRefused(Answer() + std::string(1, '\0'), "does not end");
}

TEST_F(ChunkAnswerTest, AChunkWithoutDestinationsIsReadAndChecked) {
  sink_.destinations.clear();
  EXPECT_TRUE(Decode(Answer()).ok());
  EXPECT_TRUE(absl::IsDataLoss(Decode(Field(1, Field(1, Id())))));
  EXPECT_TRUE(GuardsIntact());
  EXPECT_EQ(memory_.substr(0, 300), std::string(300, '\xee'));
}

TEST_F(ChunkAnswerTest, AnEmptyChunkNeedsNoDataField) {
  sink_.id = Sha256("");
  sink_.size = 0;
  EXPECT_TRUE(Decode(Field(1, Field(1, Id()))).ok());
  EXPECT_TRUE(GuardsIntact());
}

}  // namespace
}  // namespace ckpt::client
