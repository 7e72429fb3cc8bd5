// ChunkStoreWrapper and MetadataStoreWrapper: forward every call to a
// wrapped store, as LevelDB's EnvWrapper does, so that a wrapper (fault
// injection, a test's blocking hook, instrumentation) overrides only the
// calls it changes, and a method added to an interface is forwarded without
// touching every wrapper.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "server/storage/chunk_store.h"
#include "server/storage/metadata_store.h"

namespace ckpt::server {

// Thread-safe as the wrapped store is. It must outlive the wrapper.
class ChunkStoreWrapper : public ChunkStore {
 public:
  // REQUIRES: target is non-null.
  explicit ChunkStoreWrapper(ChunkStore* target) : target_(target) {}

  ChunkStore* target() const { return target_; }

  absl::StatusOr<bool> Put(absl::string_view tenant, const ChunkId& id,
                           absl::string_view bytes) override {
    return target_->Put(tenant, id, bytes);
  }
  absl::StatusOr<std::string> Get(absl::string_view tenant,
                                  const ChunkId& id) override {
    return target_->Get(tenant, id);
  }
  absl::Status ReadVerified(
      absl::string_view tenant, const ChunkId& id,
      absl::FunctionRef<absl::Status(absl::string_view bytes)> consume)
      override {
    return target_->ReadVerified(tenant, id, consume);
  }
  absl::StatusOr<std::string> ReadVerifiedBytes(absl::string_view tenant,
                                                const ChunkId& id) override {
    return target_->ReadVerifiedBytes(tenant, id);
  }
  absl::StatusOr<std::vector<std::optional<uint64_t>>> Sizes(
      absl::string_view tenant, absl::Span<const ChunkId> ids) override {
    return target_->Sizes(tenant, ids);
  }
  absl::StatusOr<std::vector<std::optional<uint64_t>>> DurableSizes(
      absl::string_view tenant, absl::Span<const ChunkId> ids) override {
    return target_->DurableSizes(tenant, ids);
  }
  absl::StatusOr<std::vector<bool>> Contains(
      absl::string_view tenant, absl::Span<const ChunkId> ids) override {
    return target_->Contains(tenant, ids);
  }
  absl::Status Delete(absl::string_view tenant, const ChunkId& id) override {
    return target_->Delete(tenant, id);
  }
  bool IsShared() const override { return target_->IsShared(); }
  absl::StatusOr<std::vector<bool>> MarkUsed(
      absl::string_view tenant, absl::Span<const ChunkId> ids) override {
    return target_->MarkUsed(tenant, ids);
  }
  absl::StatusOr<bool> DeleteIfUnusedSince(absl::string_view tenant,
                                           const ChunkId& id,
                                           absl::Time cutoff) override {
    return target_->DeleteIfUnusedSince(tenant, id, cutoff);
  }
  absl::Status Sync() override { return target_->Sync(); }
  absl::StatusOr<Usage> GetUsage(absl::string_view tenant) override {
    return target_->GetUsage(tenant);
  }
  absl::StatusOr<DiskUsage> ReclaimSpace() override {
    return target_->ReclaimSpace();
  }
  absl::Status ForEach(
      absl::string_view tenant,
      absl::FunctionRef<absl::Status(absl::string_view tenant,
                                     const ChunkId& id, uint64_t size)>
          fn) override {
    return target_->ForEach(tenant, fn);
  }

 private:
  ChunkStore* const target_;
};

// Thread-safe as the wrapped store is. It must outlive the wrapper.
class MetadataStoreWrapper : public MetadataStore {
 public:
  // REQUIRES: target is non-null.
  explicit MetadataStoreWrapper(MetadataStore* target) : target_(target) {}

  MetadataStore* target() const { return target_; }

  absl::StatusOr<std::optional<JobRecord>> GetJob(
      absl::string_view job) override {
    return target_->GetJob(job);
  }
  absl::StatusOr<std::vector<JobRecord>> ListJobs() override {
    return target_->ListJobs();
  }
  absl::StatusOr<std::optional<TenantRecord>> GetTenant(
      absl::string_view tenant) override {
    return target_->GetTenant(tenant);
  }
  absl::StatusOr<CheckpointRecord> GetCheckpoint(absl::string_view job,
                                                 int64_t step) override {
    return target_->GetCheckpoint(job, step);
  }
  absl::StatusOr<std::vector<CheckpointRecord>> ListCheckpoints(
      absl::string_view job) override {
    return target_->ListCheckpoints(job);
  }
  absl::StatusOr<std::vector<CheckpointRecord>> ListPending() override {
    return target_->ListPending();
  }
  absl::StatusOr<std::vector<ShardManifest>> GetShards(absl::string_view job,
                                                       int64_t step) override {
    return target_->GetShards(job, step);
  }
  absl::Status ForEachShard(
      absl::FunctionRef<absl::Status(absl::string_view job, int64_t step,
                                     const ShardManifest& shard)>
          fn) override {
    return target_->ForEachShard(fn);
  }
  absl::StatusOr<std::vector<JobEvent>> ListEvents(absl::string_view job,
                                                   size_t limit) override {
    return target_->ListEvents(job, limit);
  }
  bool IsShared() const override { return target_->IsShared(); }
  absl::StatusOr<std::unique_ptr<Lease>> LockJob(
      absl::string_view job) override {
    return target_->LockJob(job);
  }
  absl::StatusOr<std::unique_ptr<Lease>> LockTenant(
      absl::string_view tenant) override {
    return target_->LockTenant(tenant);
  }
  absl::StatusOr<std::unique_ptr<Lease>> LockCollection() override {
    return target_->LockCollection();
  }
  absl::Status Apply(const MetadataBatch& batch) override {
    return target_->Apply(batch);
  }

 private:
  MetadataStore* const target_;
};

}  // namespace ckpt::server
