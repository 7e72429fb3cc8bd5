// RowFingerprint: one row's 128-bit XXH3 fingerprint. Apart from
// row_fingerprint.h so the AVX2 kernel's translation unit can name it
// without including standard containers (see row_fingerprint_avx2.cc).
#pragma once

#include <cstdint>

namespace ckpt {

// XXH3_128bits with seed 0 of one row's bytes, as its two halves.
struct RowFingerprint {
  uint64_t low = 0;
  uint64_t high = 0;
  friend bool operator==(const RowFingerprint&,
                         const RowFingerprint&) = default;
};

}  // namespace ckpt
