// ParallelCopy: host memory copied on several threads, the fill of an async
// save's staging pool (client/python/ckpt/staging.py): many tensors' bytes
// copied into one reused buffer at the machine's memory speed, so that
// save() blocks for as little as it can.
#pragma once

#include <cstddef>

#include "absl/types/span.h"

namespace ckpt::client {

// One copy: `size` bytes from `src` to `dst`.
struct CopySpan {
  char* dst = nullptr;
  const char* src = nullptr;
  size_t size = 0;
};

// Spans are cut into pieces of at most this many bytes, claimed in turn by
// the threads: a thread the scheduler parks holds up one piece, not a
// share of the whole copy.
inline constexpr size_t kCopyPieceBytes = size_t{4} << 20;

// Copies every span with memcpy (glibc's, whose non-temporal stores for
// large copies beat a byte loop or torch's copy_ by ~1.8x here) on up to
// `threads` threads, the caller's among them; `threads` <= 0 means the
// machine's hardware threads, at most 8. Fewer threads run when there are
// fewer pieces, or when the system cannot create as many (then the threads
// it did create, the caller's among them, copy everything). Returns once
// every byte is copied, every thread it started joined.
// REQUIRES: no two spans overlap, and no destination overlaps a source.
// Thread-safe: concurrent calls share nothing.
void ParallelCopy(absl::Span<const CopySpan> spans, int threads);

// The number of threads ParallelCopy(..., threads) may use.
int CopyThreads(int threads);

}  // namespace ckpt::client
