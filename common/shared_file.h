// The domain form of a same-host restore into a client's memory file
// (ReadChunksIntoFile): which file, and where each chunk goes in it. Shared
// by the client's transport and the server's service; converted to and from
// ckpt.v1 in common/wire_format only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/chunk_id.h"

namespace ckpt {

// A client's restore memfd, named so the server can open it
// (/proc/<pid>/fd/<fd>) and recognise it: the token is written in the file's
// first page and proves the server opened the right file.
struct SharedFileTarget {
  int32_t pid = 0;
  int32_t fd = -1;
  std::string token;
  friend bool operator==(const SharedFileTarget&,
                         const SharedFileTarget&) = default;
};

// One distinct chunk to write into the file: its id, its size as the client
// expects it, and the file offsets to write it at (each after the token).
struct ChunkPlacement {
  ChunkId id;
  uint64_t size = 0;
  std::vector<uint64_t> offsets;
  friend bool operator==(const ChunkPlacement&,
                         const ChunkPlacement&) = default;
};

}  // namespace ckpt
