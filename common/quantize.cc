#include "common/quantize.h"

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/byte_codec.h"
#include "common/status_macros.h"

namespace ckpt {
namespace {

static_assert(std::endian::native == std::endian::little,
              "float32 tensors are read and written in host order, assumed "
              "little-endian like the format");

constexpr absl::string_view kMagic = "CKQZ";
constexpr uint64_t kRowParamBytes = 8;  // f32 min, f32 scale
constexpr uint64_t kSaturated = std::numeric_limits<uint64_t>::max();

bool ValidBits(int bits) {
  return bits == 2 || bits == 3 || bits == 4 || bits == 8;
}

// Codes per row in bytes; saturates.
uint64_t CodeBytes(uint64_t cols, int bits) {
  uint64_t total_bits;
  if (__builtin_mul_overflow(cols, static_cast<uint64_t>(bits), &total_bits)) {
    return kSaturated;
  }
  return total_bits / 8 + (total_bits % 8 != 0);
}

void StoreFloat(char* p, float value) {
  StoreLittleEndian(p, std::bit_cast<uint32_t>(value), 4);
}
void StoreDouble(char* p, double value) {
  StoreLittleEndian(p, std::bit_cast<uint64_t>(value), 8);
}
float GetFloat(const char* p) {
  return std::bit_cast<float>(static_cast<uint32_t>(ReadLittleEndian(p, 4)));
}
double GetDouble(const char* p) {
  return std::bit_cast<double>(ReadLittleEndian(p, 8));
}

// One row's quantization: restored value = min + code * scale.
struct RowParams {
  float min = 0;
  float scale = 0;  // 0: every code is 0 and restores to min
};

RowParams ParamsForRange(double lo, double hi, uint32_t levels) {
  RowParams params;
  params.min = static_cast<float>(lo);
  // In double: hi - lo can exceed FLT_MAX for a row spanning +-3e38.
  params.scale = static_cast<float>((hi - params.min) / levels);
  // A subnormal step would make 1 / scale infinite; such a row restores to
  // its min within less than levels * FLT_MIN.
  if (params.scale < FLT_MIN) params.scale = 0;
  return params;
}

// Maps values to codes under fixed params. The encoder and the search's
// error evaluation both use it, so the search optimizes the real error.
class RowCoder {
 public:
  RowCoder(RowParams params, uint32_t levels)
      : min_(params.min),
        inverse_scale_(params.scale > 0 ? 1.0f / params.scale : 0.0f),
        levels_(static_cast<float>(levels)) {}

  // Round to nearest by truncating t + 0.5 after clamping to [0, levels]:
  // cheaper than floor and division, and free of NaN (x - min may be +inf
  // only when the range exceeds FLT_MAX, where inverse_scale_ > 0).
  uint32_t Code(float x) const {
    const float t = (x - min_) * inverse_scale_;
    // t + 0.5f can round up for t just under k + 0.5 and pick the farther
    // code by under an ulp: harmless, and the same in encoder and search.
    // NOLINTNEXTLINE(bugprone-incorrect-roundings)
    return static_cast<uint32_t>(std::min(std::max(t, 0.0f), levels_) + 0.5f);
  }

 private:
  float min_;
  float inverse_scale_;
  float levels_;
};

float Restore(uint32_t code, RowParams params) {
  // In double, then clamped: min + levels * scale may round past FLT_MAX.
  const double value =
      double{params.min} + static_cast<double>(code) * params.scale;
  return static_cast<float>(
      std::clamp(value, double{-FLT_MAX}, double{FLT_MAX}));
}

// Sum of squared restore errors of `row` under `params`: exactly what
// Dequantize will give back.
double SquaredError(absl::Span<const float> row, RowParams params,
                    uint32_t levels) {
  const RowCoder coder(params, levels);
  // Four sums, so the additions do not wait on each other.
  double sums[4] = {0, 0, 0, 0};
  size_t i = 0;
  for (; i + 4 <= row.size(); i += 4) {
    for (size_t k = 0; k < 4; ++k) {
      const float x = row[i + k];
      const double diff = double{x} - Restore(coder.Code(x), params);
      sums[k] += diff * diff;
    }
  }
  for (; i < row.size(); ++i) {
    const double diff = double{row[i]} - Restore(coder.Code(row[i]), params);
    sums[0] += diff * diff;
  }
  return (sums[0] + sums[1]) + (sums[2] + sums[3]);
}

// SquaredError's estimate for the range search: float arithmetic without
// the clamp near FLT_MAX, in eight independent sums the compiler can keep
// in vector registers. It ranks candidate ranges; the chosen one is then
// checked with SquaredError against plain [min, max], so the estimate's
// rounding cannot make a row worse than no search.
float EstimatedSquaredError(absl::Span<const float> row, RowParams params,
                            uint32_t levels) {
  const float min = params.min;
  const float scale = params.scale;
  const float inverse_scale = scale > 0 ? 1.0f / scale : 0.0f;
  const float top = static_cast<float>(levels);
  constexpr size_t kLanes = 8;
  float sums[kLanes] = {};
  const float* x = row.data();
  size_t i = 0;
  for (; i + kLanes <= row.size(); i += kLanes) {
    for (size_t k = 0; k < kLanes; ++k) {
      const float t =
          std::min(std::max((x[i + k] - min) * inverse_scale, 0.0f), top);
      // Rounds as RowCoder::Code does (t is clamped to [0, levels]).
      // NOLINTNEXTLINE(bugprone-incorrect-roundings)
      const float code = static_cast<float>(static_cast<int32_t>(t + 0.5f));
      const float diff = x[i + k] - (min + code * scale);
      sums[k] += diff * diff;
    }
  }
  float total = 0;
  for (; i < row.size(); ++i) {
    const float t = std::min(std::max((x[i] - min) * inverse_scale, 0.0f), top);
    // NOLINTNEXTLINE(bugprone-incorrect-roundings): as above.
    const float code = static_cast<float>(static_cast<int32_t>(t + 0.5f));
    const float diff = x[i] - (min + code * scale);
    total += diff * diff;
  }
  for (float sum : sums) total += sum;
  return total;
}

RowParams ChooseRowParams(absl::Span<const float> row, uint32_t levels,
                          const QuantizeOptions& options) {
  const auto [min_it, max_it] = std::minmax_element(row.begin(), row.end());
  const double row_min = *min_it;
  const double row_max = *max_it;
  const RowParams plain = ParamsForRange(row_min, row_max, levels);
  if (!options.range_search || row_min == row_max) return plain;
  RowParams best = plain;
  float best_error = EstimatedSquaredError(row, best, levels);
  const double step = (row_max - row_min) / options.range_search_bins;
  const int max_steps = static_cast<int>(
      std::floor(options.range_search_max_shrink * options.range_search_bins));
  double lo = row_min;
  double hi = row_max;
  for (int s = 0; s < max_steps; ++s) {
    const RowParams raise_min = ParamsForRange(lo + step, hi, levels);
    const RowParams lower_max = ParamsForRange(lo, hi - step, levels);
    const float raise_error = EstimatedSquaredError(row, raise_min, levels);
    const float lower_error = EstimatedSquaredError(row, lower_max, levels);
    float error;
    RowParams params;
    if (raise_error <= lower_error) {
      lo += step;
      error = raise_error;
      params = raise_min;
    } else {
      hi -= step;
      error = lower_error;
      params = lower_max;
    }
    if (error < best_error) {
      best_error = error;
      best = params;
    }
  }
  if (best.min == plain.min && best.scale == plain.scale) return plain;
  return SquaredError(row, best, levels) <= SquaredError(row, plain, levels)
             ? best
             : plain;
}

// Packs `bits`-wide codes least significant bit first from `out` on.
class BitWriter {
 public:
  BitWriter(char* out, int bits) : out_(out), bits_(bits) {}
  void Put(uint32_t code) {
    buffer_ |= uint64_t{code} << buffered_;
    buffered_ += bits_;
    while (buffered_ >= 8) {
      *out_++ = static_cast<char>(buffer_ & 0xff);
      buffer_ >>= 8;
      buffered_ -= 8;
    }
  }
  void Flush() {
    if (buffered_ > 0) *out_++ = static_cast<char>(buffer_ & 0xff);
    buffer_ = 0;
    buffered_ = 0;
  }

 private:
  char* out_;
  const int bits_;
  uint64_t buffer_ = 0;
  int buffered_ = 0;
};

// What one range of rows contributes to the tensor's error.
struct ErrorSums {
  double squared_error = 0;
  double squared_norm = 0;
  double max_abs_error = 0;
};

// Quantizes rows [first, last) of `input` (finite values, checked) into
// their slots of `out_rows`, `row_stride` bytes each.
ErrorSums QuantizeRowRange(const char* input, uint64_t cols, uint64_t first,
                           uint64_t last, const QuantizeOptions& options,
                           char* out_rows, uint64_t row_stride) {
  const uint32_t levels = (1u << options.bits) - 1;
  const uint64_t row_bytes = cols * sizeof(float);
  std::vector<float> row(cols);
  ErrorSums sums;
  for (uint64_t r = first; r < last; ++r) {
    // memcpy: the caller's buffer need not be float-aligned.
    std::memcpy(row.data(), input + r * row_bytes, row_bytes);
    const RowParams params = ChooseRowParams(row, levels, options);
    char* out = out_rows + r * row_stride;
    StoreFloat(out, params.min);
    StoreFloat(out + 4, params.scale);
    BitWriter writer(out + kRowParamBytes, options.bits);
    const RowCoder coder(params, levels);
    for (float x : row) {
      const uint32_t code = coder.Code(x);
      writer.Put(code);
      const double diff = double{x} - Restore(code, params);
      sums.squared_error += diff * diff;
      sums.squared_norm += double{x} * x;
      sums.max_abs_error = std::max(sums.max_abs_error, std::abs(diff));
    }
    writer.Flush();
  }
  return sums;
}

class BitReader {
 public:
  BitReader(const char* data, int bits) : data_(data), bits_(bits) {}
  uint32_t Get() {
    while (buffered_ < bits_) {
      buffer_ |= uint64_t{static_cast<unsigned char>(*data_++)} << buffered_;
      buffered_ += 8;
    }
    const uint32_t code = static_cast<uint32_t>(buffer_ & ((1u << bits_) - 1));
    buffer_ >>= bits_;
    buffered_ -= bits_;
    return code;
  }
  // The unused bits of the last byte read are zero.
  bool PaddingIsZero() const { return buffer_ == 0; }

 private:
  const char* data_;
  const int bits_;
  uint64_t buffer_ = 0;
  int buffered_ = 0;
};

absl::Status DataLoss(absl::string_view what) {
  return absl::DataLossError(absl::StrCat("quantized tensor: ", what));
}

}  // namespace

uint64_t QuantizedBytes(uint64_t rows, uint64_t cols, int bits) {
  uint64_t row_stride;
  uint64_t body;
  uint64_t total;
  if (__builtin_add_overflow(CodeBytes(cols, bits), kRowParamBytes,
                             &row_stride) ||
      __builtin_mul_overflow(rows, row_stride, &body) ||
      __builtin_add_overflow(body, uint64_t{kQuantizedHeaderBytes}, &total)) {
    return kSaturated;
  }
  return total;
}

absl::StatusOr<QuantizedTensor> QuantizeRows(
    absl::Span<const char> float32_bytes, uint64_t cols,
    const QuantizeOptions& options) {
  if (!ValidBits(options.bits)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "quantize: bits ", options.bits, " is not one of 2, 3, 4, 8"));
  }
  if (options.range_search_bins < 1 || !(options.range_search_max_shrink >= 0 &&
                                         options.range_search_max_shrink < 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "quantize: range search needs bins >= 1 and max_shrink in [0, 1), got ",
        options.range_search_bins, " and ", options.range_search_max_shrink));
  }
  if (cols == 0) return absl::InvalidArgumentError("quantize: cols is 0");
  uint64_t row_bytes;
  if (__builtin_mul_overflow(cols, uint64_t{sizeof(float)}, &row_bytes) ||
      float32_bytes.size() % row_bytes != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "quantize: ", float32_bytes.size(),
        " bytes is not a whole number of rows of ", cols, " float32 values"));
  }
  const uint64_t rows = float32_bytes.size() / row_bytes;
  if (options.threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("quantize: threads is ", options.threads));
  }
  // First, so a bad value is reported the same way whatever the threads.
  for (uint64_t i = 0; i < rows * cols; ++i) {
    float x;
    std::memcpy(&x, float32_bytes.data() + i * sizeof(float), sizeof(float));
    if (!std::isfinite(x)) {
      return absl::InvalidArgumentError(
          absl::StrCat("quantize: value at row ", i / cols, ", column ",
                       i % cols, " is ", x, "; only finite values quantize"));
    }
  }

  QuantizedTensor result;
  std::string& out = result.bytes;
  out.reserve(QuantizedBytes(rows, cols, options.bits));
  out.append(kMagic.data(), kMagic.size());
  AppendLittleEndian(out, kQuantizedFormatVersion, 2);
  AppendLittleEndian(out, options.bits, 1);
  AppendLittleEndian(out, 0, 1);
  AppendLittleEndian(out, rows, 8);
  AppendLittleEndian(out, cols, 8);
  // The two error fields, then the rows, are filled in below. Zeroed rows
  // matter: the last code byte's padding bits must be 0.
  out.resize(QuantizedBytes(rows, cols, options.bits), '\0');
  const uint64_t row_stride = kRowParamBytes + CodeBytes(cols, options.bits);
  char* out_rows = out.data() + kQuantizedHeaderBytes;

  const size_t thread_count =
      std::min<uint64_t>(static_cast<uint64_t>(options.threads), rows);
  std::vector<ErrorSums> range_sums(std::max<size_t>(thread_count, 1));
  {
    // Contiguous row ranges; the calling thread takes the last one.
    std::vector<std::jthread> workers;
    uint64_t first = 0;
    for (size_t t = 0; t < thread_count; ++t) {
      const uint64_t count = rows / thread_count + (t < rows % thread_count);
      auto work = [&, t, first, count] {
        range_sums[t] =
            QuantizeRowRange(float32_bytes.data(), cols, first, first + count,
                             options, out_rows, row_stride);
      };
      if (t + 1 == thread_count) {
        work();
      } else {
        workers.emplace_back(work);
      }
      first += count;
    }
  }  // joins
  ErrorSums total;
  for (const ErrorSums& sums : range_sums) {
    total.squared_error += sums.squared_error;
    total.squared_norm += sums.squared_norm;
    total.max_abs_error = std::max(total.max_abs_error, sums.max_abs_error);
  }
  result.error.max_abs_error = total.max_abs_error;
  result.error.relative_l2_error =
      total.squared_norm > 0
          ? std::sqrt(total.squared_error) / std::sqrt(total.squared_norm)
          : 0;
  StoreDouble(out.data() + 24, result.error.max_abs_error);
  StoreDouble(out.data() + 32, result.error.relative_l2_error);
  return result;
}

absl::StatusOr<QuantizedHeader> ReadQuantizedHeader(absl::string_view encoded) {
  CKPT_RETURN_IF_ERROR(CheckMagicAndVersion(encoded, kQuantizedHeaderBytes,
                                            kMagic, kQuantizedFormatVersion,
                                            "quantized tensor"));
  const char* p = encoded.data();
  QuantizedHeader header;
  header.bits = static_cast<int>(ReadLittleEndian(p + 6, 1));
  if (!ValidBits(header.bits)) {
    return DataLoss(absl::StrCat("bits ", header.bits, " is not 2, 3, 4 or 8"));
  }
  if (ReadLittleEndian(p + 7, 1) != 0) return DataLoss("reserved byte is set");
  header.rows = ReadLittleEndian(p + 8, 8);
  header.cols = ReadLittleEndian(p + 16, 8);
  if (header.cols == 0) return DataLoss("cols is 0");
  header.error.max_abs_error = GetDouble(p + 24);
  header.error.relative_l2_error = GetDouble(p + 32);
  if (!(std::isfinite(header.error.max_abs_error) &&
        header.error.max_abs_error >= 0 &&
        std::isfinite(header.error.relative_l2_error) &&
        header.error.relative_l2_error >= 0)) {
    return DataLoss("recorded error is negative or not finite");
  }
  const uint64_t expected =
      QuantizedBytes(header.rows, header.cols, header.bits);
  if (expected != encoded.size()) {
    return DataLoss(absl::StrCat(
        encoded.size() < expected ? "truncated" : "trailing bytes", ": ",
        encoded.size(), " bytes, the header implies ", expected));
  }
  uint64_t restored_bytes;
  if (__builtin_mul_overflow(header.rows, header.cols, &restored_bytes) ||
      __builtin_mul_overflow(restored_bytes, uint64_t{sizeof(float)},
                             &restored_bytes) ||
      restored_bytes > std::numeric_limits<size_t>::max()) {
    return DataLoss("restored size overflows");
  }
  return header;
}

absl::Status DequantizeInto(absl::string_view encoded, absl::Span<char> out) {
  CKPT_ASSIGN_OR_RETURN(const QuantizedHeader header,
                        ReadQuantizedHeader(encoded));
  // The header's size check bounds rows * cols by the input size.
  const uint64_t restored_bytes = header.rows * header.cols * sizeof(float);
  if (out.size() != restored_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a quantized ", header.rows, " x ", header.cols, " matrix restores to ",
        restored_bytes, " bytes, not the ", out.size(), " given"));
  }
  const uint64_t code_bytes = CodeBytes(header.cols, header.bits);
  // Sized only when there are rows: the header's size check then bounds
  // cols by the input size.
  std::vector<float> row(header.rows > 0 ? header.cols : 0);
  const char* p = encoded.data() + kQuantizedHeaderBytes;
  for (uint64_t r = 0; r < header.rows; ++r) {
    RowParams params{GetFloat(p), GetFloat(p + 4)};
    if (!std::isfinite(params.min) || !std::isfinite(params.scale) ||
        params.scale < 0) {
      return DataLoss(absl::StrCat("row ", r, " has min ", params.min,
                                   " and scale ", params.scale));
    }
    BitReader reader(p + kRowParamBytes, header.bits);
    for (float& x : row) x = Restore(reader.Get(), params);
    if (!reader.PaddingIsZero()) {
      return DataLoss(absl::StrCat("row ", r, " has nonzero padding bits"));
    }
    std::memcpy(out.data() + r * header.cols * sizeof(float), row.data(),
                row.size() * sizeof(float));
    p += kRowParamBytes + code_bytes;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Dequantize(absl::string_view encoded) {
  CKPT_ASSIGN_OR_RETURN(const QuantizedHeader header,
                        ReadQuantizedHeader(encoded));
  std::string restored(header.rows * header.cols * sizeof(float), '\0');
  CKPT_RETURN_IF_ERROR(DequantizeInto(encoded, absl::MakeSpan(restored)));
  return restored;
}

std::optional<int> BitsForExpectedRestores(double expected_restores) {
  if (!(std::isfinite(expected_restores) && expected_restores >= 0)) {
    return std::nullopt;
  }
  const double accumulated_steps = std::sqrt(expected_restores);
  for (int bits : {2, 3, 4, 8}) {
    if (accumulated_steps <= ((1 << bits) - 1) / 8.0) return bits;
  }
  return std::nullopt;
}

}  // namespace ckpt
