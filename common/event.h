// JobEvent: one entry of a job's event history (`ckpt events`), which the
// server appends in the same atomic batch as the change it records. Pure
// data: no I/O, no gRPC, no RocksDB.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/time/time.h"

namespace ckpt {

// The proto's numbers. A kind this build does not know (a newer server's)
// keeps its number: clients show it as "unknown(N)" instead of failing, so
// that new kinds can land before every client knows them.
enum class EventKind : int32_t {
  kCommitted = 1,  // the last rank committed; detail: ranks and bytes
  kAborted,        // detail: the abort reason (a client's, or lease expiry)
  kDeleted,        // deleted on request (`ckpt rm`)
  kPruned,         // deleted by retention; detail: trigger, policy, reasons
  kPinned,
  kUnpinned,
  kRestored,   // a manifest fetched to restore; detail: the rank
  kPolicySet,  // job-level; detail: the new policy
  // `ckpt copy`: on the target, recorded with the commit of a copied
  // checkpoint (detail: "from SERVER JOB@STEP"); on the source, reported
  // once the copy committed (ReportCopy; detail: "to SERVER JOB@STEP").
  kCopied,
  // A writer's policy in BeginCheckpoint was ignored because an operator's
  // applies; job-level, one per distinct policy; detail: it and why.
  kPolicyIgnored = 10,
  // SetCheckpointTags; detail: "+KEY=VALUE -KEY ...".
  kTagsChanged = 11,
};

// "committed", "aborted", "deleted", "pruned", "pinned", "unpinned",
// "restored", "policy_set", "copied", "policy_ignored", "tags_changed" (the
// CLI's and JSON's spelling);
// "unknown(N)" for a kind this build does not know.
std::string EventKindName(EventKind kind);

struct JobEvent {
  std::string job;
  // Assigned by the MetadataStore when the event is appended: 1, 2, 3, ...
  // per job, never reused. Ignored on append.
  uint64_t sequence = 0;
  absl::Time time = absl::UnixEpoch();
  EventKind kind = EventKind::kCommitted;
  std::optional<int64_t> step;  // nullopt for job-level events (policy_set)
  std::string detail;
  // Who made the change: the authenticated principal, "anonymous" on a
  // server without tokens, "ckpt-server" for the server's own work (lease
  // expiry). Empty in events recorded before principals were.
  std::string principal;
  friend bool operator==(const JobEvent&, const JobEvent&) = default;
};

}  // namespace ckpt
