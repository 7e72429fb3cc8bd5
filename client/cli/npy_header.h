// The preamble of a NumPy .npy file (format versions 1.0, 2.0 and 3.0):
// the magic, the version, and the header dict that gives the array's dtype
// and shape, parsed from hostile bytes for --dirty-rows NAME=@FILE. Only
// what a list of row indices can be is accepted: a 1-D array of integers.
// Pure: no I/O. Errors are INVALID_ARGUMENT and say what is wrong, not
// which file (the caller names it).
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ckpt::cli {

// The bytes a .npy file starts with.
inline constexpr absl::string_view kNpyMagic = "\x93NUMPY";
// The longest header dict read (NumPy writes about 128 bytes for a 1-D
// array), so that a hostile length cannot make the reader buffer gigabytes.
inline constexpr size_t kMaxNpyHeaderBytes = 64 * 1024;
// The longest preamble: magic, version, a 4-byte length and the dict.
inline constexpr size_t kMaxNpyPreambleBytes =
    kNpyMagic.size() + 2 + 4 + kMaxNpyHeaderBytes;

// A 1-D array of integers, as its header describes it.
struct NpyIntArray {
  bool is_signed = false;
  size_t item_bytes = 0;  // 1, 2, 4 or 8
  bool big_endian = false;
  uint64_t count = 0;      // shape[0]
  size_t data_offset = 0;  // where the elements start in the file
};

// Parses the preamble from `head`, the file's first bytes: all of them, or
// at least its first kMaxNpyPreambleBytes. Refuses another version, a
// header that is cut off, longer than kMaxNpyHeaderBytes or not a dict of
// exactly 'descr', 'fortran_order' and 'shape', a dtype other than a
// signed or unsigned integer of 1, 2, 4 or 8 bytes, and any shape but 1-D.
// REQUIRES: head starts with kNpyMagic.
absl::StatusOr<NpyIntArray> ParseNpyPreamble(absl::string_view head);

}  // namespace ckpt::cli
