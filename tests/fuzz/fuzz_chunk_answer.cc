// T23: the client's ReadChunks answer decoder (client/transport/chunk_answer.h)
// on hostile bytes. The first two input bytes give the requested chunk's
// size (little endian, below 4,096); its id is the SHA-256 of
// "chunk-answer-fuzz"; the rest is the answer. The chunk is wanted in two
// places, each an allocation of exactly its size, so a write past one is an
// ASan report. A refusal is DATA_LOSS; an accepted answer fills both
// places alike.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "client/transport/chunk_answer.h"
#include "common/sha256.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  ckpt::client::ChunkSink sink;
  sink.id = ckpt::Sha256("chunk-answer-fuzz");
  sink.size = (data[0] | (data[1] << 8)) % 4096;
  std::vector<char> first(sink.size), second(sink.size);
  sink.destinations = {first.data(), second.data()};
  // Small pieces, as gRPC's slices would split a large answer.
  google::protobuf::io::ArrayInputStream stream(
      data + 2, static_cast<int>(size - 2), /*block_size=*/97);
  const absl::Status status = ckpt::client::DecodeChunkAnswer(&stream, sink, 0);
  if (!status.ok()) {
    FUZZ_CHECK(status.code() == absl::StatusCode::kDataLoss,
               "a refused answer is DATA_LOSS");
    return 0;
  }
  FUZZ_CHECK(first == second, "an accepted chunk fills every place alike");
  return 0;
}
