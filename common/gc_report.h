// GcReport: what one garbage collection found and did, as the server
// reports it and the client and CLI show it.
#pragma once

#include <cstdint>
#include <optional>
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

struct GcOptions {
  // Report what would be deleted; delete nothing. Default: false.
  bool dry_run = false;
  // How long chunks a save named stay held, for this collection only;
  // from zero to the server's ServiceOptions::chunk_hold. Default: nullopt,
  // the server's.
  std::optional<absl::Duration> hold;
};

// Why a chunk a collection would otherwise delete is kept (the proto's
// HeldReason; a value this build does not know is kept as is).
enum class HeldReason : int {
  kUnspecified = 0,
  kSaveInFlight = 1,               // named by a save within the hold window
  kCommittedDuringCollection = 2,  // committed while the collection ran
  kPendingCheckpoint = 3,          // referenced by pending checkpoints only
  kTenantSkipped = 4,              // its tenant was skipped
};

// "save_in_flight", ...; "unknown(N)" for a value this build does not know.
std::string HeldReasonName(HeldReason reason);

// Chunks held for one reason in one tenant, and one checkpoint for
// kPendingCheckpoint and kTenantSkipped.
struct HeldChunks {
  HeldReason reason = HeldReason::kUnspecified;
  std::string tenant;
  std::string job;  // empty when the reason has no checkpoint
  int64_t step = 0;
  uint64_t chunk_count = 0;
  uint64_t bytes = 0;
  // When the reason ends (the latest over the group); nullopt: when this
  // collection ends.
  std::optional<absl::Time> until;
};

// At most this many groups are listed in GcReport::held.
inline constexpr size_t kMaxHeldGroups = 1000;

struct GcReport {
  bool dry_run = false;
  // Stored when the collection began.
  uint64_t chunks_scanned = 0;
  uint64_t bytes_scanned = 0;
  // Distinct chunks referenced by stored shards (committed and pending).
  uint64_t chunks_referenced = 0;
  // Unreferenced, but spared: saves in flight named them (see
  // ServiceOptions::chunk_hold), committed them during the collection, or
  // their tenant was skipped.
  uint64_t chunks_held = 0;
  uint64_t bytes_held = 0;
  // The hold window applied to chunks saves named; nullopt from a server
  // that does not report it (and ignores GcOptions::hold).
  std::optional<absl::Duration> hold;
  // Why chunks are kept (see HeldReason), the most bytes first, at most
  // kMaxHeldGroups; held_group_count counts every group. Empty when damage
  // was found.
  std::vector<HeldChunks> held;
  uint64_t held_group_count = 0;
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
