#include "common/byte_codec.h"

#include "absl/strings/str_cat.h"

namespace ckpt {

void AppendLittleEndian(std::string& out, uint64_t value, int width) {
  const size_t offset = out.size();
  out.resize(offset + width);
  StoreLittleEndian(out.data() + offset, value, width);
}

void StoreLittleEndian(char* p, uint64_t value, int width) {
  for (int b = 0; b < width; ++b) {
    p[b] = static_cast<char>((value >> (8 * b)) & 0xff);
  }
}

uint64_t ReadLittleEndian(const char* p, int width) {
  uint64_t value = 0;
  for (int b = 0; b < width; ++b) {
    value |= uint64_t{static_cast<unsigned char>(p[b])} << (8 * b);
  }
  return value;
}

absl::Status CheckMagicAndVersion(absl::string_view encoded,
                                  size_t header_bytes, absl::string_view magic,
                                  uint16_t version, absl::string_view format) {
  if (encoded.size() < header_bytes) {
    return absl::DataLossError(
        absl::StrCat(format, ": truncated header: ", encoded.size(),
                     " bytes, need ", header_bytes));
  }
  if (encoded.substr(0, magic.size()) != magic) {
    return absl::DataLossError(
        absl::StrCat(format, ": bad magic (not a ", format, ")"));
  }
  const uint64_t found = ReadLittleEndian(encoded.data() + magic.size(), 2);
  if (found != version) {
    return absl::DataLossError(
        absl::StrCat(format, ": unsupported format version ", found));
  }
  return absl::OkStatus();
}

absl::Status CheckRowIndices(const char* indices, int width, uint64_t count,
                             uint64_t total_rows, absl::string_view format) {
  uint64_t previous = 0;
  for (uint64_t i = 0; i < count; ++i) {
    const uint64_t row = ReadLittleEndian(indices + i * width, width);
    if (row >= total_rows) {
      return absl::DataLossError(absl::StrCat(format, ": index ", i, " is row ",
                                              row, ", out of range (",
                                              total_rows, " rows)"));
    }
    if (i > 0 && row <= previous) {
      return absl::DataLossError(
          absl::StrCat(format, ": indices not strictly ascending at ", i, ": ",
                       row, " after ", previous));
    }
    previous = row;
  }
  return absl::OkStatus();
}

}  // namespace ckpt
