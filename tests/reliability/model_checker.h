// ModelChecker: replays a history (history.h) against the model of
// "committed checkpoints per job" and reports every observation that breaks
// it. The rules, for each observation of the server after a restart:
//  - an acknowledged commit is listed, unless a prune or delete in the
//    history removed it (an acknowledged one that named it, or one whose
//    outcome is unknown and the server's event history names the step);
//  - every listed checkpoint was saved by the history, by every rank of its
//    world size, none of which certainly failed (no partial checkpoint);
//  - every listed checkpoint restores, rank by rank, to exactly the bytes
//    sent (SHA-256 per tensor); a commit whose outcome is unknown may be
//    listed or not, but if listed restores exactly;
//  - nothing listed at one observation vanishes by the next except by a
//    prune or delete as above, and nothing certainly removed is listed;
//  - garbage collection and verify report no referenced chunk missing or
//    corrupt, and the observation itself saw everything.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "tests/reliability/history.h"

namespace ckpt::reliability {

struct Violation {
  // "lost_ack", "partial_visible", "failed_visible", "wrong_bytes",
  // "restore_failed", "phantom", "removed_visible", "vanished",
  // "missing_chunks", "observation_error".
  std::string kind;
  int64_t cycle = 0;  // of the observation that showed it
  std::string job;
  int64_t step = 0;
  std::string detail;
};

struct CheckResult {
  std::vector<Violation> violations;
  // Checkpoints whose commit was acknowledged / whose outcome was unknown
  // (some rank's save ended unknown, none failed, none acknowledged it).
  int64_t commits_acked = 0;
  int64_t commits_unknown = 0;
  // Of the unknown ones, those some observation listed.
  int64_t unknown_seen_committed = 0;
  // Listed checkpoints checked, summed over observations.
  int64_t checkpoints_checked = 0;
  int64_t observations = 0;
};

// Checks `history` in order (records appear in the order they happened).
CheckResult CheckHistory(absl::Span<const Record> history);

// "KIND cycle C JOB@STEP: DETAIL".
std::string ViolationText(const Violation& violation);

}  // namespace ckpt::reliability
