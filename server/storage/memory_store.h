// MemoryStore: ChunkStore and MetadataStore kept in process memory, for
// unit tests of the service layer. Nothing survives destruction; Sync() and
// Apply() are trivially "durable". Orders and scopes keys exactly like
// RocksDbStore (both use server/storage/keys.h), so a test that passes
// here exercises the same iteration order as production.
#pragma once

#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/storage/chunk_store.h"
#include "server/storage/metadata_store.h"

namespace ckpt::server {

// Thread-safe. ForEach calls `fn` without holding the store's lock (on a
// copy of the chunk list taken at the start), so `fn` may call back into
// the store, e.g. to Delete.
class MemoryStore final : public ChunkStore, public MetadataStore {
 public:
  MemoryStore() = default;
  MemoryStore(const MemoryStore&) = delete;
  MemoryStore& operator=(const MemoryStore&) = delete;

  // ChunkStore.
  absl::StatusOr<bool> Put(absl::string_view tenant, const ChunkId& id,
                           absl::string_view bytes) override;
  absl::StatusOr<std::string> Get(absl::string_view tenant,
                                  const ChunkId& id) override;
  absl::StatusOr<std::vector<std::optional<uint64_t>>> Sizes(
      absl::string_view tenant, absl::Span<const ChunkId> ids) override;
  absl::Status Delete(absl::string_view tenant, const ChunkId& id) override;
  absl::Status Sync() override;
  absl::StatusOr<Usage> GetUsage(absl::string_view tenant) override;
  absl::Status ForEach(
      absl::string_view tenant,
      absl::FunctionRef<absl::Status(absl::string_view tenant,
                                     const ChunkId& id, uint64_t size)>
          fn) override;
  absl::StatusOr<DiskUsage> ReclaimSpace() override;

  // MetadataStore.
  absl::StatusOr<std::optional<JobRecord>> GetJob(
      absl::string_view job) override;
  absl::StatusOr<std::vector<JobRecord>> ListJobs() override;
  absl::StatusOr<std::optional<TenantRecord>> GetTenant(
      absl::string_view tenant) override;
  absl::StatusOr<CheckpointRecord> GetCheckpoint(absl::string_view job,
                                                 int64_t step) override;
  absl::StatusOr<std::vector<CheckpointRecord>> ListCheckpoints(
      absl::string_view job) override;
  absl::StatusOr<std::vector<CheckpointRecord>> ListPending() override;
  absl::StatusOr<std::vector<ShardManifest>> GetShards(absl::string_view job,
                                                       int64_t step) override;
  absl::Status ForEachShard(
      absl::FunctionRef<absl::Status(absl::string_view job, int64_t step,
                                     const ShardManifest& shard)>
          fn) override;
  absl::StatusOr<std::vector<JobEvent>> ListEvents(absl::string_view job,
                                                   size_t limit) override;
  absl::Status Apply(const MetadataBatch& batch) override;

 private:
  absl::Mutex mu_;
  // Keyed by ChunkKey (tenant, id).
  std::map<std::string, std::string> chunks_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, JobRecord> jobs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, TenantRecord> tenants_ ABSL_GUARDED_BY(mu_);
  // Keyed by CheckpointKey; all states in one map.
  std::map<std::string, CheckpointRecord> checkpoints_ ABSL_GUARDED_BY(mu_);
  // Keyed by ShardKey.
  std::map<std::string, ShardManifest> shards_ ABSL_GUARDED_BY(mu_);
  // Keyed by EventKey.
  std::map<std::string, JobEvent> events_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ckpt::server
