// The ckpt C++ client library: saves and restores sharded checkpoints on a
// ckpt-server. Mentions no gRPC or Protobuf type. Client is a thin facade:
// the value types are in client/types.h, the calls to the server go through
// a Transport (client/transport.h; the gRPC one is in client/transport/),
// saves run the save pipeline (client/save_pipeline.h) and restores the
// restore plan (client/restore_plan.h).
//
// Typical use by rank r of N:
//   CKPT_ASSIGN_OR_RETURN(auto client, Client::Connect("host:7070"));
//   SaveOptions options{.rank = r, .world_size = N};
//   CKPT_ASSIGN_OR_RETURN(SaveResult saved,
//                         client->SaveShard("team/model", step, tensors,
//                                           options));
// and after a restart:
//   CKPT_ASSIGN_OR_RETURN(auto restored,
//                         client->RestoreShard("team/model", std::nullopt, r));
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "client/copy.h"
#include "client/stored_fingerprints.h"
#include "client/types.h"
#include "common/event.h"
#include "common/gc_report.h"
#include "common/manifest.h"
#include "common/retention.h"
#include "common/stats.h"
#include "common/verify.h"

namespace ckpt::client {

class Transport;  // client/transport.h

// Thread-safe: one Client may serve many threads (e.g. several ranks in one
// process). Every error is the server's status (code and message) or a
// transport status (UNAVAILABLE, DEADLINE_EXCEEDED, ...).
class Client {
 public:
  // `address` is HOST:PORT (any gRPC target). INVALID_ARGUMENT for an empty
  // address; UNAVAILABLE when connect_timeout is set and runs out.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(
      const std::string& address, ConnectOptions options = {});
  // A client over `transport` (tests give an in-memory one). Of `options`
  // only shared_memory_restore applies: the transport already holds its
  // connection. REQUIRES: transport != nullptr.
  static std::unique_ptr<Client> WithTransport(
      std::unique_ptr<Transport> transport, ConnectOptions options = {});

  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Saves rank options.rank's shard of checkpoint (job, step): begins the
  // checkpoint (idempotent across ranks), chunks each tensor from its own
  // start, hashes the chunks on options.hash_threads threads while earlier
  // batches are checked with FindMissingChunks and the missing ones stream
  // through a single PutChunks call (chunks repeated within the save are
  // sent once), then commits the shard. If the commit finds chunks missing
  // (e.g. the server lost unsynced data), they are uploaded again and the
  // commit is retried once.
  // INVALID_ARGUMENT when a tensor's bytes do not match its box and dtype or
  // the rank is outside world_size; otherwise the server's status. On error
  // the checkpoint stays pending until its lease expires or it is aborted.
  absl::StatusOr<SaveResult> SaveShard(absl::string_view job, int64_t step,
                                       absl::Span<const TensorData> tensors,
                                       const SaveOptions& options);

  absl::StatusOr<std::vector<JobSummary>> ListJobs();
  // Ascending step; committed only unless include_uncommitted.
  absl::StatusOr<std::vector<CheckpointRecord>> ListCheckpoints(
      absl::string_view job, bool include_uncommitted = false);
  // A committed checkpoint with all shards; the latest when step is nullopt.
  // `restoring_rank` is deprecated (kept for callers built on it): the
  // server then records a `restored` event for that rank before anything
  // is restored, even if the restore then fails. Restore, then call
  // ReportRestore instead.
  absl::StatusOr<Checkpoint> GetManifest(
      absl::string_view job, std::optional<int64_t> step,
      std::optional<int32_t> restoring_rank = std::nullopt);

  // Fetches the bytes of one tensor entry into `out`.
  // REQUIRES: out.size() == entry.ByteSize() (INVALID_ARGUMENT otherwise).
  // The server verifies every chunk's hash; sizes are checked here.
  // A row delta entry is rebuilt: its chain of bases is found in the job's
  // older checkpoints (GetManifest), the full entry at its bottom is fetched
  // into `out` and the deltas, oldest first, are applied. DATA_LOSS naming
  // the tensor and the step when a base or its matching entry is missing.
  // A quantized entry is fetched into scratch and dequantized into `out`
  // (float32 values within its recorded max_abs_error of those saved).
  // `rank`: the shard `entry` is of, whose own delta bases are followed
  // (per-rank state); nullopt: the first shard's that match.
  absl::Status ReadTensor(absl::string_view job, const TensorEntry& entry,
                          absl::Span<char> out,
                          std::optional<int32_t> rank = std::nullopt);
  // The same for several entries of one job at once: each chunk is fetched
  // once over all of them and each base manifest read once.
  // REQUIRES: outs.size() == entries.size().
  absl::Status ReadTensors(absl::string_view job,
                           absl::Span<const TensorEntry> entries,
                           absl::Span<const absl::Span<char>> outs,
                           std::optional<int32_t> rank = std::nullopt);

  // All tensors rank `rank` wrote in checkpoint (job, step | latest), each
  // chunk fetched once and written straight into its destination; once
  // they are, recorded as a `restored` event in the job's history
  // (ReportRestore). A report refused with NOT_FOUND (the checkpoint was
  // deleted meanwhile) or UNIMPLEMENTED (an older server) is ignored, as
  // the tensors were restored; any other report error is returned (call
  // the overload below and ReportRestore to decide otherwise). Row delta
  // entries are
  // rebuilt as ReadTensor does (each base manifest fetched once per call);
  // their deltas are fetched into scratch pages after the tensors, which
  // are given back once applied; so are quantized entries, dequantized
  // into their tensors. The returned entries are the checkpoint's
  // own (a rebuilt one keeps its delta_base_step).
  // INVALID_ARGUMENT when rank is outside the checkpoint's world size.
  // `restored_step`, when set, receives the step restored (the latest's,
  // for step nullopt).
  absl::StatusOr<std::vector<RestoredTensor>> RestoreShard(
      absl::string_view job, std::optional<int64_t> step, int32_t rank,
      int64_t* restored_step = nullptr);
  // The same for a manifest already fetched with GetManifest (records no
  // restore event: call ReportRestore once it succeeded). `progress`,
  // when set, is called (one call at a time) after every chunk fetched.
  absl::StatusOr<std::vector<RestoredTensor>> RestoreShard(
      const Checkpoint& checkpoint, int32_t rank,
      const RestoreProgressFn& progress = {});

  // The row fingerprints stored with `entry` of committed checkpoint
  // (job, step) and down its delta chain, rebuilt: client/
  // stored_fingerprints.h's LoadStoredChain (`rank`: the shard `entry` is
  // of).
  absl::StatusOr<StoredChain> LoadStoredChain(
      absl::string_view job, int64_t step, const TensorEntry& entry,
      std::optional<int32_t> rank = std::nullopt);
  // The same for several entries of one checkpoint (LoadStoredChains).
  std::vector<absl::StatusOr<StoredChain>> LoadStoredChains(
      absl::string_view job, int64_t step,
      absl::Span<const TensorEntry> entries,
      std::optional<int32_t> rank = std::nullopt);

  // The delta chain of each (rank, entry) of `checkpoint` (fetched with
  // GetManifest): the entries that rebuild it, its full base first, as a
  // restore finds them (client/fetch_plan.h's DeltaChains, each rank's own
  // bases preferred), each base manifest fetched once for all of them.
  // DATA_LOSS for an entry whose chain is broken (as a restore of it).
  std::vector<absl::StatusOr<std::vector<TensorEntry>>> ResolveDeltaChains(
      const Checkpoint& checkpoint,
      absl::Span<const std::pair<int32_t, const TensorEntry*>> entries);

  // Resharded restore: each request's region of `checkpoint` (fetched
  // with GetManifest), assembled from the saved boxes that overlap it.
  // Only the chunks covering the overlaps are fetched (each distinct chunk
  // once over all requests); delta chains are rebuilt and quantized entries
  // dequantized for the rows the region needs. Everything is checked
  // before anything is fetched: INVALID_ARGUMENT naming the tensor when no
  // rank saved it (or not source_rank), its dtype or global shape differs
  // from the request's, the region lies outside the global shape, the
  // saved boxes leave part of the region uncovered, identical boxes of two
  // ranks reference different chunks (for row deltas: anywhere along their
  // chains, which run through each rank's own bases), or an out's size is
  // not the region's
  // bytes; DATA_LOSS as ReadTensors. Records no restore event (see
  // ReportRestore). On error `outs` hold unspecified bytes.
  // REQUIRES: outs.size() == requests.size().
  absl::StatusOr<RegionReadStats> ReadRegions(
      const Checkpoint& checkpoint, absl::Span<const RegionRequest> requests,
      absl::Span<const absl::Span<char>> outs,
      const RestoreProgressFn& progress = {});
  // The same into memory it allocates (through shared memory when the
  // server is on this host, as RestoreShard).
  absl::StatusOr<RestoredRegions> RestoreRegions(
      const Checkpoint& checkpoint, absl::Span<const RegionRequest> requests,
      const RestoreProgressFn& progress = {});
  // Records in the job's history that `rank` restored checkpoint `step`:
  // called after a restore succeeded, so that a refused or failed one
  // leaves no `restored` event. `rank` is the restoring rank, which may be
  // outside the checkpoint's world size (a resharded restore). NOT_FOUND
  // when the checkpoint is gone or not committed; UNIMPLEMENTED from a
  // server older than the call (which records nothing).
  absl::Status ReportRestore(absl::string_view job, int64_t step, int32_t rank);

  absl::Status AbortCheckpoint(absl::string_view job, int64_t step,
                               absl::string_view reason);
  // FAILED_PRECONDITION for a pending checkpoint (abort it), for a pinned
  // one unless `force` overrides the pin (its event then says so), and for
  // the base of another's deltas.
  absl::Status DeleteCheckpoint(absl::string_view job, int64_t step,
                                bool force = false);
  // Whole server when job is empty.
  absl::StatusOr<Stats> GetStats(absl::string_view job);

  // Retention (rules in common/retention.h). Stores the job's policy, an
  // operator's, and applies it at once; returns the steps that deleted. A
  // job that has not saved yet is created with it. INVALID_ARGUMENT for an
  // invalid policy (nothing changed). `warnings`, when not null, receives
  // the server's (Transport::SetRetentionPolicy), e.g. "keep_best decides
  // nothing: no checkpoint has metric M". FAILED_PRECONDITION, nothing
  // sent, when the policy uses restic's rules and the server predates them.
  absl::StatusOr<std::vector<int64_t>> SetRetentionPolicy(
      absl::string_view job, const RetentionPolicy& policy,
      std::vector<std::string>* warnings = nullptr);
  // The policy that applies to the job (its own, or its tenant's default);
  // nullopt when none does.
  absl::StatusOr<std::optional<RetentionPolicy>> GetRetentionPolicy(
      absl::string_view job);
  // The same with who set it (Transport::GetRetentionPolicy).
  absl::StatusOr<PolicyInfo> GetRetentionPolicyInfo(absl::string_view job);
  // A tenant's default policy (Transport::SetTenantDefaultPolicy).
  absl::Status SetTenantDefaultPolicy(absl::string_view tenant,
                                      const RetentionPolicy& policy);
  absl::StatusOr<PolicyInfo> GetTenantDefaultPolicy(absl::string_view tenant);
  // Removes a job's own policy, or a tenant's default
  // (Transport::ClearRetentionPolicy).
  absl::Status ClearRetentionPolicy(absl::string_view name,
                                    bool tenant_default);
  // Pins (or with pinned=false unpins) a committed checkpoint; returns its
  // header. NOT_FOUND when absent, FAILED_PRECONDITION when pending.
  absl::StatusOr<CheckpointRecord> PinCheckpoint(absl::string_view job,
                                                 int64_t step,
                                                 bool pinned = true);
  // Sets (adds or replaces) the tags in `set` and removes those named in
  // `remove` on a committed checkpoint (rules in common/tags.h); returns its
  // header. NOT_FOUND when absent, FAILED_PRECONDITION when pending,
  // PERMISSION_DENIED for a writer's removal or change of a value.
  absl::StatusOr<CheckpointRecord> SetCheckpointTags(
      absl::string_view job, int64_t step,
      const std::map<std::string, std::string>& set,
      const std::vector<std::string>& remove);
  // One decision per committed checkpoint (ascending step) under `policy`,
  // or the job's stored one when nullopt. Unless dry_run, those decided
  // delete are deleted, atomically.
  absl::StatusOr<std::vector<RetentionDecision>> PruneCheckpoints(
      absl::string_view job, const std::optional<RetentionPolicy>& policy,
      bool dry_run, std::vector<std::string>* warnings = nullptr);

  // Runs a garbage collection on the server (see GcReport); OK with
  // report.damaged filled when referenced chunks are missing.
  absl::StatusOr<GcReport> CollectGarbage(bool dry_run);
  // The same with a hold window for this collection (GcOptions::hold, whole
  // seconds); a server too old to know it ignores it, and its report has
  // no `hold`.
  absl::StatusOr<GcReport> CollectGarbage(const GcOptions& options);

  // As ListCheckpoints, with each checkpoint's unique bytes. Costlier: the
  // server reads every manifest of the job's tenant.
  absl::StatusOr<std::vector<CheckpointUsage>> ListCheckpointsWithUniqueBytes(
      absl::string_view job, bool include_uncommitted = false);

  // Verifies the committed checkpoints in scope (see common/verify.h):
  // every referenced chunk stored, and with read_data its bytes matching
  // its hash. Damage is in the report (OK status); NOT_FOUND for an unknown
  // job or step, INVALID_ARGUMENT for a bad subset. `progress`, when set,
  // is called now and then from this thread. No deadline: it may read
  // every stored byte.
  absl::StatusOr<VerifyReport> VerifyCheckpoints(
      const VerifyOptions& options, const VerifyProgressFn& progress = {});
  // The job's event history (commits, aborts, deletions, prunes with their
  // reasons, pins, restores, policy changes), oldest first: the newest
  // `limit` events, or every kept one when limit is 0. NOT_FOUND for an
  // unknown job.
  absl::StatusOr<std::vector<JobEvent>> ListEvents(absl::string_view job,
                                                   int limit = 0);

  // Copies committed checkpoints of request.job from `source`'s server to
  // `target`'s (client/copy.h: CopyCheckpoints), through this process.
  static absl::StatusOr<CopyReport> Copy(Client& source, Client& target,
                                         const CopyRequest& request,
                                         const CopyProgressFn& progress = {});

 private:
  struct Impl;
  struct PrivateTag {};

 public:
  Client(PrivateTag, std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace ckpt::client
