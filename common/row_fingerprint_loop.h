// Internal: the row-hashing loop, included by each kernel translation unit
// after <xxhash.h> with XXH_INLINE_ALL, so each compiles it with its own
// instruction set. `static`: no copy is shared between translation units.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ckpt::internal {

// Rows of a few hundred bytes are too short for XXH3's own prefetching
// (it prefetches only inside long inputs); asking for the lines a few rows
// ahead keeps the memory system busy between calls.
inline constexpr size_t kPrefetchAheadBytes = 4096;
inline constexpr size_t kCacheLineBytes = 64;

static inline void FingerprintRowsLoop(const char* data, size_t row_bytes,
                                       size_t rows, RowFingerprint* out) {
  const size_t total_bytes = rows * row_bytes;
  for (size_t i = 0; i < rows; ++i) {
    const size_t row_offset = i * row_bytes;
    // Offsets are checked, so no pointer is formed past the buffer.
    for (size_t line = 0; line < row_bytes; line += kCacheLineBytes) {
      const size_t ahead = row_offset + kPrefetchAheadBytes + line;
      if (ahead < total_bytes) __builtin_prefetch(data + ahead);
    }
    const XXH128_hash_t hash = XXH3_128bits(data + row_offset, row_bytes);
    out[i] = RowFingerprint{hash.low64, hash.high64};
  }
}

}  // namespace ckpt::internal
