#include "server/service/job_events.h"

#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "server/service/service_internal.h"

namespace ckpt::server {

JobEvent MakeEvent(absl::string_view job, std::optional<int64_t> step,
                   absl::Time time, absl::string_view principal, EventKind kind,
                   std::string detail) {
  JobEvent event;
  event.job = std::string(job);
  event.time = time;
  event.principal = std::string(principal);
  event.kind = kind;
  event.step = step;
  event.detail = BoundedText(detail, kMaxEventDetailBytes);
  return event;
}

JobEvent CommittedEvent(absl::string_view job, int64_t step, absl::Time now,
                        absl::string_view principal, int32_t world_size,
                        uint64_t logical_bytes) {
  return MakeEvent(
      job, step, now, principal, EventKind::kCommitted,
      absl::StrCat(world_size, world_size == 1 ? " rank, " : " ranks, ",
                   logical_bytes, " bytes"));
}

JobEvent AbortedEvent(absl::string_view job, int64_t step, absl::Time now,
                      absl::string_view principal, absl::string_view reason) {
  return MakeEvent(job, step, now, principal, EventKind::kAborted,
                   std::string(reason));
}

JobEvent DeletedEvent(absl::string_view job, int64_t step, absl::Time now,
                      absl::string_view principal, CheckpointState state,
                      bool pinned) {
  return MakeEvent(job, step, now, principal, EventKind::kDeleted,
                   absl::StrCat("was ", CheckpointStateName(state),
                                pinned ? " and pinned; the pin was overridden "
                                         "(force)"
                                       : ""));
}

JobEvent PinEvent(absl::string_view job, int64_t step, absl::Time now,
                  absl::string_view principal, bool pinned) {
  return MakeEvent(job, step, now, principal,
                   pinned ? EventKind::kPinned : EventKind::kUnpinned, "");
}

JobEvent PinnedAtCommitEvent(absl::string_view job, int64_t step,
                             absl::Time now, absl::string_view principal) {
  return MakeEvent(job, step, now, principal, EventKind::kPinned, "at commit");
}

JobEvent CopiedFromEvent(absl::string_view job, int64_t step, absl::Time now,
                         absl::string_view principal, const CopyPeer& source) {
  return MakeEvent(job, step, now, principal, EventKind::kCopied,
                   absl::StrCat("from ", CopyPeerText(source)));
}

JobEvent CopiedToEvent(absl::string_view job, int64_t step, absl::Time now,
                       absl::string_view principal,
                       const CopyPeer& destination) {
  return MakeEvent(job, step, now, principal, EventKind::kCopied,
                   absl::StrCat("to ", CopyPeerText(destination)));
}

JobEvent RestoredEvent(absl::string_view job, int64_t step, absl::Time now,
                       absl::string_view principal, int32_t rank) {
  return MakeEvent(job, step, now, principal, EventKind::kRestored,
                   absl::StrCat("rank ", rank));
}

JobEvent PolicySetEvent(absl::string_view job, const RetentionPolicy& policy,
                        absl::Time now, absl::string_view principal,
                        absl::string_view source) {
  return MakeEvent(job, std::nullopt, now, principal, EventKind::kPolicySet,
                   absl::StrCat(RetentionPolicyText(policy), source));
}

JobEvent PolicyClearedEvent(absl::string_view job, absl::Time now,
                            absl::string_view principal) {
  return MakeEvent(job, std::nullopt, now, principal, EventKind::kPolicySet,
                   "none (cleared)");
}

JobEvent PolicyIgnoredEvent(absl::string_view job, int64_t step,
                            const RetentionPolicy& policy, absl::Time now,
                            absl::string_view principal,
                            absl::string_view why) {
  return MakeEvent(
      job, std::nullopt, now, principal, EventKind::kPolicyIgnored,
      absl::StrCat(RetentionPolicyText(policy),
                   " from BeginCheckpoint of step ", step, ": ", why));
}

void AppendPrunedEvents(absl::string_view job, absl::string_view trigger,
                        const RetentionPolicy& policy,
                        const std::vector<RetentionDecision>& decisions,
                        absl::Time now, absl::string_view principal,
                        MetadataBatch* batch) {
  for (const auto& decision : decisions) {
    if (decision.keep) continue;
    batch->AppendEvent(
        MakeEvent(job, decision.step, now, principal, EventKind::kPruned,
                  absl::StrCat(trigger, " (", RetentionPolicyText(policy),
                               "): ", absl::StrJoin(decision.reasons, "; "))));
  }
}

void LogDeletions(absl::string_view job, absl::string_view why,
                  absl::string_view principal,
                  const std::vector<RetentionDecision>& decisions) {
  for (const auto& decision : decisions) {
    if (decision.keep) continue;
    CKPT_LOG(Info, why, " deleted ", internal::Describe(job, decision.step),
             " (by ", principal, "): ", absl::StrJoin(decision.reasons, "; "));
  }
}

}  // namespace ckpt::server
