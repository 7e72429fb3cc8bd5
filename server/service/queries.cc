// CheckpointService, the reads: ListJobs, ListCheckpoints, GetManifest
// (which records a `restored` event for an older client that names its
// restoring rank), ReportRestore (the `restored` event a client records once
// its restore succeeded), ReportCopy (the `copied` event a copying client
// records on the source once the copy committed on the target), ReadChunk,
// ReadChunkTo, GetStats and ListEvents.
//
// Locking: none takes lifecycle_mu_. Each reads the stores as they are; a
// listing may interleave with a concurrent commit or delete. A `restored`
// or `copied` event is an append on its own, after a read of the
// checkpoint's header.
#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/service/checkpoint_service.h"
#include "server/service/job_events.h"
#include "server/service/service_internal.h"

namespace ckpt::server {

using internal::Describe;
using internal::ValidateStep;

absl::StatusOr<std::vector<JobSummary>> CheckpointService::ListJobs(
    const JobScope& scope) {
  CKPT_ASSIGN_OR_RETURN(std::vector<JobRecord> jobs, metadata_->ListJobs());
  std::vector<JobSummary> summaries;
  summaries.reserve(jobs.size());
  for (auto& job : jobs) {
    if (!scope.Covers(job.name)) continue;
    JobSummary summary;
    CKPT_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> records,
                          metadata_->ListCheckpoints(job.name));
    for (const auto& record : records) {
      if (record.state != CheckpointState::kCommitted) continue;
      ++summary.checkpoint_count;
      summary.logical_bytes += record.logical_bytes;
      summary.latest_step = record.step;
    }
    // Listed as it applies: a job without an operator's policy of its own
    // shows its tenant's default.
    CKPT_ASSIGN_OR_RETURN(AppliedPolicy applied, ApplicablePolicy(&job));
    job.retention_policy = applied.policy;
    job.policy_origin = applied.origin;
    summary.job = std::move(job);
    summaries.push_back(std::move(summary));
  }
  return summaries;
}

absl::StatusOr<std::vector<CheckpointRecord>>
CheckpointService::ListCheckpoints(absl::string_view job,
                                   bool include_uncommitted) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  CKPT_ASSIGN_OR_RETURN(std::optional<JobRecord> job_record,
                        metadata_->GetJob(job));
  if (!job_record.has_value()) {
    return absl::NotFoundError(absl::StrCat("unknown job '", job, "'"));
  }
  CKPT_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> records,
                        metadata_->ListCheckpoints(job));
  if (!include_uncommitted) {
    std::erase_if(records, [](const CheckpointRecord& r) {
      return r.state != CheckpointState::kCommitted;
    });
  }
  return records;
}

absl::StatusOr<Checkpoint> CheckpointService::GetManifest(
    absl::string_view job, std::optional<int64_t> step,
    std::optional<int32_t> restoring_rank, const Actor& actor) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  if (restoring_rank.has_value() && *restoring_rank < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("restoring rank must be >= 0, got ", *restoring_rank));
  }
  Checkpoint checkpoint;
  if (step.has_value()) {
    CKPT_ASSIGN_OR_RETURN(checkpoint.record, GetCommitted(job, *step));
  } else {
    CKPT_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> records,
                          ListCheckpoints(job, /*include_uncommitted=*/false));
    if (records.empty()) {
      return absl::NotFoundError(
          absl::StrCat("job '", job, "' has no committed checkpoint"));
    }
    checkpoint.record = std::move(records.back());
  }
  CKPT_ASSIGN_OR_RETURN(checkpoint.shards,
                        metadata_->GetShards(job, checkpoint.record.step));
  if (static_cast<int32_t>(checkpoint.shards.size()) !=
      checkpoint.record.world_size) {
    // A delete (retention at another commit, a prune) between the two reads
    // removes the record and its shards in one batch: the record is then
    // gone too, and the checkpoint is absent, not damaged.
    if (absl::IsNotFound(GetCommitted(job, checkpoint.record.step).status())) {
      return absl::NotFoundError(
          absl::StrCat(Describe(job, checkpoint.record.step),
                       " was deleted while it was being read"));
    }
    return absl::DataLossError(
        absl::StrCat(Describe(job, checkpoint.record.step), " has ",
                     checkpoint.shards.size(), " stored shards for world_size ",
                     checkpoint.record.world_size));
  }
  if (restoring_rank.has_value()) {
    // A restore usually follows a failure; losing its history entry (disk
    // full, say) must not also stop the job from resuming.
    MetadataBatch batch;
    batch.AppendEvent(RestoredEvent(job, checkpoint.record.step, clock_->Now(),
                                    actor.principal, *restoring_rank));
    if (absl::Status status = metadata_->Apply(batch); !status.ok()) {
      CKPT_LOG(Warning, "restore of ", Describe(job, checkpoint.record.step),
               " by rank ", *restoring_rank,
               " not recorded in the job's events: ", status.ToString());
    }
  }
  return checkpoint;
}

absl::StatusOr<CheckpointRecord> CheckpointService::GetCommitted(
    absl::string_view job, int64_t step) {
  CKPT_RETURN_IF_ERROR(ValidateStep(step));
  absl::StatusOr<CheckpointRecord> record = metadata_->GetCheckpoint(job, step);
  if (absl::IsNotFound(record.status())) {
    return absl::NotFoundError(
        absl::StrCat("job '", job, "' has no checkpoint ", step));
  }
  CKPT_RETURN_IF_ERROR(record.status());
  if (record->state != CheckpointState::kCommitted) {
    return absl::NotFoundError(absl::StrCat(Describe(job, step), " is ",
                                            CheckpointStateName(record->state),
                                            ", not committed"));
  }
  return record;
}

absl::Status CheckpointService::ReportRestore(absl::string_view job,
                                              int64_t step, int32_t rank,
                                              const Actor& actor) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  if (rank < 0 || rank >= options_.max_world_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rank must be in [0, ", options_.max_world_size, "), got ", rank));
  }
  CKPT_RETURN_IF_ERROR(GetCommitted(job, step).status());
  // No lock: the restore happened whatever a concurrent delete does next,
  // and hundreds of ranks reporting at once need not queue behind commits.
  MetadataBatch batch;
  batch.AppendEvent(
      RestoredEvent(job, step, clock_->Now(), actor.principal, rank));
  return metadata_->Apply(batch);
}

absl::Status CheckpointService::ReportCopy(absl::string_view job, int64_t step,
                                           const CopyPeer& destination,
                                           const Actor& actor) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  if (absl::Status peer = ValidateCopyPeer(destination); !peer.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("destination.", peer.message()));
  }
  CKPT_RETURN_IF_ERROR(GetCommitted(job, step).status());
  // No lock, as ReportRestore: the copy happened whatever a concurrent
  // delete does next.
  MetadataBatch batch;
  batch.AppendEvent(
      CopiedToEvent(job, step, clock_->Now(), actor.principal, destination));
  return metadata_->Apply(batch);
}

absl::StatusOr<std::string> CheckpointService::ReadChunk(absl::string_view job,
                                                         const ChunkId& id) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  absl::StatusOr<std::string> bytes =
      chunks_->ReadVerifiedBytes(TenantOf(job), id);
  if (absl::IsDataLoss(bytes.status())) {
    CKPT_LOG(Error, "tenant ", TenantOf(job), ": ", bytes.status().message());
  }
  return bytes;
}

absl::Status CheckpointService::ReadChunkTo(
    absl::string_view job, const ChunkId& id,
    absl::FunctionRef<absl::Status(absl::string_view bytes)> consume) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  bool verified = false;
  absl::Status status =
      chunks_->ReadVerified(TenantOf(job), id, [&](absl::string_view bytes) {
        verified = true;
        return consume(bytes);
      });
  if (!verified && absl::IsDataLoss(status)) {
    CKPT_LOG(Error, "tenant ", TenantOf(job), ": ", status.message());
  }
  return status;
}

absl::StatusOr<Stats> CheckpointService::GetStats(absl::string_view job,
                                                  const JobScope& scope) {
  if (!job.empty()) CKPT_RETURN_IF_ERROR(GetJobRecord(job).status());
  CKPT_ASSIGN_OR_RETURN(std::vector<JobSummary> summaries,
                        ListJobs(job.empty() ? scope : JobScope::All()));
  Stats stats;
  std::map<std::string, TenantStats> tenants;
  for (const JobSummary& summary : summaries) {
    const absl::string_view tenant = TenantOf(summary.job.name);
    // A job's tenant row still covers all of the tenant's jobs: its stored
    // bytes serve them all.
    if (!job.empty() && tenant != TenantOf(job)) continue;
    TenantStats& tenant_stats = tenants[std::string(tenant)];
    ++tenant_stats.job_count;
    tenant_stats.checkpoint_count += summary.checkpoint_count;
    tenant_stats.logical_bytes += summary.logical_bytes;
    if (!job.empty() && summary.job.name != job) continue;
    stats.jobs.push_back(JobStats{summary.job.name, summary.checkpoint_count,
                                  summary.logical_bytes});
    stats.checkpoint_count += summary.checkpoint_count;
    stats.logical_bytes += summary.logical_bytes;
  }
  stats.job_count = static_cast<int64_t>(stats.jobs.size());
  for (auto& [tenant, tenant_stats] : tenants) {
    CKPT_ASSIGN_OR_RETURN(ChunkStore::Usage usage, chunks_->GetUsage(tenant));
    tenant_stats.tenant = tenant;
    tenant_stats.stored_bytes = usage.bytes;
    tenant_stats.chunk_count = usage.chunk_count;
    stats.tenants.push_back(std::move(tenant_stats));
  }
  // An empty tenant asks for every tenant's.
  CKPT_ASSIGN_OR_RETURN(
      ChunkStore::Usage usage,
      chunks_->GetUsage(job.empty() ? scope.tenant() : TenantOf(job)));
  stats.stored_bytes = usage.bytes;
  stats.chunk_count = usage.chunk_count;
  if (!job.empty()) {
    CKPT_ASSIGN_OR_RETURN(stats.job_stored, JobStoredBytesOf(job));
  }
  return stats;
}

absl::StatusOr<std::vector<JobEvent>> CheckpointService::ListEvents(
    absl::string_view job, int limit) {
  if (limit < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("limit must be >= 0 (0: all), got ", limit));
  }
  CKPT_RETURN_IF_ERROR(GetJobRecord(job).status());
  const size_t wanted =
      limit == 0 ? kMaxEventsPerJob
                 : std::min(static_cast<size_t>(limit), kMaxEventsPerJob);
  return metadata_->ListEvents(job, wanted);
}

}  // namespace ckpt::server
