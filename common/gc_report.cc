#include "common/gc_report.h"

#include "absl/strings/str_cat.h"

namespace ckpt {

std::string HeldReasonName(HeldReason reason) {
  switch (reason) {
    case HeldReason::kSaveInFlight:
      return "save_in_flight";
    case HeldReason::kCommittedDuringCollection:
      return "committed_during_collection";
    case HeldReason::kPendingCheckpoint:
      return "pending_checkpoint";
    case HeldReason::kTenantSkipped:
      return "tenant_skipped";
    case HeldReason::kUnspecified:
      break;
  }
  // A newer server's reason: shown, not refused.
  return absl::StrCat("unknown(", static_cast<int>(reason), ")");
}

}  // namespace ckpt
