#include "client/client.h"

#include <utility>

#include "client/fetch_plan.h"
#include "client/region_plan.h"
#include "client/restore_plan.h"
#include "client/save_pipeline.h"
#include "client/transport.h"
#include "client/transport/grpc_transport.h"
#include "common/status_macros.h"

namespace ckpt::client {

struct Client::Impl {
  std::unique_ptr<Transport> transport;
  bool shared_memory_restore = true;
};

Client::Client(PrivateTag, std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

Client::~Client() = default;

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(
    const std::string& address, ConnectOptions options) {
  CKPT_ASSIGN_OR_RETURN(std::unique_ptr<Transport> transport,
                        ConnectGrpcTransport(address, options));
  return WithTransport(std::move(transport), options);
}

std::unique_ptr<Client> Client::WithTransport(
    std::unique_ptr<Transport> transport, ConnectOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->transport = std::move(transport);
  impl->shared_memory_restore = options.shared_memory_restore;
  return std::make_unique<Client>(PrivateTag{}, std::move(impl));
}

absl::StatusOr<SaveResult> Client::SaveShard(
    absl::string_view job, int64_t step, absl::Span<const TensorData> tensors,
    const SaveOptions& options) {
  return client::SaveShard(*impl_->transport, job, step, tensors, options);
}

absl::StatusOr<std::vector<JobSummary>> Client::ListJobs() {
  return impl_->transport->ListJobs();
}

absl::StatusOr<std::vector<CheckpointRecord>> Client::ListCheckpoints(
    absl::string_view job, bool include_uncommitted) {
  CKPT_ASSIGN_OR_RETURN(
      std::vector<CheckpointUsage> listed,
      impl_->transport->ListCheckpoints(job, include_uncommitted, false));
  std::vector<CheckpointRecord> records;
  records.reserve(listed.size());
  for (CheckpointUsage& usage : listed) {
    records.push_back(std::move(usage.record));
  }
  return records;
}

absl::StatusOr<Checkpoint> Client::GetManifest(
    absl::string_view job, std::optional<int64_t> step,
    std::optional<int32_t> restoring_rank) {
  return impl_->transport->GetManifest(job, step, restoring_rank);
}

absl::Status Client::ReadTensor(absl::string_view job, const TensorEntry& entry,
                                absl::Span<char> out,
                                std::optional<int32_t> rank) {
  return ReadTensors(job, absl::MakeConstSpan(&entry, 1),
                     absl::MakeConstSpan(&out, 1), rank);
}

absl::Status Client::ReadTensors(absl::string_view job,
                                 absl::Span<const TensorEntry> entries,
                                 absl::Span<const absl::Span<char>> outs,
                                 std::optional<int32_t> rank) {
  return client::ReadTensors(*impl_->transport, job, entries, outs, rank);
}

absl::StatusOr<std::vector<RestoredTensor>> Client::RestoreShard(
    absl::string_view job, std::optional<int64_t> step, int32_t rank,
    int64_t* restored_step) {
  CKPT_ASSIGN_OR_RETURN(Checkpoint checkpoint, GetManifest(job, step));
  if (restored_step != nullptr) *restored_step = checkpoint.record.step;
  CKPT_ASSIGN_OR_RETURN(std::vector<RestoredTensor> restored,
                        RestoreShard(checkpoint, rank));
  // Reported only now, so that a failed restore leaves no `restored` event.
  // The tensors are in hand: a checkpoint deleted since (NOT_FOUND), a
  // server older than the call (UNIMPLEMENTED) or one whose disk is full
  // (RESOURCE_EXHAUSTED: restores must keep working then) only loses the
  // history entry. Any other failure is the server's trouble, and is
  // returned.
  absl::Status reported = ReportRestore(job, checkpoint.record.step, rank);
  if (!reported.ok() && !absl::IsNotFound(reported) &&
      !absl::IsUnimplemented(reported) &&
      !absl::IsResourceExhausted(reported)) {
    return reported;
  }
  return restored;
}

absl::StatusOr<StoredChain> Client::LoadStoredChain(
    absl::string_view job, int64_t step, const TensorEntry& entry,
    std::optional<int32_t> rank) {
  return client::LoadStoredChain(*impl_->transport, job, step, entry, rank);
}

std::vector<absl::StatusOr<StoredChain>> Client::LoadStoredChains(
    absl::string_view job, int64_t step, absl::Span<const TensorEntry> entries,
    std::optional<int32_t> rank) {
  return client::LoadStoredChains(*impl_->transport, job, step, entries, rank);
}

absl::StatusOr<std::vector<RestoredTensor>> Client::RestoreShard(
    const Checkpoint& checkpoint, int32_t rank,
    const RestoreProgressFn& progress) {
  return client::RestoreShard(*impl_->transport, checkpoint, rank, progress,
                              impl_->shared_memory_restore);
}

std::vector<absl::StatusOr<std::vector<TensorEntry>>>
Client::ResolveDeltaChains(
    const Checkpoint& checkpoint,
    absl::Span<const std::pair<int32_t, const TensorEntry*>> entries) {
  DeltaChains chains(*impl_->transport, checkpoint.record.job);
  std::vector<absl::StatusOr<std::vector<TensorEntry>>> out;
  out.reserve(entries.size());
  for (const auto& [rank, entry] : entries) {
    out.push_back(chains.Resolve(*entry, rank));
  }
  return out;
}

absl::StatusOr<RegionReadStats> Client::ReadRegions(
    const Checkpoint& checkpoint, absl::Span<const RegionRequest> requests,
    absl::Span<const absl::Span<char>> outs,
    const RestoreProgressFn& progress) {
  return client::ReadRegions(*impl_->transport, checkpoint, requests, outs,
                             progress);
}

absl::StatusOr<RestoredRegions> Client::RestoreRegions(
    const Checkpoint& checkpoint, absl::Span<const RegionRequest> requests,
    const RestoreProgressFn& progress) {
  return client::RestoreRegions(*impl_->transport, checkpoint, requests,
                                progress, impl_->shared_memory_restore);
}

absl::Status Client::ReportRestore(absl::string_view job, int64_t step,
                                   int32_t rank) {
  return impl_->transport->ReportRestore(job, step, rank);
}

absl::Status Client::AbortCheckpoint(absl::string_view job, int64_t step,
                                     absl::string_view reason) {
  return impl_->transport->AbortCheckpoint(job, step, reason);
}

absl::Status Client::DeleteCheckpoint(absl::string_view job, int64_t step,
                                      bool force) {
  return impl_->transport->DeleteCheckpoint(job, step, force);
}

absl::StatusOr<Stats> Client::GetStats(absl::string_view job) {
  return impl_->transport->GetStats(job);
}

absl::StatusOr<std::vector<int64_t>> Client::SetRetentionPolicy(
    absl::string_view job, const RetentionPolicy& policy,
    std::vector<std::string>* warnings) {
  return impl_->transport->SetRetentionPolicy(job, policy, warnings);
}

absl::StatusOr<std::optional<RetentionPolicy>> Client::GetRetentionPolicy(
    absl::string_view job) {
  CKPT_ASSIGN_OR_RETURN(PolicyInfo info,
                        impl_->transport->GetRetentionPolicy(job));
  return info.policy;
}

absl::StatusOr<PolicyInfo> Client::GetRetentionPolicyInfo(
    absl::string_view job) {
  return impl_->transport->GetRetentionPolicy(job);
}

absl::Status Client::SetTenantDefaultPolicy(absl::string_view tenant,
                                            const RetentionPolicy& policy) {
  return impl_->transport->SetTenantDefaultPolicy(tenant, policy);
}

absl::Status Client::ClearRetentionPolicy(absl::string_view name,
                                          bool tenant_default) {
  return impl_->transport->ClearRetentionPolicy(name, tenant_default);
}

absl::StatusOr<PolicyInfo> Client::GetTenantDefaultPolicy(
    absl::string_view tenant) {
  return impl_->transport->GetTenantDefaultPolicy(tenant);
}

absl::StatusOr<CheckpointRecord> Client::PinCheckpoint(absl::string_view job,
                                                       int64_t step,
                                                       bool pinned) {
  return impl_->transport->PinCheckpoint(job, step, pinned);
}

absl::StatusOr<CheckpointRecord> Client::SetCheckpointTags(
    absl::string_view job, int64_t step,
    const std::map<std::string, std::string>& set,
    const std::vector<std::string>& remove) {
  return impl_->transport->SetCheckpointTags(job, step, set, remove);
}

absl::StatusOr<std::vector<RetentionDecision>> Client::PruneCheckpoints(
    absl::string_view job, const std::optional<RetentionPolicy>& policy,
    bool dry_run, std::vector<std::string>* warnings) {
  return impl_->transport->PruneCheckpoints(job, policy, dry_run, warnings);
}

absl::StatusOr<GcReport> Client::CollectGarbage(bool dry_run) {
  GcOptions options;
  options.dry_run = dry_run;
  return CollectGarbage(options);
}

absl::StatusOr<GcReport> Client::CollectGarbage(const GcOptions& options) {
  return impl_->transport->CollectGarbage(options);
}

absl::StatusOr<std::vector<CheckpointUsage>>
Client::ListCheckpointsWithUniqueBytes(absl::string_view job,
                                       bool include_uncommitted) {
  return impl_->transport->ListCheckpoints(job, include_uncommitted, true);
}

absl::StatusOr<VerifyReport> Client::VerifyCheckpoints(
    const VerifyOptions& options, const VerifyProgressFn& progress) {
  return impl_->transport->VerifyCheckpoints(options, progress);
}

absl::StatusOr<std::vector<JobEvent>> Client::ListEvents(absl::string_view job,
                                                         int limit) {
  return impl_->transport->ListEvents(job, limit);
}

absl::StatusOr<CopyReport> Client::Copy(Client& source, Client& target,
                                        const CopyRequest& request,
                                        const CopyProgressFn& progress) {
  return CopyCheckpoints(*source.impl_->transport, *target.impl_->transport,
                         request, progress);
}

}  // namespace ckpt::client
