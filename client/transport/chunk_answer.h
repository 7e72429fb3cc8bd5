// ChunkAnswer: one ReadChunks answer decoded straight from gRPC's receive
// buffer into its chunk's destinations. grpc::ClientReader<ChunkAnswer>
// reads a ReadChunks stream with it (the SerializationTraits below).
//
// Why not the generated ReadChunksResponse: proto3's Clear deletes a
// singular sub-message, so each answer allocated a new ChunkData and a new
// chunk-sized string (fresh pages, faulted in, then unmapped: a fifth of a
// network restore's CPU), and its bytes were copied twice. Here they are
// copied once, from the receive slices into the first destination.
//
// The answer is hostile input. It must be exactly one ChunkData whose id
// and size are the requested chunk's (DeliverChunk's rule); a field given
// twice, a length past the message, a size other than the sink's, or an id
// longer than a digest is DATA_LOSS naming the answer, and no byte is
// written past a destination. Unknown fields are skipped, as protobuf
// would. On error a destination may hold part of the answer.
//
// Internal to client/transport.
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/serialization_traits.h>

#include <cstddef>

#include "absl/status/status.h"
#include "client/transport.h"
#include "google/protobuf/io/zero_copy_stream.h"

namespace ckpt::client {

struct ChunkAnswer {
  // Set by the reader before each Read: the sink answer `index` must fill.
  const ChunkSink* sink = nullptr;
  size_t index = 0;
  // Set by the read: OK once the bytes are in every destination.
  absl::Status status;
};

// Decodes the serialized ReadChunksResponse in `stream` as answer `index`,
// for `sink` (the rules above). Apart from gRPC, for tests and fuzzing.
absl::Status DecodeChunkAnswer(
    google::protobuf::io::ZeroCopyInputStream* stream, const ChunkSink& sink,
    size_t index);

}  // namespace ckpt::client

namespace grpc {

template <>
class SerializationTraits<ckpt::client::ChunkAnswer, void> {
 public:
  // Never sent: the client only reads answers.
  static Status Serialize(const ckpt::client::ChunkAnswer& answer,
                          ByteBuffer* buffer, bool* own_buffer);
  // Decodes into answer->sink's destinations and sets answer->status; the
  // gRPC status is OK for any answer, so that the reader sees the decode's
  // error (a failed Deserialize would only end the stream).
  static Status Deserialize(ByteBuffer* buffer,
                            ckpt::client::ChunkAnswer* answer);
};

}  // namespace grpc
