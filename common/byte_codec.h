// Pieces shared by ckpt's self-describing byte formats (row deltas,
// quantized tensors): little-endian integers and the check of the leading
// magic and format version.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace ckpt {

// Appends the low `width` bytes of `value`, least significant first.
// REQUIRES: 1 <= width <= 8.
void AppendLittleEndian(std::string& out, uint64_t value, int width);

// Writes the low `width` bytes of `value` at `p`, least significant first.
// REQUIRES: 1 <= width <= 8 and p[0, width) writable.
void StoreLittleEndian(char* p, uint64_t value, int width);

// Reads `width` bytes at `p` as a little-endian integer.
// REQUIRES: 1 <= width <= 8 and p[0, width) readable.
uint64_t ReadLittleEndian(const char* p, int width);

// OK if `encoded` holds at least `header_bytes` bytes and starts with the
// 4-byte `magic` followed by the u16 `version`. Otherwise DATA_LOSS:
// "<format>: truncated header ...", "bad magic (not a <format>)" or
// "unsupported format version N". REQUIRES: header_bytes >= 6.
absl::Status CheckMagicAndVersion(absl::string_view encoded,
                                  size_t header_bytes, absl::string_view magic,
                                  uint16_t version, absl::string_view format);

// OK if the `count` indices of `width` bytes each at `indices` are strictly
// ascending and below `total_rows` (a row delta's or a sparse fingerprint
// record's). Otherwise DATA_LOSS: "<format>: index I is row R, out of
// range (N rows)" or "<format>: indices not strictly ascending at I: ...".
// REQUIRES: indices[0, count * width) readable.
absl::Status CheckRowIndices(const char* indices, int width, uint64_t count,
                             uint64_t total_rows, absl::string_view format);

}  // namespace ckpt
