#include "client/copy.h"

namespace ckpt::client {

absl::StatusOr<CopyReport> CopyCheckpoints(Transport&, Transport&,
                                           const CopyRequest&,
                                           const CopyProgressFn&) {
  return absl::UnimplementedError("ckpt copy: not implemented yet");
}

}  // namespace ckpt::client
