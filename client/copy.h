// Copying a job's committed checkpoints from one server to another
// (`ckpt copy`, Client::Copy), through this client: A -> client -> B. Only
// the chunks B's tenant lacks are read from A and sent; B re-hashes each
// on receipt as for any save. Each checkpoint is begun on B as a copy
// (BeginOptions::copied_from, pinned when A's is), its ranks' manifests
// committed unchanged (quantization records, delta bases and boxes
// included), so that it is never visible on B before every rank's shard
// is; delta bases are copied before the deltas on them. A rerun after an
// interruption joins the pending copy and sends only what B still lacks.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/transport.h"
#include "common/manifest.h"
#include "common/retention.h"

namespace ckpt::client {

struct CopyRequest {
  std::string job;  // on the source
  // The name on the target; empty: the same as `job`.
  std::string target_job;
  // The checkpoints asked for: these steps (each must be committed on the
  // source), or when empty every committed one, or only the latest with
  // `latest`. The delta bases they need (transitively) are added.
  std::vector<int64_t> steps;
  bool latest = false;
  // Copy the source job's retention policy, when the target job has none
  // yet (the first copy). Pins are copied with each checkpoint either way.
  bool copy_policy = true;
  // Plan only: find what the target lacks (FindMissingChunks) and report
  // it, changing nothing anywhere.
  bool dry_run = false;
  // Labels of the two servers for the `copied` events and records (the
  // addresses dialled): CopyPeer::server on each side.
  std::string source_label;
  std::string target_label;
  // Chunk bytes read from the source per batch before they are sent (the
  // copy's memory is about twice this: the batch being sent and the next,
  // read meanwhile). Default: 64 MiB.
  uint64_t batch_bytes = uint64_t{64} << 20;
  // When positive, chunk bytes are sent at most this fast (a migration over
  // a shared link). Default: 0 (as fast as both servers go).
  uint64_t max_bytes_per_second = 0;
  // A source that sends no chunk for this long stops the copy with
  // DEADLINE_EXCEEDED, and the target's pending checkpoint is no longer
  // renewed (its lease ends it unless a rerun resumes it first). The gRPC
  // transport bounds its own reads likewise (ConnectOptions::
  // stream_stall_timeout, which also bounds the target's uploads);
  // `ckpt copy --stall-timeout` sets this and both clients' bound.
  // Default: 2 minutes.
  absl::Duration source_stall_timeout = absl::Minutes(2);
};

// What happened to one checkpoint of the copy.
struct CopiedCheckpoint {
  int64_t step = 0;
  enum class Outcome {
    kCopied,        // committed on the target by this run
    kAlreadyThere,  // the target held the same checkpoint: nothing sent
    kWouldCopy,     // dry run: would be copied
  };
  Outcome outcome = Outcome::kCopied;
  // Not asked for: copied as the delta base of one that was.
  bool as_delta_base = false;
  // The steps its row deltas are taken against (empty: a full checkpoint).
  std::vector<int64_t> base_steps;
  // Pinned on the target after the copy (a dry run: it would be). A pin on
  // the source is copied, also onto a checkpoint already there.
  bool pinned = false;
  uint64_t logical_bytes = 0;      // its tensors' bytes
  uint64_t chunks_referenced = 0;  // distinct chunks its shards reference
  uint64_t bytes_referenced = 0;
  uint64_t chunks_sent = 0;  // of those, sent (dry run: would send)
  uint64_t bytes_sent = 0;
};

struct CopyReport {
  std::string source_job;
  std::string target_job;
  std::vector<CopiedCheckpoint> checkpoints;  // in copy order (ascending)
  uint64_t chunks_sent = 0;                   // over the whole copy
  uint64_t bytes_sent = 0;
  // The source's policy, set on the target by this copy (nullopt: none was:
  // --no-policy, the source has none, the target already had one, or a
  // dry run that would set `policy_would_set`).
  std::optional<RetentionPolicy> policy_set;
  std::optional<RetentionPolicy> policy_would_set;
  // Steps the target's retention deleted at the copy's commits.
  std::vector<int64_t> pruned_on_target;
  // A `copied` event could not be recorded on the source (e.g. an older
  // server: UNIMPLEMENTED); the copy itself succeeded. Empty when it was.
  std::string source_report_error;
  // Not OK when the source's policy was to be set on the target (see
  // policy_set) and could not be, e.g. PERMISSION_DENIED for a token that
  // is not the target job's admin. Everything else was copied: the report
  // is complete, and a rerun sends nothing more (with --no-policy, or a
  // token that may set it). The CLI prints the report, then this error.
  absl::Status policy_error;
};

// Progress, called from the copying thread: after the plan (bytes_total
// known) and then after every chunk sent. bytes_total grows if the copy
// must send more than planned (chunks lost on the target meanwhile).
struct CopyProgress {
  int64_t step = 0;  // the checkpoint being copied
  // Among the checkpoints this copy commits (not those already there).
  size_t checkpoint_index = 0;
  size_t checkpoint_count = 0;
  uint64_t bytes_done = 0;   // chunk bytes sent so far, whole copy
  uint64_t bytes_total = 0;  // chunk bytes the copy sends in all
};
using CopyProgressFn = std::function<void(const CopyProgress&)>;

// Copies per `request` from `source` to `target` (which may be the same
// server, under another job name). Everything asked is checked before
// anything is sent, and a refusal changes nothing on either server:
// INVALID_ARGUMENT for a bad request (labels, job names, the same job on
// both sides); NOT_FOUND for an unknown job or a step the source lacks;
// FAILED_PRECONDITION naming the step when the target already holds a
// committed checkpoint of that step that differs from the source's
// (world size, manifests, metrics, tags or effective time), or a pending
// one that is not an earlier run of this copy (another world size,
// metadata or origin); DATA_LOSS when the source's manifests are
// inconsistent (a chunk larger than any chunk or named with two sizes, a
// delta on a step it does not hold): the copy allocates from them. Then
// the first error of either server, with the checkpoints copied before it
// committed and the one in flight left pending on the target (a rerun
// resumes it): DATA_LOSS when the source answers a chunk with other bytes
// (checked here, before they are sent) or another size; DEADLINE_EXCEEDED
// when the source sends no chunk for source_stall_timeout (the target's
// pending checkpoint is then no longer renewed). The source's
// reads record no `restored` event; each copy committed is reported to it
// (ReportCopy; see source_report_error). Memory: one manifest and about
// two batches of chunk bytes at a time.
absl::StatusOr<CopyReport> CopyCheckpoints(Transport& source, Transport& target,
                                           const CopyRequest& request,
                                           const CopyProgressFn& progress);

}  // namespace ckpt::client
