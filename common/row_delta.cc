#include "common/row_delta.h"

#include <cstring>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/byte_codec.h"
#include "common/status_macros.h"

namespace ckpt {
namespace {

constexpr absl::string_view kMagic = "CKRD";
constexpr uint64_t kMaxU32IndexRows = uint64_t{1} << 32;
constexpr uint64_t kSaturated = std::numeric_limits<uint64_t>::max();

int IndexWidth(uint64_t total_rows) {
  return total_rows <= kMaxU32IndexRows ? 4 : 8;
}

// *result = a * b + c; false if that overflows.
bool MulAdd(uint64_t a, uint64_t b, uint64_t c, uint64_t* result) {
  uint64_t product;
  return !__builtin_mul_overflow(a, b, &product) &&
         !__builtin_add_overflow(product, c, result);
}

absl::Status DataLoss(absl::string_view what) {
  return absl::DataLossError(absl::StrCat("row delta: ", what));
}

}  // namespace

uint64_t RowDeltaBytes(uint64_t total_rows, uint64_t row_bytes,
                       uint64_t row_count) {
  uint64_t per_row;
  uint64_t size;
  if (__builtin_add_overflow(row_bytes, IndexWidth(total_rows), &per_row) ||
      !MulAdd(row_count, per_row, kRowDeltaHeaderBytes, &size)) {
    return kSaturated;
  }
  return size;
}

std::optional<uint64_t> RowDeltaRowCount(uint64_t total_rows,
                                         uint64_t row_bytes,
                                         uint64_t encoded_bytes) {
  if (row_bytes == 0 || encoded_bytes < kRowDeltaHeaderBytes) {
    return std::nullopt;
  }
  uint64_t per_row;
  if (__builtin_add_overflow(row_bytes, IndexWidth(total_rows), &per_row)) {
    return std::nullopt;
  }
  const uint64_t body = encoded_bytes - kRowDeltaHeaderBytes;
  if (body % per_row != 0 || body / per_row > total_rows) return std::nullopt;
  return body / per_row;
}

absl::StatusOr<std::string> EncodeRowDelta(absl::Span<const char> current,
                                           size_t row_bytes,
                                           absl::Span<const uint64_t> rows) {
  if (row_bytes == 0) {
    return absl::InvalidArgumentError("row delta: row_bytes is 0");
  }
  if (current.size() % row_bytes != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("row delta: ", current.size(),
                     " bytes is not a multiple of row_bytes ", row_bytes));
  }
  const uint64_t total_rows = current.size() / row_bytes;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] >= total_rows) {
      return absl::InvalidArgumentError(absl::StrCat("row delta: row ", rows[i],
                                                     " is out of range (",
                                                     total_rows, " rows)"));
    }
    if (i > 0 && rows[i] <= rows[i - 1]) {
      return absl::InvalidArgumentError(
          absl::StrCat("row delta: rows must be strictly ascending; ", rows[i],
                       " follows ", rows[i - 1]));
    }
  }
  const int index_width = IndexWidth(total_rows);
  std::string out;
  out.reserve(RowDeltaBytes(total_rows, row_bytes, rows.size()));
  out.append(kMagic.data(), kMagic.size());
  AppendLittleEndian(out, kRowDeltaFormatVersion, 2);
  AppendLittleEndian(out, index_width, 1);
  AppendLittleEndian(out, 0, 1);
  AppendLittleEndian(out, row_bytes, 8);
  AppendLittleEndian(out, total_rows, 8);
  AppendLittleEndian(out, rows.size(), 8);
  for (uint64_t row : rows) AppendLittleEndian(out, row, index_width);
  for (uint64_t row : rows) {
    out.append(current.data() + row * row_bytes, row_bytes);
  }
  return out;
}

uint64_t RowDeltaView::RowIndex(uint64_t i) const {
  return ReadLittleEndian(indices_ + i * index_width_, index_width_);
}

absl::string_view RowDeltaView::RowData(uint64_t i) const {
  return absl::string_view(rows_ + i * row_bytes_, row_bytes_);
}

absl::StatusOr<RowDeltaView> DecodeRowDelta(absl::string_view encoded) {
  CKPT_RETURN_IF_ERROR(CheckMagicAndVersion(encoded, kRowDeltaHeaderBytes,
                                            kMagic, kRowDeltaFormatVersion,
                                            "row delta"));
  const char* p = encoded.data();
  RowDeltaView view;
  const uint64_t index_width = ReadLittleEndian(p + 6, 1);
  if (ReadLittleEndian(p + 7, 1) != 0) return DataLoss("reserved byte is set");
  view.row_bytes_ = ReadLittleEndian(p + 8, 8);
  view.total_rows_ = ReadLittleEndian(p + 16, 8);
  view.row_count_ = ReadLittleEndian(p + 24, 8);
  if (view.row_bytes_ == 0) return DataLoss("row_bytes is 0");
  uint64_t tensor_bytes;
  if (__builtin_mul_overflow(view.total_rows_, view.row_bytes_,
                             &tensor_bytes) ||
      tensor_bytes > std::numeric_limits<size_t>::max()) {
    return DataLoss(absl::StrCat("tensor size overflows: ", view.total_rows_,
                                 " rows of ", view.row_bytes_, " bytes"));
  }
  if (index_width != static_cast<uint64_t>(IndexWidth(view.total_rows_))) {
    return DataLoss(absl::StrCat("index width ", index_width, " for ",
                                 view.total_rows_, " rows"));
  }
  view.index_width_ = static_cast<int>(index_width);
  if (view.row_count_ > view.total_rows_) {
    return DataLoss(absl::StrCat("row count ", view.row_count_,
                                 " exceeds total rows ", view.total_rows_));
  }
  const uint64_t expected =
      RowDeltaBytes(view.total_rows_, view.row_bytes_, view.row_count_);
  if (expected != encoded.size()) {
    return DataLoss(absl::StrCat(
        encoded.size() < expected ? "truncated" : "trailing bytes", ": ",
        encoded.size(), " bytes, the header implies ", expected));
  }
  view.indices_ = p + kRowDeltaHeaderBytes;
  view.rows_ = view.indices_ + view.row_count_ * index_width;
  CKPT_RETURN_IF_ERROR(CheckRowIndices(view.indices_, view.index_width_,
                                       view.row_count_, view.total_rows_,
                                       "row delta"));
  return view;
}

absl::Status ApplyRowDelta(const RowDeltaView& delta,
                           absl::Span<char> base_in_place) {
  if (base_in_place.size() != delta.tensor_bytes()) {
    return absl::InvalidArgumentError(
        absl::StrCat("apply row delta: base has ", base_in_place.size(),
                     " bytes, the delta is for ", delta.total_rows(),
                     " rows of ", delta.row_bytes(), " bytes"));
  }
  for (uint64_t i = 0; i < delta.row_count(); ++i) {
    absl::string_view row = delta.RowData(i);
    std::memcpy(base_in_place.data() + delta.RowIndex(i) * delta.row_bytes(),
                row.data(), row.size());
  }
  return absl::OkStatus();
}

}  // namespace ckpt
