#include "server/service/checkpoint_service.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/chunking.h"
#include "common/event.h"
#include "common/logging.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace ckpt::server {
namespace {

std::string Describe(absl::string_view job, int64_t step) {
  return absl::StrCat("checkpoint ", job, "@", step);
}

absl::Status ValidateStep(int64_t step) {
  if (step < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("step must be >= 0, got ", step));
  }
  return absl::OkStatus();
}

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

namespace {

std::vector<int64_t> DeletedSteps(
    const std::vector<RetentionDecision>& decisions) {
  std::vector<int64_t> steps;
  for (const auto& decision : decisions) {
    if (!decision.keep) steps.push_back(decision.step);
  }
  return steps;
}

void LogDeletions(absl::string_view job, absl::string_view why,
                  const std::vector<RetentionDecision>& decisions) {
  for (const auto& decision : decisions) {
    if (decision.keep) continue;
    CKPT_LOG(Info, why, " deleted ", Describe(job, decision.step), ": ",
             absl::StrJoin(decision.reasons, "; "));
  }
}

// Event details quote client text (abort reasons, metric names); capped so
// that a job's whole history (kMaxEventsPerJob events) stays a few MiB.
constexpr size_t kMaxEventDetailBytes = 1024;

// `text` cut to at most `max_bytes` (marked with "..."), never inside a UTF-8
// sequence: proto3 strings must stay valid UTF-8.
std::string TruncateUtf8(std::string text, size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  constexpr absl::string_view kEllipsis = "...";
  size_t cut = max_bytes - kEllipsis.size();
  // Back off continuation bytes (10xxxxxx) to the start of a character.
  while (cut > 0 && (static_cast<uint8_t>(text[cut]) & 0xc0) == 0x80) --cut;
  text.resize(cut);
  text.append(kEllipsis.data(), kEllipsis.size());
  return text;
}

JobEvent MakeEvent(absl::string_view job, std::optional<int64_t> step,
                   absl::Time time, EventKind kind, std::string detail) {
  JobEvent event;
  event.job = std::string(job);
  event.time = time;
  event.kind = kind;
  event.step = step;
  event.detail = TruncateUtf8(std::move(detail), kMaxEventDetailBytes);
  return event;
}

// One `pruned` event per checkpoint that `decisions` delete, naming what
// triggered the deletion, the policy, and why no rule kept it.
void AppendPrunedEvents(absl::string_view job, absl::string_view trigger,
                        const RetentionPolicy& policy,
                        const std::vector<RetentionDecision>& decisions,
                        absl::Time now, MetadataBatch* batch) {
  for (const auto& decision : decisions) {
    if (decision.keep) continue;
    batch->AppendEvent(
        MakeEvent(job, decision.step, now, EventKind::kPruned,
                  absl::StrCat(trigger, " (", RetentionPolicyText(policy),
                               "): ", absl::StrJoin(decision.reasons, "; "))));
  }
}

JobEvent PolicySetEvent(absl::string_view job, const RetentionPolicy& policy,
                        absl::Time now, absl::string_view source) {
  return MakeEvent(job, std::nullopt, now, EventKind::kPolicySet,
                   absl::StrCat(RetentionPolicyText(policy), source));
}

}  // namespace

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
    abort.AppendEvent(
        MakeEvent(job, step, now, EventKind::kAborted, record.abort_reason));
    CKPT_RETURN_IF_ERROR(metadata_->Apply(abort));
    return absl::AbortedError(absl::StrCat(
        Describe(job, step), " was aborted: ", record.abort_reason));
  }

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
    batch.AppendEvent(MakeEvent(
        job, step, now, EventKind::kCommitted,
        absl::StrCat(world_size, world_size == 1 ? " rank, " : " ranks, ",
                     record.logical_bytes, " bytes")));
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
  batch.AppendEvent(MakeEvent(job, step, clock_->Now(), EventKind::kAborted,
                              record.abort_reason));
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
    batch.AppendEvent(MakeEvent(job, checkpoint.record.step, clock_->Now(),
                                EventKind::kRestored,
                                absl::StrCat("rank ", *restoring_rank)));
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
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  CKPT_ASSIGN_OR_RETURN(std::string bytes, chunks_->Get(TenantOf(job), id));
  const ChunkId actual = Sha256(bytes);
  if (actual != id) {
    CKPT_LOG(Error, "corrupt chunk ", id.ToHex(), " of tenant ", TenantOf(job),
             ": stored bytes hash to ", actual.ToHex());
    return absl::DataLossError(
        absl::StrCat("chunk ", id.ToHex(),
                     " is corrupt: its stored bytes hash to ", actual.ToHex()));
  }
  return bytes;
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
  MetadataBatch batch;
  batch.DeleteCheckpoint(std::string(job), step);
  batch.AppendEvent(
      MakeEvent(job, step, clock_->Now(), EventKind::kDeleted,
                absl::StrCat("was ", CheckpointStateName(record->state),
                             record->pinned ? " and pinned" : "")));
  CKPT_RETURN_IF_ERROR(metadata_->Apply(batch));
  CKPT_LOG(Info, "deleted ", Describe(job, step));
  return absl::OkStatus();
}

absl::StatusOr<Stats> CheckpointService::GetStats(absl::string_view job) {
  Stats stats;
  std::vector<std::string> jobs;
  if (job.empty()) {
    CKPT_ASSIGN_OR_RETURN(std::vector<JobRecord> records,
                          metadata_->ListJobs());
    for (auto& record : records) jobs.push_back(std::move(record.name));
  } else {
    CKPT_RETURN_IF_ERROR(ValidateJobName(job));
    CKPT_ASSIGN_OR_RETURN(std::optional<JobRecord> record,
                          metadata_->GetJob(job));
    if (!record.has_value()) {
      return absl::NotFoundError(absl::StrCat("unknown job '", job, "'"));
    }
    jobs.push_back(std::string(job));
  }
  stats.job_count = static_cast<int64_t>(jobs.size());
  for (const auto& name : jobs) {
    CKPT_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> records,
                          metadata_->ListCheckpoints(name));
    for (const auto& record : records) {
      if (record.state != CheckpointState::kCommitted) continue;
      ++stats.checkpoint_count;
      stats.logical_bytes += record.logical_bytes;
    }
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
    batch.AppendEvent(MakeEvent(record->job, record->step, now,
                                EventKind::kAborted, record->abort_reason));
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
  for (const auto& record : records) {
    if (record.state != CheckpointState::kCommitted) continue;
    inputs.push_back(ToRetentionInput(record, record.pinned));
  }
  return EvaluateRetention(policy, std::move(inputs),
                           job.first_checkpoint_time);
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
    batch.AppendEvent(
        MakeEvent(job, step, clock_->Now(),
                  pinned ? EventKind::kPinned : EventKind::kUnpinned, ""));
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
