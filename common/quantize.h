// Opt-in lossy row-wise quantization of a float32 row-major matrix to 8, 4,
// 3 or 2 bits (Check-N-Run), for checkpoints of embedding tables where a
// bounded error is worth a 4-16x smaller save. Never used unless asked for.
//
// Each row is quantized asymmetrically and uniformly: codes
// q = round((x - min) / scale) in [0, 2^bits - 1], restored as
// min + q * scale, with min and scale kept per row as float32. By default a
// greedy search (as Check-N-Run does) narrows [min, max] step by step,
// cutting from whichever end lowers the row's L2 error more, and keeps the
// best range seen: clipping a few outliers buys a finer step for the rest.
// It never raises a row's L2 error over plain [min, max], but it may raise
// the largest absolute error (the clipped outliers).
//
// Format, version 1, integers and floats little-endian:
//   offset  0  magic "CKQZ"
//           4  u16 format version (1)
//           6  u8  bits (2, 3, 4 or 8)
//           7  u8  reserved, 0
//           8  u64 rows
//          16  u64 cols (>= 1)
//          24  f64 max absolute error over the tensor
//          32  f64 relative L2 error ||x - x'|| / ||x|| over the tensor
//          40  rows x { f32 min, f32 scale, ceil(cols * bits / 8) bytes of
//              codes packed least significant bit first, padding bits 0 }
// Rows stay byte-aligned so a row can be found (and row-delta'd) alone;
// the measured error travels with the data so a restore can report it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace ckpt {

inline constexpr uint16_t kQuantizedFormatVersion = 1;
inline constexpr size_t kQuantizedHeaderBytes = 40;

struct QuantizeOptions {
  // 2, 3, 4 or 8. Default: 8.
  int bits = 8;
  // Greedy search of each row's range. Default: true.
  bool range_search = true;
  // The search moves an end by (max - min) / range_search_bins per step.
  // >= 1. Default: 200.
  int range_search_bins = 200;
  // The search cuts at most this fraction of [min, max] in all. In [0, 1).
  // Default: 0.16 (with 200 bins: 32 steps, 64 error evaluations per row).
  double range_search_max_shrink = 0.16;
  // Rows are split into this many contiguous ranges quantized in parallel
  // (the search is the cost: ~15 MB/s per core). >= 1. Default: 1. Codes
  // and row parameters do not depend on it; the recorded relative L2 error
  // may differ in its last bits (partial sums added in another order).
  int threads = 1;
};

// Measured over the whole tensor, original vs restored.
struct QuantizationError {
  double max_abs_error = 0;
  // ||x - x'|| / ||x||; 0 for an all-zero tensor (restored exactly).
  double relative_l2_error = 0;
};

struct QuantizedTensor {
  std::string bytes;  // the format above
  QuantizationError error;
};

struct QuantizedHeader {
  int bits = 0;
  uint64_t rows = 0;
  uint64_t cols = 0;
  QuantizationError error;
};

// Encoded size for a rows x cols matrix at `bits`; saturates at UINT64_MAX.
uint64_t QuantizedBytes(uint64_t rows, uint64_t cols, int bits);

// Quantizes `float32_bytes`, a row-major matrix of `cols` float32 columns
// (host order, any alignment). INVALID_ARGUMENT if cols is 0, the size is
// not a multiple of a row, a value is NaN or infinite, or an option is out
// of range. Thread-safe.
absl::StatusOr<QuantizedTensor> QuantizeRows(
    absl::Span<const char> float32_bytes, uint64_t cols,
    const QuantizeOptions& options = {});

// The header of an encoded tensor, checked (DATA_LOSS if malformed,
// truncated or of the wrong total size).
absl::StatusOr<QuantizedHeader> ReadQuantizedHeader(absl::string_view encoded);

// The restored float32 matrix bytes (rows * cols * 4). DATA_LOSS naming the
// problem for any malformed input: bad header or size, a non-finite or
// negative row min or scale, nonzero padding bits.
absl::StatusOr<std::string> Dequantize(absl::string_view encoded);
// The same, written into `out`, which must be rows * cols * 4 bytes
// (INVALID_ARGUMENT otherwise); on DATA_LOSS `out` may be partly written.
absl::Status DequantizeInto(absl::string_view encoded, absl::Span<char> out);

// The bit width for a tensor expected to be restored `expected_restores`
// times over the rest of training (failures x checkpoints read back);
// nullopt means stay lossless (too many restores, or not a finite number
// >= 0). Why: a restore resumes training from the lossy copy and training
// does not undo the error, so errors accumulate across restores
// (Check-N-Run); independent per-restore errors add up like a random walk,
// to about sqrt(R) quantization steps after R restores, with a step of
// (max - min) / (2^bits - 1). We keep sqrt(R) steps within 1/8 of the row's
// range: the smallest bits in {2, 3, 4, 8} with
// sqrt(R) <= (2^bits - 1) / 8. So R <= 0.14 -> 2 bits, <= 0.77 -> 3,
// <= 3.5 -> 4 (one restore: 4 bits), <= 1016 -> 8, else lossless. The 1/8
// budget is our choice, not calibrated against model accuracy.
std::optional<int> BitsForExpectedRestores(double expected_restores);

}  // namespace ckpt
