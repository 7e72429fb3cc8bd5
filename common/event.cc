#include "common/event.h"

#include "absl/strings/str_cat.h"

namespace ckpt {

std::string EventKindName(EventKind kind) {
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
    case EventKind::kTagsChanged:
      return "tags_changed";
  }
  return absl::StrCat("unknown(", static_cast<int32_t>(kind), ")");
}

}  // namespace ckpt
