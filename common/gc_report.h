// GcReport: what one garbage collection found and did, as the server
// reports it and the client and CLI show it.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "common/chunk_id.h"
#include "common/manifest.h"

namespace ckpt {

// A checkpoint that references chunks the store does not hold.
struct DamagedCheckpoint {
  std::string job;
  int64_t step = 0;
  CheckpointState state = CheckpointState::kCommitted;
  std::vector<ChunkId> missing_chunks;
};

struct GcReport {
  bool dry_run = false;
  // Stored when the collection began.
  uint64_t chunks_scanned = 0;
  uint64_t bytes_scanned = 0;
  // Distinct chunks referenced by stored shards (committed and pending).
  uint64_t chunks_referenced = 0;
  // Unreferenced, but spared: saves in flight named them (see
  // ServiceOptions::chunk_hold) or committed them during the collection.
  uint64_t chunks_held = 0;
  // Deleted (in a dry run: would be).
  uint64_t chunks_deleted = 0;
  uint64_t bytes_deleted = 0;
  // The chunk store's size on disk before the sweep and after reclaiming
  // space (both 0 in a dry run or when nothing was deleted).
  uint64_t disk_bytes_before = 0;
  uint64_t disk_bytes_after = 0;
  // Tenants left alone, with why (pending checkpoints from before the
  // server started, whose uploads the server no longer knows about).
  std::vector<std::pair<std::string, std::string>> skipped_tenants;
  // Non-empty: referenced chunks are missing, and nothing was deleted.
  std::vector<DamagedCheckpoint> damaged;
  absl::Duration duration;
};

}  // namespace ckpt
