// CheckpointService, the save path: BeginCheckpoint, FindMissingChunks,
// PutChunk, AddBytesAdded, CommitShard (with its chunk and delta-base checks
// and the retention it applies at commit), AbortCheckpoint, and the leases
// (ExpireLeases).
//
// Locking: BeginCheckpoint, AddBytesAdded, AbortCheckpoint and CommitShard
// take the job's lease (MetadataStore::LockJob: cluster-wide on a shared
// store, nothing otherwise) and then lifecycle_mu_, never the reverse, so a
// wait for another server's lock on one job holds up no other job. They
// hold both across their read-modify-write of the checkpoint header
// (for Begin and Commit also the job record and the retention deletions in
// the same batch); CheckDeltaBases and the pending checkpoints' layouts
// (layouts_, common/shard_layout.h) require it. ExpireLeases takes it once
// per candidate. FindMissingChunks and PutChunk take no service lock (the
// ChunkGuard and the ChunkStore are thread-safe). CommitShard checks and
// syncs its chunks before taking the lock, and again under it when a GC
// sweep ran meanwhile (sweep_generation_; see garbage_collection.cc).
// Past 600 lines because it is one job, the save path's state machine: its
// calls share the lock, the header read-modify-write and the lease rules.
#include <algorithm>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/chunking.h"
#include "common/delta_base.h"
#include "common/failpoint.h"
#include "common/logging.h"
#include "common/quote.h"
#include "common/sha256.h"
#include "common/shard_layout.h"
#include "common/status_macros.h"
#include "common/tags.h"
#include "server/service/checkpoint_service.h"
#include "server/service/job_events.h"
#include "server/service/service_internal.h"

namespace ckpt::server {

using internal::DeletedSteps;
using internal::Describe;
using internal::ValidateStep;

namespace {

// Longest abort reason kept; a longer one is stored cut (BoundedText).
constexpr size_t kMaxAbortReasonBytes = 1024;

absl::Status ValidateMetadata(const CheckpointMetadata& meta) {
  for (const auto& [name, value] : meta.metrics) {
    if (name.empty() || name.size() > kMaxMetricNameBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("metric names must be 1-", kMaxMetricNameBytes,
                       " bytes, got ", QuoteTruncated(name)));
    }
  }
  return ValidateTags(meta.tags);
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

// What a CommitShard's batch writes, for its failpoints (common/
// failpoint.h): a rank's shard of a checkpoint still pending, the last
// shard (the commit), or the last shard of a copy (Client::Copy's commit).
enum class CommitWrite { kShard, kCommit, kCopyCommit };

// Its point before the batch (`after` false) or after the synced write
// returned, before the reply (`after` true).
void CommitFailpoint(CommitWrite write, bool after) {
  switch (write) {
    case CommitWrite::kShard:
      if (after) {
        CKPT_FAILPOINT("shard_manifest.after");
      } else {
        CKPT_FAILPOINT("shard_manifest.before");
      }
      return;
    case CommitWrite::kCommit:
      if (after) {
        CKPT_FAILPOINT("commit_batch.after");
      } else {
        CKPT_FAILPOINT("commit_batch.before");
      }
      return;
    case CommitWrite::kCopyCommit:
      if (after) {
        CKPT_FAILPOINT("copy_commit.after");
      } else {
        CKPT_FAILPOINT("copy_commit.before");
      }
      return;
  }
}

std::vector<ChunkId> UniqueChunks(const ShardManifest& shard) {
  std::vector<ChunkId> ids;
  for (const ChunkRef& ref : ReferencedChunks(shard)) ids.push_back(ref.id);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

}  // namespace

absl::Status CheckpointService::CheckChunksStored(
    absl::string_view job, int64_t step, const ShardManifest& shard,
    absl::Span<const ChunkId> ids) {
  // Durable ones only: Sync came first, and a chunk stored after it (an
  // upload of the same bytes by another save) may not be durable yet.
  CKPT_ASSIGN_OR_RETURN(std::vector<std::optional<uint64_t>> sizes,
                        chunks_->DurableSizes(TenantOf(job), ids));
  absl::flat_hash_map<ChunkId, std::optional<uint64_t>> stored;
  stored.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) stored.emplace(ids[i], sizes[i]);
  // Every piece, not only each chunk's first use: two pieces may name one
  // chunk with different sizes. The size is the chunk's whole length for
  // every kind of entry (plain, row delta, quantized), as a piece is always
  // a whole chunk; ValidateShardManifest has already held the pieces' sum
  // against what the entry's kind needs, so together the stored bytes are
  // what a restore will decode.
  // The same for the stored row fingerprints' pieces.
  for (const TensorEntry& tensor : shard.tensors) {
    for (const auto& [pieces, kind] :
         {std::pair{&tensor.pieces, "piece "},
          std::pair{&tensor.fingerprint_pieces, "fingerprint piece "}}) {
      for (size_t p = 0; p < pieces->size(); ++p) {
        const ChunkRef& piece = (*pieces)[p];
        const std::optional<uint64_t>& size = stored.at(piece.id);
        if (size.has_value() && *size != piece.size) {
          return absl::InvalidArgumentError(absl::StrCat(
              "rank ", shard.rank, "'s manifest for ", Describe(job, step),
              ": tensor ", QuoteTruncated(tensor.name), " ", kind, p,
              " records ", piece.size, " bytes but its chunk ",
              piece.id.ShortHex(), " holds ", *size,
              "; a piece must be a whole chunk"));
        }
      }
    }
  }
  std::vector<bool> present(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) present[i] = sizes[i].has_value();
  return RefuseMissingChunks(job, step, shard.rank, ids, present);
}

absl::Status CheckpointService::MarkChunksUsed(absl::string_view job,
                                               int64_t step,
                                               const ShardManifest& shard,
                                               absl::Span<const ChunkId> ids) {
  CKPT_ASSIGN_OR_RETURN(std::vector<bool> present,
                        chunks_->MarkUsed(TenantOf(job), ids));
  return RefuseMissingChunks(job, step, shard.rank, ids, present);
}

absl::Status CheckpointService::RefuseMissingChunks(
    absl::string_view job, int64_t step, int32_t rank,
    absl::Span<const ChunkId> ids, const std::vector<bool>& present) {
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

absl::Time CheckpointService::CappedExpiry(const CheckpointRecord& record,
                                           absl::Time now) const {
  return std::min(record.lease_expiry, now + options_.max_lease);
}

absl::StatusOr<BeginResult> CheckpointService::BeginCheckpoint(
    absl::string_view job, int64_t step, int32_t world_size,
    const CheckpointMetadata& meta, absl::Duration lease,
    const std::optional<RetentionPolicy>& policy, const Actor& actor,
    const CopyOrigin& copy) {
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
  if (lease > options_.max_lease) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a lease of ", absl::FormatDuration(lease),
        " exceeds this server's maximum of ",
        absl::FormatDuration(options_.max_lease),
        " (ckpt-server --max-lease-seconds); ask for at most that: every "
        "BeginCheckpoint and CommitShard renews it"));
  }
  CKPT_RETURN_IF_ERROR(ValidateMetadata(meta));
  if (copy.copied_from.has_value()) {
    if (absl::Status peer = ValidateCopyPeer(*copy.copied_from); !peer.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("copied_from.", peer.message()));
    }
  }
  if (policy.has_value())
    CKPT_RETURN_IF_ERROR(ValidateRetentionPolicy(*policy));
  if (lease == absl::ZeroDuration()) lease = options_.default_lease;

  CKPT_ASSIGN_OR_RETURN(auto job_lock, metadata_->LockJob(job));
  absl::MutexLock lock(&lifecycle_mu_);
  const absl::Time now = clock_->Now();
  MetadataBatch batch;
  CKPT_ASSIGN_OR_RETURN(std::optional<JobRecord> stored_job,
                        metadata_->GetJob(job));
  const bool new_job = !stored_job.has_value();
  JobRecord job_record =
      new_job ? MakeJobRecord(std::string(job), now) : *std::move(stored_job);
  bool job_changed = new_job;
  std::vector<RetentionDecision> decisions;
  std::string policy_ignored;
  if (policy.has_value()) {
    // Decided here, under the lock, against the policy that applies now
    // (policy_owner.h): an operator's is the job's, and an append-only
    // writer's save never deletes history.
    bool origin_filled = false;
    CKPT_ASSIGN_OR_RETURN(AppliedPolicy applied,
                          ApplicablePolicy(&job_record, &origin_filled));
    job_changed = job_changed || origin_filled;
    const WriterPolicyOutcome outcome =
        DecideWriterPolicy(applied, *policy, actor);
    policy_ignored = outcome.ignored;
    if (!outcome.ignored.empty() &&
        RememberIgnoredPolicy(IgnoredPolicyDigest(*policy), &job_record)) {
      // Every rank of every save passes it: one event per distinct policy.
      job_changed = true;
      batch.AppendEvent(PolicyIgnoredEvent(job, step, *policy, now,
                                           actor.principal, outcome.ignored));
    }
    if (outcome.store) {
      batch.AppendEvent(PolicySetEvent(
          job, *policy, now, actor.principal,
          absl::StrCat(" (from BeginCheckpoint of step ", step, ")")));
      job_record.retention_policy = policy;
      job_record.policy_origin =
          PolicyOrigin{PolicyOrigin::Source::kWriter, actor.principal, now,
                       /*inferred=*/false};
      job_record.ignored_policy_digests.clear();
      job_changed = true;
    }
    if (outcome.apply && !new_job) {
      CKPT_ASSIGN_OR_RETURN(decisions,
                            DecideAndDelete(job_record, *policy, &batch));
      AppendPrunedEvents(job,
                         absl::StrCat("retention as BeginCheckpoint of step ",
                                      step, " set the policy"),
                         *policy, decisions, now, actor.principal, &batch);
    }
  }
  if (job_changed) batch.PutJob(job_record);

  BeginResult result;
  result.retention_policy_ignored = std::move(policy_ignored);
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
        std::max(CappedExpiry(result.record, now), now + lease);
    MergeMetadata(meta, &result.record.metadata);
    // Each rank's tags were checked alone; together they must fit too, or
    // W ranks could store W times the limit.
    if (absl::Status merged = ValidateTags(result.record.metadata.tags);
        !merged.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the tags of ", Describe(job, step),
                       " with this rank's added: ", merged.message()));
    }
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
    // Pending, `pinned` says the checkpoint will commit pinned.
    result.record.pinned = copy.pin;
    result.record.copied_from = copy.copied_from;
  }
  batch.PutCheckpoint(result.record);
  CKPT_RETURN_IF_ERROR(metadata_->Apply(batch));
  LogDeletions(job, "retention policy from BeginCheckpoint", actor.principal,
               decisions);
  return result;
}

absl::StatusOr<std::vector<ChunkId>> CheckpointService::FindMissingChunks(
    absl::string_view job, absl::Span<const ChunkId> ids) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  // The save will reference these (uploading the missing ones first): GC
  // must not delete the present ones before its commit.
  guard_.Announce(TenantOf(job), ids, clock_->Now());
  // A store shared with other servers records the use on each chunk, where
  // their collectors see it (ChunkStore::MarkUsed).
  CKPT_ASSIGN_OR_RETURN(std::vector<bool> present,
                        chunks_->MarkUsed(TenantOf(job), ids));
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
          "rank ", shard.rank, " of ", Describe(job, step), ": tensor ",
          QuoteTruncated(tensor.name), " is a delta against step ", base,
          " of job ", job, ", ", problem, "; save it in full"));
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
    // The entry restores rebuild it from: its own rank's, when that holds
    // one (per-rank state).
    absl::StatusOr<const TensorEntry*> matched =
        FindDeltaBase(it->second, tensor, shard.rank);
    if (!matched.ok()) return refuse(matched.status().message());
  }
  return absl::OkStatus();
}

absl::StatusOr<ShardLayout*> CheckpointService::PendingLayout(
    const CheckpointRecord& record) {
  auto key = std::make_pair(record.job, record.step);
  auto it = layouts_.find(key);
  if (it != layouts_.end() && it->second.create_time == record.create_time &&
      it->second.layout.ranks() == record.committed_ranks) {
    return &it->second.layout;
  }
  // Absent (the checkpoint's first commit, or the first since this server
  // started) or out of step with the record: read back what is committed.
  CKPT_ASSIGN_OR_RETURN(std::vector<ShardManifest> committed,
                        metadata_->GetShards(record.job, record.step));
  absl::StatusOr<ShardLayout> layout = ShardLayout::Of(committed);
  if (!layout.ok()) {
    // Shards committed before this check existed may break it: that is no
    // fault of the rank committing now, and no shard of it can mend it.
    return absl::FailedPreconditionError(absl::StrCat(
        "the shards already committed to ", Describe(record.job, record.step),
        " break the layout rule (stored by an older server?): ",
        layout.status().message(), "; abort the checkpoint and save again"));
  }
  KeptLayout& kept = layouts_[std::move(key)];
  kept = KeptLayout{record.create_time, *std::move(layout)};
  return &kept.layout;
}

void CheckpointService::ForgetLayout(absl::string_view job, int64_t step) {
  layouts_.erase(std::make_pair(std::string(job), step));
}

absl::Status CheckpointService::AddBytesAdded(absl::string_view job,
                                              int64_t step, uint64_t bytes) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  CKPT_RETURN_IF_ERROR(ValidateStep(step));
  if (bytes == 0) return absl::OkStatus();
  CKPT_ASSIGN_OR_RETURN(auto job_lock, metadata_->LockJob(job));
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
    const ShardManifest& shard, const Actor& actor) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  CKPT_RETURN_IF_ERROR(ValidateStep(step));
  CKPT_RETURN_IF_ERROR(ValidateShardManifest(shard, world_size));

  // Every referenced chunk must be stored, and durable before the manifest
  // that references it is. Checked and synced outside the lock (a flush is
  // slow); a garbage collection sweep since then means checking again
  // under it, where no sweep runs.
  const std::vector<ChunkId> ids = UniqueChunks(shard);
  const uint64_t sweeps_seen = sweep_generation_.load();
  // Synced first, then checked against what is durable: a chunk the store
  // could not make durable (RocksDbStore drops a chunk file whose sync
  // failed) is then missing from the check, and one stored again since by
  // another save (not durable yet) gets one more Sync.
  CKPT_RETURN_IF_ERROR(chunks_->Sync());
  if (!CheckChunksStored(job, step, shard, ids).ok()) {
    CKPT_RETURN_IF_ERROR(chunks_->Sync());
    CKPT_RETURN_IF_ERROR(CheckChunksStored(job, step, shard, ids));
  }

  CKPT_ASSIGN_OR_RETURN(auto job_lock, metadata_->LockJob(job));
  if (chunks_->IsShared()) {
    // Another server's collection may run now. Marked under the job lock,
    // whose lease bounds the time to this commit's write, a chunk is either
    // gone (refused below) or spared by every sweep that could miss this
    // shard (ChunkStore::DeleteIfUnusedSince, ServiceOptions::shared_min_hold).
    // Outside lifecycle_mu_: marking thousands of chunks takes a while, and
    // other jobs' changes need not wait for it.
    CKPT_RETURN_IF_ERROR(MarkChunksUsed(job, step, shard, ids));
  }
  absl::MutexLock lock(&lifecycle_mu_);
  if (!chunks_->IsShared() && sweep_generation_.load() != sweeps_seen) {
    CKPT_RETURN_IF_ERROR(chunks_->Sync());
    CKPT_RETURN_IF_ERROR(CheckChunksStored(job, step, shard, ids));
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
        AbortedEvent(job, step, now, actor.principal, record.abort_reason));
    CKPT_RETURN_IF_ERROR(metadata_->Apply(abort));
    ForgetLayout(job, step);
    return absl::AbortedError(absl::StrCat(
        Describe(job, step), " was aborted: ", record.abort_reason));
  }

  // Sharded tensors must keep tiling their global shapes (common/
  // shard_layout.h), checked against every shard committed so far.
  const bool completes =
      static_cast<int32_t>(record.committed_ranks.size()) + 1 == world_size;
  absl::StatusOr<ShardLayout*> layout = PendingLayout(record);
  absl::Status layout_status =
      layout.ok() ? (*layout)->Check(shard, completes) : layout.status();
  if (absl::IsInvalidArgument(layout_status)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rank ", shard.rank, "'s manifest for ", Describe(job, step), ": ",
        layout_status.message(),
        "; nothing was committed, and the rank may commit a corrected "
        "shard"));
  }
  CKPT_RETURN_IF_ERROR(layout_status);
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
    // A duration stored before the cap existed may exceed it.
    const absl::Duration lease =
        record.lease_duration > absl::ZeroDuration()
            ? std::min(record.lease_duration, options_.max_lease)
            : options_.default_lease;
    record.lease_expiry = std::max(CappedExpiry(record, now), now + lease);
  }
  MetadataBatch batch;
  batch.PutShard(std::string(job), step, shard);
  batch.PutCheckpoint(record);
  if (result.checkpoint_committed) {
    batch.AppendEvent(CommittedEvent(job, step, now, actor.principal,
                                     world_size, record.logical_bytes));
    // What its Begin asked for (CopyOrigin), in the commit's batch: the
    // retention below sees the pin, and no copy is ever listed without
    // its provenance.
    if (record.copied_from.has_value()) {
      batch.AppendEvent(CopiedFromEvent(job, step, now, actor.principal,
                                        *record.copied_from));
    }
    if (record.pinned) {
      batch.AppendEvent(PinnedAtCommitEvent(job, step, now, actor.principal));
    }
  }
  std::vector<RetentionDecision> decisions;
  // The policy sees the store as this batch leaves it, so the commit and
  // what it makes the policy delete land in one atomic batch. The listing is
  // read only when there is a policy or a clock start to set.
  std::optional<JobRecord> job_record;
  // The job's own policy, or its tenant's default (policy_owner.h).
  AppliedPolicy applied;
  bool needs_clock_start = false;
  if (result.checkpoint_committed) {
    CKPT_ASSIGN_OR_RETURN(job_record, metadata_->GetJob(job));
    if (!job_record.has_value()) {
      return absl::InternalError(
          absl::StrCat(Describe(job, step), " has no job record"));
    }
    needs_clock_start = !job_record->first_checkpoint_time.has_value();
    bool origin_filled = false;
    CKPT_ASSIGN_OR_RETURN(applied,
                          ApplicablePolicy(&*job_record, &origin_filled));
    if (origin_filled) batch.PutJob(*job_record);
  }
  if (result.checkpoint_committed &&
      (needs_clock_start || applied.policy.has_value())) {
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
    if (applied.policy.has_value() && actor.may_delete_history) {
      CKPT_ASSIGN_OR_RETURN(decisions,
                            Decide(*job_record, *applied.policy, records, now));
      for (int64_t deleted : DeletedSteps(decisions)) {
        batch.DeleteCheckpoint(std::string(job), deleted);
      }
      AppendPrunedEvents(
          job,
          absl::StrCat(
              "retention at commit of step ", step,
              applied.origin->source == PolicyOrigin::Source::kTenantDefault
                  ? " (the tenant's default policy)"
                  : ""),
          *applied.policy, decisions, now, actor.principal, &batch);
    }
  }
  // A running collection's mark may predate this shard.
  guard_.Committed(TenantOf(job), ids);
  const CommitWrite write = !result.checkpoint_committed ? CommitWrite::kShard
                            : record.copied_from.has_value()
                                ? CommitWrite::kCopyCommit
                                : CommitWrite::kCommit;
  CommitFailpoint(write, /*after=*/false);
  CKPT_RETURN_IF_ERROR(metadata_->Apply(batch));
  CommitFailpoint(write, /*after=*/true);
  if (result.checkpoint_committed) {
    ForgetLayout(job, step);
  } else {
    (*layout)->Add(shard);
  }
  if (result.checkpoint_committed) {
    CKPT_EVENT(Info, "committed", {"job", job}, {"step", step},
               {"ranks", world_size}, {"bytes", record.logical_bytes},
               {"principal", actor.principal});
    LogDeletions(job, "retention policy at commit", actor.principal, decisions);
    if (applied.policy.has_value() && !actor.may_delete_history) {
      CKPT_LOG(Info, "retention of ", job,
               " not applied at the commit of step ", step, ": ",
               actor.principal, " is append-only; an admin's prune applies it");
    }
  }
  result.record = std::move(record);
  return result;
}

absl::Status CheckpointService::AbortCheckpoint(absl::string_view job,
                                                int64_t step,
                                                absl::string_view reason,
                                                const Actor& actor) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  CKPT_RETURN_IF_ERROR(ValidateStep(step));
  CKPT_ASSIGN_OR_RETURN(auto job_lock, metadata_->LockJob(job));
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
  // Stored, logged and listed: bounded and escaped.
  record.abort_reason = reason.empty()
                            ? std::string("aborted by client")
                            : BoundedText(reason, kMaxAbortReasonBytes);
  MetadataBatch batch;
  batch.DeleteCheckpoint(record.job, step);
  batch.PutCheckpoint(record);
  batch.AppendEvent(AbortedEvent(job, step, clock_->Now(), actor.principal,
                                 record.abort_reason));
  CKPT_RETURN_IF_ERROR(metadata_->Apply(batch));
  ForgetLayout(job, step);
  CKPT_EVENT(Info, "aborted", {"job", job}, {"step", step},
             {"principal", actor.principal}, {"reason", record.abort_reason});
  return absl::OkStatus();
}

absl::StatusOr<int> CheckpointService::ExpireLeases() {
  CKPT_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> pending,
                        metadata_->ListPending());
  int aborted = 0;
  for (const auto& candidate : pending) {
    // Skip, without the job's lock, a lease that has neither run out nor
    // needs its cap as listed: renewals only move a lease on (a shorter
    // one is seen next pass). On a shared store, locking every pending
    // checkpoint's job would make each pass (every few seconds, on every
    // server) wait for any job another server is writing or died holding,
    // up to a lock lease, and stop at the first such wait that times out.
    if (const absl::Time listed_now = clock_->Now();
        listed_now <= candidate.lease_expiry &&
        CappedExpiry(candidate, listed_now) == candidate.lease_expiry) {
      continue;
    }
    CKPT_ASSIGN_OR_RETURN(auto job_lock, metadata_->LockJob(candidate.job));
    absl::MutexLock lock(&lifecycle_mu_);
    const absl::Time now = clock_->Now();
    // Re-read under the lock: a commit may have completed it meanwhile.
    absl::StatusOr<CheckpointRecord> record =
        metadata_->GetCheckpoint(candidate.job, candidate.step);
    if (absl::IsNotFound(record.status())) continue;
    CKPT_RETURN_IF_ERROR(record.status());
    if (record->state != CheckpointState::kPending) continue;
    if (const absl::Time capped = CappedExpiry(*record, now);
        capped != record->lease_expiry) {
      // Stored before leases were capped: cut it to the cap from now, so
      // it ends (and stops holding back GC of its tenant) like any other.
      CKPT_LOG(Warning, Describe(record->job, record->step),
               " had a lease until ", absl::FormatTime(record->lease_expiry),
               ", beyond the maximum lease; it now ends at ",
               absl::FormatTime(capped));
      record->lease_expiry = capped;
      record->lease_duration =
          std::min(record->lease_duration, options_.max_lease);
      MetadataBatch batch;
      batch.PutCheckpoint(*record);
      CKPT_RETURN_IF_ERROR(metadata_->Apply(batch));
      continue;
    }
    if (now <= record->lease_expiry) continue;
    record->state = CheckpointState::kAborted;
    record->abort_reason = absl::StrCat(
        "lease expired at ", absl::FormatTime(record->lease_expiry), " with ",
        record->committed_ranks.size(), " of ", record->world_size,
        " ranks committed");
    MetadataBatch batch;
    batch.DeleteCheckpoint(record->job, record->step);
    batch.PutCheckpoint(*record);
    batch.AppendEvent(AbortedEvent(record->job, record->step, now,
                                   kServerPrincipal, record->abort_reason));
    CKPT_FAILPOINT("lease_expiry.before");
    CKPT_RETURN_IF_ERROR(metadata_->Apply(batch));
    CKPT_FAILPOINT("lease_expiry.after");
    ForgetLayout(record->job, record->step);
    CKPT_EVENT(Warning, "lease_expired", {"job", record->job},
               {"step", record->step}, {"reason", record->abort_reason});
    ++aborted;
  }
  return aborted;
}

}  // namespace ckpt::server
