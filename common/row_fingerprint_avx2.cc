// XXH3 compiled with -mavx2 (see common/CMakeLists.txt). Include nothing
// here that instantiates inline or template code shared with other
// translation units (no standard containers): the linker may keep this
// file's AVX2 copy of such code for the whole binary, which would then
// crash on CPUs without AVX2. XXH_INLINE_ALL makes XXH3's functions static.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "common/row_fingerprint_kernels.h"
#include "common/row_fingerprint_loop.h"

namespace ckpt::internal {

void FingerprintRowsAvx2(const char* data, size_t row_bytes, size_t rows,
                         RowFingerprint* out) {
  FingerprintRowsLoop(data, row_bytes, rows, out);
}

}  // namespace ckpt::internal
