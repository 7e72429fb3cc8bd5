// ChunkStore: immutable content-addressed chunk bytes, scoped by tenant.
// The same bytes stored by two tenants are two entries, so nothing about one
// tenant's chunks is observable through another's requests.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/chunk_id.h"

namespace ckpt::server {

// Implementations are thread-safe.
class ChunkStore {
 public:
  virtual ~ChunkStore() = default;

  // Stores `bytes` under (tenant, id). Returns true when the chunk was new,
  // false when it was already present (the bytes are then not written).
  // REQUIRES: id == Sha256(bytes); the caller has verified it.
  // Not durable until Sync() returns; a crash before that may lose it.
  virtual absl::StatusOr<bool> Put(absl::string_view tenant, const ChunkId& id,
                                   absl::string_view bytes) = 0;

  // The stored bytes, unverified. NOT_FOUND when absent.
  virtual absl::StatusOr<std::string> Get(absl::string_view tenant,
                                          const ChunkId& id) = 0;

  // Reads the chunk, checks its bytes, then calls `consume` with a view
  // valid during the call. The check is against a checksum the store
  // recorded at Put when it keeps one (RocksDbStore: XXH3-128, ten times
  // faster than SHA-256 and as sure against accidental damage), else
  // SHA-256 against `id`. DATA_LOSS (naming the chunk) on a mismatch,
  // NOT_FOUND when absent; otherwise what `consume` returns. The default
  // uses Get and SHA-256.
  virtual absl::Status ReadVerified(
      absl::string_view tenant, const ChunkId& id,
      absl::FunctionRef<absl::Status(absl::string_view bytes)> consume);

  // ReadVerified, returning the checked bytes for a caller that keeps them
  // (a ReadChunks answer). The default copies what ReadVerified hands over;
  // RocksDbStore returns the bytes it read, with no copy of a large chunk.
  virtual absl::StatusOr<std::string> ReadVerifiedBytes(
      absl::string_view tenant, const ChunkId& id);

  // For each id, the size in bytes of (tenant, id) when it is stored, else
  // nullopt. Cheap: reads no chunk body (RocksDbStore: one MultiGet of its
  // index), so commit can hold every piece's recorded size against it.
  virtual absl::StatusOr<std::vector<std::optional<uint64_t>>> Sizes(
      absl::string_view tenant, absl::Span<const ChunkId> ids) = 0;

  // Sizes, leaving out chunks the store holds but could still lose to a
  // sync that fails: what a commit, after its Sync(), may name. A store
  // that never drops a stored chunk answers as Sizes, the default. RocksDbStore
  // leaves out large chunks still staged (stored, their files not yet synced):
  // Sizes shows them so that a save dedups against them, but a commit that
  // saw one there after its Sync might name a chunk whose file a later
  // sync fails to make durable.
  virtual absl::StatusOr<std::vector<std::optional<uint64_t>>> DurableSizes(
      absl::string_view tenant, absl::Span<const ChunkId> ids) {
    return Sizes(tenant, ids);
  }

  // For each id, whether (tenant, id) is stored. Cheap: reads no chunk body.
  // The default asks Sizes.
  virtual absl::StatusOr<std::vector<bool>> Contains(
      absl::string_view tenant, absl::Span<const ChunkId> ids);

  // Removes (tenant, id); OK when absent.
  virtual absl::Status Delete(absl::string_view tenant, const ChunkId& id) = 0;

  // Whether several servers use this store at once (RadosChunkStore). Then
  // no server's in-process ChunkGuard sees the others' saves, so every use
  // of a chunk is recorded on the chunk itself (MarkUsed, Put) and garbage
  // collection deletes through DeleteIfUnusedSince.
  virtual bool IsShared() const { return false; }

  // Records, on each chunk of `ids` that is present, that a save uses it
  // now (the store's clock), and returns which are present. A shared store
  // also records a Put, and a Put of a chunk already present, as a use. The
  // default records nothing and returns Contains.
  virtual absl::StatusOr<std::vector<bool>> MarkUsed(
      absl::string_view tenant, absl::Span<const ChunkId> ids);

  // Deletes (tenant, id) unless its last recorded use is at or after
  // `cutoff`, atomically against MarkUsed: either the mark finds the chunk
  // gone or the delete finds it used. Returns whether this call deleted it:
  // false when spared or already absent. The default deletes
  // unconditionally and returns true even for an absent chunk: with one
  // server its ChunkGuard has already decided, and GC only counts the
  // answer.
  virtual absl::StatusOr<bool> DeleteIfUnusedSince(absl::string_view tenant,
                                                   const ChunkId& id,
                                                   absl::Time cutoff);

  // Makes every Put that returned before this call durable.
  virtual absl::Status Sync() = 0;

  struct Usage {
    uint64_t chunk_count = 0;
    uint64_t bytes = 0;
  };
  // Totals for one tenant, or for all when `tenant` is empty.
  virtual absl::StatusOr<Usage> GetUsage(absl::string_view tenant) = 0;

  // Returns the disk space of deleted chunks to the file system (where
  // deleting only marks them) and reports the store's size on disk before
  // and after. Expensive: garbage collection calls it after a sweep.
  struct DiskUsage {
    uint64_t bytes_before = 0;
    uint64_t bytes_after = 0;
  };
  virtual absl::StatusOr<DiskUsage> ReclaimSpace() = 0;

  // Calls `fn(tenant, id, size)` for every chunk of `tenant` (all tenants
  // when empty), in (tenant, id) order; stops at the first non-OK status
  // and returns it.
  virtual absl::Status ForEach(
      absl::string_view tenant,
      absl::FunctionRef<absl::Status(absl::string_view tenant,
                                     const ChunkId& id, uint64_t size)>
          fn) = 0;
};

}  // namespace ckpt::server
