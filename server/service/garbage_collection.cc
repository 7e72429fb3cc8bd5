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
// - The sweep deletes under lifecycle_mu_ in batches, bumping
//   sweep_generation_ around each; a commit whose unlocked presence check
//   may have raced a batch checks again under the lock. So a shard is never
//   committed over a chunk a sweep deleted: it is refused with
//   FAILED_PRECONDITION, and the client uploads the chunk again.
// - A crash mid-sweep leaves some garbage deleted and the rest for the next
//   run; each chunk's delete is atomic (bytes and index entry together).
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
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

}  // namespace

absl::StatusOr<GcReport> CheckpointService::CollectGarbage(
    const GcOptions& options, const Actor& actor) {
  absl::MutexLock gc_lock(&gc_mu_);
  const absl::Time started = clock_->Now();
  GcReport report;
  report.dry_run = options.dry_run;
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
  absl::flat_hash_set<std::string> skipped;
  CKPT_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> pending,
                        metadata_->ListPending());
  for (const CheckpointRecord& record : pending) {
    if (record.create_time >= start_time_) continue;
    const std::string tenant(TenantOf(record.job));
    if (skipped.insert(tenant).second) {
      report.skipped_tenants.emplace_back(
          tenant, absl::StrCat("checkpoint ", record.job, "@", record.step,
                               " was begun before the server started and is "
                               "still pending"));
    }
  }

  // Mark.
  absl::flat_hash_map<std::string, IdSet> referenced;
  CKPT_RETURN_IF_ERROR(metadata_->ForEachShard(
      [&](absl::string_view job, int64_t, const ShardManifest& shard) {
        IdSet& ids = referenced[TenantOf(job)];
        for (const ChunkRef& ref : ReferencedChunks(shard)) ids.insert(ref.id);
        return absl::OkStatus();
      }));

  // Every referenced chunk must exist. Those not among the candidates were
  // either uploaded since (present) or lost (damage): ask the store.
  absl::flat_hash_map<std::string, IdSet> missing;
  for (const auto& [tenant, ids] : referenced) {
    report.chunks_referenced += ids.size();
    IdSet candidates;
    if (auto it = stored.find(tenant); it != stored.end()) {
      for (const StoredChunk& chunk : it->second) candidates.insert(chunk.id);
    }
    std::vector<ChunkId> unseen;
    for (const ChunkId& id : ids) {
      if (!candidates.contains(id)) unseen.push_back(id);
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

  // Sweep.
  std::vector<std::pair<std::string, StoredChunk>> garbage;
  for (auto& [tenant, chunks] : stored) {
    if (skipped.contains(tenant)) continue;
    const IdSet* live = nullptr;
    if (auto it = referenced.find(tenant); it != referenced.end()) {
      live = &it->second;
    }
    for (const StoredChunk& chunk : chunks) {
      if (live == nullptr || !live->contains(chunk.id)) {
        garbage.emplace_back(tenant, chunk);
      }
    }
  }
  stored.clear();
  bool deleted_any = false;
  for (size_t begin = 0; begin < garbage.size(); begin += kSweepBatch) {
    const size_t end = std::min(garbage.size(), begin + kSweepBatch);
    absl::MutexLock lock(&lifecycle_mu_);
    ++sweep_generation_;
    absl::Cleanup bump = [this] { ++sweep_generation_; };
    const absl::Time now = clock_->Now();
    for (size_t i = begin; i < end; ++i) {
      const auto& [tenant, chunk] = garbage[i];
      if (guard_.IsProtected(tenant, chunk.id, now)) {
        ++report.chunks_held;
        continue;
      }
      if (!options.dry_run) {
        CKPT_RETURN_IF_ERROR(chunks_->Delete(tenant, chunk.id));
        deleted_any = true;
      }
      ++report.chunks_deleted;
      report.bytes_deleted += chunk.size;
    }
  }
  if (deleted_any) {
    // Deletes only write tombstones, so the size before compacting them
    // away is the size before the sweep.
    CKPT_RETURN_IF_ERROR(chunks_->Sync());
    CKPT_ASSIGN_OR_RETURN(ChunkStore::DiskUsage disk, chunks_->ReclaimSpace());
    report.disk_bytes_before = disk.bytes_before;
    report.disk_bytes_after = disk.bytes_after;
  }
  report.duration = clock_->Now() - started;
  CKPT_EVENT(
      Info, "gc_finished", {"dry_run", options.dry_run ? "true" : "false"},
      {"principal", actor.principal}, {"chunks_scanned", report.chunks_scanned},
      {"chunks_referenced", report.chunks_referenced},
      {"chunks_held", report.chunks_held},
      {"chunks_deleted", report.chunks_deleted},
      {"bytes_deleted", report.bytes_deleted},
      {"disk_bytes_before", report.disk_bytes_before},
      {"disk_bytes_after", report.disk_bytes_after},
      {"millis", absl::ToInt64Milliseconds(report.duration)});
  return report;
}

}  // namespace ckpt::server
