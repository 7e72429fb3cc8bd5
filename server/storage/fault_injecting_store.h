// FaultInjectingStore: forwards every call to a wrapped ChunkStore and
// MetadataStore (through the wrappers of store_wrappers.h), except that it
// can be told to fail the next N calls of an operation. A failed call is not
// forwarded, so it changes nothing: tests use it to prove that an error in the
// middle of a service operation leaves nothing half-done (LevelDB's ErrorEnv,
// as a store wrapper).
#pragma once

#include <array>
#include <cstddef>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/storage/store_wrappers.h"

namespace ckpt::server {

// Thread-safe. The wrapped stores must outlive this one.
class FaultInjectingStore final : public ChunkStoreWrapper,
                                  public MetadataStoreWrapper {
 public:
  enum class Op : size_t {
    // ChunkStore.
    kPut,
    kGet,
    kContains,  // Contains and Sizes: both ask which chunks are stored
    kDelete,
    kSync,
    kGetUsage,
    kForEach,
    kReclaimSpace,
    // MetadataStore.
    kGetJob,
    kListJobs,
    kGetTenant,
    kGetCheckpoint,
    kListCheckpoints,
    kListPending,
    kGetShards,
    kForEachShard,
    kListEvents,
    kApply,  // keep last: kNumOps counts up to it
  };
  static constexpr size_t kNumOps = static_cast<size_t>(Op::kApply) + 1;

  // REQUIRES: chunks and metadata are non-null (they may be one object).
  FaultInjectingStore(ChunkStore* chunks, MetadataStore* metadata);

  // The next `count` calls of `op` return `error` without being forwarded.
  // Replaces any failures still pending for `op`.
  // REQUIRES: !error.ok(), count >= 0.
  void FailNext(Op op, absl::Status error, int count = 1);
  // As FailNext, after letting the next `successes` calls through: fails an
  // operation in the middle of a loop of them.
  void FailAfter(Op op, int successes, absl::Status error, int count = 1);
  // Forgets every pending failure.
  void ClearFailures();
  // Calls of `op` so far, failed ones included.
  int calls(Op op) const;

  absl::StatusOr<bool> Put(absl::string_view tenant, const ChunkId& id,
                           absl::string_view bytes) override;
  absl::StatusOr<std::string> Get(absl::string_view tenant,
                                  const ChunkId& id) override;
  // Reads through Get (and so fails as kGet does) and checks SHA-256, as
  // ChunkStore's default does, rather than the wrapped store's own check.
  absl::Status ReadVerified(
      absl::string_view tenant, const ChunkId& id,
      absl::FunctionRef<absl::Status(absl::string_view bytes)> consume)
      override;
  // The base's default, over the ReadVerified above.
  absl::StatusOr<std::string> ReadVerifiedBytes(absl::string_view tenant,
                                                const ChunkId& id) override;
  absl::StatusOr<std::vector<std::optional<uint64_t>>> Sizes(
      absl::string_view tenant, absl::Span<const ChunkId> ids) override;
  absl::StatusOr<std::vector<std::optional<uint64_t>>> DurableSizes(
      absl::string_view tenant, absl::Span<const ChunkId> ids) override;
  absl::StatusOr<std::vector<bool>> Contains(
      absl::string_view tenant, absl::Span<const ChunkId> ids) override;
  absl::Status Delete(absl::string_view tenant, const ChunkId& id) override;
  absl::Status Sync() override;
  absl::StatusOr<Usage> GetUsage(absl::string_view tenant) override;
  absl::Status ForEach(
      absl::string_view tenant,
      absl::FunctionRef<absl::Status(absl::string_view tenant,
                                     const ChunkId& id, uint64_t size)>
          fn) override;
  absl::StatusOr<DiskUsage> ReclaimSpace() override;

  absl::StatusOr<std::optional<JobRecord>> GetJob(
      absl::string_view job) override;
  absl::StatusOr<std::vector<JobRecord>> ListJobs() override;
  absl::StatusOr<std::optional<TenantRecord>> GetTenant(
      absl::string_view tenant) override;
  absl::StatusOr<CheckpointRecord> GetCheckpoint(absl::string_view job,
                                                 int64_t step) override;
  absl::StatusOr<std::vector<CheckpointRecord>> ListCheckpoints(
      absl::string_view job) override;
  absl::StatusOr<std::vector<CheckpointRecord>> ListPending() override;
  absl::StatusOr<std::vector<ShardManifest>> GetShards(absl::string_view job,
                                                       int64_t step) override;
  absl::Status ForEachShard(
      absl::FunctionRef<absl::Status(absl::string_view job, int64_t step,
                                     const ShardManifest& shard)>
          fn) override;
  absl::StatusOr<std::vector<JobEvent>> ListEvents(absl::string_view job,
                                                   size_t limit) override;
  absl::Status Apply(const MetadataBatch& batch) override;

 private:
  struct Failure {
    absl::Status error;
    int pass_first = 0;  // calls let through before failing
    int remaining = 0;
  };
  // Counts the call; the injected error when this call must fail, else OK.
  absl::Status Check(Op op);

  mutable absl::Mutex mu_;
  std::array<Failure, kNumOps> failures_ ABSL_GUARDED_BY(mu_);
  std::array<int, kNumOps> calls_ ABSL_GUARDED_BY(mu_) = {};
};

}  // namespace ckpt::server
