// ParseByteSize: a size in bytes as people type it on a command line or in
// a config file (5G, 500MiB), shared by the CLI's and the server's flags so
// that every size means the same everywhere (powers of 1024).
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ckpt {

// A size in bytes: a decimal integer, optionally followed by K, M, G or T
// (or KiB, MiB, GiB, TiB: powers of 1024; either case), e.g. 5G or 500MiB.
// It must be positive unless `allow_zero` (then 0 is accepted, with or
// without a unit). INVALID_ARGUMENT naming `flag` and the text otherwise,
// and for sizes past 2^64 - 1.
absl::StatusOr<uint64_t> ParseByteSize(absl::string_view flag,
                                       absl::string_view text,
                                       bool allow_zero = false);

}  // namespace ckpt
