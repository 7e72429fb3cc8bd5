#include "server/storage/fault_injecting_store.h"

#include <utility>

#include "common/status_macros.h"

namespace ckpt::server {

FaultInjectingStore::FaultInjectingStore(ChunkStore* chunks,
                                         MetadataStore* metadata)
    : ChunkStoreWrapper(chunks), MetadataStoreWrapper(metadata) {}

void FaultInjectingStore::FailNext(Op op, absl::Status error, int count) {
  FailAfter(op, 0, std::move(error), count);
}

void FaultInjectingStore::FailAfter(Op op, int successes, absl::Status error,
                                    int count) {
  absl::MutexLock lock(&mu_);
  failures_[static_cast<size_t>(op)] =
      Failure{std::move(error), successes, count};
}

void FaultInjectingStore::ClearFailures() {
  absl::MutexLock lock(&mu_);
  failures_ = {};
}

int FaultInjectingStore::calls(Op op) const {
  absl::MutexLock lock(&mu_);
  return calls_[static_cast<size_t>(op)];
}

absl::Status FaultInjectingStore::Check(Op op) {
  absl::MutexLock lock(&mu_);
  const auto index = static_cast<size_t>(op);
  ++calls_[index];
  Failure& failure = failures_[index];
  if (failure.remaining <= 0) return absl::OkStatus();
  if (failure.pass_first > 0) {
    --failure.pass_first;
    return absl::OkStatus();
  }
  --failure.remaining;
  return failure.error;
}

absl::StatusOr<bool> FaultInjectingStore::Put(absl::string_view tenant,
                                              const ChunkId& id,
                                              absl::string_view bytes) {
  CKPT_RETURN_IF_ERROR(Check(Op::kPut));
  return ChunkStoreWrapper::Put(tenant, id, bytes);
}

absl::StatusOr<std::string> FaultInjectingStore::Get(absl::string_view tenant,
                                                     const ChunkId& id) {
  CKPT_RETURN_IF_ERROR(Check(Op::kGet));
  return ChunkStoreWrapper::Get(tenant, id);
}

absl::Status FaultInjectingStore::ReadVerified(
    absl::string_view tenant, const ChunkId& id,
    absl::FunctionRef<absl::Status(absl::string_view bytes)> consume) {
  // The base's default on purpose, not the wrapper's forwarding one.
  return ChunkStore::ReadVerified(  // NOLINT(bugprone-parent-virtual-call)
      tenant, id, consume);
}

absl::StatusOr<std::string> FaultInjectingStore::ReadVerifiedBytes(
    absl::string_view tenant, const ChunkId& id) {
  return ChunkStore::ReadVerifiedBytes(  // NOLINT(bugprone-parent-virtual-call)
      tenant, id);
}

absl::StatusOr<std::vector<std::optional<uint64_t>>> FaultInjectingStore::Sizes(
    absl::string_view tenant, absl::Span<const ChunkId> ids) {
  CKPT_RETURN_IF_ERROR(Check(Op::kContains));
  return ChunkStoreWrapper::Sizes(tenant, ids);
}

absl::StatusOr<std::vector<std::optional<uint64_t>>>
FaultInjectingStore::DurableSizes(absl::string_view tenant,
                                  absl::Span<const ChunkId> ids) {
  CKPT_RETURN_IF_ERROR(Check(Op::kContains));
  return ChunkStoreWrapper::DurableSizes(tenant, ids);
}

absl::StatusOr<std::vector<bool>> FaultInjectingStore::Contains(
    absl::string_view tenant, absl::Span<const ChunkId> ids) {
  CKPT_RETURN_IF_ERROR(Check(Op::kContains));
  return ChunkStoreWrapper::Contains(tenant, ids);
}

absl::Status FaultInjectingStore::Delete(absl::string_view tenant,
                                         const ChunkId& id) {
  CKPT_RETURN_IF_ERROR(Check(Op::kDelete));
  return ChunkStoreWrapper::Delete(tenant, id);
}

absl::Status FaultInjectingStore::Sync() {
  CKPT_RETURN_IF_ERROR(Check(Op::kSync));
  return ChunkStoreWrapper::Sync();
}

absl::StatusOr<ChunkStore::Usage> FaultInjectingStore::GetUsage(
    absl::string_view tenant) {
  CKPT_RETURN_IF_ERROR(Check(Op::kGetUsage));
  return ChunkStoreWrapper::GetUsage(tenant);
}

absl::Status FaultInjectingStore::ForEach(
    absl::string_view tenant,
    absl::FunctionRef<absl::Status(absl::string_view tenant, const ChunkId& id,
                                   uint64_t size)>
        fn) {
  CKPT_RETURN_IF_ERROR(Check(Op::kForEach));
  return ChunkStoreWrapper::ForEach(tenant, fn);
}

absl::StatusOr<std::optional<JobRecord>> FaultInjectingStore::GetJob(
    absl::string_view job) {
  CKPT_RETURN_IF_ERROR(Check(Op::kGetJob));
  return MetadataStoreWrapper::GetJob(job);
}

absl::StatusOr<std::vector<JobRecord>> FaultInjectingStore::ListJobs() {
  CKPT_RETURN_IF_ERROR(Check(Op::kListJobs));
  return MetadataStoreWrapper::ListJobs();
}

absl::StatusOr<std::optional<TenantRecord>> FaultInjectingStore::GetTenant(
    absl::string_view tenant) {
  CKPT_RETURN_IF_ERROR(Check(Op::kGetTenant));
  return MetadataStoreWrapper::GetTenant(tenant);
}

absl::StatusOr<CheckpointRecord> FaultInjectingStore::GetCheckpoint(
    absl::string_view job, int64_t step) {
  CKPT_RETURN_IF_ERROR(Check(Op::kGetCheckpoint));
  return MetadataStoreWrapper::GetCheckpoint(job, step);
}

absl::StatusOr<std::vector<CheckpointRecord>>
FaultInjectingStore::ListCheckpoints(absl::string_view job) {
  CKPT_RETURN_IF_ERROR(Check(Op::kListCheckpoints));
  return MetadataStoreWrapper::ListCheckpoints(job);
}

absl::StatusOr<std::vector<CheckpointRecord>>
FaultInjectingStore::ListPending() {
  CKPT_RETURN_IF_ERROR(Check(Op::kListPending));
  return MetadataStoreWrapper::ListPending();
}

absl::StatusOr<std::vector<ShardManifest>> FaultInjectingStore::GetShards(
    absl::string_view job, int64_t step) {
  CKPT_RETURN_IF_ERROR(Check(Op::kGetShards));
  return MetadataStoreWrapper::GetShards(job, step);
}

absl::StatusOr<std::vector<JobEvent>> FaultInjectingStore::ListEvents(
    absl::string_view job, size_t limit) {
  CKPT_RETURN_IF_ERROR(Check(Op::kListEvents));
  return MetadataStoreWrapper::ListEvents(job, limit);
}

absl::Status FaultInjectingStore::Apply(const MetadataBatch& batch) {
  CKPT_RETURN_IF_ERROR(Check(Op::kApply));
  return MetadataStoreWrapper::Apply(batch);
}

absl::StatusOr<ChunkStore::DiskUsage> FaultInjectingStore::ReclaimSpace() {
  CKPT_RETURN_IF_ERROR(Check(Op::kReclaimSpace));
  return ChunkStoreWrapper::ReclaimSpace();
}

absl::Status FaultInjectingStore::ForEachShard(
    absl::FunctionRef<absl::Status(absl::string_view job, int64_t step,
                                   const ShardManifest& shard)>
        fn) {
  CKPT_RETURN_IF_ERROR(Check(Op::kForEachShard));
  return MetadataStoreWrapper::ForEachShard(fn);
}

}  // namespace ckpt::server
