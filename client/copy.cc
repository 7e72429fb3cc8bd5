// CopyCheckpoints in two passes. The plan reads both servers and changes
// nothing: the source's listing and, one at a time, its manifests (checked
// as untrusted input), the target's listing, manifests of steps it already
// holds (compared), and FindMissingChunks for the rest; every refusal
// happens there, before anything is sent. The copy then fetches each
// manifest again (so that memory holds one manifest at a time, not the
// job's), begins the checkpoint on the target as a copy, sends what the
// target still lacks (copy_transfer.h) and commits the ranks' manifests
// unchanged, the last commit making the checkpoint visible.
//
// What an interruption leaves: the checkpoints committed before it, and
// the one in flight pending on the target with the chunks sent so far
// (invisible to listings and restores, and aborted when its lease ends).
// A rerun plans again, joins that pending checkpoint (BeginCheckpoint is
// idempotent, recommitting an identical shard is OK) and sends only the
// chunks FindMissingChunks still names.
//
// Past 600 lines because it is one job, the copy's plan and its execution:
// they share the rules on what the target already holds (compared,
// joined or refused) and must change together.
#include "client/copy.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "client/copy_transfer.h"
#include "common/chunking.h"
#include "common/clock.h"
#include "common/status_macros.h"

namespace ckpt::client {
namespace {

absl::Status WithPrefix(absl::string_view prefix, const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(prefix, status.message()));
}
template <typename T>
absl::StatusOr<T> WithPrefix(absl::string_view prefix,
                             absl::StatusOr<T> value) {
  if (value.ok()) return value;
  return WithPrefix(prefix, value.status());
}

// What the two servers' errors are prefixed with.
std::string OnSource(const CopyRequest& request) {
  return absl::StrCat("copy: the source (", request.source_label, "): ");
}
std::string OnTarget(const CopyRequest& request) {
  return absl::StrCat("copy: the target (", request.target_label, "): ");
}

absl::Status CheckRequest(const CopyRequest& request) {
  const std::string& target_job =
      request.target_job.empty() ? request.job : request.target_job;
  // The labels and jobs as the servers will check them in CopyPeers.
  CKPT_RETURN_IF_ERROR(
      WithPrefix("copy: the source: ",
                 ValidateCopyPeer({request.source_label, request.job, 0})));
  CKPT_RETURN_IF_ERROR(
      WithPrefix("copy: the target: ",
                 ValidateCopyPeer({request.target_label, target_job, 0})));
  if (request.latest && !request.steps.empty()) {
    return absl::InvalidArgumentError(
        "copy: ask for given steps or the latest, not both");
  }
  for (int64_t step : request.steps) {
    if (step < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("copy: steps are >= 0, got ", step));
    }
  }
  if (request.batch_bytes == 0) {
    return absl::InvalidArgumentError("copy: batch_bytes must be positive");
  }
  if (request.source_stall_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "copy: source_stall_timeout must be positive");
  }
  if (request.source_label == request.target_label &&
      request.job == target_job) {
    return absl::InvalidArgumentError(
        absl::StrCat("copy: the source and the target are the same job ",
                     request.job, " on ", request.source_label,
                     ": copy to another server, or to another job name"));
  }
  return absl::OkStatus();
}

// "100, 200, 300" or "100, 200, ... (12 in all)".
std::string StepList(const std::vector<int64_t>& steps) {
  constexpr size_t kShown = 10;
  if (steps.empty()) return "none";
  if (steps.size() <= kShown) return absl::StrJoin(steps, ", ");
  return absl::StrCat(
      absl::StrJoin(steps.begin(), steps.begin() + kShown, ", "), ", ... (",
      steps.size(), " in all)");
}

// The metadata a copy carries: the source's, with its effective time as
// the writer time when the writer gave none, so that the target's
// retention (keep_every_n_hours) and listings see the original time rather
// than the copy's commit.
CheckpointMetadata CopiedMetadata(const CheckpointRecord& source) {
  CheckpointMetadata metadata = source.metadata;
  if (!metadata.writer_time.has_value()) {
    metadata.writer_time = source.EffectiveTime();
  }
  return metadata;
}

// One distinct chunk of a checkpoint, in first-use order over its ranks.
using ChunkList = std::vector<ChunkToCopy>;

// Checks a checkpoint the source sent as untrusted input (the copy
// allocates from its chunk sizes and commits its manifests elsewhere) and
// returns its distinct chunks. DATA_LOSS naming the step otherwise.
absl::StatusOr<ChunkList> CheckSourceCheckpoint(
    const Checkpoint& checkpoint, int64_t step,
    const std::set<int64_t>& copied_or_present) {
  const CheckpointRecord& record = checkpoint.record;
  auto damaged = [&](absl::string_view why) {
    return absl::DataLossError(
        absl::StrCat("the source's checkpoint ", step, " of ", record.job,
                     " cannot be copied: ", why, "; nothing of it was sent"));
  };
  if (record.step != step || record.state != CheckpointState::kCommitted) {
    return damaged("the source answered another or an uncommitted one");
  }
  if (checkpoint.shards.size() != static_cast<size_t>(record.world_size)) {
    return damaged(absl::StrCat("it has ", checkpoint.shards.size(),
                                " shards for world size ", record.world_size));
  }
  ChunkList chunks;
  absl::flat_hash_map<ChunkId, uint64_t> sizes;
  for (size_t r = 0; r < checkpoint.shards.size(); ++r) {
    const ShardManifest& shard = checkpoint.shards[r];
    if (shard.rank != static_cast<int32_t>(r)) {
      return damaged(absl::StrCat("its shard ", r, " says rank ", shard.rank));
    }
    absl::Status valid = ValidateShardManifest(shard, record.world_size);
    if (!valid.ok()) return damaged(valid.message());
    for (const TensorEntry& tensor : shard.tensors) {
      if (tensor.delta_base_step.has_value() &&
          !copied_or_present.contains(*tensor.delta_base_step)) {
        return damaged(absl::StrCat("its tensor is a delta on step ",
                                    *tensor.delta_base_step,
                                    ", which its record does not name"));
      }
    }
    for (const ChunkRef& ref : ReferencedChunks(shard)) {
      if (ref.size == 0 || ref.size > kMaxChunkBytes) {
        return damaged(absl::StrCat(
            "rank ", r, " names chunk ", ref.id.ShortHex(), " with ", ref.size,
            " bytes (chunks hold 1 to ", kMaxChunkBytes, ")"));
      }
      auto [it, fresh] = sizes.try_emplace(ref.id, ref.size);
      if (fresh) {
        chunks.push_back(ChunkToCopy{ref.id, ref.size});
      } else if (it->second != ref.size) {
        return damaged(absl::StrCat("it names chunk ", ref.id.ShortHex(),
                                    " with two sizes, ", it->second, " and ",
                                    ref.size));
      }
    }
  }
  return chunks;
}

// A checkpoint of the source (GetManifest: no `restored` event), checked,
// with its distinct chunks.
struct SourceCheckpoint {
  Checkpoint checkpoint;
  ChunkList chunks;
};
absl::StatusOr<SourceCheckpoint> FetchSourceCheckpoint(
    Transport& source, const CopyRequest& request, int64_t step,
    const std::set<int64_t>& planned_steps) {
  CKPT_ASSIGN_OR_RETURN(
      Checkpoint checkpoint,
      WithPrefix(OnSource(request),
                 source.GetManifest(request.job, step, std::nullopt)));
  CKPT_ASSIGN_OR_RETURN(ChunkList chunks,
                        CheckSourceCheckpoint(checkpoint, step, planned_steps));
  return SourceCheckpoint{std::move(checkpoint), std::move(chunks)};
}

uint64_t TotalBytes(const ChunkList& chunks) {
  uint64_t total = 0;
  for (const ChunkToCopy& chunk : chunks) total += chunk.size;
  return total;
}

// Why the target's committed checkpoint differs from the source's (empty:
// it is the same checkpoint).
std::string Difference(const Checkpoint& source, const Checkpoint& target) {
  if (target.record.world_size != source.record.world_size) {
    return absl::StrCat("its world size is ", target.record.world_size,
                        ", the source's ", source.record.world_size);
  }
  if (target.shards != source.shards) return "its tensors differ";
  if (target.record.metadata.metrics != source.record.metadata.metrics) {
    return "its metrics differ";
  }
  if (target.record.metadata.tags != source.record.metadata.tags) {
    return "its tags differ";
  }
  if (target.record.EffectiveTime() != source.record.EffectiveTime()) {
    return "its time differs";
  }
  return "";
}

// The plan of one checkpoint.
struct PlannedCheckpoint {
  CheckpointRecord source;  // the source's header
  CopiedCheckpoint report;
  // Already there but not pinned on the target, while the source's is.
  bool pin_on_target = false;
};

struct Plan {
  std::string target_job;
  std::vector<PlannedCheckpoint> checkpoints;  // ascending step
  std::set<int64_t> target_committed;          // before the copy
  bool target_job_exists = false;
  std::optional<RetentionPolicy> policy_to_set;
  uint64_t bytes_to_send = 0;
};

// The source's committed checkpoints asked for, with the delta bases they
// need, transitively; ascending step (a base is older than its deltas).
absl::StatusOr<std::vector<PlannedCheckpoint>> SelectCheckpoints(
    const CopyRequest& request, const std::vector<CheckpointUsage>& listed) {
  std::map<int64_t, const CheckpointRecord*> committed;
  std::vector<int64_t> committed_steps;
  for (const CheckpointUsage& usage : listed) {
    if (usage.record.state != CheckpointState::kCommitted) continue;
    committed[usage.record.step] = &usage.record;
    committed_steps.push_back(usage.record.step);
  }
  std::set<int64_t> asked;
  if (request.latest) {
    if (committed.empty()) {
      return absl::NotFoundError(
          absl::StrCat("copy: job ", request.job, " on the source (",
                       request.source_label, ") has no committed checkpoint"));
    }
    asked.insert(committed.rbegin()->first);
  } else if (request.steps.empty()) {
    for (const auto& [step, record] : committed) asked.insert(step);
  } else {
    for (int64_t step : request.steps) {
      if (!committed.contains(step)) {
        return absl::NotFoundError(absl::StrCat(
            "copy: step ", step, " is not a committed checkpoint of ",
            request.job, " on the source (", request.source_label,
            "); its committed steps: ", StepList(committed_steps)));
      }
      asked.insert(step);
    }
  }
  std::set<int64_t> wanted = asked;
  std::vector<int64_t> pending(asked.begin(), asked.end());
  while (!pending.empty()) {
    const int64_t step = pending.back();
    pending.pop_back();
    for (int64_t base : committed.at(step)->base_steps) {
      if (!committed.contains(base) || base >= step) {
        return absl::DataLossError(absl::StrCat(
            "copy: the source's checkpoint ", step, " of ", request.job,
            " is a delta on step ", base,
            ", which is not committed there: it cannot be copied"));
      }
      if (wanted.insert(base).second) pending.push_back(base);
    }
  }
  std::vector<PlannedCheckpoint> planned;
  for (int64_t step : wanted) {
    PlannedCheckpoint& entry = planned.emplace_back();
    entry.source = *committed.at(step);
    entry.report.step = step;
    entry.report.as_delta_base = !asked.contains(step);
    entry.report.base_steps = entry.source.base_steps;
    entry.report.pinned = entry.source.pinned;
    entry.report.logical_bytes = entry.source.logical_bytes;
  }
  return planned;
}

// The source job's own policy (not its tenant's default), when no policy
// applies to the target job (and copy_policy).
absl::StatusOr<std::optional<RetentionPolicy>> PolicyToSet(
    Transport& source, Transport& target, const CopyRequest& request,
    const std::string& target_job) {
  if (!request.copy_policy) return std::nullopt;
  CKPT_ASSIGN_OR_RETURN(
      PolicyInfo source_policy,
      WithPrefix(OnSource(request), source.GetRetentionPolicy(request.job)));
  if (!source_policy.policy.has_value() ||
      (source_policy.origin.has_value() &&
       source_policy.origin->source == PolicyOrigin::Source::kTenantDefault)) {
    return std::nullopt;
  }
  absl::StatusOr<PolicyInfo> existing = target.GetRetentionPolicy(target_job);
  if (absl::IsNotFound(existing.status())) {
    return source_policy.policy;  // a new job
  }
  CKPT_RETURN_IF_ERROR(WithPrefix(OnTarget(request), existing.status()));
  if (existing->policy.has_value()) return std::nullopt;
  return source_policy.policy;
}

// A pending checkpoint of the step on the target may be joined only when it
// is an earlier run of this copy (interrupted): same world size, the
// metadata this copy sends, and no other origin.
absl::Status CheckJoinable(const CheckpointRecord& pending,
                           const CheckpointRecord& source,
                           const CopyRequest& request,
                           const std::string& target_job) {
  auto refuse = [&](absl::string_view why) {
    return absl::FailedPreconditionError(absl::StrCat(
        "copy: step ", source.step, " of ", target_job,
        " is pending on the target (", request.target_label, ") ", why,
        ": nothing was copied; wait until it is committed or aborted (its "
        "lease ends at ",
        absl::FormatTime(absl::RFC3339_sec, pending.lease_expiry,
                         absl::UTCTimeZone()),
        ")"));
  };
  if (pending.world_size != source.world_size) {
    return refuse(absl::StrCat("with world size ", pending.world_size,
                               ", the source's has ", source.world_size));
  }
  if (pending.copied_from.has_value() &&
      (pending.copied_from->job != request.job ||
       pending.copied_from->step != source.step)) {
    return refuse(absl::StrCat("as a copy of step ", pending.copied_from->step,
                               " of ", pending.copied_from->job));
  }
  if (pending.metadata != CopiedMetadata(source)) {
    return refuse("as another save (its metrics, tags or time differ)");
  }
  return absl::OkStatus();
}

// Reads both servers and decides, changing nothing (see the top comment).
absl::StatusOr<Plan> MakePlan(Transport& source, Transport& target,
                              const CopyRequest& request) {
  Plan plan;
  plan.target_job =
      request.target_job.empty() ? request.job : request.target_job;
  CKPT_ASSIGN_OR_RETURN(
      std::vector<CheckpointUsage> source_listed,
      WithPrefix(OnSource(request),
                 source.ListCheckpoints(request.job, false, false)));
  CKPT_ASSIGN_OR_RETURN(plan.checkpoints,
                        SelectCheckpoints(request, source_listed));
  std::set<int64_t> planned_steps;
  for (const PlannedCheckpoint& entry : plan.checkpoints) {
    planned_steps.insert(entry.report.step);
  }

  std::map<int64_t, CheckpointRecord> on_target;
  absl::StatusOr<std::vector<CheckpointUsage>> target_listed =
      target.ListCheckpoints(plan.target_job, true, false);
  if (target_listed.ok()) {
    plan.target_job_exists = true;
    for (CheckpointUsage& usage : *target_listed) {
      if (usage.record.state == CheckpointState::kCommitted) {
        plan.target_committed.insert(usage.record.step);
      }
      on_target[usage.record.step] = std::move(usage.record);
    }
  } else if (!absl::IsNotFound(target_listed.status())) {
    return WithPrefix(OnTarget(request), target_listed.status());
  }

  // Chunks the copy will send, each once over the whole copy.
  absl::flat_hash_set<ChunkId> to_send;
  for (PlannedCheckpoint& entry : plan.checkpoints) {
    const int64_t step = entry.report.step;
    CKPT_ASSIGN_OR_RETURN(
        SourceCheckpoint fetched,
        FetchSourceCheckpoint(source, request, step, planned_steps));
    const Checkpoint& checkpoint = fetched.checkpoint;
    const ChunkList& chunks = fetched.chunks;
    entry.report.chunks_referenced = chunks.size();
    entry.report.bytes_referenced = TotalBytes(chunks);

    auto there = on_target.find(step);
    if (there != on_target.end() &&
        there->second.state == CheckpointState::kCommitted) {
      CKPT_ASSIGN_OR_RETURN(
          Checkpoint theirs,
          WithPrefix(OnTarget(request),
                     target.GetManifest(plan.target_job, step, std::nullopt)));
      const std::string difference = Difference(checkpoint, theirs);
      if (!difference.empty()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "copy: step ", step, " of ", plan.target_job, " on the target (",
            request.target_label,
            ") is another checkpoint than the source's: ", difference,
            ". Nothing was copied; copy to another job (--to-job), leave "
            "the step out, or delete it on the target (ckpt rm) if the "
            "source's should replace it"));
      }
      entry.report.outcome = CopiedCheckpoint::Outcome::kAlreadyThere;
      entry.pin_on_target = entry.source.pinned && !theirs.record.pinned;
      entry.report.pinned = theirs.record.pinned || entry.pin_on_target;
      continue;
    }
    if (there != on_target.end() &&
        there->second.state == CheckpointState::kPending) {
      CKPT_RETURN_IF_ERROR(
          CheckJoinable(there->second, entry.source, request, plan.target_job));
    }
    entry.report.outcome = request.dry_run
                               ? CopiedCheckpoint::Outcome::kWouldCopy
                               : CopiedCheckpoint::Outcome::kCopied;
    std::vector<ChunkId> ask;
    for (const ChunkToCopy& chunk : chunks) {
      if (!to_send.contains(chunk.id)) ask.push_back(chunk.id);
    }
    if (ask.empty()) continue;
    CKPT_ASSIGN_OR_RETURN(
        absl::flat_hash_set<ChunkId> missing,
        WithPrefix(OnTarget(request),
                   target.FindMissingChunks(plan.target_job, ask)));
    for (const ChunkToCopy& chunk : chunks) {
      if (missing.contains(chunk.id) && to_send.insert(chunk.id).second) {
        ++entry.report.chunks_sent;
        entry.report.bytes_sent += chunk.size;
      }
    }
    plan.bytes_to_send += entry.report.bytes_sent;
  }
  CKPT_ASSIGN_OR_RETURN(plan.policy_to_set,
                        PolicyToSet(source, target, request, plan.target_job));
  return plan;
}

// Runs a plan: copies its checkpoints in order, then pins and policy.
class Copier {
 public:
  Copier(Transport& source, Transport& target, const CopyRequest& request,
         Plan& plan, const CopyProgressFn& progress)
      : source_(source),
        target_(target),
        request_(request),
        plan_(plan),
        progress_fn_(progress),
        pacer_(request.max_bytes_per_second, RealClock::Get()) {
    for (const PlannedCheckpoint& entry : plan.checkpoints) {
      planned_steps_.insert(entry.report.step);
      if (entry.report.outcome == CopiedCheckpoint::Outcome::kCopied) {
        ++progress_.checkpoint_count;
      }
    }
    progress_.bytes_total = plan.bytes_to_send;
  }

  absl::StatusOr<CopyReport> Run() {
    CopyReport report;
    report.source_job = request_.job;
    report.target_job = plan_.target_job;
    if (!plan_.checkpoints.empty()) {
      progress_.step = plan_.checkpoints.front().report.step;
    }
    ReportProgress();
    for (PlannedCheckpoint& entry : plan_.checkpoints) {
      if (entry.report.outcome == CopiedCheckpoint::Outcome::kCopied) {
        progress_.step = entry.report.step;
        CKPT_RETURN_IF_ERROR(CopyOne(entry, &report));
        ++progress_.checkpoint_index;
      } else if (entry.pin_on_target) {
        CKPT_RETURN_IF_ERROR(WithPrefix(
            OnTarget(request_),
            target_.PinCheckpoint(plan_.target_job, entry.report.step, true)
                .status()));
      }
      report.chunks_sent += entry.report.chunks_sent;
      report.bytes_sent += entry.report.bytes_sent;
      report.checkpoints.push_back(entry.report);
    }
    std::set<int64_t> deleted;
    SetPolicy(&report, &deleted);
    FindPruned(report, &deleted);
    report.pruned_on_target.assign(deleted.begin(), deleted.end());
    return report;
  }

 private:
  void ReportProgress() {
    progress_.bytes_total =
        std::max(progress_.bytes_total, progress_.bytes_done);
    if (progress_fn_) progress_fn_(progress_);
  }

  // Sends those of `chunks` the target lacks for `step`; counts them into
  // `*entry`.
  absl::Status SendMissing(int64_t step, const ChunkList& chunks,
                           const BeginOptions& begin, CopiedCheckpoint* entry) {
    std::vector<ChunkId> ids;
    ids.reserve(chunks.size());
    for (const ChunkToCopy& chunk : chunks) ids.push_back(chunk.id);
    CKPT_ASSIGN_OR_RETURN(
        absl::flat_hash_set<ChunkId> missing,
        WithPrefix(OnTarget(request_),
                   target_.FindMissingChunks(plan_.target_job, ids)));
    ChunkList to_send;
    for (const ChunkToCopy& chunk : chunks) {
      if (missing.contains(chunk.id)) to_send.push_back(chunk);
    }
    if (to_send.empty()) return absl::OkStatus();
    std::unique_ptr<ChunkUploadStream> upload =
        target_.OpenUpload(plan_.target_job, step);
    TransferOptions options;
    options.batch_bytes = request_.batch_bytes;
    options.pacer = &pacer_;
    options.source_stall_timeout = request_.source_stall_timeout;
    options.source_label =
        absl::StrCat("the source server (", request_.source_label, ")");
    options.on_sent = [this](uint64_t bytes) {
      progress_.bytes_done += bytes;
      ReportProgress();
    };
    // The pending checkpoint's lease is renewed by each Begin and commit;
    // a long transfer (a slow link, --limit-rate) renews it on its way.
    options.keep_alive = [this, step, &begin] {
      return WithPrefix(
          OnTarget(request_),
          target_.BeginCheckpoint(plan_.target_job, step, begin).status());
    };
    absl::Status sent =
        TransferChunks(source_, request_.job, to_send, *upload, options);
    if (sent.ok()) {
      sent = WithPrefix("sending chunks to the target: ", upload->Close());
    }
    entry->chunks_sent += upload->chunks_sent();
    entry->bytes_sent += upload->bytes_sent();
    return WithPrefix(absl::StrCat("copy of step ", step, ": "), sent);
  }

  absl::Status CopyOne(PlannedCheckpoint& entry, CopyReport* report) {
    const int64_t step = entry.report.step;
    entry.report.chunks_sent = 0;  // the plan's figures become the real ones
    entry.report.bytes_sent = 0;
    CKPT_ASSIGN_OR_RETURN(
        SourceCheckpoint fetched,
        FetchSourceCheckpoint(source_, request_, step, planned_steps_));
    const Checkpoint& checkpoint = fetched.checkpoint;
    const ChunkList& chunks = fetched.chunks;
    BeginOptions begin;
    begin.world_size = checkpoint.record.world_size;
    begin.metadata = CopiedMetadata(checkpoint.record);
    begin.pin = checkpoint.record.pinned;
    begin.copied_from = CopyPeer{request_.source_label, request_.job, step};
    absl::Status begun =
        target_.BeginCheckpoint(plan_.target_job, step, begin).status();
    if (absl::IsAlreadyExists(begun)) {
      // Committed on the target since the plan (another copy of it?).
      CKPT_ASSIGN_OR_RETURN(
          Checkpoint theirs,
          WithPrefix(
              OnTarget(request_),
              target_.GetManifest(plan_.target_job, step, std::nullopt)));
      const std::string difference = Difference(checkpoint, theirs);
      if (!difference.empty()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "copy: step ", step, " of ", plan_.target_job,
            " was committed on the target during the copy, and is another "
            "checkpoint than the source's: ",
            difference));
      }
      entry.report.outcome = CopiedCheckpoint::Outcome::kAlreadyThere;
      entry.report.pinned = theirs.record.pinned;
      return absl::OkStatus();
    }
    CKPT_RETURN_IF_ERROR(WithPrefix(OnTarget(request_), begun));

    CKPT_RETURN_IF_ERROR(SendMissing(step, chunks, begin, &entry.report));
    CommitResult last;
    for (const ShardManifest& shard : checkpoint.shards) {
      absl::StatusOr<CommitResult> commit = target_.CommitShard(
          plan_.target_job, step, checkpoint.record.world_size, shard);
      if (absl::IsFailedPrecondition(commit.status())) {
        // Chunks gone since they were checked (a restart before they were
        // durable, a GC): send them again and retry once; if none were
        // missing, the refusal has another cause.
        const uint64_t before = entry.report.chunks_sent;
        ChunkList shard_chunks;
        for (const ChunkRef& ref : ReferencedChunks(shard)) {
          shard_chunks.push_back(ChunkToCopy{ref.id, ref.size});
        }
        CKPT_RETURN_IF_ERROR(
            SendMissing(step, shard_chunks, begin, &entry.report));
        if (entry.report.chunks_sent != before) {
          commit = target_.CommitShard(plan_.target_job, step,
                                       checkpoint.record.world_size, shard);
        }
      }
      CKPT_RETURN_IF_ERROR(WithPrefix(OnTarget(request_), commit.status()));
      last = *std::move(commit);
    }
    if (last.checkpoint.state != CheckpointState::kCommitted) {
      return absl::InternalError(
          absl::StrCat("copy: the target (", request_.target_label,
                       ") took every rank's ", "shard of step ", step, " of ",
                       plan_.target_job, " but did not commit it"));
    }
    entry.report.pinned = last.checkpoint.pinned;
    absl::Status reported = source_.ReportCopy(
        request_.job, step,
        CopyPeer{request_.target_label, plan_.target_job, step});
    if (!reported.ok() && report->source_report_error.empty()) {
      report->source_report_error =
          absl::StrCat("recording the copy of step ", step,
                       " on the source: ", reported.ToString());
    }
    return absl::OkStatus();
  }

  void SetPolicy(CopyReport* report, std::set<int64_t>* deleted) {
    if (!plan_.policy_to_set.has_value()) return;
    // Set only while the target job (there once something was copied)
    // still has none: an admin may have set one meanwhile.
    absl::StatusOr<PolicyInfo> existing =
        target_.GetRetentionPolicy(plan_.target_job);
    if (absl::IsNotFound(existing.status()) ||
        (existing.ok() && existing->policy.has_value())) {
      return;
    }
    absl::StatusOr<std::vector<int64_t>> applied =
        existing.ok()
            ? target_.SetRetentionPolicy(plan_.target_job, *plan_.policy_to_set,
                                         /*warnings=*/nullptr)
            : existing.status();
    if (!applied.ok()) {
      report->policy_error = WithPrefix(
          absl::StrCat("copy: setting the source's retention policy (",
                       RetentionPolicyText(*plan_.policy_to_set),
                       ") on the target (", request_.target_label, "): "),
          applied.status());
      return;
    }
    report->policy_set = plan_.policy_to_set;
    deleted->insert(applied->begin(), applied->end());
  }

  // Steps committed on the target before or by the copy that are gone now:
  // deleted by its retention at the copy's commits (or meanwhile by others).
  void FindPruned(const CopyReport& report, std::set<int64_t>* deleted) {
    std::set<int64_t> expected = plan_.target_committed;
    for (const CopiedCheckpoint& entry : report.checkpoints) {
      expected.insert(entry.step);
    }
    absl::StatusOr<std::vector<CheckpointUsage>> after =
        target_.ListCheckpoints(plan_.target_job, false, false);
    if (!after.ok()) return;  // the copy is done; only the report is poorer
    for (const CheckpointUsage& usage : *after) {
      expected.erase(usage.record.step);
    }
    deleted->insert(expected.begin(), expected.end());
  }

  Transport& source_;
  Transport& target_;
  const CopyRequest& request_;
  Plan& plan_;
  const CopyProgressFn& progress_fn_;
  RatePacer pacer_;
  std::set<int64_t> planned_steps_;
  CopyProgress progress_;
};

}  // namespace

absl::StatusOr<CopyReport> CopyCheckpoints(Transport& source, Transport& target,
                                           const CopyRequest& request,
                                           const CopyProgressFn& progress) {
  CKPT_RETURN_IF_ERROR(CheckRequest(request));
  CKPT_ASSIGN_OR_RETURN(Plan plan, MakePlan(source, target, request));
  if (request.dry_run) {
    CopyReport report;
    report.source_job = request.job;
    report.target_job = plan.target_job;
    for (const PlannedCheckpoint& entry : plan.checkpoints) {
      report.chunks_sent += entry.report.chunks_sent;
      report.bytes_sent += entry.report.bytes_sent;
      report.checkpoints.push_back(entry.report);
    }
    report.policy_would_set = plan.policy_to_set;
    return report;
  }
  return Copier(source, target, request, plan, progress).Run();
}

}  // namespace ckpt::client
