#include "server/storage/memory_store.h"

#include <algorithm>
#include <tuple>
#include <variant>

#include "absl/strings/match.h"
#include "common/status_macros.h"
#include "server/storage/keys.h"

namespace ckpt::server {
namespace {

// Calls fn(key, value) for each entry of `map` whose key starts with
// `prefix`, in key order.
template <typename Map, typename Fn>
void ScanPrefix(Map& map, absl::string_view prefix, Fn fn) {
  for (auto it = map.lower_bound(std::string(prefix));
       it != map.end() && absl::StartsWith(it->first, prefix); ++it) {
    fn(it->first, it->second);
  }
}

}  // namespace

absl::StatusOr<bool> MemoryStore::Put(absl::string_view tenant,
                                      const ChunkId& id,
                                      absl::string_view bytes) {
  CKPT_RETURN_IF_ERROR(ValidateTenant(tenant));
  std::string key = ChunkKey(tenant, id);
  absl::MutexLock lock(&mu_);
  return chunks_.try_emplace(std::move(key), bytes).second;
}

absl::StatusOr<std::string> MemoryStore::Get(absl::string_view tenant,
                                             const ChunkId& id) {
  absl::MutexLock lock(&mu_);
  auto it = chunks_.find(ChunkKey(tenant, id));
  if (tenant.empty() || it == chunks_.end()) return ChunkNotFound(tenant, id);
  return it->second;
}

absl::StatusOr<std::vector<std::optional<uint64_t>>> MemoryStore::Sizes(
    absl::string_view tenant, absl::Span<const ChunkId> ids) {
  std::vector<std::optional<uint64_t>> sizes(ids.size());
  if (tenant.empty()) return sizes;
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < ids.size(); ++i) {
    auto it = chunks_.find(ChunkKey(tenant, ids[i]));
    if (it != chunks_.end()) sizes[i] = it->second.size();
  }
  return sizes;
}

absl::Status MemoryStore::Delete(absl::string_view tenant, const ChunkId& id) {
  if (tenant.empty()) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  chunks_.erase(ChunkKey(tenant, id));
  return absl::OkStatus();
}

absl::Status MemoryStore::Sync() { return absl::OkStatus(); }

absl::StatusOr<ChunkStore::Usage> MemoryStore::GetUsage(
    absl::string_view tenant) {
  Usage usage;
  absl::MutexLock lock(&mu_);
  ScanPrefix(chunks_, ChunkKeyPrefix(tenant),
             [&](const std::string&, const std::string& bytes) {
               ++usage.chunk_count;
               usage.bytes += bytes.size();
             });
  return usage;
}

absl::Status MemoryStore::ForEach(
    absl::string_view tenant,
    absl::FunctionRef<absl::Status(absl::string_view tenant, const ChunkId& id,
                                   uint64_t size)>
        fn) {
  std::vector<std::pair<std::string, uint64_t>> entries;
  {
    absl::MutexLock lock(&mu_);
    ScanPrefix(chunks_, ChunkKeyPrefix(tenant),
               [&](const std::string& key, const std::string& bytes) {
                 entries.emplace_back(key, bytes.size());
               });
  }
  for (const auto& [key, size] : entries) {
    CKPT_ASSIGN_OR_RETURN(DecodedChunkKey decoded, DecodeChunkKey(key));
    CKPT_RETURN_IF_ERROR(fn(decoded.tenant, decoded.id, size));
  }
  return absl::OkStatus();
}

absl::StatusOr<ChunkStore::DiskUsage> MemoryStore::ReclaimSpace() {
  // Deleting frees the memory at once; "disk" is the chunk bytes held.
  CKPT_ASSIGN_OR_RETURN(Usage usage, GetUsage(""));
  return DiskUsage{usage.bytes, usage.bytes};
}

absl::StatusOr<std::optional<JobRecord>> MemoryStore::GetJob(
    absl::string_view job) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(std::string(job));
  if (it == jobs_.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<std::vector<JobRecord>> MemoryStore::ListJobs() {
  std::vector<JobRecord> jobs;
  absl::MutexLock lock(&mu_);
  for (const auto& [name, job] : jobs_) jobs.push_back(job);
  return jobs;
}

absl::StatusOr<std::optional<TenantRecord>> MemoryStore::GetTenant(
    absl::string_view tenant) {
  absl::MutexLock lock(&mu_);
  auto it = tenants_.find(std::string(tenant));
  if (it == tenants_.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<CheckpointRecord> MemoryStore::GetCheckpoint(
    absl::string_view job, int64_t step) {
  if (step < 0) return CheckpointNotFound(job, step);
  absl::MutexLock lock(&mu_);
  auto it = checkpoints_.find(CheckpointKey(job, step));
  if (it == checkpoints_.end()) return CheckpointNotFound(job, step);
  return it->second;
}

absl::StatusOr<std::vector<CheckpointRecord>> MemoryStore::ListCheckpoints(
    absl::string_view job) {
  std::vector<CheckpointRecord> records;
  absl::MutexLock lock(&mu_);
  ScanPrefix(checkpoints_, JobKeyPrefix(job),
             [&](const std::string&, const CheckpointRecord& record) {
               records.push_back(record);
             });
  return records;
}

absl::StatusOr<std::vector<CheckpointRecord>> MemoryStore::ListPending() {
  std::vector<CheckpointRecord> records;
  absl::MutexLock lock(&mu_);
  for (const auto& [key, record] : checkpoints_) {
    if (record.state == CheckpointState::kPending) records.push_back(record);
  }
  return records;
}

absl::StatusOr<std::vector<ShardManifest>> MemoryStore::GetShards(
    absl::string_view job, int64_t step) {
  std::vector<ShardManifest> shards;
  if (step < 0) return shards;
  absl::MutexLock lock(&mu_);
  ScanPrefix(shards_, CheckpointKey(job, step),
             [&](const std::string&, const ShardManifest& shard) {
               shards.push_back(shard);
             });
  return shards;
}

absl::Status MemoryStore::ForEachShard(
    absl::FunctionRef<absl::Status(absl::string_view job, int64_t step,
                                   const ShardManifest& shard)>
        fn) {
  std::map<std::string, ShardManifest> shards;
  {
    absl::MutexLock lock(&mu_);
    shards = shards_;  // `fn` runs unlocked, on this consistent copy
  }
  for (const auto& [key, shard] : shards) {
    CKPT_ASSIGN_OR_RETURN(DecodedShardKey decoded, DecodeShardKey(key));
    CKPT_RETURN_IF_ERROR(fn(decoded.job, decoded.step, shard));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<JobEvent>> MemoryStore::ListEvents(
    absl::string_view job, size_t limit) {
  std::vector<JobEvent> events;
  absl::MutexLock lock(&mu_);
  const std::string prefix = JobKeyPrefix(job);
  // Newest first from the end of the job's range, then reversed.
  auto it = events_.lower_bound(PrefixSuccessor(prefix));
  while (events.size() < limit && it != events_.begin() &&
         absl::StartsWith((--it)->first, prefix)) {
    events.push_back(it->second);
  }
  std::reverse(events.begin(), events.end());
  return events;
}

absl::Status MemoryStore::Apply(const MetadataBatch& batch) {
  // Validation is the only way an op can fail, so checking the whole batch
  // first makes applying it all-or-nothing.
  CKPT_RETURN_IF_ERROR(ValidateBatch(batch));
  absl::MutexLock lock(&mu_);
  EventSequencer sequencer;
  auto last_stored =
      [this](absl::string_view job)
          ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<uint64_t> {
    const std::string prefix = JobKeyPrefix(job);
    auto it = events_.lower_bound(PrefixSuccessor(prefix));
    if (it == events_.begin() || !absl::StartsWith((--it)->first, prefix)) {
      return 0;
    }
    return it->second.sequence;
  };
  for (const MetadataBatch::Op& op : batch.ops()) {
    if (const auto* put_job = std::get_if<MetadataBatch::PutJobOp>(&op)) {
      jobs_.insert_or_assign(put_job->job.name, put_job->job);
    } else if (const auto* put_checkpoint =
                   std::get_if<MetadataBatch::PutCheckpointOp>(&op)) {
      const CheckpointRecord& record = put_checkpoint->record;
      checkpoints_.insert_or_assign(CheckpointKey(record.job, record.step),
                                    record);
    } else if (const auto* del =
                   std::get_if<MetadataBatch::DeleteCheckpointOp>(&op)) {
      const std::string key = CheckpointKey(del->job, del->step);
      checkpoints_.erase(key);
      shards_.erase(shards_.lower_bound(key),
                    shards_.lower_bound(PrefixSuccessor(key)));
    } else if (const auto* append =
                   std::get_if<MetadataBatch::AppendEventOp>(&op)) {
      JobEvent event = append->event;
      CKPT_ASSIGN_OR_RETURN(event.sequence,
                            sequencer.Next(event.job, last_stored));
      events_.insert_or_assign(EventKey(event.job, event.sequence),
                               std::move(event));
    } else if (const auto* put_tenant =
                   std::get_if<MetadataBatch::PutTenantOp>(&op)) {
      tenants_.insert_or_assign(put_tenant->tenant.name, put_tenant->tenant);
    } else {
      const auto& put_shard = std::get<MetadataBatch::PutShardOp>(op);
      shards_.insert_or_assign(
          ShardKey(put_shard.job, put_shard.step, put_shard.shard.rank),
          put_shard.shard);
    }
  }
  for (const EventSequencer::Trim& trim : sequencer.Trims()) {
    events_.erase(events_.lower_bound(JobKeyPrefix(trim.job)),
                  events_.lower_bound(EventKey(trim.job, trim.keep_from)));
  }
  return absl::OkStatus();
}

}  // namespace ckpt::server
