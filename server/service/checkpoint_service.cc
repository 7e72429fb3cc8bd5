// CheckpointService: what belongs to the class as a whole, its constructor
// and the job lookup every use case shares. The use cases live in their own
// files:
//   lifecycle.cc           begin, upload, commit, abort, lease expiry
//   queries.cc             listings, manifests, chunk reads, stats, events
//   retention_ops.cc       retention policy, pins, prune, delete
//   verify.cc              Verify
//   chunk_accounting.cc    UniqueBytes and a job's stored bytes (GetStats)
//   garbage_collection.cc  CollectGarbage
// with the events they record built by job_events.h and their shared helpers
// in service_internal.h.
//
// Locking (the annotations in checkpoint_service.h):
// - lifecycle_mu_ serializes the read-modify-writes of checkpoint headers
//   and job records (and the shard puts and deletions that go with them),
//   and orders a commit against a collection's start (ChunkGuard). Private
//   members CheckDeltaBases, DecideAndDelete and SnapshotForVerify require
//   it. Chunk uploads and reads and the queries (queries.cc) do not take it;
//   GetManifest's `restored` event is an append that reads nothing.
// - A job's (or tenant's) lease, MetadataStore::LockJob / LockTenant, is
//   taken before lifecycle_mu_ by every read-modify-write of that job, never
//   while holding lifecycle_mu_: waiting for another server's lock on one
//   job then holds up no other. On a store only this process uses it locks
//   nothing.
// - gc_mu_ admits one collection at a time and is ABSL_ACQUIRED_BEFORE
//   lifecycle_mu_: CollectGarbage holds it throughout and takes
//   lifecycle_mu_ inside it, never the reverse.
// - sweep_generation_ (atomic) is bumped under lifecycle_mu_ around each
//   sweep batch; CommitShard compares it to decide whether to recheck its
//   chunks under the lock.
// - guard_ (ChunkGuard) and the stores lock themselves.
#include "server/service/checkpoint_service.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/ordered_parallel.h"
#include "common/status_macros.h"

namespace ckpt::server {

absl::Status ValidateServiceOptions(const ServiceOptions& options) {
  if (options.max_lease <= absl::ZeroDuration() ||
      options.max_lease == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the maximum lease must be positive and finite, got ",
                     absl::FormatDuration(options.max_lease)));
  }
  if (options.default_lease <= absl::ZeroDuration() ||
      options.default_lease > options.max_lease) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the default lease (", absl::FormatDuration(options.default_lease),
        ") must be positive and at most the maximum lease (",
        absl::FormatDuration(options.max_lease), ")"));
  }
  if (options.max_world_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_world_size must be at least 1, got ", options.max_world_size));
  }
  if (options.chunk_hold < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk_hold must not be negative, got ",
                     absl::FormatDuration(options.chunk_hold)));
  }
  if (options.verify_threads < 0 ||
      options.verify_threads > kMaxVerifyThreads) {
    return absl::InvalidArgumentError(
        absl::StrCat("verify_threads must be in [0, ", kMaxVerifyThreads,
                     "], got ", options.verify_threads));
  }
  if (options.shared_min_hold < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("shared_min_hold must not be negative, got ",
                     absl::FormatDuration(options.shared_min_hold)));
  }
  return absl::OkStatus();
}

int DefaultVerifyThreads(int hardware_threads) {
  return std::clamp(hardware_threads / 2, 1, 4);
}

int VerifyThreads(const ServiceOptions& options) {
  return options.verify_threads > 0 ? options.verify_threads
                                    : DefaultVerifyThreads(HardwareThreads());
}

CheckpointService::CheckpointService(ChunkStore* chunks,
                                     MetadataStore* metadata, Clock* clock,
                                     ServiceOptions options)
    : chunks_(chunks),
      metadata_(metadata),
      clock_(clock),
      options_(options),
      start_time_(clock->Now()),
      guard_(options_.chunk_hold) {}

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

}  // namespace ckpt::server
