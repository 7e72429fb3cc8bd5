// MetadataStore: jobs, checkpoint headers, shard manifests and each job's
// event history, changed only through atomic, durable batches.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/event.h"
#include "common/manifest.h"

namespace ckpt::server {

// A set of metadata changes applied all together or not at all.
class MetadataBatch {
 public:
  struct PutJobOp {
    JobRecord job;
  };
  // Inserts or replaces the header of (record.job, record.step), whatever
  // its state.
  struct PutCheckpointOp {
    CheckpointRecord record;
  };
  // Removes the header of (job, step) and all of its shards.
  struct DeleteCheckpointOp {
    std::string job;
    int64_t step;
  };
  struct PutShardOp {
    std::string job;
    int64_t step;
    ShardManifest shard;
  };
  // Appends to event.job's history with the job's next sequence number (the
  // store assigns it; event.sequence is ignored). Events appended by one
  // batch get consecutive numbers in op order. When the job then holds more
  // than kMaxEventsPerJob events, the oldest are dropped in the same batch.
  // Deleting a checkpoint never deletes its events.
  struct AppendEventOp {
    JobEvent event;
  };
  // Inserts or replaces the record of tenant.name.
  struct PutTenantOp {
    TenantRecord tenant;
  };
  using Op = std::variant<PutJobOp, PutCheckpointOp, DeleteCheckpointOp,
                          PutShardOp, AppendEventOp, PutTenantOp>;

  void PutJob(JobRecord job) { ops_.push_back(PutJobOp{std::move(job)}); }
  void PutCheckpoint(CheckpointRecord record) {
    ops_.push_back(PutCheckpointOp{std::move(record)});
  }
  void DeleteCheckpoint(std::string job, int64_t step) {
    ops_.push_back(DeleteCheckpointOp{std::move(job), step});
  }
  void PutShard(std::string job, int64_t step, ShardManifest shard) {
    ops_.push_back(PutShardOp{std::move(job), step, std::move(shard)});
  }

  void AppendEvent(JobEvent event) {
    ops_.push_back(AppendEventOp{std::move(event)});
  }
  void PutTenant(TenantRecord tenant) {
    ops_.push_back(PutTenantOp{std::move(tenant)});
  }

  const std::vector<Op>& ops() const { return ops_; }
  bool empty() const { return ops_.empty(); }

 private:
  std::vector<Op> ops_;
};

// How many events each job's history keeps: the newest ones. A job saving
// every 10 minutes under a max_to_keep policy (a commit and a prune event per
// save) keeps about a month of history.
inline constexpr size_t kMaxEventsPerJob = 10000;

// Implementations are thread-safe. Steps are >= 0.
class MetadataStore {
 public:
  virtual ~MetadataStore() = default;

  // Whether several servers use this store at once (RadosMetadataStore).
  // Then a server's own mutex does not serialize a read-modify-write of a
  // job's records: it holds LockJob (or LockTenant) across it as well.
  virtual bool IsShared() const { return false; }

  // A cluster-wide exclusive lock, held until destroyed. It is leased: a
  // holder that stalls past the lease loses it, and from then on a shared
  // store refuses the holder's Apply (fencing), so a stale holder cannot
  // overwrite what the next holder wrote.
  class Lease {
   public:
    virtual ~Lease() = default;
    // OK while the lock is (as far as this process knows) still held;
    // otherwise why not.
    virtual absl::Status Check() const { return absl::OkStatus(); }
  };
  // Locks `job`'s records (header, checkpoints, shards, events) against
  // other servers, waiting a bounded time for another holder; UNAVAILABLE
  // naming the holder when it does not let go. The default (a store only
  // this process uses) returns a lease that locks nothing.
  virtual absl::StatusOr<std::unique_ptr<Lease>> LockJob(absl::string_view job);
  // The same for `tenant`'s record.
  virtual absl::StatusOr<std::unique_ptr<Lease>> LockTenant(
      absl::string_view tenant);
  // The lock garbage collection holds across servers, so that two never
  // sweep at once: FAILED_PRECONDITION naming the holder when another
  // server holds it (no wait). A shared store renews it while held, and
  // Check() reports when renewal failed.
  virtual absl::StatusOr<std::unique_ptr<Lease>> LockCollection();

  // nullopt when the job does not exist.
  virtual absl::StatusOr<std::optional<JobRecord>> GetJob(
      absl::string_view job) = 0;
  // Ascending name order.
  virtual absl::StatusOr<std::vector<JobRecord>> ListJobs() = 0;

  // nullopt when the tenant has no record (nothing set for it).
  virtual absl::StatusOr<std::optional<TenantRecord>> GetTenant(
      absl::string_view tenant) = 0;

  // The header in any state. NOT_FOUND when absent.
  virtual absl::StatusOr<CheckpointRecord> GetCheckpoint(absl::string_view job,
                                                         int64_t step) = 0;
  // Every header of `job` in any state, ascending step.
  virtual absl::StatusOr<std::vector<CheckpointRecord>> ListCheckpoints(
      absl::string_view job) = 0;
  // Headers in state kPending across all jobs (for lease expiry).
  virtual absl::StatusOr<std::vector<CheckpointRecord>> ListPending() = 0;

  // Shards stored for (job, step), ascending rank; empty when none.
  virtual absl::StatusOr<std::vector<ShardManifest>> GetShards(
      absl::string_view job, int64_t step) = 0;

  // Calls `fn(job, step, shard)` for every stored shard of every checkpoint,
  // pending and committed (aborted and deleted checkpoints keep none), in
  // (job, step, rank) order: garbage collection marks from it. A store only
  // this process uses gives one consistent view taken at the start; a
  // shared store (IsShared) reads job by job and page by page, so a shard
  // stored throughout the scan is seen and one added or removed during it
  // may not be (garbage_collection.cc allows for that). Stops at, and
  // returns, the first non-OK status.
  virtual absl::Status ForEachShard(
      absl::FunctionRef<absl::Status(absl::string_view job, int64_t step,
                                     const ShardManifest& shard)>
          fn) = 0;
  // The newest `limit` events of `job` (at most kMaxEventsPerJob are kept),
  // oldest first, i.e. ascending sequence; empty for an unknown job.
  // REQUIRES: limit >= 1.
  virtual absl::StatusOr<std::vector<JobEvent>> ListEvents(
      absl::string_view job, size_t limit) = 0;

  // Applies every op in order, atomically; durable when it returns OK.
  // On error nothing was applied. A shared store gives this for the ops of
  // one job or one tenant, which is all the service ever batches; a batch
  // spanning several is applied one job or tenant at a time.
  virtual absl::Status Apply(const MetadataBatch& batch) = 0;
};

}  // namespace ckpt::server
