// EncodeChunkAnswer: one ReadChunks answer, the bytes of a serialized
// ReadChunksResponse{chunk: ChunkData{sha256, data}}, as a grpc::ByteBuffer
// whose chunk bytes are the string read from the store itself. The
// generated message's serialization copied every multi-MiB chunk once more
// (a twentieth of a network restore's CPU).
//
// Internal to server/rpc (ReadChunksReactor).
#pragma once

#include <grpcpp/support/byte_buffer.h>

#include <string>

#include "common/chunk_id.h"

namespace ckpt::server {

// The encoding is protobuf's own for these fields (field order, an empty
// `data` left out), so any client parses it as it parsed the generated
// message's. `data` is owned by the buffer until gRPC has sent it.
grpc::ByteBuffer EncodeChunkAnswer(const ChunkId& id, std::string data);

}  // namespace ckpt::server
