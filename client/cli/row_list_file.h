// Reading the rows of `ckpt put --dirty-rows NAME=@FILE` from FILE, for row
// lists too long for a command-line argument (128 KiB on Linux): a NumPy
// .npy array of integers, or text with one row index or range per line.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ckpt::cli {

// The rows FILE `path` lists for tensor `name` of `rows` rows, sorted and
// without repeats, as ParseRowList (client/cli/args.h) gives them inline.
//
// A file that starts with the .npy magic is a .npy array (client/cli/
// npy_header.h): 1-D, of signed or unsigned integers of 1, 2, 4 or 8 bytes,
// either byte order, with exactly as many data bytes as its shape says.
// Refused: a negative value or one at or past `rows` (naming its element),
// and a file named *.npy without the magic. Any other file is text: per
// line one index or inclusive range A-B (ParseRowRange, client/cli/
// row_set.h), surrounding whitespace (and so CRLF) ignored, as are blank
// lines and lines starting with '#'; a bad line is refused naming its
// number and quoting it.
//
// The file is read front to back in blocks (a pipe such as <(...) works
// too): memory stays O(rows) however long it is, and overlapping ranges
// are merged, not expanded one by one. Errors start with "--dirty-rows
// NAME: " and name the file: errno's status when it cannot be opened or
// read, else INVALID_ARGUMENT (an empty path, a directory, bad contents).
absl::StatusOr<std::vector<uint64_t>> ReadRowListFile(absl::string_view name,
                                                      absl::string_view path,
                                                      uint64_t rows);

}  // namespace ckpt::cli
