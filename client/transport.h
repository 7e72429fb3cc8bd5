// Transport: the calls the client library makes to a ckpt-server, in the
// data model's types only (common/manifest.h, common/retention.h, ...), so
// that the save pipeline, the restore plan and the Client facade neither
// include gRPC nor need a server to be tested. The one production
// implementation is the gRPC one (client/transport/grpc_transport.h); tests
// use an in-memory fake (tests/testing/fake_transport.h).
//
// Every method is safe to call from many threads at once, and every error
// is the server's status (code and message, unchanged) or a transport
// status (UNAVAILABLE, DEADLINE_EXCEEDED, ...). Calls carry the
// transport's own deadline where one is noted; streams have none.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "client/types.h"
#include "common/chunk_id.h"
#include "common/event.h"
#include "common/gc_report.h"
#include "common/manifest.h"
#include "common/retention.h"
#include "common/shared_file.h"
#include "common/stats.h"
#include "common/verify.h"

namespace ckpt::client {

// Where the bytes of one distinct chunk go (a chunk may fill several spots).
struct ChunkSink {
  ChunkId id;
  uint64_t size = 0;
  std::vector<char*> destinations;
  // Bytes to write: a chunk repeated many times (zero-filled optimizer
  // state, say) costs one read but a write per place.
  uint64_t WriteBytes() const { return size * destinations.size(); }
};

// Checks that answer number `answer` of one read, which the server says is
// the chunk with raw digest `answered_id` and holds `data`, is `sink`'s
// chunk, and copies it to each of the sink's destinations. DATA_LOSS
// otherwise, nothing copied. Every Transport's ReadChunks hands each answer
// to it, so this rule has one home.
absl::Status DeliverChunk(const ChunkSink& sink, size_t answer,
                          absl::string_view answered_id,
                          absl::string_view data);

// Where each chunk goes in a registered file: common/shared_file.h.
using ::ckpt::ChunkPlacement;

// A restore memfd of this process registered with a server on this host
// (Transport::RegisterSharedFile): while this object lives, the server may
// write into the file what ReadChunksIntoFile asks under handle(); its
// destruction ends the registration (the server closes its descriptor).
class SharedFileRegistration {
 public:
  virtual ~SharedFileRegistration() = default;
  virtual absl::string_view handle() const = 0;
};

// How a rank begins (or joins) a pending checkpoint.
struct BeginOptions {
  int32_t world_size = 1;
  // Recorded by the first rank to begin the checkpoint.
  CheckpointMetadata metadata;
  // Lease of the pending checkpoint, rounded up to whole seconds on the
  // wire (a sub-second lease must not become "the server's default").
  // Default: zero, the server's default.
  absl::Duration lease = absl::ZeroDuration();
  // When set, replaces the job's retention policy as the checkpoint begins.
  // Default: nullopt (keep the stored one).
  std::optional<RetentionPolicy> retention_policy;
  // The checkpoint commits pinned (as if PinCheckpoint came in the same
  // batch as the last commit, so that retention at that commit keeps it):
  // a copy of a pinned checkpoint. Recorded by the first rank to begin it.
  // Default: false.
  bool pin = false;
  // Set for a copy (`ckpt copy`): where the checkpoint comes from, kept in
  // its record (CheckpointRecord::copied_from) and recorded as a `copied`
  // event with its commit. Recorded by the first rank to begin it.
  // INVALID_ARGUMENT for a server label that is empty, too long or not
  // printable, or an invalid job name. Default: nullopt (not a copy).
  // With either of these set, a server that ignores them (one older than
  // copies) makes BeginCheckpoint UNIMPLEMENTED, after it created the
  // pending checkpoint (abort it).
  std::optional<CopyPeer> copied_from;
};

// What a BeginCheckpoint answered.
struct BeginReply {
  // Non-empty when the server ignored options.retention_policy: why (an
  // operator's policy applies, or the caller is append-only).
  std::string retention_policy_ignored;
};

// What a CommitShard answered.
struct CommitResult {
  // This commit completed the checkpoint (it was the last rank's).
  bool checkpoint_committed = false;
  // The checkpoint header after the commit.
  CheckpointRecord checkpoint;
};

// One upload of chunks for a pending checkpoint (one PutChunks stream),
// opened lazily: nothing reaches the server before the first Add. Not
// thread-safe: one thread adds and closes. Destroying it without a Close
// that returned abandons the upload (chunks already sent may be stored).
class ChunkUploadStream {
 public:
  virtual ~ChunkUploadStream() = default;

  // Queues the chunk `id` with bytes `data` (copied; the caller may reuse
  // its memory at once) and sends what is queued when enough is. The
  // server checks the hash. An error ends the stream: the server's status
  // when it stopped the upload, UNAVAILABLE when it closed it early,
  // DEADLINE_EXCEEDED when the server took no data for a while (the gRPC
  // transport: ConnectOptions::stream_stall_timeout, counting only time
  // spent waiting on the server).
  // REQUIRES: Close has not been called.
  virtual absl::Status Add(const ChunkId& id, absl::string_view data) = 0;

  // Sends what is queued and ends the upload; OK means the server took
  // every chunk added. OK at once, without a call, when nothing was added.
  // DEADLINE_EXCEEDED as Add's, when the server does not answer.
  virtual absl::Status Close() = 0;

  // Chunks and bytes added so far (all of them sent once Close is OK).
  virtual uint64_t chunks_sent() const = 0;
  virtual uint64_t bytes_sent() const = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;

  // --- Saving ---

  // Begins checkpoint (job, step) as pending, or joins it when another rank
  // began it (idempotent across ranks); an aborted one starts afresh.
  // ALREADY_EXISTS when it is committed, FAILED_PRECONDITION when the
  // pending one has another world size, INVALID_ARGUMENT for an invalid
  // retention policy (nothing changed).
  virtual absl::StatusOr<BeginReply> BeginCheckpoint(
      absl::string_view job, int64_t step, const BeginOptions& options) = 0;

  // Those of `ids` whose chunks the job's tenant does not hold. Any number
  // of ids: the transport splits them over as many requests as the wire
  // allows. INTERNAL when the server answers a malformed hash.
  virtual absl::StatusOr<absl::flat_hash_set<ChunkId>> FindMissingChunks(
      absl::string_view job, absl::Span<const ChunkId> ids) = 0;

  // A new upload of chunks for pending checkpoint (job, step) (counted in
  // its bytes_added). Never null.
  virtual std::unique_ptr<ChunkUploadStream> OpenUpload(absl::string_view job,
                                                        int64_t step) = 0;

  // Commits rank shard.rank's shard of pending checkpoint (job, step); the
  // last rank's commit commits the checkpoint. Recommitting an identical
  // shard is OK. FAILED_PRECONDITION when the server lacks a chunk the
  // shard references, and for other refusals (a delta's base missing or
  // without a matching tensor, a different shard already committed);
  // nothing is committed then.
  virtual absl::StatusOr<CommitResult> CommitShard(
      absl::string_view job, int64_t step, int32_t world_size,
      const ShardManifest& shard) = 0;

  // --- Reading ---

  // A committed checkpoint with all shards; the latest when step is nullopt.
  // With `restoring_rank` (deprecated: for callers that cannot report after
  // the restore), the server records a `restored` event before anything is
  // read. NOT_FOUND when absent.
  virtual absl::StatusOr<Checkpoint> GetManifest(
      absl::string_view job, std::optional<int64_t> step,
      std::optional<int32_t> restoring_rank) = 0;

  // Has the server record that `rank` restored committed checkpoint (job,
  // step) (a `restored` event). NOT_FOUND when it is absent or not
  // committed; UNIMPLEMENTED from a server older than the call.
  virtual absl::Status ReportRestore(absl::string_view job, int64_t step,
                                     int32_t rank) = 0;

  // Has the server record that committed checkpoint (job, step) was copied
  // to `destination` (a `copied` event on this, the source, server), once
  // the copy committed there. Reader role, as ReportRestore. NOT_FOUND
  // when it is absent or not committed, INVALID_ARGUMENT for a bad label
  // (see BeginOptions::copied_from); UNIMPLEMENTED from an older server.
  virtual absl::Status ReportCopy(absl::string_view job, int64_t step,
                                  const CopyPeer& destination) = 0;

  // Every job with its committed checkpoints' totals.
  virtual absl::StatusOr<std::vector<JobSummary>> ListJobs() = 0;

  // Ascending step; committed only unless include_uncommitted; NOT_FOUND
  // for an unknown job. Each
  // usage's unique_bytes is filled only with `with_unique_bytes` (costlier:
  // the server reads every manifest of the job's tenant).
  virtual absl::StatusOr<std::vector<CheckpointUsage>> ListCheckpoints(
      absl::string_view job, bool include_uncommitted,
      bool with_unique_bytes) = 0;

  // Fetches the chunks of `sinks` (verified by the server) in order, each
  // through DeliverChunk into its destinations, and calls `on_chunk(size)`
  // after each when set (from this thread). Any number of sinks: the
  // transport splits them over as many streams as the wire allows, one
  // after the other. DATA_LOSS when an answer is not the chunk asked for or
  // the server sends fewer chunks than asked; the server's status (e.g.
  // DATA_LOSS for a corrupt chunk, NOT_FOUND for an absent one) otherwise;
  // DEADLINE_EXCEEDED when the server sends no chunk for a while (the gRPC
  // transport: ConnectOptions::stream_stall_timeout), however long the
  // whole read takes. On error, destinations may hold some chunks' bytes.
  // REQUIRES: every destination has room for its sink's size.
  virtual absl::Status ReadChunks(
      absl::string_view job, absl::Span<const ChunkSink> sinks,
      const std::function<void(uint64_t)>& on_chunk) = 0;

  // Passes `memfd` (a memfd sealed with F_SEAL_SHRINK | F_SEAL_GROW,
  // client/restore_buffer.h) to a server on this host, which keeps it open
  // until the registration is destroyed. The server never opens a file of
  // ours by name or number: it gets the descriptor from us.
  // FAILED_PRECONDITION or UNIMPLEMENTED when the server cannot take it (it
  // is elsewhere, older, has shared memory turned off, or refuses the
  // file): the caller then reads the chunks with ReadChunks.
  virtual absl::StatusOr<std::unique_ptr<SharedFileRegistration>>
  RegisterSharedFile(int memfd) = 0;

  // Has a server on this host write `chunks` (verified) at their offsets
  // into the file registered under `file_handle`, in one request.
  // FAILED_PRECONDITION or UNIMPLEMENTED when the server cannot (it is
  // elsewhere, older, or refuses): it wrote nothing then, and the caller
  // reads the chunks with ReadChunks instead.
  virtual absl::Status ReadChunksIntoFile(
      absl::string_view job, absl::string_view file_handle,
      absl::Span<const ChunkPlacement> chunks) = 0;

  // --- Administration ---

  // Marks a pending checkpoint aborted, recording `reason`. NOT_FOUND when
  // absent, FAILED_PRECONDITION when already committed.
  virtual absl::Status AbortCheckpoint(absl::string_view job, int64_t step,
                                       absl::string_view reason) = 0;
  // Removes a committed or aborted checkpoint (its chunks go at the next
  // GC). NOT_FOUND when absent; FAILED_PRECONDITION for a pending one and
  // for the delta base of another checkpoint.
  // `force` overrides a pin (else FAILED_PRECONDITION).
  virtual absl::Status DeleteCheckpoint(absl::string_view job, int64_t step,
                                        bool force) = 0;
  // Whole server when job is empty.
  virtual absl::StatusOr<Stats> GetStats(absl::string_view job) = 0;

  // Stores the job's policy (an operator's) and applies it at once; the
  // steps deleted. A job that has not saved yet is created with it (an
  // older server: NOT_FOUND). INVALID_ARGUMENT for an invalid policy
  // (nothing changed). `warnings`, when not null, receives the server's
  // (e.g. "keep_best decides nothing: no checkpoint has metric M").
  // FAILED_PRECONDITION, with nothing sent, for a policy that uses
  // restic's rules (UsesResticRules) on a server that predates them; the
  // same for BeginOptions::retention_policy, SetTenantDefaultPolicy and
  // PruneCheckpoints.
  virtual absl::StatusOr<std::vector<int64_t>> SetRetentionPolicy(
      absl::string_view job, const RetentionPolicy& policy,
      std::vector<std::string>* warnings) = 0;
  // The policy that applies to the job and who set it. NOT_FOUND for an
  // unknown job.
  virtual absl::StatusOr<PolicyInfo> GetRetentionPolicy(
      absl::string_view job) = 0;
  // The tenant's default policy (for its jobs without an operator's policy
  // of their own), set by an admin over the whole tenant; it applies at
  // each job's next commit or prune. INVALID_ARGUMENT for an invalid
  // tenant or policy. An older server ignores the tenant and answers
  // INVALID_ARGUMENT for the empty job name.
  virtual absl::Status SetTenantDefaultPolicy(
      absl::string_view tenant, const RetentionPolicy& policy) = 0;
  virtual absl::StatusOr<PolicyInfo> GetTenantDefaultPolicy(
      absl::string_view tenant) = 0;
  // Removes the job's own policy (with tenant_default, `name` is a tenant
  // and its default goes); deletes nothing at once. NOT_FOUND for an
  // unknown job. An older server stores an empty policy (keep everything)
  // instead.
  virtual absl::Status ClearRetentionPolicy(absl::string_view name,
                                            bool tenant_default) = 0;
  // Pins or unpins a committed checkpoint; its header after. NOT_FOUND
  // when absent, FAILED_PRECONDITION when pending.
  virtual absl::StatusOr<CheckpointRecord> PinCheckpoint(absl::string_view job,
                                                         int64_t step,
                                                         bool pinned) = 0;
  // Sets (adds or replaces) and removes tags of a committed checkpoint; its
  // header after. NOT_FOUND when absent, FAILED_PRECONDITION when pending.
  virtual absl::StatusOr<CheckpointRecord> SetCheckpointTags(
      absl::string_view job, int64_t step,
      const std::map<std::string, std::string>& set,
      const std::vector<std::string>& remove) = 0;
  // One decision per committed checkpoint under `policy` (the stored one
  // when nullopt); unless dry_run those deciding delete are deleted.
  virtual absl::StatusOr<std::vector<RetentionDecision>> PruneCheckpoints(
      absl::string_view job, const std::optional<RetentionPolicy>& policy,
      bool dry_run, std::vector<std::string>* warnings) = 0;

  // A garbage collection on the server (OK with report.damaged filled when
  // referenced chunks are missing), with a deadline of hours rather than
  // the usual one.
  virtual absl::StatusOr<GcReport> CollectGarbage(const GcOptions& options) = 0;

  // Verifies checkpoints; damage is in the report (OK status). `progress`,
  // when set, is called from this thread as the server reports (progress
  // of a stage this build does not know is skipped). No deadline, but
  // DEADLINE_EXCEEDED when the server sends nothing (progress, heartbeat)
  // for a while (the gRPC transport: ConnectOptions::stream_stall_timeout).
  // NOT_FOUND for an unknown job or step, INVALID_ARGUMENT for a bad
  // subset, INTERNAL when the server ends without a report.
  virtual absl::StatusOr<VerifyReport> VerifyCheckpoints(
      const VerifyOptions& options, const VerifyProgressFn& progress) = 0;

  // The job's events, oldest first; the newest `limit`, or all when 0.
  // NOT_FOUND for an unknown job.
  virtual absl::StatusOr<std::vector<JobEvent>> ListEvents(
      absl::string_view job, int limit) = 0;
};

}  // namespace ckpt::client
