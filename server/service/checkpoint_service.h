// CheckpointService: the checkpoint lifecycle (begin, upload, commit, abort,
// list, read, delete) over a ChunkStore and a MetadataStore. Knows nothing
// of gRPC; the rpc/ layer translates requests and calls it.
//
// Every change it makes is recorded in the job's event history (see
// ListEvents) by an event appended to the very batch that makes the change,
// so a change and its event are durable together or not at all.
//
// The implementation is split by use case (lifecycle.cc, queries.cc,
// retention_ops.cc, verify.cc, chunk_accounting.cc, garbage_collection.cc);
// checkpoint_service.cc says which file holds what and what each lock below
// covers.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/chunk_id.h"
#include "common/clock.h"
#include "common/event.h"
#include "common/gc_report.h"
#include "common/job_scope.h"
#include "common/manifest.h"
#include "common/retention.h"
#include "common/shard_layout.h"
#include "common/stats.h"
#include "common/tags.h"
#include "common/verify.h"
#include "server/service/actor.h"
#include "server/service/chunk_guard.h"
#include "server/service/policy_owner.h"
#include "server/storage/chunk_store.h"
#include "server/storage/metadata_store.h"

namespace ckpt::server {

struct ServiceOptions {
  // Lease of a pending checkpoint when Begin asks for none, renewed by every
  // Begin and CommitShard of it. At most max_lease.
  // Default: 30 minutes, long enough for a slow rank to upload.
  absl::Duration default_lease = absl::Minutes(30);
  // The longest lease a Begin may ask for (longer: INVALID_ARGUMENT naming
  // this cap), so a pending checkpoint, which holds back garbage collection
  // of its tenant after a restart, always ends. No renewal pushes a lease
  // past now + max_lease, and a stored lease that reaches further (written
  // before the cap existed) is cut to now + max_lease the first time
  // ExpireLeases, Begin or CommitShard sees it.
  // Default: 1 hour.
  absl::Duration max_lease = absl::Hours(1);
  // Largest world_size accepted. Default: 65536.
  int32_t max_world_size = 65536;
  // How long garbage collection spares an unreferenced chunk after a save
  // last named it (FindMissingChunks or PutChunks): the time a rank may take
  // between uploading and committing. Default: 30 minutes (as the lease).
  absl::Duration chunk_hold = absl::Minutes(30);
  // On a chunk store shared by several servers, the least time garbage
  // collection spares an unreferenced chunk after its last recorded use,
  // whatever hold it is given: a commit marks its chunks under the job's
  // lock, whose lease bounds the time to its write, and the servers' clocks
  // may differ a little. The server requires it to be at least twice that
  // lease. Default: 2 minutes.
  absl::Duration shared_min_hold = absl::Minutes(2);
  // Threads a Verify that reads data reads and hashes chunks on (each holds
  // one chunk, up to 16 MiB, at a time); its report and progress are the
  // same whatever the number. Each verify call starts its own, so on a
  // shared server more threads take cores and memory from the saves and
  // restores. At most kMaxVerifyThreads.
  // Default: 0, DefaultVerifyThreads(HardwareThreads()).
  int verify_threads = 0;
};

// verify_threads' bound: 64 threads hold up to 1 GiB of chunks per verify.
inline constexpr int kMaxVerifyThreads = 64;

// The threads of verify_threads = 0 on a machine of `hardware_threads`:
// half of them, at least 1 and at most 4, so one verify leaves the server
// most of its cores.
int DefaultVerifyThreads(int hardware_threads);

// The threads a Verify of `options` reads data on.
int VerifyThreads(const ServiceOptions& options);

// INVALID_ARGUMENT naming the option unless 0 < default_lease <= max_lease,
// max_world_size >= 1, chunk_hold >= 0 and
// 0 <= verify_threads <= kMaxVerifyThreads. The server checks its options
// with it at startup.
absl::Status ValidateServiceOptions(const ServiceOptions& options);

// What a copy between servers (`ckpt copy`) adds to BeginCheckpoint. Only
// the Begin that creates the pending checkpoint (or starts an aborted one
// afresh) is heeded; joining ranks' values are ignored.
struct CopyOrigin {
  // Where the checkpoint comes from: kept in its record (copied_from) and
  // recorded as a `copied` event "from SERVER JOB@STEP" with its commit.
  // Default: nullopt (not a copy).
  std::optional<CopyPeer> copied_from;
  // The checkpoint commits pinned, with a `pinned` event in the commit's
  // batch, so that retention applied at that very commit keeps it. While
  // pending, its record's `pinned` says so. Default: false.
  bool pin = false;
};

struct BeginResult {
  CheckpointRecord record;
  bool created = false;  // false when another rank created it first
  // Non-empty when the policy passed was ignored: why (policy_owner.h).
  std::string retention_policy_ignored;
};

struct CommitResult {
  CheckpointRecord record;
  bool checkpoint_committed = false;  // this shard completed the checkpoint
};

// Called by Verify as it goes; a non-OK status stops it with that status
// (e.g. the caller went away).
using VerifyProgressFn = std::function<absl::Status(const VerifyProgress&)>;

// Thread-safe. The stores and clock must outlive the service.
//
// Every method that changes something takes the Actor asking for it, whose
// principal the events of the change record (`actor` defaults to the server
// itself, for its own work and for tests). Which calls an actor may make and
// which jobs it may name is decided before the service is called (the rpc
// layer, server/auth/authorize.h); the service checks only the rights that
// depend on stored state (Actor::may_delete_history).
class CheckpointService {
 public:
  CheckpointService(ChunkStore* chunks, MetadataStore* metadata, Clock* clock,
                    ServiceOptions options = {});

  // Creates (job, step) as PENDING, or joins the pending one when the
  // world_size matches (renewing its lease). Creates the job on first use.
  // ALREADY_EXISTS when it is committed; FAILED_PRECONDITION when the
  // pending one has another world_size. An aborted one is started afresh.
  // lease: zero means the default; longer than ServiceOptions::max_lease is
  // INVALID_ARGUMENT. A `policy` is a writer's (server/service/
  // policy_owner.h): it replaces the job's retention policy and is applied
  // at once, in the same batch, only while no operator's policy applies
  // (the job's own or its tenant's default) and the actor may delete
  // history. Otherwise it is ignored: the checkpoint begins, the result
  // says why, and the first Begin with each distinct ignored policy
  // records a `policy_ignored` event. An append-only actor's Begin never
  // deletes anything. INVALID_ARGUMENT, with nothing changed, when the
  // policy is invalid.
  // `copy` (see CopyOrigin): INVALID_ARGUMENT naming the field for a
  // copied_from that ValidateCopyPeer refuses.
  absl::StatusOr<BeginResult> BeginCheckpoint(
      absl::string_view job, int64_t step, int32_t world_size,
      const CheckpointMetadata& meta, absl::Duration lease,
      const std::optional<RetentionPolicy>& policy = std::nullopt,
      const Actor& actor = {}, const CopyOrigin& copy = {});

  // The ids among `ids` that the job's tenant does not hold, in input order.
  absl::StatusOr<std::vector<ChunkId>> FindMissingChunks(
      absl::string_view job, absl::Span<const ChunkId> ids);

  // Verifies that SHA-256(bytes) == claimed and stores the chunk for the
  // job's tenant. INVALID_ARGUMENT on mismatch (nothing stored). Returns
  // true when the chunk was new.
  absl::StatusOr<bool> PutChunk(absl::string_view job, const ChunkId& claimed,
                                absl::string_view bytes);

  // Adds `bytes`, the chunk bytes an upload for (job, step) stored new, to
  // that checkpoint's bytes_added, in one metadata write. Does nothing when
  // the checkpoint is absent or no longer pending (a late or stray upload).
  absl::Status AddBytesAdded(absl::string_view job, int64_t step,
                             uint64_t bytes);

  // Records rank `shard.rank`'s manifest. Every referenced chunk must be
  // stored (FAILED_PRECONDITION naming the missing ones otherwise) and is
  // made durable first, and every piece must record its stored chunk's size
  // (INVALID_ARGUMENT naming the tensor, piece and sizes otherwise: no
  // retry can fix it, as a chunk's id fixes its bytes). When the last rank
  // commits, the checkpoint becomes COMMITTED in one durable batch, which also
  // deletes whatever the job's retention policy (if any) no longer keeps (which
  // can be this very checkpoint when it is older than the ones the policy
  // keeps: a late step under max_to_keep, unless it was begun with
  // CopyOrigin::pin and commits pinned), unless the last rank's `actor`
  // may not delete history (a writer: the policy then waits for an admin's
  // Prune). Recommitting an identical shard is OK; a different one is
  // FAILED_PRECONDITION.
  //
  // Sharded tensors (a name some rank holds only part of) must keep the
  // layout rule of common/shard_layout.h: ranks agree on dtype and global
  // shape, boxes never overlap (identical replicas may), and the last
  // commit finds the global shape covered. Each shard is checked against
  // every shard committed before it, kept in memory (layouts_). INVALID_
  // ARGUMENT naming the tensor and the overlap or gap otherwise; the
  // refused shard is not stored, no event is recorded and the checkpoint
  // stays pending, so the rank may commit a corrected shard.
  //
  // A delta entry (TensorEntry::delta_base_step) needs its base to be an
  // older committed checkpoint of the job with a tensor entry of the same
  // name, dtype, global shape and box in some shard; FAILED_PRECONDITION
  // naming the tensor and the base otherwise. The record's base_steps
  // becomes the union of the bases of all its committed shards; retention
  // and DeleteCheckpoint keep those bases while the record exists.
  absl::StatusOr<CommitResult> CommitShard(absl::string_view job, int64_t step,
                                           int32_t world_size,
                                           const ShardManifest& shard,
                                           const Actor& actor = {});

  // Marks a pending checkpoint ABORTED and drops its shards. NOT_FOUND when
  // absent, FAILED_PRECONDITION when already committed, OK when aborted.
  absl::Status AbortCheckpoint(absl::string_view job, int64_t step,
                               absl::string_view reason,
                               const Actor& actor = {});

  // The jobs in `scope`, ascending name, each with the policy that applies
  // to it and its origin (a tenant's default for a job without an
  // operator's policy of its own).
  absl::StatusOr<std::vector<JobSummary>> ListJobs(
      const JobScope& scope = JobScope::All());

  // Committed checkpoints (all states with include_uncommitted), ascending
  // step. NOT_FOUND for an unknown job.
  absl::StatusOr<std::vector<CheckpointRecord>> ListCheckpoints(
      absl::string_view job, bool include_uncommitted);

  // A committed checkpoint with its shards; the latest when step is nullopt.
  // NOT_FOUND when there is none (pending and aborted ones do not count).
  // With `restoring_rank` (>= 0, else INVALID_ARGUMENT; not checked against
  // the world size, as a resharded restore may use other ranks) the caller
  // is restoring that rank's shard, and a `restored` event is recorded. A
  // failure to record it is logged and does not fail the restore.
  // (Deprecated for clients, which call ReportRestore after the restore;
  // kept for older ones.)
  absl::StatusOr<Checkpoint> GetManifest(
      absl::string_view job, std::optional<int64_t> step,
      std::optional<int32_t> restoring_rank = std::nullopt,
      const Actor& actor = {});

  // Records a `restored` event: `rank` restored committed checkpoint (job,
  // step). Called by the client once the restore succeeded. INVALID_ARGUMENT
  // for a rank outside [0, max_world_size) (not the checkpoint's world
  // size: a resharded restore may use more ranks); NOT_FOUND when the
  // checkpoint is absent, pending or aborted; the store's error when the
  // event cannot be written.
  absl::Status ReportRestore(absl::string_view job, int64_t step, int32_t rank,
                             const Actor& actor = {});

  // Records a `copied` event "to SERVER JOB@STEP" on committed checkpoint
  // (job, step): a client copied it to `destination` (`ckpt copy`, once the
  // copy committed there). INVALID_ARGUMENT naming the field for a
  // destination ValidateCopyPeer refuses; NOT_FOUND when the checkpoint is
  // absent, pending or aborted; the store's error when the event cannot be
  // written.
  absl::Status ReportCopy(absl::string_view job, int64_t step,
                          const CopyPeer& destination, const Actor& actor = {});

  // A chunk of the job's tenant, verified (ChunkStore::ReadVerifiedBytes):
  // NOT_FOUND when absent, DATA_LOSS when the stored bytes are damaged.
  absl::StatusOr<std::string> ReadChunk(absl::string_view job,
                                        const ChunkId& id);
  // The same, handing `consume` a view of the verified bytes instead of a
  // copy; returns what `consume` returns.
  absl::Status ReadChunkTo(
      absl::string_view job, const ChunkId& id,
      absl::FunctionRef<absl::Status(absl::string_view bytes)> consume);

  // Removes a committed or aborted checkpoint's manifest at once; chunk
  // bytes are reclaimed by GC. NOT_FOUND when absent; FAILED_PRECONDITION
  // for a pending one (abort it instead), for a pinned committed one
  // unless `force` (the event then records the override), and for the
  // delta base of another pending or committed checkpoint (naming those).
  absl::Status DeleteCheckpoint(absl::string_view job, int64_t step,
                                const Actor& actor = {}, bool force = false);

  // With a job: the job's checkpoints and its tenant's chunks, `tenants`
  // its tenant over all of the tenant's jobs (`scope` is not consulted).
  // Without one: the jobs in `scope` (the whole server for All()), `tenants`
  // the tenants of those jobs over their jobs in scope, and the stored bytes
  // and chunks of the scope's tenant (of every tenant for All()). Chunks are
  // shared by a tenant's jobs, so a prefix scope sees its whole tenant's.
  // With a job, also `job_stored`: the chunks its committed checkpoints
  // reference and the part its tenant's other jobs share (JobStoredBytesOf,
  // which reads every manifest of the tenant; see chunk_accounting.cc).
  absl::StatusOr<Stats> GetStats(absl::string_view job,
                                 const JobScope& scope = JobScope::All());

  // Aborts every pending checkpoint whose lease has ended. Returns how many.
  // Also cuts a stored lease reaching past now + max_lease to that (see
  // ServiceOptions::max_lease).
  absl::StatusOr<int> ExpireLeases();

  // --- Retention (see common/retention.h for the rules) ---
  //
  // Every decision below evaluates EvaluateRetention over the job's committed
  // checkpoints (pending and aborted ones are never counted or deleted),
  // each with its pin and delta bases, the bases pending ones use (kept
  // too), and the job's first checkpoint time as the
  // every-N-hours clock start, under lifecycle_mu_; deletions go in one
  // atomic batch. A crash mid-operation leaves either all or none of them.

  // Stores `policy` as the job's, an operator's (the actor's, now), and
  // applies it at once. A job that has not saved yet is created with it.
  // Returns the deleted steps, ascending. INVALID_ARGUMENT (nothing
  // changed) for an invalid policy or job name. An empty policy keeps
  // everything. `warnings`, when given, receives RetentionWarnings of the
  // evaluation (e.g. "keep_best decides nothing: no checkpoint has metric
  // M").
  absl::StatusOr<std::vector<int64_t>> SetRetentionPolicy(
      absl::string_view job, const RetentionPolicy& policy,
      const Actor& actor = {}, std::vector<std::string>* warnings = nullptr);
  // The policy that applies to the job and who set it (policy_owner.h):
  // policy nullopt when none applies. NOT_FOUND for an unknown job.
  absl::StatusOr<AppliedPolicy> GetRetentionPolicy(absl::string_view job);

  // Stores `policy` as the tenant's default (an operator's: the actor's,
  // now). It applies to the tenant's jobs that have no operator's policy of
  // their own at their next commit or prune; nothing is deleted now.
  // INVALID_ARGUMENT (nothing changed) for an invalid tenant name or
  // policy. Who may call it (an admin over the whole tenant) is the
  // caller's decision.
  absl::Status SetTenantDefaultPolicy(absl::string_view tenant,
                                      const RetentionPolicy& policy,
                                      const Actor& actor = {});
  // Removes the job's own policy: what applies then is its tenant's
  // default, if any, and a writer's may be set again. Deletes nothing now
  // (the next commit or prune applies what applies). A `policy_set` event
  // "none (cleared)" when there was one. NOT_FOUND for an unknown job.
  absl::Status ClearRetentionPolicy(absl::string_view job,
                                    const Actor& actor = {});
  // Removes the tenant's default policy; OK when it had none.
  // INVALID_ARGUMENT for an invalid tenant name.
  absl::Status ClearTenantDefaultPolicy(absl::string_view tenant,
                                        const Actor& actor = {});
  // The tenant's default policy (origin source kTenantDefault); policy
  // nullopt when it has none. INVALID_ARGUMENT for an invalid tenant name.
  absl::StatusOr<AppliedPolicy> GetTenantDefaultPolicy(
      absl::string_view tenant);

  // Sets or clears the pin of a committed checkpoint; returns its header.
  // NOT_FOUND when absent or aborted; FAILED_PRECONDITION when pending.
  // Unpinning deletes nothing by itself: the next commit or prune may.
  absl::StatusOr<CheckpointRecord> PinCheckpoint(absl::string_view job,
                                                 int64_t step, bool pinned,
                                                 const Actor& actor = {});

  // Sets (adds or replaces) the tags in `set` and removes those named in
  // `remove` (absent ones ignored) on a committed checkpoint, with one
  // `tags_changed` event when anything changed; returns its header.
  // INVALID_ARGUMENT for a tag against common/tags.h (also too many as a
  // result) or a name in both; NOT_FOUND when absent or aborted;
  // FAILED_PRECONDITION when pending; PERMISSION_DENIED when an actor that
  // may not delete history (a writer) would remove a tag or change a
  // value. On error nothing changed.
  absl::StatusOr<CheckpointRecord> SetCheckpointTags(
      absl::string_view job, int64_t step, const Tags& set,
      const std::vector<std::string>& remove, const Actor& actor = {});

  // One decision per committed checkpoint, ascending step, under `policy`
  // (the job's stored one when nullopt; none stored keeps everything).
  // Unless dry_run, the checkpoints decided delete are deleted in one
  // batch. A dry run returns exactly what a real run at that moment would
  // delete. INVALID_ARGUMENT for an invalid policy, checked before the job
  // is looked up (clients rely on it to probe what a server knows);
  // NOT_FOUND for an unknown job. `warnings` as for SetRetentionPolicy,
  // the same for a dry run and a real one.
  absl::StatusOr<std::vector<RetentionDecision>> Prune(
      absl::string_view job, const std::optional<RetentionPolicy>& policy,
      bool dry_run, const Actor& actor = {},
      std::vector<std::string>* warnings = nullptr);

  // --- Garbage collection (server/service/garbage_collection.cc) ---
  //
  // Deletes every chunk that no stored shard (committed or pending)
  // references and no save in flight holds, then reclaims the disk space.
  // If a referenced chunk is missing, deletes nothing and reports the
  // damaged checkpoints. Safe while saves run (see docs/architecture.md),
  // and to rerun after a crash. One collection at a time. Its log lines name
  // the actor.
  absl::StatusOr<GcReport> CollectGarbage(const GcOptions& options,
                                          const Actor& actor = {});

  // --- Verify and usage ---

  // Checks the committed checkpoints in scope (pending ones are counted as
  // skipped): that every chunk they reference (ReferencedChunks) is stored,
  // and with options.reads_data() that its bytes hash to its id (only the
  // chunks of the read-data subset when one is given). Each distinct
  // (tenant, chunk) is checked once. The metadata is read under the
  // lifecycle lock, chunks without it; damage is re-checked against the
  // metadata at the end, so a checkpoint deleted meanwhile is not reported.
  // Damage is in the report, not the status. NOT_FOUND for an unknown job
  // or a step that is not committed; INVALID_ARGUMENT for a bad subset or a
  // step without a job. `progress`, when set, is called after every batch
  // of existence checks and every chunk read. Without a job, only the jobs
  // in `scope` are checked.
  absl::StatusOr<VerifyReport> Verify(const VerifyOptions& options,
                                      const VerifyProgressFn& progress = {},
                                      const JobScope& scope = JobScope::All());

  // For each checkpoint of `job` (any state), by step: the bytes of the
  // chunks it references and no other pending or committed checkpoint of
  // the job's tenant does, i.e. what deleting it alone lets GC free. Reads
  // every manifest of the tenant. NOT_FOUND for an unknown job.
  absl::StatusOr<std::map<int64_t, uint64_t>> UniqueBytes(
      absl::string_view job);

  // --- Event history ---
  //
  // Recorded: committed (the last rank's commit), aborted (AbortCheckpoint,
  // an expired lease found by ExpireLeases or a late commit; detail: the
  // reason), deleted (DeleteCheckpoint), pruned (every deletion by
  // retention, at commit, when a policy is set and by a non-dry-run Prune;
  // detail: what triggered it, the policy and the decision's reasons),
  // pinned / unpinned (when the pin changes, or with the commit of a
  // checkpoint begun with CopyOrigin::pin), restored (ReportRestore, or
  // GetManifest with a restoring rank), copied (with the commit of a copy,
  // and ReportCopy on its source) and policy_set (when the stored policy
  // changes).

  // The newest `limit` events of `job`, oldest first; 0 means every kept
  // one (at most kMaxEventsPerJob). INVALID_ARGUMENT for a negative limit;
  // NOT_FOUND for an unknown job.
  absl::StatusOr<std::vector<JobEvent>> ListEvents(absl::string_view job,
                                                   int limit);

 private:
  // The record's lease expiry, cut to now + max_lease (a record stored
  // before leases were capped may reach further).
  absl::Time CappedExpiry(const CheckpointRecord& record, absl::Time now) const;
  // Holds `shard`'s pieces against the chunks the job's tenant stores
  // (`ids`: the shard's distinct chunks). INVALID_ARGUMENT naming the
  // tensor, piece and both sizes when a piece records another size than its
  // stored chunk's; else FAILED_PRECONDITION naming the ids not stored.
  absl::Status CheckChunksStored(absl::string_view job, int64_t step,
                                 const ShardManifest& shard,
                                 absl::Span<const ChunkId> ids);
  // Records the use of `ids` on a shared chunk store (ChunkStore::MarkUsed);
  // FAILED_PRECONDITION naming those no longer stored.
  absl::Status MarkChunksUsed(absl::string_view job, int64_t step,
                              const ShardManifest& shard,
                              absl::Span<const ChunkId> ids);
  // FAILED_PRECONDITION naming the ids of `ids` not `present`, else OK.
  static absl::Status RefuseMissingChunks(absl::string_view job, int64_t step,
                                          int32_t rank,
                                          absl::Span<const ChunkId> ids,
                                          const std::vector<bool>& present);
  // The layout of pending checkpoint `record`'s committed shards
  // (layouts_), read back from the store and kept when absent (its first
  // commit, or the first since this service started) or out of step with
  // the record (other ranks or another attempt). The store's error, or
  // INVALID_ARGUMENT when the stored shards break the rule.
  absl::StatusOr<ShardLayout*> PendingLayout(const CheckpointRecord& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(lifecycle_mu_);
  // Drops the kept layout of (job, step): it committed or aborted.
  void ForgetLayout(absl::string_view job, int64_t step)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(lifecycle_mu_);
  // OK when every delta entry of `shard` (for `step`) has its base (see
  // CommitShard); FAILED_PRECONDITION saying what is wrong otherwise.
  absl::Status CheckDeltaBases(absl::string_view job, int64_t step,
                               const ShardManifest& shard)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(lifecycle_mu_);
  // The header of committed checkpoint (job, step); NOT_FOUND saying why
  // for an absent, pending or aborted one.
  absl::StatusOr<CheckpointRecord> GetCommitted(absl::string_view job,
                                                int64_t step);
  // The chunks the committed checkpoints of `job` reference, and the part
  // its tenant's other jobs (their pending and committed checkpoints)
  // reference too. Reads every manifest of the tenant, without a lock.
  absl::StatusOr<JobStoredBytes> JobStoredBytesOf(absl::string_view job);
  // The job's record; NOT_FOUND when unknown.
  absl::StatusOr<JobRecord> GetJobRecord(absl::string_view job);
  // Decisions for the committed ones among `records` (any states) at `now`
  // (the cap of keep_within's newest time), and into `warnings` when
  // given, RetentionWarnings of the same inputs.
  static absl::StatusOr<std::vector<RetentionDecision>> Decide(
      const JobRecord& job, const RetentionPolicy& policy,
      const std::vector<CheckpointRecord>& records, absl::Time now,
      std::vector<std::string>* warnings = nullptr);
  // The policy that applies to `job` (policy_owner.h). Fills in the origin
  // of a policy stored before origins were, inferred from the job's events;
  // *origin_filled says whether it did (then persist the record when
  // writing it anyway).
  absl::StatusOr<AppliedPolicy> ApplicablePolicy(JobRecord* job,
                                                 bool* origin_filled = nullptr);
  // Evaluates `policy` on the job's stored checkpoints and adds the
  // deletions to `batch`. REQUIRES: lifecycle_mu_ held.
  absl::StatusOr<std::vector<RetentionDecision>> DecideAndDelete(
      const JobRecord& job, const RetentionPolicy& policy, MetadataBatch* batch,
      std::vector<std::string>* warnings = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(lifecycle_mu_);

  // The committed checkpoints (with shards) that Verify covers, the pending
  // ones it skips, and damage found in the metadata itself.
  struct VerifySnapshot;
  absl::StatusOr<VerifySnapshot> SnapshotForVerify(const VerifyOptions& options,
                                                   const JobScope& scope)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(lifecycle_mu_);

  ChunkStore* const chunks_;
  MetadataStore* const metadata_;
  Clock* const clock_;
  const ServiceOptions options_;
  // Serializes read-modify-write of checkpoint headers. Chunk uploads and
  // reads do not take it.
  absl::Mutex lifecycle_mu_;
  // Per pending checkpoint (job, step), the layout of its committed shards
  // with the create time of the attempt it belongs to, so that each commit
  // is checked against all of them without reading them back (a few MiB for
  // a save of hundreds of ranks x thousands of sharded tensors; see
  // common/shard_layout.h). Dropped when the checkpoint commits or aborts.
  struct KeptLayout {
    absl::Time create_time;
    ShardLayout layout;
  };
  absl::flat_hash_map<std::pair<std::string, int64_t>, KeptLayout> layouts_
      ABSL_GUARDED_BY(lifecycle_mu_);

  // When this service started: pending checkpoints begun before it may have
  // uploaded chunks that `guard_` never heard of.
  const absl::Time start_time_;
  ChunkGuard guard_;
  absl::Mutex gc_mu_ ABSL_ACQUIRED_BEFORE(lifecycle_mu_);  // one collection
  // Bumped under lifecycle_mu_ before and after each batch of sweep deletes.
  // A commit that saw it change since its unlocked presence check checks
  // again under the lock.
  std::atomic<uint64_t> sweep_generation_{0};
};

}  // namespace ckpt::server
