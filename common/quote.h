// Quoting client-supplied text (job and tensor names, metric names, reasons)
// in error messages, logs and stored event details: bounded, so a huge name
// cannot blow a message past gRPC's metadata limit, and escaped, so control
// bytes cannot forge log lines or terminal output.
#pragma once

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace ckpt {

// Bytes of a quoted text shown before "...".
inline constexpr size_t kQuotedPrefixBytes = 64;

// 'text' with non-printable bytes, quotes and backslashes C-escaped
// (absl::CHexEscape); longer than kQuotedPrefixBytes, its first
// kQuotedPrefixBytes then "...' (N bytes)". E.g. 'research/aaaa...' (10000
// bytes).
std::string QuoteTruncated(absl::string_view text);

// `text` escaped as QuoteTruncated does (without quotes) and cut to at most
// `max_bytes` bytes of the original, then "... (N bytes)": for free text a
// server stores (an abort reason), so that what it keeps, logs and returns
// is bounded and printable.
std::string BoundedText(absl::string_view text, size_t max_bytes);

}  // namespace ckpt
