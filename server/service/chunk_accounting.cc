// CheckpointService, chunk accounting: which checkpoints and jobs the
// stored chunks of a tenant serve. UniqueBytes (per checkpoint of a job: the
// bytes only it references) and JobStoredBytesOf (a job's referenced bytes,
// and the part other jobs share), both walking the tenant's manifests with
// ForEachCheckpoint.
//
// Cost: both read and decode every manifest of every pending and committed
// checkpoint of the job's tenant (its other jobs included, as chunks are
// deduplicated per tenant), and keep one hash-map entry per distinct chunk
// (UniqueBytes: of the tenant; JobStoredBytesOf: of the job only, about 80
// bytes each). Nothing of other tenants is read.
//
// Locking: UniqueBytes reads under lifecycle_mu_ (one consistent answer for
// `ls --unique`); JobStoredBytesOf, a statistic, takes no lock, so a commit
// or delete during its walk may or may not be counted.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "common/status_macros.h"
#include "server/service/checkpoint_service.h"

namespace ckpt::server {
namespace {

using CheckpointVisitor = absl::FunctionRef<absl::Status(
    const CheckpointRecord& record, const std::vector<ShardManifest>& shards)>;

// Calls `visit` for every checkpoint of `job`, ascending step, with its
// stored shards (none for an aborted one, which keeps no shards).
absl::Status ForEachCheckpoint(MetadataStore& metadata, absl::string_view job,
                               CheckpointVisitor visit) {
  CKPT_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> records,
                        metadata.ListCheckpoints(job));
  for (const CheckpointRecord& record : records) {
    std::vector<ShardManifest> shards;
    if (record.state != CheckpointState::kAborted) {
      CKPT_ASSIGN_OR_RETURN(shards, metadata.GetShards(job, record.step));
    }
    CKPT_RETURN_IF_ERROR(visit(record, shards));
  }
  return absl::OkStatus();
}

// The names of the jobs of `tenant`, ascending.
absl::StatusOr<std::vector<std::string>> JobsOfTenant(
    MetadataStore& metadata, absl::string_view tenant) {
  CKPT_ASSIGN_OR_RETURN(std::vector<JobRecord> jobs, metadata.ListJobs());
  std::vector<std::string> names;
  for (JobRecord& job : jobs) {
    if (TenantOf(job.name) == tenant) names.push_back(std::move(job.name));
  }
  return names;
}

}  // namespace

absl::StatusOr<std::map<int64_t, uint64_t>> CheckpointService::UniqueBytes(
    absl::string_view job) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
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
  CKPT_ASSIGN_OR_RETURN(std::vector<std::string> jobs,
                        JobsOfTenant(*metadata_, TenantOf(job)));
  for (const std::string& other : jobs) {
    const bool ours = other == job;
    CKPT_RETURN_IF_ERROR(ForEachCheckpoint(
        *metadata_, other,
        [&](const CheckpointRecord& record,
            const std::vector<ShardManifest>& shards) {
          if (ours) unique[record.step] = 0;
          // An aborted checkpoint's shards are dropped; it protects nothing.
          if (record.state == CheckpointState::kAborted) {
            return absl::OkStatus();
          }
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
          return absl::OkStatus();
        }));
  }
  for (const auto& [id, owner] : owners) {
    if (owner.checkpoint == kShared) continue;
    if (const std::optional<int64_t>& step = steps[owner.checkpoint]) {
      unique[*step] += owner.size;
    }
  }
  return unique;
}

absl::StatusOr<JobStoredBytes> CheckpointService::JobStoredBytesOf(
    absl::string_view job) {
  struct Use {
    uint64_t size;
    bool shared;
  };
  // The job's distinct chunks, from its committed checkpoints.
  absl::flat_hash_map<ChunkId, Use> uses;
  JobStoredBytes stored;
  CKPT_RETURN_IF_ERROR(ForEachCheckpoint(
      *metadata_, job,
      [&](const CheckpointRecord& record,
          const std::vector<ShardManifest>& shards) {
        if (record.state != CheckpointState::kCommitted) {
          return absl::OkStatus();
        }
        for (const ShardManifest& shard : shards) {
          for (const ChunkRef& ref : ReferencedChunks(shard)) {
            if (uses.try_emplace(ref.id, Use{ref.size, false}).second) {
              ++stored.chunk_count;
              stored.stored_bytes += ref.size;
            }
          }
        }
        return absl::OkStatus();
      }));
  if (uses.empty()) return stored;
  // Which of them the tenant's other jobs reference too (pending ones
  // included: they keep the chunk as much as a committed one does).
  CKPT_ASSIGN_OR_RETURN(std::vector<std::string> jobs,
                        JobsOfTenant(*metadata_, TenantOf(job)));
  for (const std::string& other : jobs) {
    if (other == job) continue;
    CKPT_RETURN_IF_ERROR(ForEachCheckpoint(
        *metadata_, other,
        [&](const CheckpointRecord&, const std::vector<ShardManifest>& shards) {
          for (const ShardManifest& shard : shards) {
            for (const ChunkRef& ref : ReferencedChunks(shard)) {
              auto it = uses.find(ref.id);
              if (it == uses.end() || it->second.shared) continue;
              it->second.shared = true;
              ++stored.shared_chunk_count;
              stored.shared_bytes += it->second.size;
            }
          }
          return absl::OkStatus();
        }));
    // Every chunk is shared: the other jobs cannot change the answer.
    if (stored.shared_chunk_count == stored.chunk_count) break;
  }
  return stored;
}

}  // namespace ckpt::server
