// ChunkGuard: the chunks garbage collection must not delete although no
// stored shard references them (yet). Saves in flight announce their chunks
// (FindMissingChunks, PutChunks) before committing the shard that will
// reference them; those stay held for a while. And a collection's mark is a
// snapshot, so chunks committed after it began are protected until it ends.
#pragma once

#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/chunk_id.h"

namespace ckpt::server {

// Thread-safe.
class ChunkGuard {
 public:
  // A chunk announced at time t is held until t + hold.
  explicit ChunkGuard(absl::Duration hold) : hold_(hold) {}

  // Holds (tenant, id) for every id, from `now`.
  void Announce(absl::string_view tenant, absl::Span<const ChunkId> ids,
                absl::Time now);

  // Between these, Committed() records ids for IsProtected. One collection
  // at a time.
  void BeginCollection();
  void EndCollection();
  // Records that a shard referencing `ids` was committed. A no-op outside a
  // collection (the next one's mark sees the stored shard).
  void Committed(absl::string_view tenant, absl::Span<const ChunkId> ids);

  // Why (tenant, id) must be kept at `now`.
  struct Protection {
    // A save named it within the hold (until: when that hold ends), or a
    // shard committed during the running collection references it.
    enum class Kind { kAnnounced, kCommittedDuringCollection } kind;
    absl::Time until;  // kAnnounced only
  };
  // Whether (tenant, id) is protected at `now`: announced within `hold`
  // before `now`, or committed during the running collection. A hold longer
  // than the guard's own counts as the guard's (longer holds are forgotten).
  std::optional<Protection> Protects(absl::string_view tenant,
                                     const ChunkId& id, absl::Time now,
                                     absl::Duration hold) const;
  // Protects() with the guard's own hold.
  bool IsProtected(absl::string_view tenant, const ChunkId& id,
                   absl::Time now) const {
    return Protects(tenant, id, now, hold_).has_value();
  }

  // Forgets holds that ended before `now`.
  void ExpireHolds(absl::Time now);

  // Held (tenant, id) pairs, expired ones included until ExpireHolds.
  size_t held_count() const;

 private:
  // About 200 MB of holds.
  static constexpr size_t kExpireInlineAbove = size_t{4} << 20;
  void ExpireHoldsLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  using TenantIds =
      absl::flat_hash_map<std::string, absl::flat_hash_set<ChunkId>>;

  const absl::Duration hold_;
  mutable absl::Mutex mu_;
  // tenant -> id -> when it was last announced (its hold ends hold_ later;
  // a collection may ask for a shorter hold).
  absl::flat_hash_map<std::string, absl::flat_hash_map<ChunkId, absl::Time>>
      announced_ ABSL_GUARDED_BY(mu_);
  size_t held_count_ ABSL_GUARDED_BY(mu_) = 0;
  bool collecting_ ABSL_GUARDED_BY(mu_) = false;
  TenantIds committed_during_collection_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ckpt::server
