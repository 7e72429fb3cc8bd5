#include "common/event.h"

namespace ckpt {

absl::string_view EventKindName(EventKind kind) {
  switch (kind) {
    case EventKind::kCommitted:
      return "committed";
    case EventKind::kAborted:
      return "aborted";
    case EventKind::kDeleted:
      return "deleted";
    case EventKind::kPruned:
      return "pruned";
    case EventKind::kPinned:
      return "pinned";
    case EventKind::kUnpinned:
      return "unpinned";
    case EventKind::kRestored:
      return "restored";
    case EventKind::kPolicySet:
      return "policy_set";
    case EventKind::kCopied:
      return "copied";
    case EventKind::kPolicyIgnored:
      return "policy_ignored";
  }
  return "unknown";
}

}  // namespace ckpt
