// StoredBytesQuota: a ChunkStore wrapper that keeps each tenant's stored
// chunk bytes within TenantQuotas' max_stored_bytes. A Put that would store
// new bytes past the quota is refused with RESOURCE_EXHAUSTED (naming the
// limit, the tenant, the quota and the usage) and stores nothing; a chunk
// the tenant already holds costs nothing, as deduplication stores nothing;
// Delete (garbage collection) gives the bytes back.
//
// Usage is computed from the store (every chunk's recorded size, read from
// the index without chunk bodies) when the wrapper opens, then kept in
// memory by Put and Delete. It is not persisted: a persisted counter would
// have to change atomically with every chunk write and delete (RocksDB
// writes chunks and their index outside the metadata batches), and a crash
// between the two would leave it wrong forever; a count taken at startup is
// right by construction and costs one scan of the chunk index.
//
// Every chunk write goes through ChunkStore::Put, so wrapping the store the
// service uses covers saves, copies and imports alike.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/service/tenant_quotas.h"
#include "server/storage/store_wrappers.h"

namespace ckpt::server {

// Thread-safe. The wrapped store must outlive it.
class StoredBytesQuota final : public ChunkStoreWrapper {
 public:
  // Counts every tenant's stored bytes in `target` (one scan of its index)
  // and enforces `quotas` on later Puts. Fails as the scan fails.
  static absl::StatusOr<std::unique_ptr<StoredBytesQuota>> Open(
      ChunkStore* target, TenantQuotas quotas);

  // RESOURCE_EXHAUSTED, storing nothing, when (tenant, id) is new and its
  // bytes would take the tenant past its max_stored_bytes, counting the
  // bytes of other Puts of the tenant in progress. Otherwise as the target.
  absl::StatusOr<bool> Put(absl::string_view tenant, const ChunkId& id,
                           absl::string_view bytes) override;
  // As the target; the deleted chunk's bytes leave the tenant's usage.
  absl::Status Delete(absl::string_view tenant, const ChunkId& id) override;
  // As the target, giving the bytes back when this call deleted the chunk
  // (how garbage collection deletes on a shared store).
  absl::StatusOr<bool> DeleteIfUnusedSince(absl::string_view tenant,
                                           const ChunkId& id,
                                           absl::Time cutoff) override;

  // The tenant's stored chunk bytes as counted.
  uint64_t stored_bytes(absl::string_view tenant) const;

  // For Open only (public for std::make_unique).
  StoredBytesQuota(ChunkStore* target, TenantQuotas quotas);

 private:
  // Takes `bytes` off the tenant's stored count.
  void GiveBack(absl::string_view tenant, uint64_t bytes);

  struct Usage {
    uint64_t stored = 0;    // bytes of the tenant's chunks
    uint64_t reserved = 0;  // bytes of new chunks being written
  };

  const TenantQuotas quotas_;
  // Held across a Delete's size lookup, delete and subtraction, so that two
  // deletes of one chunk cannot both subtract its bytes. Only garbage
  // collection deletes, one chunk at a time, so it costs nothing.
  absl::Mutex delete_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Usage> usage_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ckpt::server
