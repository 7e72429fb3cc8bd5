// XXH3 compiled for the baseline target (SSE2 on x86-64). Inlined from the
// header because Debian's shared libxxhash is a generic build that does not
// inline XXH3's hot loop into ours.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "common/row_fingerprint_kernels.h"
#include "common/row_fingerprint_loop.h"

namespace ckpt::internal {

void FingerprintRowsGeneric(const char* data, size_t row_bytes, size_t rows,
                            RowFingerprint* out) {
  FingerprintRowsLoop(data, row_bytes, rows, out);
}

}  // namespace ckpt::internal
