// Byte sizes as people type them on a command line or in a config file
// (5G, 500MiB): the one grammar of the CLI's flags and of ckpt-server's
// flags and config file, so that a size means the same everywhere (powers
// of 1024).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ckpt {

// A byte count: digits, then optionally a unit K, M, G, T or P, each
// optionally followed by "i" or "iB", in either case (all powers of 1024:
// 1K = 1Ki = 1KiB = 1024; "KB" is refused as ambiguous). INVALID_ARGUMENT
// "'TEXT' ..." on anything else (signs, fractions, spaces) and on sizes
// past 2^64 - 1.
absl::StatusOr<uint64_t> ParseByteCount(absl::string_view text);

// ParseByteCount for a flag: it must be positive unless `allow_zero` (then
// 0 is accepted, with or without a unit). INVALID_ARGUMENT "FLAG 'TEXT' is
// not a size: ..." otherwise.
absl::StatusOr<uint64_t> ParseByteSize(absl::string_view flag,
                                       absl::string_view text,
                                       bool allow_zero = false);

// The shortest exact form that ParseByteCount reads back: "64GiB",
// "1536KiB", "1000", "0".
std::string FormatByteSize(uint64_t bytes);

}  // namespace ckpt
