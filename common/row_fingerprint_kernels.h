// Internal: the XXH3 row-hashing loops, one per instruction set, each in its
// own translation unit so only one of them is compiled with -mavx2.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/row_fingerprint_value.h"

namespace ckpt::internal {

// out[i] = XXH3_128bits(data + i * row_bytes, row_bytes) for i < rows.
void FingerprintRowsGeneric(const char* data, size_t row_bytes, size_t rows,
                            RowFingerprint* out);

#if defined(CKPT_HAVE_AVX2_KERNEL)
// Same, built with -mavx2. Call only when the CPU supports AVX2.
void FingerprintRowsAvx2(const char* data, size_t row_bytes, size_t rows,
                         RowFingerprint* out);
#endif

}  // namespace ckpt::internal
