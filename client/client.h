// The ckpt C++ client library: saves and restores sharded checkpoints on a
// ckpt-server. Mentions no gRPC or Protobuf type; the transport lives in
// client.cc.
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
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/chunking.h"
#include "common/event.h"
#include "common/gc_report.h"
#include "common/manifest.h"
#include "common/retention.h"
#include "common/stats.h"
#include "common/verify.h"

namespace ckpt::client {

struct ConnectOptions {
  // Largest message sent or received; must be at least kMaxChunkBytes plus
  // framing. Default: 64 MiB (the server's limit too).
  int max_message_bytes = 64 << 20;
  // Deadline of each unary call (streams have none, as a large save may take
  // long). Default: 5 minutes; a commit makes every chunk durable first.
  absl::Duration rpc_timeout = absl::Minutes(5);
  // When positive, Connect waits this long for the server to be reachable
  // and fails with UNAVAILABLE otherwise; zero connects lazily on the first
  // call. Default: zero.
  absl::Duration connect_timeout = absl::ZeroDuration();
  // A connection whose server answers no HTTP/2 ping for keepalive_timeout
  // is closed, failing its calls with UNAVAILABLE: a frozen or unreachable
  // server then ends streams (which have no deadline) instead of hanging
  // them. Pings are sent only while calls are active, every keepalive_time.
  // Defaults: 60 s and 20 s. The server accepts pings every 10 s or less
  // often; more frequent ones make it close the connection.
  absl::Duration keepalive_time = absl::Seconds(60);
  absl::Duration keepalive_timeout = absl::Seconds(20);
  // Restores from a server on this host go through shared memory
  // (ReadChunksIntoFile): the server writes the verified chunks into the
  // restored tensors' memory. Falls back to streaming when the server
  // cannot. Default: true.
  bool shared_memory_restore = true;
};

// One tensor (region) a rank saves. `bytes` is a view of the caller's memory,
// row-major bytes of `box`; it is never copied into a staging buffer and
// must stay valid and unchanged during SaveShard.
struct TensorData {
  std::string name;
  DType dtype = DType::kUint8;
  std::vector<int64_t> global_shape;
  Box box;
  absl::string_view bytes;
  // Set to save a row delta (Check-N-Run) instead of the whole tensor: only
  // the rows `delta_rows` (indices along dimension 0 of the box, strictly
  // ascending) of `bytes` are stored, on top of this tensor (same name,
  // dtype, shape and box) in committed checkpoint `delta_base_step` of the
  // job. The caller guarantees every other row equals the base's; the
  // server checks that the base exists and matches (FAILED_PRECONDITION
  // otherwise). The rows are copied once, into the encoded delta (common/
  // row_delta.h), which is chunked and uploaded like any tensor's bytes.
  // INVALID_ARGUMENT when delta_rows are not strictly ascending, reach past
  // the box's rows, or are given without delta_base_step.
  // IncrementalSaver (client/incremental.h) fills these in.
  std::optional<int64_t> delta_base_step;
  absl::Span<const uint64_t> delta_rows;
  // Set to save a float32 tensor quantized (opt-in, lossy; Check-N-Run):
  // row-wise to 2, 3, 4 or 8 bits with the range search of common/
  // quantize.h, on options.hash_threads threads (about 15 MB/s per core).
  // The entry records the width and the error measured over the tensor,
  // and restores return the dequantized float32 values. Rows are along
  // dimension 0 of the box; a box of at most one dimension is one row.
  // INVALID_ARGUMENT for another width or dtype, an empty box, a NaN or
  // infinite value, or together with delta_base_step (a quantized tensor
  // is always saved in full, and cannot be a row delta's base).
  std::optional<int> quantize_bits;
};

struct SaveOptions {
  int32_t rank = 0;
  int32_t world_size = 1;
  // Recorded by the first rank to begin the checkpoint; ignored for ranks
  // joining a pending one.
  CheckpointMetadata metadata;
  // Chunk size, 1..kMaxChunkBytes. The same tensor bytes give the same
  // chunks only with the same value. Default: kDefaultChunkBytes (4 MiB).
  size_t chunk_bytes = kDefaultChunkBytes;
  // Threads hashing chunks while earlier batches upload. Default: 2.
  int hash_threads = 2;
  // Lease of the pending checkpoint; zero means the server's default.
  absl::Duration lease = absl::ZeroDuration();
  // When set, replaces the job's retention policy as the checkpoint begins
  // (applied at once by the server). Default: nullopt (keep the stored one).
  std::optional<RetentionPolicy> retention_policy;
};

struct SaveResult {
  uint64_t logical_bytes = 0;  // bytes of this rank's tensors
  uint64_t chunks_total = 0;   // chunks of this rank's tensors, repeats too
  uint64_t chunks_sent = 0;    // chunks the server lacked and was sent
  uint64_t bytes_sent = 0;     // chunk bytes sent
  // Per tensor saved quantized (TensorData::quantize_bits): its width and
  // the error measured, as recorded in the manifest.
  std::map<std::string, Quantization> quantized;
  // This rank's commit completed the checkpoint (it was the last rank).
  bool checkpoint_committed = false;
  // The checkpoint header after this rank's commit.
  CheckpointRecord checkpoint;
};

// Defined in common/; also ckpt::client's, as the rest of this API.
using ::ckpt::JobStats;
using ::ckpt::JobSummary;  // common/manifest.h
using ::ckpt::Stats;
using ::ckpt::TenantStats;

// A listed checkpoint with what deleting it alone would free.
struct CheckpointUsage {
  CheckpointRecord record;
  // Bytes of the chunks it references and no other pending or committed
  // checkpoint of its tenant does; nullopt when the server did not say
  // (a checkpoint committed while the listing was made).
  std::optional<uint64_t> unique_bytes;
};

// Bytes fetched so far of a restore's total (each distinct chunk once).
using RestoreProgressFn =
    std::function<void(uint64_t bytes_done, uint64_t bytes_total)>;
using VerifyProgressFn = std::function<void(const VerifyProgress&)>;

struct RestoredTensor {
  TensorEntry entry;
  // entry.ByteSize() bytes, row-major over entry.box, page-aligned and
  // writable. Valid while `storage` (or a copy of it) lives.
  absl::Span<char> bytes;
  // Owns `bytes`; freeing it gives the tensor's memory back.
  std::shared_ptr<void> storage;
};

// Thread-safe: one Client may serve many threads (e.g. several ranks in one
// process). Every error is the server's status (code and message) or a
// transport status (UNAVAILABLE, DEADLINE_EXCEEDED, ...).
class Client {
 public:
  // `address` is HOST:PORT (any gRPC target). INVALID_ARGUMENT for an empty
  // address; UNAVAILABLE when connect_timeout is set and runs out.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(
      const std::string& address, ConnectOptions options = {});

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
  // Pass `restoring_rank` when fetching it to restore that rank's shard: the
  // server then records a `restored` event in the job's history.
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
  absl::Status ReadTensor(absl::string_view job, const TensorEntry& entry,
                          absl::Span<char> out);
  // The same for several entries of one job at once: each chunk is fetched
  // once over all of them and each base manifest read once.
  // REQUIRES: outs.size() == entries.size().
  absl::Status ReadTensors(absl::string_view job,
                           absl::Span<const TensorEntry> entries,
                           absl::Span<const absl::Span<char>> outs);

  // All tensors rank `rank` wrote in checkpoint (job, step | latest), each
  // chunk fetched once and written straight into its destination; recorded
  // as a `restored` event in the job's history. Row delta entries are
  // rebuilt as ReadTensor does (each base manifest fetched once per call);
  // their deltas are fetched into scratch pages after the tensors, which
  // are given back once applied; so are quantized entries, dequantized
  // into their tensors. The returned entries are the checkpoint's
  // own (a rebuilt one keeps its delta_base_step).
  // INVALID_ARGUMENT when rank is outside the checkpoint's world size.
  absl::StatusOr<std::vector<RestoredTensor>> RestoreShard(
      absl::string_view job, std::optional<int64_t> step, int32_t rank);
  // The same for a manifest already fetched with GetManifest (records no
  // restore event: fetch it with a restoring_rank for that). `progress`,
  // when set, is called (one call at a time) after every chunk fetched.
  absl::StatusOr<std::vector<RestoredTensor>> RestoreShard(
      const Checkpoint& checkpoint, int32_t rank,
      const RestoreProgressFn& progress = {});

  absl::Status AbortCheckpoint(absl::string_view job, int64_t step,
                               absl::string_view reason);
  absl::Status DeleteCheckpoint(absl::string_view job, int64_t step);
  // Whole server when job is empty.
  absl::StatusOr<Stats> GetStats(absl::string_view job);

  // Retention (rules in common/retention.h). Stores the job's policy and
  // applies it at once; returns the steps that deleted. INVALID_ARGUMENT
  // for an invalid policy (nothing changed), NOT_FOUND for an unknown job.
  absl::StatusOr<std::vector<int64_t>> SetRetentionPolicy(
      absl::string_view job, const RetentionPolicy& policy);
  // nullopt when the job has none.
  absl::StatusOr<std::optional<RetentionPolicy>> GetRetentionPolicy(
      absl::string_view job);
  // Pins (or with pinned=false unpins) a committed checkpoint; returns its
  // header. NOT_FOUND when absent, FAILED_PRECONDITION when pending.
  absl::StatusOr<CheckpointRecord> PinCheckpoint(absl::string_view job,
                                                 int64_t step,
                                                 bool pinned = true);
  // One decision per committed checkpoint (ascending step) under `policy`,
  // or the job's stored one when nullopt. Unless dry_run, those decided
  // delete are deleted, atomically.
  absl::StatusOr<std::vector<RetentionDecision>> PruneCheckpoints(
      absl::string_view job, const std::optional<RetentionPolicy>& policy,
      bool dry_run);

  // Runs a garbage collection on the server (see GcReport); OK with
  // report.damaged filled when referenced chunks are missing.
  absl::StatusOr<GcReport> CollectGarbage(bool dry_run);

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

 private:
  struct Impl;
  struct PrivateTag {};

 public:
  Client(PrivateTag, std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace ckpt::client
