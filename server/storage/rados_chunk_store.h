// RadosChunkStore: chunk bytes as objects in a Ceph RADOS pool, shared by
// every server connected to it (issue 18). Layout (docs/architecture.md,
// "Chunks on Ceph RADOS: object layout"): one object per chunk, named by the
// id's 64 lowercase hex digits, in namespace namespace_prefix + tenant, with
// xattrs ckpt.sum (XXH3-128 of the bytes) and ckpt.used (the last recorded
// use, guarding DeleteIfUnusedSince).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
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
#include "common/clock.h"
#include "server/storage/chunk_store.h"
#include "server/storage/rados_cluster.h"

namespace ckpt::server {

struct RadosChunkStoreOptions {
  // Tenant T's chunks live in namespace namespace_prefix + T; ForEach("")
  // and GetUsage("") cover every namespace that starts with it. Another
  // prefix gives a separate store in the same pool (the conformance suite
  // uses one per case: a pool per case would cost a monitor round trip and
  // placement groups, of which an OSD allows only a few hundred).
  // Default: "chunks/". Must not be "meta" or start with it (the metadata).
  std::string namespace_prefix = "chunks/";
  // Asynchronous operations one MarkUsed or Sizes call keeps in flight.
  // Default: 64.
  size_t max_in_flight = 64;
};

// Thread-safe. Every write is one atomic RADOS operation, acknowledged once
// it is durable on every replica: a crash leaves each chunk wholly written
// or absent, and Sync has nothing to do.
class RadosChunkStore final : public ChunkStore {
 public:
  // `cluster` and `clock` must outlive the store.
  RadosChunkStore(RadosCluster* cluster, Clock* clock,
                  RadosChunkStoreOptions options = {});

  // One operation: exclusive create + write + both xattrs. A chunk already
  // present is marked used (MarkUsed) and reported as not new; when it is
  // deleted between the two, the Put is retried. INVALID_ARGUMENT past
  // kMaxChunkBytes.
  absl::StatusOr<bool> Put(absl::string_view tenant, const ChunkId& id,
                           absl::string_view bytes) override;
  absl::StatusOr<std::string> Get(absl::string_view tenant,
                                  const ChunkId& id) override;
  // Reads the bytes and ckpt.sum in one operation and checks XXH3-128;
  // DATA_LOSS naming tenant and chunk on a mismatch or a missing or
  // malformed ckpt.sum.
  absl::Status ReadVerified(
      absl::string_view tenant, const ChunkId& id,
      absl::FunctionRef<absl::Status(absl::string_view bytes)> consume)
      override;
  // One stat per id, max_in_flight at a time.
  absl::StatusOr<std::vector<std::optional<uint64_t>>> Sizes(
      absl::string_view tenant, absl::Span<const ChunkId> ids) override;
  absl::Status Delete(absl::string_view tenant, const ChunkId& id) override;

  bool IsShared() const override { return true; }
  // Per id one operation "assert exists + set ckpt.used = now", so a mark
  // never recreates a deleted chunk; max_in_flight at a time.
  absl::StatusOr<std::vector<bool>> MarkUsed(
      absl::string_view tenant, absl::Span<const ChunkId> ids) override;
  // One operation "compare ckpt.used < cutoff + remove": atomic against
  // MarkUsed, which the OSD serializes on the same object.
  absl::StatusOr<bool> DeleteIfUnusedSince(absl::string_view tenant,
                                           const ChunkId& id,
                                           absl::Time cutoff) override;

  // Nothing to do: a RADOS write is acknowledged once durable.
  absl::Status Sync() override;
  // Lists the namespace(s) and stats every chunk: one operation per chunk.
  absl::StatusOr<Usage> GetUsage(absl::string_view tenant) override;
  // RADOS frees an object's space when it is removed: reports the chunk
  // bytes (GetUsage("")) as both before and after.
  absl::StatusOr<DiskUsage> ReclaimSpace() override;
  // Lists, sorts into (tenant, id) order, then stats and calls back in
  // batches. A chunk deleted after the listing is skipped. DATA_LOSS naming
  // it for an object in a chunk namespace that is not named like a chunk.
  // Holds the whole listing in memory (32 bytes per chunk, its id).
  absl::Status ForEach(
      absl::string_view tenant,
      absl::FunctionRef<absl::Status(absl::string_view tenant,
                                     const ChunkId& id, uint64_t size)>
          fn) override;

 private:
  // Chunk ids by tenant, each sorted.
  using Listing = std::map<std::string, std::vector<ChunkId>, std::less<>>;
  absl::StatusOr<Listing> List(absl::string_view tenant);
  std::string NamespaceOf(absl::string_view tenant) const;

  RadosCluster* const cluster_;
  Clock* const clock_;
  const RadosChunkStoreOptions options_;
};

}  // namespace ckpt::server
