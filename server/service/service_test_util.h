// Test helpers for the service layer: shards built from named byte blobs,
// saved the way the client does (begin, put every chunk, commit).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/chunking.h"
#include "common/sha256.h"
#include "server/service/checkpoint_service.h"

namespace ckpt::server::testing {

// A shard holding one uint8 tensor per blob, each chunked as the client does.
struct ShardBuilder {
  int32_t rank = 0;
  std::vector<std::pair<std::string, std::string>> blobs;  // name, bytes
  size_t chunk_bytes = 8;

  ShardManifest Manifest() const {
    ShardManifest shard;
    shard.rank = rank;
    for (const auto& [name, bytes] : blobs) {
      TensorEntry tensor;
      tensor.name = name;
      tensor.dtype = DType::kUint8;
      const auto size = static_cast<int64_t>(bytes.size());
      tensor.global_shape = {size};
      tensor.box = Box{{0}, {size}};
      for (absl::string_view chunk : SplitIntoChunks(bytes, chunk_bytes)) {
        tensor.pieces.push_back(ChunkRef{Sha256(chunk), chunk.size()});
      }
      shard.tensors.push_back(std::move(tensor));
    }
    return shard;
  }
};

// Begins (job, step), puts every chunk of `builder` and commits its shard.
inline absl::StatusOr<CommitResult> SaveShard(
    CheckpointService& service, const ShardBuilder& builder, int64_t step,
    int32_t world_size, absl::string_view job,
    const CheckpointMetadata& meta = {}) {
  auto begun = service.BeginCheckpoint(job, step, world_size, meta,
                                       absl::ZeroDuration());
  if (!begun.ok()) return begun.status();
  for (const auto& [name, bytes] : builder.blobs) {
    for (absl::string_view chunk :
         SplitIntoChunks(bytes, builder.chunk_bytes)) {
      auto put = service.PutChunk(job, Sha256(chunk), chunk);
      if (!put.ok()) return put.status();
    }
  }
  return service.CommitShard(job, step, world_size, builder.Manifest());
}

}  // namespace ckpt::server::testing
