// CheckpointService::CollectGarbage: mark and sweep over the chunk store.
//
// Why it is safe while saves run (docs/architecture.md, "Garbage
// collection", says the same for operators):
// - Candidates are the chunks stored when the collection begins; later
//   uploads are never candidates.
// - The mark reads every stored shard (committed and pending checkpoints
//   alike; aborted and deleted ones keep none) from one consistent view
//   taken after the collection began. A shard committed after that view is
//   recorded by ChunkGuard::Committed (under lifecycle_mu_, which also
//   orders it against BeginCollection), and the sweep spares its chunks.
// - Chunks a save named recently (FindMissingChunks, PutChunks) but has not
//   committed yet are held by ChunkGuard for ServiceOptions::chunk_hold.
// - The sweep deletes under lifecycle_mu_ (not on a shared store, below) in
//   batches, bumping sweep_generation_ around each; a commit whose unlocked
//   presence check may have raced a batch checks again under the lock. So a
//   shard is never committed over a chunk a sweep deleted: it is refused
//   with FAILED_PRECONDITION, and the client uploads the chunk again.
// - A crash mid-sweep leaves some garbage deleted and the rest for the next
//   run; each chunk's delete is atomic (bytes and index entry together).
// - GcOptions::hold shortens ChunkGuard's hold for one collection (an
//   operator who knows no save runs). What it exposes is a save's uploaded,
//   not yet committed chunks: that commit is refused (the guard above) and
//   the client uploads them again. Committed and pending shards' chunks are
//   referenced, so no hold matters to them.
//
// On a store shared by several servers (ChunkStore::IsShared), no server's
// ChunkGuard sees the others' saves, and each server marks from its own
// reads of the shared metadata. There:
// - Collections take the cluster-wide MetadataStore::LockCollection, so two
//   servers never sweep at once; a sweep stops when its lease is lost.
// - Every use of a chunk is recorded on the chunk (ChunkStore::MarkUsed: a
//   save's FindMissingChunks and PutChunks, and each commit under its job
//   lock just before writing), and the sweep deletes through
//   DeleteIfUnusedSince(started - max(hold, ServiceOptions::shared_min_hold)),
//   atomic against a mark. A shard the mark missed was written after the mark
//   read its job, so within a job lock's lease of its commit's mark, which is
//   then after the cutoff: its chunks are spared, or its commit found them
//   gone and was refused. Even a stale sweeper is safe.
// - No tenant is skipped for checkpoints begun before this server started:
//   their uploads are recorded on the chunks.
//
// The report explains what it keeps (HeldChunks): chunks held for saves in
// flight (until each hold ends), committed during the collection, in
// skipped tenants (until the old pending checkpoint's lease ends), and
// referenced only by pending checkpoints (until the lease ends: an abort or
// expiry frees them). Which checkpoints are pending is read at the start.
#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/failpoint.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/service/checkpoint_service.h"

namespace ckpt::server {
namespace {

// Deletes per hold of lifecycle_mu_: short enough that commits barely wait.
constexpr size_t kSweepBatch = 256;
// Ids per Contains call when confirming that referenced chunks exist.
constexpr size_t kContainsBatch = 1024;

struct StoredChunk {
  ChunkId id;
  uint64_t size = 0;
};

using IdSet = absl::flat_hash_set<ChunkId>;

// A chunk only pending checkpoints reference: the one whose lease ends last
// (an index into the collection's pending list) and its size.
struct PendingRef {
  size_t checkpoint;
  uint64_t size;
};
using PendingRefs = absl::flat_hash_map<ChunkId, PendingRef>;

// Groups held chunks by (reason, tenant, checkpoint) for GcReport::held.
class HeldTally {
 public:
  void Add(HeldReason reason, absl::string_view tenant, absl::string_view job,
           int64_t step, uint64_t bytes, std::optional<absl::Time> until) {
    // Runs of chunks share a group (a tenant's, in store order): find it
    // without building a key (called per held chunk, some under
    // lifecycle_mu_).
    if (last_ == nullptr || last_->reason != reason ||
        last_->tenant != tenant || last_->job != job || last_->step != step) {
      last_ = &groups_[std::make_tuple(static_cast<int>(reason),
                                       std::string(tenant), std::string(job),
                                       step)];
    }
    HeldChunks& group = *last_;
    if (group.chunk_count == 0) {
      group.reason = reason;
      group.tenant = std::string(tenant);
      group.job = std::string(job);
      group.step = step;
      group.until = until;
    } else if (until.has_value() && group.until.has_value()) {
      group.until = std::max(*group.until, *until);
    }
    ++group.chunk_count;
    group.bytes += bytes;
  }

  // The most bytes first (then by key), at most kMaxHeldGroups.
  void MoveInto(GcReport& report) {
    report.held_group_count = groups_.size();
    report.held.clear();
    for (auto& [key, group] : groups_) report.held.push_back(std::move(group));
    std::stable_sort(report.held.begin(), report.held.end(),
                     [](const HeldChunks& a, const HeldChunks& b) {
                       return a.bytes > b.bytes;
                     });
    if (report.held.size() > kMaxHeldGroups) {
      report.held.resize(kMaxHeldGroups);
    }
    groups_.clear();
    last_ = nullptr;
  }

 private:
  std::map<std::tuple<int, std::string, std::string, int64_t>, HeldChunks>
      groups_;
  HeldChunks* last_ = nullptr;  // std::map never moves its values
};

}  // namespace

absl::StatusOr<GcReport> CheckpointService::CollectGarbage(
    const GcOptions& options, const Actor& actor) {
  const absl::Duration hold = options.hold.value_or(options_.chunk_hold);
  if (hold < absl::ZeroDuration() || hold > options_.chunk_hold) {
    // Holds past the server's are forgotten (ChunkGuard::ExpireHolds), so a
    // longer one cannot be honoured.
    return absl::InvalidArgumentError(
        absl::StrCat("hold_seconds must be from 0 to ",
                     absl::ToInt64Seconds(options_.chunk_hold),
                     " (the server's --chunk-hold-seconds), got ",
                     absl::ToInt64Seconds(hold)));
  }
  absl::MutexLock gc_lock(&gc_mu_);
  CKPT_ASSIGN_OR_RETURN(std::unique_ptr<MetadataStore::Lease> collection_lock,
                        metadata_->LockCollection());
  const bool shared = chunks_->IsShared();
  const absl::Time started = clock_->Now();
  const absl::Time unused_before =
      started - std::max(hold, options_.shared_min_hold);
  GcReport report;
  report.dry_run = options.dry_run;
  report.hold = hold;
  HeldTally held;
  {
    absl::MutexLock lock(&lifecycle_mu_);
    guard_.BeginCollection();
  }
  absl::Cleanup end_collection = [this] { guard_.EndCollection(); };
  guard_.ExpireHolds(started);

  // Candidates: everything stored now, grouped by tenant.
  absl::flat_hash_map<std::string, std::vector<StoredChunk>> stored;
  CKPT_RETURN_IF_ERROR(chunks_->ForEach(
      "", [&](absl::string_view tenant, const ChunkId& id, uint64_t size) {
        stored[tenant].push_back(StoredChunk{id, size});
        ++report.chunks_scanned;
        report.bytes_scanned += size;
        return absl::OkStatus();
      }));

  // Tenants whose uploads in flight this process cannot know: a checkpoint
  // begun before it started may be committed later over chunks uploaded
  // before a restart.
  // Per tenant skipped, the old pending checkpoint whose lease ends last.
  absl::flat_hash_map<std::string, const CheckpointRecord*> skipped;
  CKPT_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> pending,
                        metadata_->ListPending());
  for (const CheckpointRecord& record : pending) {
    if (shared || record.create_time >= start_time_) continue;
    const std::string tenant(TenantOf(record.job));
    auto [it, first] = skipped.try_emplace(tenant, &record);
    if (first) {
      report.skipped_tenants.emplace_back(
          tenant, absl::StrCat("checkpoint ", record.job, "@", record.step,
                               " was begun before the server started and is "
                               "still pending"));
    } else if (CappedExpiry(record, started) >
               CappedExpiry(*it->second, started)) {
      it->second = &record;
    }
  }
  // job -> step -> index into `pending`.
  absl::flat_hash_map<std::string, absl::flat_hash_map<int64_t, size_t>>
      pending_index;
  for (size_t i = 0; i < pending.size(); ++i) {
    pending_index[pending[i].job][pending[i].step] = i;
  }

  // Mark: the chunks committed shards reference, and apart those pending
  // shards reference (only to explain why they are kept).
  absl::flat_hash_map<std::string, IdSet> referenced;
  absl::flat_hash_map<std::string, PendingRefs> pending_refs;
  // The failpoints (common/failpoint.h) only where the collection deletes.
  if (!options.dry_run) CKPT_FAILPOINT("gc_mark.before");
  CKPT_RETURN_IF_ERROR(metadata_->ForEachShard(
      [&](absl::string_view job, int64_t step, const ShardManifest& shard) {
        std::optional<size_t> pending_at;
        if (auto by_job = pending_index.find(job);
            by_job != pending_index.end()) {
          if (auto it = by_job->second.find(step); it != by_job->second.end()) {
            pending_at = it->second;
          }
        }
        if (!pending_at.has_value()) {
          IdSet& ids = referenced[TenantOf(job)];
          for (const ChunkRef& ref : ReferencedChunks(shard)) {
            ids.insert(ref.id);
          }
          return absl::OkStatus();
        }
        PendingRefs& refs = pending_refs[TenantOf(job)];
        const absl::Time expiry = CappedExpiry(pending[*pending_at], started);
        for (const ChunkRef& ref : ReferencedChunks(shard)) {
          auto [it, inserted] =
              refs.try_emplace(ref.id, PendingRef{*pending_at, ref.size});
          if (!inserted &&
              CappedExpiry(pending[it->second.checkpoint], started) < expiry) {
            it->second.checkpoint = *pending_at;
          }
        }
        return absl::OkStatus();
      }));
  // A chunk some committed shard references is not held by a pending one.
  for (auto& [tenant, refs] : pending_refs) {
    if (auto it = referenced.find(tenant); it != referenced.end()) {
      const IdSet& committed = it->second;
      absl::erase_if(refs, [&](const auto& entry) {
        return committed.contains(entry.first);
      });
    }
  }
  const auto is_referenced = [&](absl::string_view tenant, const ChunkId& id) {
    auto committed = referenced.find(tenant);
    if (committed != referenced.end() && committed->second.contains(id)) {
      return true;
    }
    auto by_pending = pending_refs.find(tenant);
    return by_pending != pending_refs.end() && by_pending->second.contains(id);
  };

  // Every referenced chunk must exist. Those not among the candidates were
  // either uploaded since (present) or lost (damage): ask the store.
  absl::flat_hash_map<std::string, IdSet> missing;
  absl::flat_hash_set<std::string> tenants;
  for (const auto& [tenant, ids] : referenced) tenants.insert(tenant);
  for (const auto& [tenant, refs] : pending_refs) tenants.insert(tenant);
  for (const std::string& tenant : tenants) {
    IdSet candidates;
    if (auto it = stored.find(tenant); it != stored.end()) {
      for (const StoredChunk& chunk : it->second) candidates.insert(chunk.id);
    }
    std::vector<ChunkId> unseen;
    if (auto it = referenced.find(tenant); it != referenced.end()) {
      report.chunks_referenced += it->second.size();
      for (const ChunkId& id : it->second) {
        if (!candidates.contains(id)) unseen.push_back(id);
      }
    }
    if (auto it = pending_refs.find(tenant); it != pending_refs.end()) {
      report.chunks_referenced += it->second.size();
      for (const auto& [id, ref] : it->second) {
        if (!candidates.contains(id)) unseen.push_back(id);
      }
    }
    for (size_t begin = 0; begin < unseen.size(); begin += kContainsBatch) {
      const absl::Span<const ChunkId> batch =
          absl::MakeConstSpan(unseen).subspan(begin, kContainsBatch);
      CKPT_ASSIGN_OR_RETURN(std::vector<bool> present,
                            chunks_->Contains(tenant, batch));
      for (size_t i = 0; i < batch.size(); ++i) {
        if (!present[i]) missing[tenant].insert(batch[i]);
      }
    }
  }
  if (!missing.empty()) {
    // Name the checkpoints that need them; a second pass, as this is rare.
    CKPT_RETURN_IF_ERROR(metadata_->ForEachShard(
        [&](absl::string_view job, int64_t step, const ShardManifest& shard) {
          auto tenant_missing = missing.find(TenantOf(job));
          if (tenant_missing == missing.end()) return absl::OkStatus();
          std::vector<ChunkId> lost;
          for (const ChunkRef& ref : ReferencedChunks(shard)) {
            if (tenant_missing->second.contains(ref.id)) lost.push_back(ref.id);
          }
          if (lost.empty()) return absl::OkStatus();
          if (report.damaged.empty() || report.damaged.back().job != job ||
              report.damaged.back().step != step) {
            DamagedCheckpoint damaged;
            damaged.job = std::string(job);
            damaged.step = step;
            absl::StatusOr<CheckpointRecord> record =
                metadata_->GetCheckpoint(job, step);
            if (record.ok()) damaged.state = record->state;
            report.damaged.push_back(std::move(damaged));
          }
          std::vector<ChunkId>& all = report.damaged.back().missing_chunks;
          for (const ChunkId& id : lost) {
            if (std::find(all.begin(), all.end(), id) == all.end()) {
              all.push_back(id);
            }
          }
          return absl::OkStatus();
        }));
    CKPT_LOG(Warning, "gc by ", actor.principal, ": ", report.damaged.size(),
             " checkpoint(s) reference missing chunks; deleted nothing");
    report.duration = clock_->Now() - started;
    return report;
  }

  // Explain the chunks only pending checkpoints keep.
  for (const auto& [tenant, refs] : pending_refs) {
    for (const auto& [id, ref] : refs) {
      const CheckpointRecord& record = pending[ref.checkpoint];
      held.Add(HeldReason::kPendingCheckpoint, tenant, record.job, record.step,
               ref.size, CappedExpiry(record, started));
    }
  }

  // Marked, nothing deleted yet.
  if (!options.dry_run) CKPT_FAILPOINT("gc_mark.after");

  // Sweep.
  std::vector<std::pair<std::string, StoredChunk>> garbage;
  for (auto& [tenant, chunks] : stored) {
    const auto skip = skipped.find(tenant);
    for (const StoredChunk& chunk : chunks) {
      if (is_referenced(tenant, chunk.id)) continue;
      if (skip == skipped.end()) {
        garbage.emplace_back(tenant, chunk);
        continue;
      }
      const CheckpointRecord& record = *skip->second;
      ++report.chunks_held;
      report.bytes_held += chunk.size;
      held.Add(HeldReason::kTenantSkipped, tenant, record.job, record.step,
               chunk.size, CappedExpiry(record, started));
    }
  }
  stored.clear();
  referenced.clear();
  pending_refs.clear();
  bool deleted_any = false;
  for (size_t begin = 0; begin < garbage.size(); begin += kSweepBatch) {
    const size_t end = std::min(garbage.size(), begin + kSweepBatch);
    if (absl::Status held_lock = collection_lock->Check(); !held_lock.ok()) {
      return absl::UnavailableError(absl::StrCat(
          "garbage collection stopped after deleting ", report.chunks_deleted,
          " chunk(s): ", held_lock.message()));
    }
    // On a shared store commits recheck their chunks by marking them, not
    // by sweep_generation_, and each guarded delete is a round trip to the
    // cluster: no reason to hold up this server's other jobs meanwhile.
    std::optional<absl::MutexLock> lock;
    if (!shared) lock.emplace(&lifecycle_mu_);
    ++sweep_generation_;
    absl::Cleanup bump = [this] { ++sweep_generation_; };
    if (!options.dry_run) CKPT_FAILPOINT("gc_sweep.before");
    const absl::Time now = clock_->Now();
    for (size_t i = begin; i < end; ++i) {
      const auto& [tenant, chunk] = garbage[i];
      if (std::optional<ChunkGuard::Protection> protection =
              guard_.Protects(tenant, chunk.id, now, hold)) {
        ++report.chunks_held;
        report.bytes_held += chunk.size;
        if (protection->kind == ChunkGuard::Protection::Kind::kAnnounced) {
          held.Add(HeldReason::kSaveInFlight, tenant, "", 0, chunk.size,
                   protection->until);
        } else {
          held.Add(HeldReason::kCommittedDuringCollection, tenant, "", 0,
                   chunk.size, std::nullopt);
        }
        continue;
      }
      if (!options.dry_run && shared) {
        CKPT_ASSIGN_OR_RETURN(
            const bool deleted,
            chunks_->DeleteIfUnusedSince(tenant, chunk.id, unused_before));
        if (!deleted) {
          // Used since the cutoff by a save on some server (or gone).
          ++report.chunks_held;
          report.bytes_held += chunk.size;
          held.Add(HeldReason::kSaveInFlight, tenant, "", 0, chunk.size,
                   std::nullopt);
          continue;
        }
        deleted_any = true;
      } else if (!options.dry_run) {
        CKPT_RETURN_IF_ERROR(chunks_->Delete(tenant, chunk.id));
        deleted_any = true;
      }
      ++report.chunks_deleted;
      report.bytes_deleted += chunk.size;
    }
    // This batch's deletes are written, not yet flushed (chunk_flush).
    if (!options.dry_run) CKPT_FAILPOINT("gc_sweep.after");
  }
  if (deleted_any) {
    // Deletes only write tombstones, so the size before compacting them
    // away is the size before the sweep.
    CKPT_RETURN_IF_ERROR(chunks_->Sync());
    CKPT_ASSIGN_OR_RETURN(ChunkStore::DiskUsage disk, chunks_->ReclaimSpace());
    report.disk_bytes_before = disk.bytes_before;
    report.disk_bytes_after = disk.bytes_after;
  }
  held.MoveInto(report);
  report.duration = clock_->Now() - started;
  CKPT_EVENT(
      Info, "gc_finished", {"dry_run", options.dry_run ? "true" : "false"},
      {"principal", actor.principal}, {"chunks_scanned", report.chunks_scanned},
      {"chunks_referenced", report.chunks_referenced},
      {"hold_seconds", absl::ToInt64Seconds(hold)},
      {"chunks_held", report.chunks_held},
      {"chunks_deleted", report.chunks_deleted},
      {"bytes_deleted", report.bytes_deleted},
      {"disk_bytes_before", report.disk_bytes_before},
      {"disk_bytes_after", report.disk_bytes_after},
      {"millis", absl::ToInt64Milliseconds(report.duration)});
  return report;
}

}  // namespace ckpt::server
