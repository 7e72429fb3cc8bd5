// Fixed-size chunking of a tensor region's bytes. Each tensor is chunked
// from its own start, so an unchanged tensor yields the same chunks again.
#pragma once

#include <cstddef>
#include <vector>

#include "absl/strings/string_view.h"

namespace ckpt {

// Default: 4 MiB, a balance of per-chunk overhead and dedup granularity.
inline constexpr size_t kDefaultChunkBytes = size_t{4} << 20;
// Largest chunk a server accepts in one message.
inline constexpr size_t kMaxChunkBytes = size_t{16} << 20;

// Splits `bytes` into consecutive views of `chunk_bytes` (the last may be
// shorter). Empty input gives no chunks. REQUIRES: chunk_bytes > 0.
std::vector<absl::string_view> SplitIntoChunks(absl::string_view bytes,
                                               size_t chunk_bytes);

}  // namespace ckpt
