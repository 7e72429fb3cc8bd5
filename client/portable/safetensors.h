// The safetensors format (https://github.com/huggingface/safetensors), read
// strictly and written canonically, for `ckpt export` and `ckpt import`.
// Pure: bytes in, bytes out, no I/O.
//
// A file is an 8-byte little-endian header length N, N bytes of UTF-8 JSON
// {NAME: {"dtype", "shape", "data_offsets": [begin, end)}, "__metadata__":
// {string: string}}, then the data section: each tensor's bytes, little-
// endian, row-major, at its offsets.
//
// Reading refuses every lie a header can tell, each named with the file and
// the field: a header length past the file or past
// kMaxSafetensorsHeaderBytes (checked before the header is read), text that
// is not UTF-8 or not JSON, a key twice, a missing, unknown or mistyped
// field, a negative or fractional dimension, a dimension past
// kMaxDimension, a dtype ckpt has no equivalent for (U16, U32, U64, the F8
// and smaller floats: refused, never reinterpreted), a byte count that is
// not the shape's, offsets past the data section, tensors overlapping, and
// names ckpt cannot hold (empty, longer than kMaxTensorNameBytes). As the
// official reader, the tensors must cover the data section exactly,
// without gaps or trailing bytes.
//
// ckpt's complex64 and complex128 have no safetensors dtype: they are
// written as F32 / F64 with one more trailing dimension of 2 (real and
// imaginary parts: torch.view_as_real's layout, the bytes unchanged) and
// listed in __metadata__ under kComplexMetadataKey as a JSON array of
// names, which reading turns back into the complex dtype and shape. Other
// tools see float tensors of shape [..., 2].
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/manifest.h"

namespace ckpt::client::portable {

// The official reader's cap on the header length.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;
// The __metadata__ key listing the complex tensors (see above).
inline constexpr char kComplexMetadataKey[] = "ckpt.complex";

// One tensor of a file, in ckpt's terms.
struct SafetensorsTensor {
  std::string name;
  DType dtype = DType::kUint8;  // complex ones restored
  std::vector<int64_t> shape;   // without a complex one's trailing 2
  // Its bytes, [begin, end) of the data section.
  uint64_t begin = 0;
  uint64_t end = 0;
};

struct SafetensorsHeader {
  // Where the data section begins in the file: 8 + the header length.
  uint64_t data_offset = 0;
  uint64_t data_bytes = 0;
  // In the order of their data (empty ones by name among equal offsets).
  std::vector<SafetensorsTensor> tensors;
  // __metadata__, kComplexMetadataKey included.
  std::map<std::string, std::string> metadata;
};

// The header length in the first 8 bytes of `prefix`, a file of
// `file_size` bytes called `file` in errors: INVALID_ARGUMENT when the file
// is shorter than 8 bytes or the length reaches past its end or past
// kMaxSafetensorsHeaderBytes.
absl::StatusOr<uint64_t> ReadSafetensorsHeaderLength(absl::string_view prefix,
                                                     uint64_t file_size,
                                                     absl::string_view file);

// The header text `header` (its N bytes, padding included) of file `file`,
// whose data section holds `data_bytes`, parsed and checked as above.
// INVALID_ARGUMENT naming the file and the field otherwise.
absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(
    absl::string_view header, uint64_t data_bytes, absl::string_view file);

// Both, over the whole file (e.g. a read-only mapping): only its first 8 +
// N bytes are read.
absl::StatusOr<SafetensorsHeader> ParseSafetensors(absl::string_view contents,
                                                   absl::string_view file);

// A tensor to write, in ckpt's terms.
struct SafetensorsSpec {
  std::string name;
  DType dtype = DType::kUint8;
  std::vector<int64_t> shape;
};

// Where a file's parts go: `prefix` is its first bytes (the length, the
// JSON header, spaces up to a multiple of 8), then each tensor's bytes,
// contiguous in the order given.
struct SafetensorsLayout {
  std::string prefix;
  std::vector<uint64_t> offsets;  // per tensor, in the file
  uint64_t file_bytes = 0;
};

// The layout of a file of `tensors` (in this order) with `metadata` in
// __metadata__ (kComplexMetadataKey is added for complex tensors).
// INVALID_ARGUMENT naming the tensor for what the reader above would
// refuse: an empty, overlong or non-UTF-8 name, a name twice or
// "__metadata__", a dimension outside [0, kMaxDimension], more than 2^62
// bytes; or metadata that is not UTF-8 or sets kComplexMetadataKey.
absl::StatusOr<SafetensorsLayout> LayOutSafetensors(
    absl::Span<const SafetensorsSpec> tensors,
    const std::map<std::string, std::string>& metadata);

}  // namespace ckpt::client::portable
