// The job events CheckpointService records (see ListEvents in
// checkpoint_service.h): one builder per kind, so that each kind's detail
// text is written in one place, plus the log lines that mirror retention's
// deletions. Pure functions apart from LogDeletions (which logs): the caller
// appends the events to the batch that makes the change they record.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/event.h"
#include "common/manifest.h"
#include "common/quote.h"
#include "common/retention.h"
#include "server/storage/metadata_store.h"

namespace ckpt::server {

// Event details quote client text (abort reasons, metric names); capped so
// that a job's whole history (kMaxEventsPerJob events) stays a few MiB.
inline constexpr size_t kMaxEventDetailBytes = 1024;

// An event of `kind` made by `principal` (the Actor's); `detail` has its
// control bytes escaped and is cut to kMaxEventDetailBytes (BoundedText,
// common/quote.h). `step` is nullopt for a job-level event.
JobEvent MakeEvent(absl::string_view job, std::optional<int64_t> step,
                   absl::Time time, absl::string_view principal, EventKind kind,
                   std::string detail);

// The last rank committed: "1 rank, 10 bytes", "4 ranks, 40 bytes".
JobEvent CommittedEvent(absl::string_view job, int64_t step, absl::Time now,
                        absl::string_view principal, int32_t world_size,
                        uint64_t logical_bytes);

// A pending checkpoint was aborted; the detail is the reason.
JobEvent AbortedEvent(absl::string_view job, int64_t step, absl::Time now,
                      absl::string_view principal, absl::string_view reason);

// Deleted on request: "was committed", "was aborted", or for a pinned one
// (deleted only with force) "was committed and pinned; the pin was
// overridden (force)".
JobEvent DeletedEvent(absl::string_view job, int64_t step, absl::Time now,
                      absl::string_view principal, CheckpointState state,
                      bool pinned);

// `pinned` or `unpinned`, without detail.
JobEvent PinEvent(absl::string_view job, int64_t step, absl::Time now,
                  absl::string_view principal, bool pinned);

// The checkpoint committed pinned, as its Begin asked (CopyOrigin::pin):
// `pinned` with detail "at commit".
JobEvent PinnedAtCommitEvent(absl::string_view job, int64_t step,
                             absl::Time now, absl::string_view principal);

// A copy between servers (`ckpt copy`), kind `copied`: on the target with
// the commit, "from SERVER JOB@STEP"; on the source (ReportCopy), "to
// SERVER JOB@STEP". The peer was checked (ValidateCopyPeer).
JobEvent CopiedFromEvent(absl::string_view job, int64_t step, absl::Time now,
                         absl::string_view principal, const CopyPeer& source);
JobEvent CopiedToEvent(absl::string_view job, int64_t step, absl::Time now,
                       absl::string_view principal,
                       const CopyPeer& destination);

// `rank` restored the checkpoint (ReportRestore; or, from an older client,
// fetched its manifest to restore): "rank 3".
JobEvent RestoredEvent(absl::string_view job, int64_t step, absl::Time now,
                       absl::string_view principal, int32_t rank);

// The job's stored policy changed: its text followed by `source` (e.g.
// " (from BeginCheckpoint of step 5)", or empty).
JobEvent PolicySetEvent(absl::string_view job, const RetentionPolicy& policy,
                        absl::Time now, absl::string_view principal,
                        absl::string_view source);

// The job's own policy was removed (`ckpt policy set JOB --clear`): a
// `policy_set` event whose detail is "none (cleared)".
JobEvent PolicyClearedEvent(absl::string_view job, absl::Time now,
                            absl::string_view principal);

// A writer's policy passed to BeginCheckpoint of `step` was ignored
// (policy_owner.h): detail "<policy> from BeginCheckpoint of step N: <why>".
JobEvent PolicyIgnoredEvent(absl::string_view job, int64_t step,
                            const RetentionPolicy& policy, absl::Time now,
                            absl::string_view principal, absl::string_view why);

// Appends to `batch` one `pruned` event per checkpoint that `decisions`
// delete, in their order, naming what triggered the deletion, the policy,
// and why no rule kept it: "<trigger> (<policy>): <reason>; <reason>".
void AppendPrunedEvents(absl::string_view job, absl::string_view trigger,
                        const RetentionPolicy& policy,
                        const std::vector<RetentionDecision>& decisions,
                        absl::Time now, absl::string_view principal,
                        MetadataBatch* batch);

// Logs one line per checkpoint that `decisions` delete, prefixed by `why`
// and naming `principal`. Call once the batch deleting them has been
// applied.
void LogDeletions(absl::string_view job, absl::string_view why,
                  absl::string_view principal,
                  const std::vector<RetentionDecision>& decisions);

}  // namespace ckpt::server
