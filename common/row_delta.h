// Row delta chunks: the rows of a row-major tensor that changed since a base
// checkpoint (Check-N-Run), encoded as one self-describing byte string, and
// applied onto the base's bytes to rebuild the tensor.
//
// Format, version 1, all integers little-endian:
//   offset  0  magic "CKRD"
//           4  u16 format version (1)
//           6  u8  index width in bytes: 4 if total_rows <= 2^32, else 8
//           7  u8  reserved, 0
//           8  u64 row_bytes (> 0)
//          16  u64 total_rows of the tensor
//          24  u64 row_count: rows in this delta (<= total_rows)
//          32  row_count indices, strictly ascending, < total_rows
//              then row_count * row_bytes bytes: the rows, in index order
// Fixed-width indices rather than delta+varint: the size of a delta is then
// a function of the row count alone (RowDeltaBytes, which the baseline
// policy needs before encoding), row i is found without a decoding pass,
// and the 4 bytes per row cost under 2% for a typical 64-float row, where
// varint gaps would save at most ~3 of them. There is no checksum: a delta
// is stored as a content-addressed (SHA-256) chunk like any other.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace ckpt {

inline constexpr uint16_t kRowDeltaFormatVersion = 1;
inline constexpr size_t kRowDeltaHeaderBytes = 32;

// Encoded size of a delta of `row_count` rows of a tensor of `total_rows`
// rows of `row_bytes` each; saturates at UINT64_MAX instead of wrapping.
uint64_t RowDeltaBytes(uint64_t total_rows, uint64_t row_bytes,
                       uint64_t row_count);

// The inverse of RowDeltaBytes: how many rows a delta of `encoded_bytes`
// bytes of such a tensor holds, read off its size alone (the format's
// fixed-width indices make the size a function of the row count), so no
// chunk needs reading. nullopt when no delta of that tensor has that size
// (or row_bytes is 0).
std::optional<uint64_t> RowDeltaRowCount(uint64_t total_rows,
                                         uint64_t row_bytes,
                                         uint64_t encoded_bytes);

// The rows `rows` (strictly ascending indices) of `current`, the bytes of a
// row-major tensor of `row_bytes`-sized rows. INVALID_ARGUMENT if row_bytes
// is 0, current.size() is not a multiple of it, or an index is out of range,
// repeated or out of order.
absl::StatusOr<std::string> EncodeRowDelta(absl::Span<const char> current,
                                           size_t row_bytes,
                                           absl::Span<const uint64_t> rows);

// A decoded delta: views into the encoded bytes, which must outlive it.
// Only DecodeRowDelta makes one, so its invariants hold: indices strictly
// ascending and < total_rows, and the sizes add up.
class RowDeltaView {
 public:
  uint64_t row_bytes() const { return row_bytes_; }
  uint64_t total_rows() const { return total_rows_; }
  // Rows in the delta.
  uint64_t row_count() const { return row_count_; }
  // The tensor's size in bytes: total_rows * row_bytes.
  uint64_t tensor_bytes() const { return total_rows_ * row_bytes_; }
  // REQUIRES: i < row_count().
  uint64_t RowIndex(uint64_t i) const;
  absl::string_view RowData(uint64_t i) const;

 private:
  friend absl::StatusOr<RowDeltaView> DecodeRowDelta(absl::string_view);
  RowDeltaView() = default;

  uint64_t row_bytes_ = 0;
  uint64_t total_rows_ = 0;
  uint64_t row_count_ = 0;
  int index_width_ = 4;
  const char* indices_ = nullptr;
  const char* rows_ = nullptr;
};

// Parses and checks all of `encoded`: DATA_LOSS naming the problem for a
// truncated or oversized buffer, bad magic, unknown version, a non-canonical
// index width, zero row_bytes, a size overflow, and indices that are out of
// range, repeated or out of order. Never reads out of bounds.
absl::StatusOr<RowDeltaView> DecodeRowDelta(absl::string_view encoded);

// Overwrites the delta's rows in `base_in_place`, which holds the base
// tensor's bytes. INVALID_ARGUMENT (and nothing written) if its size is not
// delta.tensor_bytes(). Deltas taken one after another apply in that order.
// Only the size is checked: the caller makes sure the delta's row_bytes is
// the tensor's (a reshaped tensor of the same size would be corrupted).
absl::Status ApplyRowDelta(const RowDeltaView& delta,
                           absl::Span<char> base_in_place);

}  // namespace ckpt
