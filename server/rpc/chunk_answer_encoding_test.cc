// EncodeChunkAnswer writes exactly protobuf's serialization of the
// ReadChunksResponse it stands for, so every client parses it as before.
#include "server/rpc/chunk_answer_encoding.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ckpt/v1/ckpt.pb.h"
#include "common/sha256.h"

namespace ckpt::server {
namespace {

std::string Flatten(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  std::string bytes;
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return bytes;
}

TEST(ChunkAnswerEncodingTest, IsProtobufsOwnSerializationAtEverySize) {
  // Sizes across the varint boundaries of the data's and the chunk's
  // lengths, the empty chunk (its data field left out) included.
  for (size_t size :
       {size_t{0}, size_t{1}, size_t{80}, size_t{127}, size_t{128},
        size_t{16383}, size_t{16384}, size_t{4} << 20}) {
    std::string data(size, '\0');
    for (size_t i = 0; i < size; ++i) data[i] = static_cast<char>(i * 13);
    const ChunkId id = Sha256(data);
    v1::ReadChunksResponse expected;
    expected.mutable_chunk()->set_sha256(std::string(id.bytes()));
    expected.mutable_chunk()->set_data(data);
    EXPECT_EQ(Flatten(EncodeChunkAnswer(id, data)),
              expected.SerializeAsString())
        << size;
  }
}

TEST(ChunkAnswerEncodingTest, TheBufferOwnsTheBytesAfterTheStringIsGone) {
  std::string data(1 << 20, 'x');
  const ChunkId id = Sha256(data);
  grpc::ByteBuffer answer;
  {
    std::string moved = data;
    answer = EncodeChunkAnswer(id, std::move(moved));
  }
  v1::ReadChunksResponse parsed;
  ASSERT_TRUE(parsed.ParseFromString(Flatten(answer)));
  EXPECT_EQ(parsed.chunk().sha256(), id.bytes());
  EXPECT_TRUE(parsed.chunk().data() == data);
}

}  // namespace
}  // namespace ckpt::server
