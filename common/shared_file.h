// The domain form of a same-host restore into a client's memory file
// (ReadChunksIntoFile): how a client reaches the server's shared-memory
// socket to register its memfd, and where each chunk goes in that file.
// Shared by the client's transport and the server; converted to and from
// ckpt.v1 in common/wire_format only. The socket's own protocol is in
// common/shared_file_protocol.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/chunk_id.h"

namespace ckpt {

// What GetSharedFileEndpoint answers: the server's Unix socket (an
// abstract name, without its leading NUL) and a ticket for it. The ticket
// proves to the socket that the client was given it over the gRPC channel,
// and lets the client check that the socket is that server's (see
// shared_file_protocol.h).
struct SharedFileEndpoint {
  std::string socket_name;
  std::string ticket_id;
  std::string ticket;
  friend bool operator==(const SharedFileEndpoint&,
                         const SharedFileEndpoint&) = default;
};

// One distinct chunk to write into the registered file: its id, its size as
// the client expects it, and the file offsets to write it at.
struct ChunkPlacement {
  ChunkId id;
  uint64_t size = 0;
  std::vector<uint64_t> offsets;
  friend bool operator==(const ChunkPlacement&,
                         const ChunkPlacement&) = default;
};

}  // namespace ckpt
