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

// `text` cut to at most `max_bytes` (marked with "..."), never inside a UTF-8
// sequence: proto3 strings must stay valid UTF-8. Unchanged when it fits.
// REQUIRES: max_bytes >= 3 (room for the mark).
std::string TruncateUtf8(std::string text, size_t max_bytes);

// Control bytes (below 0x20, and 0x7f) C-escaped ("\n", "\x1b"); all
// else, UTF-8 included, unchanged.
std::string EscapeControlBytes(absl::string_view text);

// Well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF) without control characters (C0, DEL, C1): text that prints as
// itself on a terminal and in a log line. Empty text is printable.
bool IsPrintableUtf8(absl::string_view text);

// For free text a server stores, logs and lists (an abort reason, an event
// detail): TruncateUtf8(EscapeControlBytes(text), max_bytes), so it is
// bounded, stays readable in any language, and cannot forge a log line.
std::string BoundedText(absl::string_view text, size_t max_bytes);

}  // namespace ckpt
