#include "server/service/checkpoint_service.h"

#include <algorithm>
#include <iterator>
#include <map>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/chunking.h"
#include "common/delta_base.h"
#include "common/event.h"
#include "common/logging.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "server/service/job_events.h"
#include "server/service/service_internal.h"

namespace ckpt::server {

using internal::DeletedSteps;
using internal::Describe;
using internal::ValidateStep;

namespace {

absl::Status ValidateMetadata(const CheckpointMetadata& meta) {
  for (const auto& [name, value] : meta.metrics) {
    if (name.empty() || name.size() > 256) {
      return absl::InvalidArgumentError(
          absl::StrCat("metric names must be 1-256 bytes, got '", name, "'"));
    }
  }
  for (const auto& [name, value] : meta.tags) {
    if (name.empty() || name.size() > 256 || value.size() > 4096) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tag names must be 1-256 bytes and values at most 4096, got '", name,
          "'"));
    }
  }
  return absl::OkStatus();
}

// Adds what `extra` has and `into` lacks: ranks may each pass part of the
// metadata (often only rank 0 has the metrics).
void MergeMetadata(const CheckpointMetadata& extra, CheckpointMetadata* into) {
  into->metrics.insert(extra.metrics.begin(), extra.metrics.end());
  into->tags.insert(extra.tags.begin(), extra.tags.end());
  if (!into->writer_time.has_value()) into->writer_time = extra.writer_time;
}

// The distinct steps the shard's delta entries are taken against, ascending.
std::vector<int64_t> DeltaBases(const ShardManifest& shard) {
  std::vector<int64_t> bases;
  for (const TensorEntry& tensor : shard.tensors) {
    if (tensor.IsDelta()) bases.push_back(*tensor.delta_base_step);
  }
  std::sort(bases.begin(), bases.end());
  bases.erase(std::unique(bases.begin(), bases.end()), bases.end());
  return bases;
}

// The sorted union of two ascending step lists.
std::vector<int64_t> MergeSorted(const std::vector<int64_t>& a,
                                 const std::vector<int64_t>& b) {
  std::vector<int64_t> out;
  std::set_union(a.begin(), a.end(), b.begin(), b.end(),
                 std::back_inserter(out));
  return out;
}

std::vector<ChunkId> UniqueChunks(const ShardManifest& shard) {
  std::vector<ChunkId> ids;
  for (const ChunkRef& ref : ReferencedChunks(shard)) ids.push_back(ref.id);
  return ids;
}

}  // namespace

absl::Status CheckpointService::CheckChunksStored(
    absl::string_view job, int64_t step, int32_t rank,
    absl::Span<const ChunkId> ids) {
  CKPT_ASSIGN_OR_RETURN(std::vector<bool> present,
                        chunks_->Contains(TenantOf(job), ids));
  std::vector<std::string> missing;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!present[i]) missing.push_back(ids[i].ShortHex());
  }
  if (missing.empty()) return absl::OkStatus();
  const size_t shown = std::min<size_t>(missing.size(), 5);
  return absl::FailedPreconditionError(absl::StrCat(
      "rank ", rank, "'s manifest for ", Describe(job, step), " references ",
      missing.size(), " chunk(s) the server does not hold (never uploaded, ",
      "or deleted by garbage collection since; upload them again): ",
      absl::StrJoin(missing.begin(), missing.begin() + shown, ", "),
      missing.size() > shown ? ", ..." : ""));
}

CheckpointService::CheckpointService(ChunkStore* chunks,
                                     MetadataStore* metadata, Clock* clock,
                                     ServiceOptions options)
    : chunks_(chunks),
      metadata_(metadata),
      clock_(clock),
      options_(std::move(options)),
      start_time_(clock->Now()),
      guard_(options_.chunk_hold) {}

absl::StatusOr<BeginResult> CheckpointService::BeginCheckpoint(
    absl::string_view job, int64_t step, int32_t world_size,
    const CheckpointMetadata& meta, absl::Duration lease,
    const std::optional<RetentionPolicy>& policy) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  CKPT_RETURN_IF_ERROR(ValidateStep(step));
  if (world_size < 1 || world_size > options_.max_world_size) {
    return absl::InvalidArgumentError(absl::StrCat("world_size must be in [1, ",
                                                   options_.max_world_size,
                                                   "], got ", world_size));
  }
  if (lease < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("lease must not be negative");
  }
  CKPT_RETURN_IF_ERROR(ValidateMetadata(meta));
  if (policy.has_value())
    CKPT_RETURN_IF_ERROR(ValidateRetentionPolicy(*policy));
  if (lease == absl::ZeroDuration()) lease = options_.default_lease;

  absl::MutexLock lock(&lifecycle_mu_);
  const absl::Time now = clock_->Now();
  MetadataBatch batch;
  CKPT_ASSIGN_OR_RETURN(std::optional<JobRecord> job_record,
                        metadata_->GetJob(job));
  std::vector<RetentionDecision> decisions;
  // Every rank of every save may pass the same policy: only a change is an
  // event.
  const std::string policy_source =
      absl::StrCat(" (from BeginCheckpoint of step ", step, ")");
  if (!job_record.has_value()) {
    job_record = MakeJobRecord(std::string(job), now);
    job_record->retention_policy = policy;
    batch.PutJob(*job_record);
    if (policy.has_value()) {
      batch.AppendEvent(PolicySetEvent(job, *policy, now, policy_source));
    }
  } else if (policy.has_value()) {
    if (job_record->retention_policy != policy) {
      batch.AppendEvent(PolicySetEvent(job, *policy, now, policy_source));
    }
    job_record->retention_policy = policy;
    batch.PutJob(*job_record);
    CKPT_ASSIGN_OR_RETURN(decisions,
                          DecideAndDelete(*job_record, *policy, &batch));
    AppendPrunedEvents(job,
                       absl::StrCat("retention as BeginCheckpoint of step ",
                                    step, " set the policy"),
                       *policy, decisions, now, &batch);
  }

  BeginResult result;
  absl::StatusOr<CheckpointRecord> existing =
      metadata_->GetCheckpoint(job, step);
  if (!existing.ok() && !absl::IsNotFound(existing.status())) {
    return existing.status();
  }
  if (existing.ok() && existing->state == CheckpointState::kCommitted) {
    return absl::AlreadyExistsError(
        absl::StrCat(Describe(job, step), " is already committed"));
  }
  if (existing.ok() && existing->state == CheckpointState::kPending) {
    if (existing->world_size != world_size) {
      return absl::FailedPreconditionError(
          absl::StrCat(Describe(job, step), " is pending with world_size ",
                       existing->world_size, "; this rank says ", world_size));
    }
    result.record = *std::move(existing);
    result.record.lease_duration = lease;
    result.record.lease_expiry =
        std::max(result.record.lease_expiry, now + lease);
    MergeMetadata(meta, &result.record.metadata);
  } else {
    if (existing.ok()) {
      // An aborted attempt: start afresh, dropping whatever it left.
      batch.DeleteCheckpoint(std::string(job), step);
    }
    result.created = true;
    result.record.job = std::string(job);
    result.record.step = step;
    result.record.state = CheckpointState::kPending;
    result.record.world_size = world_size;
    result.record.metadata = meta;
    result.record.create_time = now;
    result.record.lease_expiry = now + lease;
    result.record.lease_duration = lease;
  }
  batch.PutCheckpoint(result.record);
  CKPT_RETURN_IF_ERROR(metadata_->Apply(batch));
  LogDeletions(job, "retention policy from BeginCheckpoint", decisions);
  return result;
}

absl::StatusOr<std::vector<ChunkId>> CheckpointService::FindMissingChunks(
    absl::string_view job, absl::Span<const ChunkId> ids) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  // The save will reference these (uploading the missing ones first): GC
  // must not delete the present ones before its commit.
  guard_.Announce(TenantOf(job), ids, clock_->Now());
  CKPT_ASSIGN_OR_RETURN(std::vector<bool> present,
                        chunks_->Contains(TenantOf(job), ids));
  std::vector<ChunkId> missing;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!present[i]) missing.push_back(ids[i]);
  }
  return missing;
}

absl::StatusOr<bool> CheckpointService::PutChunk(absl::string_view job,
                                                 const ChunkId& claimed,
                                                 absl::string_view bytes) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  if (bytes.empty() || bytes.size() > kMaxChunkBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk ", claimed.ShortHex(), " has ", bytes.size(),
                     " bytes; chunks hold 1 to ", kMaxChunkBytes));
  }
  const ChunkId actual = Sha256(bytes);
  if (actual != claimed) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chunk hash mismatch: claimed ", claimed.ToHex(), " but its ",
        bytes.size(), " bytes hash to ", actual.ToHex(), "; nothing stored"));
  }
  guard_.Announce(TenantOf(job), {claimed}, clock_->Now());
  return chunks_->Put(TenantOf(job), claimed, bytes);
}

absl::Status CheckpointService::CheckDeltaBases(absl::string_view job,
                                                int64_t step,
                                                const ShardManifest& shard) {
  // Each base's shards, read once however many entries use it.
  std::map<int64_t, std::vector<ShardManifest>> base_shards;
  for (const TensorEntry& tensor : shard.tensors) {
    if (!tensor.IsDelta()) continue;
    const int64_t base = *tensor.delta_base_step;
    auto refuse = [&](absl::string_view problem) {
      return absl::FailedPreconditionError(absl::StrCat(
          "rank ", shard.rank, " of ", Describe(job, step), ": tensor '",
          tensor.name, "' is a delta against step ", base, " of job ", job,
          ", ", problem, "; save it in full"));
    };
    if (base >= step) {
      return refuse(absl::StrCat("which is not older than step ", step));
    }
    auto it = base_shards.find(base);
    if (it == base_shards.end()) {
      absl::StatusOr<CheckpointRecord> record =
          metadata_->GetCheckpoint(job, base);
      if (absl::IsNotFound(record.status())) {
        return refuse(
            "which is not a committed checkpoint (deleted by retention?)");
      }
      CKPT_RETURN_IF_ERROR(record.status());
      if (record->state != CheckpointState::kCommitted) {
        return refuse(absl::StrCat("which is ",
                                   CheckpointStateName(record->state),
                                   ", not committed"));
      }
      CKPT_ASSIGN_OR_RETURN(std::vector<ShardManifest> shards,
                            metadata_->GetShards(job, base));
      it = base_shards.emplace(base, std::move(shards)).first;
    }
    absl::StatusOr<const TensorEntry*> matched =
        FindDeltaBase(it->second, tensor);
    if (!matched.ok()) return refuse(matched.status().message());
  }
  return absl::OkStatus();
}

absl::Status CheckpointService::AddBytesAdded(absl::string_view job,
                                              int64_t step, uint64_t bytes) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  CKPT_RETURN_IF_ERROR(ValidateStep(step));
  if (bytes == 0) return absl::OkStatus();
  absl::MutexLock lock(&lifecycle_mu_);
  absl::StatusOr<CheckpointRecord> record = metadata_->GetCheckpoint(job, step);
  if (absl::IsNotFound(record.status())) return absl::OkStatus();
  CKPT_RETURN_IF_ERROR(record.status());
  if (record->state != CheckpointState::kPending) return absl::OkStatus();
  record->bytes_added += bytes;
  MetadataBatch batch;
  batch.PutCheckpoint(*record);
  return metadata_->Apply(batch);
}

absl::StatusOr<CommitResult> CheckpointService::CommitShard(
    absl::string_view job, int64_t step, int32_t world_size,
    const ShardManifest& shard) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  CKPT_RETURN_IF_ERROR(ValidateStep(step));
  CKPT_RETURN_IF_ERROR(ValidateShardManifest(shard, world_size));

  // Every referenced chunk must be stored, and durable before the manifest
  // that references it is. Checked and synced outside the lock (a flush is
  // slow); a garbage collection sweep since then means checking again
  // under it, where no sweep runs.
  const std::vector<ChunkId> ids = UniqueChunks(shard);
  const uint64_t sweeps_seen = sweep_generation_.load();
  CKPT_RETURN_IF_ERROR(CheckChunksStored(job, step, shard.rank, ids));
  CKPT_RETURN_IF_ERROR(chunks_->Sync());

  absl::MutexLock lock(&lifecycle_mu_);
  if (sweep_generation_.load() != sweeps_seen) {
    CKPT_RETURN_IF_ERROR(CheckChunksStored(job, step, shard.rank, ids));
    CKPT_RETURN_IF_ERROR(chunks_->Sync());
  }
  const absl::Time now = clock_->Now();
  absl::StatusOr<CheckpointRecord> found = metadata_->GetCheckpoint(job, step);
  if (absl::IsNotFound(found.status())) {
    return absl::NotFoundError(absl::StrCat("no ", Describe(job, step),
                                            ": call BeginCheckpoint first"));
  }
  CKPT_RETURN_IF_ERROR(found.status());
  CheckpointRecord record = *std::move(found);
  if (record.state == CheckpointState::kAborted) {
    return absl::AbortedError(absl::StrCat(
        Describe(job, step), " was aborted: ", record.abort_reason));
  }
  if (record.world_size != world_size) {
    return absl::FailedPreconditionError(
        absl::StrCat(Describe(job, step), " has world_size ", record.world_size,
                     "; rank ", shard.rank, " committed with ", world_size));
  }
  const bool rank_done = std::binary_search(
      record.committed_ranks.begin(), record.committed_ranks.end(), shard.rank);
  if (rank_done) {
    // A retried commit is fine when it says the same thing.
    CKPT_ASSIGN_OR_RETURN(std::vector<ShardManifest> shards,
                          metadata_->GetShards(job, step));
    for (const auto& stored : shards) {
      if (stored.rank == shard.rank && stored == shard) {
        return CommitResult{std::move(record), false};
      }
    }
    return absl::FailedPreconditionError(
        absl::StrCat("rank ", shard.rank,
                     " already committed a different "
                     "shard to ",
                     Describe(job, step)));
  }
  if (record.state == CheckpointState::kCommitted) {
    return absl::InternalError(absl::StrCat(
        Describe(job, step), " is committed but lacks rank ", shard.rank));
  }
  if (now > record.lease_expiry) {
    record.state = CheckpointState::kAborted;
    record.abort_reason = absl::StrCat("lease expired at ",
                                       absl::FormatTime(record.lease_expiry));
    MetadataBatch abort;
    abort.DeleteCheckpoint(record.job, step);
    abort.PutCheckpoint(record);
    abort.AppendEvent(AbortedEvent(job, step, now, record.abort_reason));
    CKPT_RETURN_IF_ERROR(metadata_->Apply(abort));
    return absl::AbortedError(absl::StrCat(
        Describe(job, step), " was aborted: ", record.abort_reason));
  }

  // Checked under the lock that DeleteCheckpoint and retention take, so the
  // bases cannot go between this check and the commit; from then on this
  // record's base_steps keeps them.
  CKPT_RETURN_IF_ERROR(CheckDeltaBases(job, step, shard));
  record.base_steps = MergeSorted(record.base_steps, DeltaBases(shard));
  record.committed_ranks.insert(
      std::upper_bound(record.committed_ranks.begin(),
                       record.committed_ranks.end(), shard.rank),
      shard.rank);
  record.logical_bytes += shard.ByteSize();
  CommitResult result;
  if (static_cast<int32_t>(record.committed_ranks.size()) == world_size) {
    record.state = CheckpointState::kCommitted;
    record.commit_time = now;
    result.checkpoint_committed = true;
  } else {
    const absl::Duration lease = record.lease_duration > absl::ZeroDuration()
                                     ? record.lease_duration
                                     : options_.default_lease;
    record.lease_expiry = std::max(record.lease_expiry, now + lease);
  }
  MetadataBatch batch;
  batch.PutShard(std::string(job), step, shard);
  batch.PutCheckpoint(record);
  if (result.checkpoint_committed) {
    batch.AppendEvent(
        CommittedEvent(job, step, now, world_size, record.logical_bytes));
  }
  std::vector<RetentionDecision> decisions;
  // The policy sees the store as this batch leaves it, so the commit and
  // what it makes the policy delete land in one atomic batch. The listing is
  // read only when there is a policy or a clock start to set.
  std::optional<JobRecord> job_record;
  bool needs_clock_start = false;
  if (result.checkpoint_committed) {
    CKPT_ASSIGN_OR_RETURN(job_record, metadata_->GetJob(job));
    if (!job_record.has_value()) {
      return absl::InternalError(
          absl::StrCat(Describe(job, step), " has no job record"));
    }
    needs_clock_start = !job_record->first_checkpoint_time.has_value();
  }
  if (result.checkpoint_committed &&
      (needs_clock_start || job_record->retention_policy.has_value())) {
    CKPT_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> records,
                          metadata_->ListCheckpoints(job));
    std::erase_if(records,
                  [&](const CheckpointRecord& r) { return r.step == step; });
    records.push_back(record);
    if (needs_clock_start) {
      // The every-N-hours clock starts at the job's first checkpoint (for a
      // job older than retention, its lowest-step one).
      absl::Time first = record.EffectiveTime();
      int64_t first_step = step;
      for (const auto& r : records) {
        if (r.state == CheckpointState::kCommitted && r.step < first_step) {
          first_step = r.step;
          first = r.EffectiveTime();
        }
      }
      job_record->first_checkpoint_time = first;
      batch.PutJob(*job_record);
    }
    if (job_record->retention_policy.has_value()) {
      CKPT_ASSIGN_OR_RETURN(
          decisions,
          Decide(*job_record, *job_record->retention_policy, records));
      for (int64_t deleted : DeletedSteps(decisions)) {
        batch.DeleteCheckpoint(std::string(job), deleted);
      }
      AppendPrunedEvents(job,
                         absl::StrCat("retention at commit of step ", step),
                         *job_record->retention_policy, decisions, now, &batch);
    }
  }
  // A running collection's mark may predate this shard.
  guard_.Committed(TenantOf(job), ids);
  CKPT_RETURN_IF_ERROR(metadata_->Apply(batch));
  if (result.checkpoint_committed) {
    CKPT_LOG(Info, "committed ", Describe(job, step), " (", world_size,
             " ranks, ", record.logical_bytes, " bytes)");
    LogDeletions(job, "retention policy at commit", decisions);
  }
  result.record = std::move(record);
  return result;
}

absl::Status CheckpointService::AbortCheckpoint(absl::string_view job,
                                                int64_t step,
                                                absl::string_view reason) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  CKPT_RETURN_IF_ERROR(ValidateStep(step));
  absl::MutexLock lock(&lifecycle_mu_);
  CKPT_ASSIGN_OR_RETURN(CheckpointRecord record,
                        metadata_->GetCheckpoint(job, step));
  switch (record.state) {
    case CheckpointState::kAborted:
      return absl::OkStatus();
    case CheckpointState::kCommitted:
      return absl::FailedPreconditionError(absl::StrCat(
          Describe(job, step), " is committed; delete it instead"));
    case CheckpointState::kPending:
      break;
  }
  record.state = CheckpointState::kAborted;
  record.abort_reason =
      reason.empty() ? std::string("aborted by client") : std::string(reason);
  MetadataBatch batch;
  batch.DeleteCheckpoint(record.job, step);
  batch.PutCheckpoint(record);
  batch.AppendEvent(
      AbortedEvent(job, step, clock_->Now(), record.abort_reason));
  CKPT_RETURN_IF_ERROR(metadata_->Apply(batch));
  CKPT_LOG(Info, "aborted ", Describe(job, step), ": ", record.abort_reason);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<JobSummary>> CheckpointService::ListJobs() {
  CKPT_ASSIGN_OR_RETURN(std::vector<JobRecord> jobs, metadata_->ListJobs());
  std::vector<JobSummary> summaries;
  summaries.reserve(jobs.size());
  for (auto& job : jobs) {
    JobSummary summary;
    CKPT_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> records,
                          metadata_->ListCheckpoints(job.name));
    for (const auto& record : records) {
      if (record.state != CheckpointState::kCommitted) continue;
      ++summary.checkpoint_count;
      summary.logical_bytes += record.logical_bytes;
      summary.latest_step = record.step;
    }
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
    std::optional<int32_t> restoring_rank) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  if (restoring_rank.has_value() && *restoring_rank < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("restoring rank must be >= 0, got ", *restoring_rank));
  }
  Checkpoint checkpoint;
  if (step.has_value()) {
    CKPT_RETURN_IF_ERROR(ValidateStep(*step));
    absl::StatusOr<CheckpointRecord> record =
        metadata_->GetCheckpoint(job, *step);
    if (absl::IsNotFound(record.status())) {
      return absl::NotFoundError(
          absl::StrCat("job '", job, "' has no checkpoint ", *step));
    }
    CKPT_RETURN_IF_ERROR(record.status());
    if (record->state != CheckpointState::kCommitted) {
      return absl::NotFoundError(
          absl::StrCat(Describe(job, *step), " is ",
                       CheckpointStateName(record->state), ", not committed"));
    }
    checkpoint.record = *std::move(record);
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
                                    *restoring_rank));
    if (absl::Status status = metadata_->Apply(batch); !status.ok()) {
      CKPT_LOG(Warning, "restore of ", Describe(job, checkpoint.record.step),
               " by rank ", *restoring_rank,
               " not recorded in the job's events: ", status.ToString());
    }
  }
  return checkpoint;
}

absl::StatusOr<std::string> CheckpointService::ReadChunk(absl::string_view job,
                                                         const ChunkId& id) {
  std::string copy;
  CKPT_RETURN_IF_ERROR(ReadChunkTo(job, id, [&](absl::string_view bytes) {
    copy.assign(bytes.data(), bytes.size());
    return absl::OkStatus();
  }));
  return copy;
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

absl::Status CheckpointService::DeleteCheckpoint(absl::string_view job,
                                                 int64_t step) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  CKPT_RETURN_IF_ERROR(ValidateStep(step));
  absl::MutexLock lock(&lifecycle_mu_);
  absl::StatusOr<CheckpointRecord> record = metadata_->GetCheckpoint(job, step);
  if (absl::IsNotFound(record.status())) {
    return absl::NotFoundError(
        absl::StrCat("job '", job, "' has no checkpoint ", step));
  }
  CKPT_RETURN_IF_ERROR(record.status());
  if (record->state == CheckpointState::kPending) {
    return absl::FailedPreconditionError(
        absl::StrCat(Describe(job, step), " is pending; abort it instead"));
  }
  // Deltas cannot be restored without their base.
  CKPT_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> records,
                        metadata_->ListCheckpoints(job));
  std::vector<std::string> dependents;
  for (const CheckpointRecord& other : records) {
    if (other.state == CheckpointState::kAborted ||
        !std::binary_search(other.base_steps.begin(), other.base_steps.end(),
                            step)) {
      continue;
    }
    dependents.push_back(absl::StrCat(
        other.step,
        other.state == CheckpointState::kPending ? " (pending)" : ""));
  }
  if (!dependents.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("step ", step, " of job ", job, " is the base of ",
                     dependents.size() == 1 ? "step " : "steps ",
                     absl::StrJoin(dependents, ", "),
                     " (row deltas against it); delete those first"));
  }
  MetadataBatch batch;
  batch.DeleteCheckpoint(std::string(job), step);
  batch.AppendEvent(
      DeletedEvent(job, step, clock_->Now(), record->state, record->pinned));
  CKPT_RETURN_IF_ERROR(metadata_->Apply(batch));
  CKPT_LOG(Info, "deleted ", Describe(job, step));
  return absl::OkStatus();
}

absl::StatusOr<Stats> CheckpointService::GetStats(absl::string_view job) {
  if (!job.empty()) CKPT_RETURN_IF_ERROR(GetJobRecord(job).status());
  CKPT_ASSIGN_OR_RETURN(std::vector<JobSummary> summaries, ListJobs());
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
  CKPT_ASSIGN_OR_RETURN(
      ChunkStore::Usage usage,
      chunks_->GetUsage(job.empty() ? absl::string_view() : TenantOf(job)));
  stats.stored_bytes = usage.bytes;
  stats.chunk_count = usage.chunk_count;
  return stats;
}

absl::StatusOr<int> CheckpointService::ExpireLeases() {
  CKPT_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> pending,
                        metadata_->ListPending());
  int aborted = 0;
  for (const auto& candidate : pending) {
    absl::MutexLock lock(&lifecycle_mu_);
    const absl::Time now = clock_->Now();
    // Re-read under the lock: a commit may have completed it meanwhile.
    absl::StatusOr<CheckpointRecord> record =
        metadata_->GetCheckpoint(candidate.job, candidate.step);
    if (absl::IsNotFound(record.status())) continue;
    CKPT_RETURN_IF_ERROR(record.status());
    if (record->state != CheckpointState::kPending ||
        now <= record->lease_expiry) {
      continue;
    }
    record->state = CheckpointState::kAborted;
    record->abort_reason = absl::StrCat(
        "lease expired at ", absl::FormatTime(record->lease_expiry), " with ",
        record->committed_ranks.size(), " of ", record->world_size,
        " ranks committed");
    MetadataBatch batch;
    batch.DeleteCheckpoint(record->job, record->step);
    batch.PutCheckpoint(*record);
    batch.AppendEvent(
        AbortedEvent(record->job, record->step, now, record->abort_reason));
    CKPT_RETURN_IF_ERROR(metadata_->Apply(batch));
    CKPT_LOG(Warning, "aborted ", Describe(record->job, record->step), ": ",
             record->abort_reason);
    ++aborted;
  }
  return aborted;
}

absl::StatusOr<JobRecord> CheckpointService::GetJobRecord(
    absl::string_view job) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  CKPT_ASSIGN_OR_RETURN(std::optional<JobRecord> record,
                        metadata_->GetJob(job));
  if (!record.has_value()) {
    return absl::NotFoundError(absl::StrCat("unknown job '", job, "'"));
  }
  return *std::move(record);
}

absl::StatusOr<std::vector<RetentionDecision>> CheckpointService::Decide(
    const JobRecord& job, const RetentionPolicy& policy,
    const std::vector<CheckpointRecord>& records) {
  std::vector<RetentionInput> inputs;
  // A pending checkpoint whose committed ranks use a base needs it kept.
  std::map<int64_t, std::vector<int64_t>> pending_bases;
  for (const auto& record : records) {
    if (record.state == CheckpointState::kPending &&
        !record.base_steps.empty()) {
      pending_bases[record.step] = record.base_steps;
    }
    if (record.state != CheckpointState::kCommitted) continue;
    inputs.push_back(ToRetentionInput(record, record.pinned));
  }
  return EvaluateRetention(policy, std::move(inputs), job.first_checkpoint_time,
                           pending_bases);
}

absl::StatusOr<std::vector<RetentionDecision>>
CheckpointService::DecideAndDelete(const JobRecord& job,
                                   const RetentionPolicy& policy,
                                   MetadataBatch* batch) {
  CKPT_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> records,
                        metadata_->ListCheckpoints(job.name));
  CKPT_ASSIGN_OR_RETURN(std::vector<RetentionDecision> decisions,
                        Decide(job, policy, records));
  for (int64_t step : DeletedSteps(decisions)) {
    batch->DeleteCheckpoint(job.name, step);
  }
  return decisions;
}

absl::StatusOr<std::vector<int64_t>> CheckpointService::SetRetentionPolicy(
    absl::string_view job, const RetentionPolicy& policy) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  CKPT_RETURN_IF_ERROR(ValidateRetentionPolicy(policy));
  absl::MutexLock lock(&lifecycle_mu_);
  CKPT_ASSIGN_OR_RETURN(JobRecord record, GetJobRecord(job));
  const absl::Time now = clock_->Now();
  MetadataBatch batch;
  if (record.retention_policy != policy) {
    batch.AppendEvent(PolicySetEvent(job, policy, now, ""));
  }
  record.retention_policy = policy;
  batch.PutJob(record);
  CKPT_ASSIGN_OR_RETURN(std::vector<RetentionDecision> decisions,
                        DecideAndDelete(record, policy, &batch));
  AppendPrunedEvents(job, "retention as the policy was set", policy, decisions,
                     now, &batch);
  CKPT_RETURN_IF_ERROR(metadata_->Apply(batch));
  LogDeletions(job, "new retention policy", decisions);
  return DeletedSteps(decisions);
}

absl::StatusOr<std::optional<RetentionPolicy>>
CheckpointService::GetRetentionPolicy(absl::string_view job) {
  CKPT_ASSIGN_OR_RETURN(JobRecord record, GetJobRecord(job));
  return record.retention_policy;
}

absl::StatusOr<CheckpointRecord> CheckpointService::PinCheckpoint(
    absl::string_view job, int64_t step, bool pinned) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  CKPT_RETURN_IF_ERROR(ValidateStep(step));
  absl::MutexLock lock(&lifecycle_mu_);
  absl::StatusOr<CheckpointRecord> record = metadata_->GetCheckpoint(job, step);
  if (absl::IsNotFound(record.status()) ||
      (record.ok() && record->state == CheckpointState::kAborted)) {
    return absl::NotFoundError(
        absl::StrCat("job '", job, "' has no committed checkpoint ", step));
  }
  CKPT_RETURN_IF_ERROR(record.status());
  if (record->state == CheckpointState::kPending) {
    return absl::FailedPreconditionError(absl::StrCat(
        Describe(job, step), " is pending; only committed ones can be ",
        pinned ? "pinned" : "unpinned"));
  }
  if (record->pinned != pinned) {
    record->pinned = pinned;
    MetadataBatch batch;
    batch.PutCheckpoint(*record);
    batch.AppendEvent(PinEvent(job, step, clock_->Now(), pinned));
    CKPT_RETURN_IF_ERROR(metadata_->Apply(batch));
    CKPT_LOG(Info, pinned ? "pinned " : "unpinned ", Describe(job, step));
  }
  return *std::move(record);
}

absl::StatusOr<std::vector<RetentionDecision>> CheckpointService::Prune(
    absl::string_view job, const std::optional<RetentionPolicy>& policy,
    bool dry_run) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  if (policy.has_value())
    CKPT_RETURN_IF_ERROR(ValidateRetentionPolicy(*policy));
  absl::MutexLock lock(&lifecycle_mu_);
  CKPT_ASSIGN_OR_RETURN(JobRecord record, GetJobRecord(job));
  const RetentionPolicy effective =
      policy.value_or(record.retention_policy.value_or(RetentionPolicy{}));
  MetadataBatch batch;
  CKPT_ASSIGN_OR_RETURN(std::vector<RetentionDecision> decisions,
                        DecideAndDelete(record, effective, &batch));
  if (!dry_run && !batch.empty()) {
    AppendPrunedEvents(job,
                       policy.has_value() ? "prune with a one-off policy"
                                          : "prune with the stored policy",
                       effective, decisions, clock_->Now(), &batch);
    CKPT_RETURN_IF_ERROR(metadata_->Apply(batch));
    LogDeletions(job, "prune", decisions);
  }
  return decisions;
}

// ---------------------------------------------------------------------------
// Verify and usage

namespace {

// Chunks asked about per ChunkStore::Contains call.
constexpr size_t kVerifyExistenceBatch = 4096;
// Absent ranks named in a problem before "...".
constexpr size_t kMaxNamedRanks = 8;

// Who references one distinct (tenant, chunk).
struct ChunkUse {
  uint64_t size = 0;
  std::vector<uint32_t> checkpoints;  // snapshot indices, ascending
};

struct FoundDamage {
  std::string tenant;
  ChunkId id;
  ChunkProblem problem;
  std::string detail;
};

// "no stored shard for rank(s) 1, 3" when some of [0, world_size) lack one.
std::optional<std::string> AbsentShards(
    int32_t world_size, const std::vector<ShardManifest>& shards) {
  absl::flat_hash_set<int32_t> present;
  for (const ShardManifest& shard : shards) present.insert(shard.rank);
  std::vector<int32_t> absent;
  int32_t absent_count = 0;
  for (int32_t rank = 0; rank < world_size; ++rank) {
    if (present.contains(rank)) continue;
    ++absent_count;
    if (absent.size() < kMaxNamedRanks) absent.push_back(rank);
  }
  if (absent_count == 0) return std::nullopt;
  return absl::StrCat("no stored shard for rank(s) ",
                      absl::StrJoin(absent, ", "),
                      absent_count > static_cast<int32_t>(absent.size())
                          ? absl::StrCat(", ... (", absent_count, " in all)")
                          : "",
                      " of world_size ", world_size);
}

// Which of `keys` are committed now. REQUIRES: the caller holds the
// lifecycle lock.
absl::StatusOr<std::vector<bool>> StillCommitted(
    MetadataStore& metadata, const std::vector<CheckpointKey>& keys) {
  std::vector<bool> alive;
  alive.reserve(keys.size());
  for (const CheckpointKey& key : keys) {
    absl::StatusOr<CheckpointRecord> record =
        metadata.GetCheckpoint(key.job, key.step);
    if (absl::IsNotFound(record.status())) {
      alive.push_back(false);
      continue;
    }
    CKPT_RETURN_IF_ERROR(record.status());
    alive.push_back(record->state == CheckpointState::kCommitted);
  }
  return alive;
}

}  // namespace

struct CheckpointService::VerifySnapshot {
  std::vector<Checkpoint> checkpoints;  // committed, with readable shards
  // Damage in the metadata itself (absent or unreadable shards).
  std::map<CheckpointKey, std::vector<std::string>> metadata_problems;
  int64_t checkpoints_checked = 0;
  int64_t pending_skipped = 0;
};

absl::StatusOr<CheckpointService::VerifySnapshot>
CheckpointService::SnapshotForVerify(const VerifyOptions& options) {
  std::vector<std::string> jobs;
  if (options.job.empty()) {
    CKPT_ASSIGN_OR_RETURN(std::vector<JobRecord> records,
                          metadata_->ListJobs());
    for (auto& record : records) jobs.push_back(std::move(record.name));
  } else {
    CKPT_ASSIGN_OR_RETURN(JobRecord record, GetJobRecord(options.job));
    jobs.push_back(std::move(record.name));
  }
  VerifySnapshot snapshot;
  std::optional<CheckpointState> step_state;  // of options.step, if found
  for (const std::string& job : jobs) {
    CKPT_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> records,
                          metadata_->ListCheckpoints(job));
    for (CheckpointRecord& record : records) {
      if (options.step.has_value() && record.step != *options.step) continue;
      step_state = record.state;
      if (record.state == CheckpointState::kPending) {
        ++snapshot.pending_skipped;
        continue;
      }
      if (record.state != CheckpointState::kCommitted) continue;
      ++snapshot.checkpoints_checked;
      const CheckpointKey key{job, record.step};
      absl::StatusOr<std::vector<ShardManifest>> shards =
          metadata_->GetShards(job, record.step);
      if (absl::IsDataLoss(shards.status())) {
        snapshot.metadata_problems[key].push_back(
            absl::StrCat("unreadable manifest: ", shards.status().message()));
        continue;
      }
      CKPT_RETURN_IF_ERROR(shards.status());
      if (std::optional<std::string> absent =
              AbsentShards(record.world_size, *shards)) {
        snapshot.metadata_problems[key].push_back(*std::move(absent));
      }
      snapshot.checkpoints.push_back(
          Checkpoint{std::move(record), *std::move(shards)});
    }
  }
  if (options.step.has_value() && step_state != CheckpointState::kCommitted) {
    if (!step_state.has_value()) {
      return absl::NotFoundError(absl::StrCat(
          "job '", options.job, "' has no checkpoint ", *options.step));
    }
    return absl::NotFoundError(
        absl::StrCat(Describe(options.job, *options.step), " is ",
                     CheckpointStateName(*step_state), ", not committed"));
  }
  return snapshot;
}

absl::StatusOr<VerifyReport> CheckpointService::Verify(
    const VerifyOptions& options, const VerifyProgressFn& progress) {
  if (!options.job.empty()) CKPT_RETURN_IF_ERROR(ValidateJobName(options.job));
  if (options.step.has_value()) {
    if (options.job.empty()) {
      return absl::InvalidArgumentError(
          "a step to verify needs its job; give the job too");
    }
    CKPT_RETURN_IF_ERROR(ValidateStep(*options.step));
  }
  if (options.read_data_subset.has_value()) {
    CKPT_RETURN_IF_ERROR(ValidateReadDataSubset(*options.read_data_subset));
  }
  auto report_progress = [&](const VerifyProgress& now) {
    return progress ? progress(now) : absl::OkStatus();
  };

  VerifySnapshot snapshot;
  {
    absl::MutexLock lock(&lifecycle_mu_);
    CKPT_ASSIGN_OR_RETURN(snapshot, SnapshotForVerify(options));
  }
  VerifyReport report;
  report.read_data = options.reads_data();
  report.read_data_subset = options.read_data_subset;
  report.checkpoints_checked = snapshot.checkpoints_checked;
  report.pending_skipped = snapshot.pending_skipped;

  std::map<std::string, absl::flat_hash_map<ChunkId, ChunkUse>> uses;
  for (uint32_t i = 0; i < snapshot.checkpoints.size(); ++i) {
    const Checkpoint& checkpoint = snapshot.checkpoints[i];
    auto& tenant_uses = uses[std::string(TenantOf(checkpoint.record.job))];
    for (const ShardManifest& shard : checkpoint.shards) {
      for (const ChunkRef& ref : ReferencedChunks(shard)) {
        ChunkUse& use = tenant_uses[ref.id];
        use.size = ref.size;
        // Shards of one checkpoint may share chunks (replicated state).
        if (use.checkpoints.empty() || use.checkpoints.back() != i) {
          use.checkpoints.push_back(i);
        }
      }
    }
  }

  // Existence, in batches; collects what the data read covers meanwhile.
  std::vector<FoundDamage> found;
  std::vector<std::pair<std::string, ChunkId>> to_read;
  VerifyProgress existence{.stage = VerifyStage::kExistence};
  VerifyProgress reading{.stage = VerifyStage::kReadData};
  for (const auto& [tenant, tenant_uses] : uses) {
    existence.chunks_total += tenant_uses.size();
  }
  report.chunks_checked = existence.chunks_total;
  CKPT_RETURN_IF_ERROR(report_progress(existence));
  for (const auto& [tenant, tenant_uses] : uses) {
    std::vector<ChunkId> ids;
    ids.reserve(tenant_uses.size());
    for (const auto& [id, use] : tenant_uses) ids.push_back(id);
    // Key order: the store's own order, so reads are mostly sequential.
    std::sort(ids.begin(), ids.end());
    for (size_t begin = 0; begin < ids.size(); begin += kVerifyExistenceBatch) {
      const absl::Span<const ChunkId> batch =
          absl::MakeConstSpan(ids).subspan(begin, kVerifyExistenceBatch);
      CKPT_ASSIGN_OR_RETURN(std::vector<bool> present,
                            chunks_->Contains(tenant, batch));
      for (size_t i = 0; i < batch.size(); ++i) {
        if (!present[i]) {
          found.push_back(
              {tenant, batch[i], ChunkProblem::kMissing, "not in the store"});
        } else if (options.reads_data() &&
                   (!options.read_data_subset.has_value() ||
                    options.read_data_subset->Contains(batch[i]))) {
          to_read.emplace_back(tenant, batch[i]);
          ++reading.chunks_total;
          reading.bytes_total += tenant_uses.at(batch[i]).size;
        }
      }
      existence.chunks_done += batch.size();
      CKPT_RETURN_IF_ERROR(report_progress(existence));
    }
  }

  // Data, chunk by chunk, without the lifecycle lock.
  if (options.reads_data()) {
    CKPT_RETURN_IF_ERROR(report_progress(reading));
    for (const auto& [tenant, id] : to_read) {
      absl::StatusOr<std::string> bytes = chunks_->Get(tenant, id);
      if (absl::IsNotFound(bytes.status())) {
        found.push_back({tenant, id, ChunkProblem::kMissing,
                         "gone from the store since the existence check"});
      } else if (absl::IsDataLoss(bytes.status())) {
        found.push_back({tenant, id, ChunkProblem::kCorrupt,
                         std::string(bytes.status().message())});
      } else {
        CKPT_RETURN_IF_ERROR(bytes.status());
        ++report.chunks_read;
        report.bytes_read += bytes->size();
        const ChunkId actual = Sha256(*bytes);
        if (actual != id) {
          found.push_back(
              {tenant, id, ChunkProblem::kCorrupt,
               absl::StrCat("its ", bytes->size(), " stored bytes hash to ",
                            actual.ShortHex())});
        }
      }
      ++reading.chunks_done;
      reading.bytes_done += uses[tenant][id].size;
      CKPT_RETURN_IF_ERROR(report_progress(reading));
    }
  }

  // Damage per checkpoint; then only what is still committed counts: GC may
  // rightly have removed the chunks of a checkpoint deleted meanwhile.
  std::map<CheckpointKey, VerifyReport::DamagedCheckpoint> damaged;
  auto key_of = [&](uint32_t index) {
    const CheckpointRecord& record = snapshot.checkpoints[index].record;
    return CheckpointKey{record.job, record.step};
  };
  for (const FoundDamage& damage : found) {
    for (uint32_t index : uses[damage.tenant][damage.id].checkpoints) {
      VerifyReport::DamagedCheckpoint& checkpoint = damaged[key_of(index)];
      if (damage.problem == ChunkProblem::kMissing) {
        ++checkpoint.missing_chunks;
      } else {
        ++checkpoint.corrupt_chunks;
      }
    }
  }
  for (auto& [key, problems] : snapshot.metadata_problems) {
    damaged[key].problems = std::move(problems);
  }
  if (!damaged.empty()) {
    std::vector<CheckpointKey> keys;
    for (const auto& [key, checkpoint] : damaged) keys.push_back(key);
    std::vector<bool> alive;
    {
      absl::MutexLock lock(&lifecycle_mu_);
      CKPT_ASSIGN_OR_RETURN(alive, StillCommitted(*metadata_, keys));
    }
    for (size_t i = 0; i < keys.size(); ++i) {
      if (!alive[i]) damaged.erase(keys[i]);
    }
  }
  for (auto& [key, checkpoint] : damaged) {
    checkpoint.checkpoint = key;
    report.damaged_checkpoints.push_back(std::move(checkpoint));
  }

  std::sort(found.begin(), found.end(),
            [](const FoundDamage& a, const FoundDamage& b) {
              return std::tie(a.tenant, a.id) < std::tie(b.tenant, b.id);
            });
  for (FoundDamage& damage : found) {
    const ChunkUse& use = uses[damage.tenant][damage.id];
    std::vector<CheckpointKey> referencing;
    for (uint32_t index : use.checkpoints) {
      CheckpointKey key = key_of(index);
      if (damaged.contains(key)) referencing.push_back(std::move(key));
    }
    if (referencing.empty()) continue;
    ++report.damaged_chunk_count;
    if (report.damaged_chunks.size() >= kMaxListedDamagedChunks) continue;
    report.damaged_chunks.push_back(VerifyReport::DamagedChunk{
        std::move(damage.tenant), damage.id, use.size, damage.problem,
        std::move(damage.detail), std::move(referencing)});
  }
  if (report.ok()) {
    CKPT_LOG(Info, "verify: ", report.checkpoints_checked,
             " checkpoint(s) intact (", report.chunks_checked, " chunks, ",
             report.bytes_read, " bytes read)");
  } else {
    CKPT_LOG(Error, "verify: ", report.damaged_chunk_count,
             " damaged chunk(s), ", report.damaged_checkpoints.size(),
             " damaged checkpoint(s)");
  }
  return report;
}

absl::StatusOr<std::map<int64_t, uint64_t>> CheckpointService::UniqueBytes(
    absl::string_view job) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  const absl::string_view tenant = TenantOf(job);
  // Each chunk's one referencing checkpoint (an index into `steps`), or
  // kShared once a second one references it.
  constexpr int64_t kShared = -1;
  struct Owner {
    int64_t checkpoint;
    uint64_t size;
  };
  absl::flat_hash_map<ChunkId, Owner> owners;
  std::vector<std::optional<int64_t>> steps;  // the step when of `job`
  std::map<int64_t, uint64_t> unique;
  absl::MutexLock lock(&lifecycle_mu_);
  CKPT_RETURN_IF_ERROR(GetJobRecord(job).status());
  CKPT_ASSIGN_OR_RETURN(std::vector<JobRecord> jobs, metadata_->ListJobs());
  for (const JobRecord& other : jobs) {
    if (TenantOf(other.name) != tenant) continue;
    CKPT_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> records,
                          metadata_->ListCheckpoints(other.name));
    for (const CheckpointRecord& record : records) {
      const bool ours = other.name == job;
      if (ours) unique[record.step] = 0;
      // An aborted checkpoint's shards are dropped; it protects nothing.
      if (record.state == CheckpointState::kAborted) continue;
      CKPT_ASSIGN_OR_RETURN(std::vector<ShardManifest> shards,
                            metadata_->GetShards(other.name, record.step));
      const auto index = static_cast<int64_t>(steps.size());
      steps.push_back(ours ? std::optional<int64_t>(record.step)
                           : std::nullopt);
      for (const ShardManifest& shard : shards) {
        for (const ChunkRef& ref : ReferencedChunks(shard)) {
          auto [it, inserted] =
              owners.try_emplace(ref.id, Owner{index, ref.size});
          if (!inserted && it->second.checkpoint != index) {
            it->second.checkpoint = kShared;
          }
        }
      }
    }
  }
  for (const auto& [id, owner] : owners) {
    if (owner.checkpoint == kShared) continue;
    if (const std::optional<int64_t>& step = steps[owner.checkpoint]) {
      unique[*step] += owner.size;
    }
  }
  return unique;
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
