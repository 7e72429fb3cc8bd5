// Structured logging to stderr (Debian's Abseil 20220623 has no absl/log).
// Every line is logfmt:
//   ts=2026-12-03T09:30:00.123Z level=info event=listening address=...
// Values that hold anything but plain printable ASCII are quoted and escaped
// (FormatLogValue), so text from clients (job, tenant and principal names,
// error messages) can never forge a field or a line. Thread-safe: each line
// is one write(2).
#pragma once

#include <initializer_list>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace ckpt {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Lines below this level are dropped. Default: kInfo.
void SetMinLogLevel(LogLevel level);
// Whether a line at `level` would be written.
bool LogEnabled(LogLevel level);
// Parses "debug", "info", "warning" or "error" into `level`; false (and
// `level` unchanged) for anything else.
bool ParseLogLevel(absl::string_view text, LogLevel* level);
absl::string_view LogLevelName(LogLevel level);

// One key=value field of an event. Keys are program constants
// ([a-z0-9_]); values may be anything, client text included.
struct LogField {
  LogField(absl::string_view field_key, const absl::AlphaNum& field_value)
      : key(field_key), value(field_value.Piece()) {}
  absl::string_view key;
  std::string value;
};

// Longest value written (longer ones are cut, marked with "...").
inline constexpr size_t kMaxLogValueBytes = 4096;

// `value` as a logfmt value: unchanged when non-empty and made only of
// printable ASCII other than '"', '=' and '\'; otherwise in double quotes,
// with '"', '\', newline, tab and carriage return backslash-escaped and
// every other control byte (and every byte >= 0x80 unless the value is
// printable UTF-8) as \xHH. Cut to `max_bytes` first.
std::string FormatLogValue(absl::string_view value,
                           size_t max_bytes = kMaxLogValueBytes);

// The line for `event` with `fields` (without the trailing newline and ts):
// "level=LEVEL event=EVENT k=v ...". Keys outside [a-z0-9_] have the other
// bytes replaced by '_'.
std::string FormatLogLine(LogLevel level, absl::string_view event,
                          std::initializer_list<LogField> fields);

// Writes one line: ts, level, event, then the fields in order.
void LogEvent(LogLevel level, absl::string_view event,
              std::initializer_list<LogField> fields = {});

// A free-text message: event=message src=FILE:LINE msg="...".
void LogMessage(LogLevel level, absl::string_view file, int line,
                absl::string_view message);

// A short id (8 hex digits), rarely repeated, that ties a message a client sees
// to the log line holding what it must not see (file paths, library error
// text): "incident 1a2b3c4d".
std::string NewIncidentId();

}  // namespace ckpt

// CKPT_LOG(Info, "text ", n, ...): a free message (see LogMessage).
#define CKPT_LOG(level, ...)                                                \
  (::ckpt::LogEnabled(::ckpt::LogLevel::k##level)                           \
       ? ::ckpt::LogMessage(::ckpt::LogLevel::k##level, __FILE__, __LINE__, \
                            ::absl::StrCat(__VA_ARGS__))                    \
       : void())

// CKPT_EVENT(Info, "lease_expired", {"count", n}, {"job", job}): an event
// with fields; the fields are not built when the level is off.
#define CKPT_EVENT(level, event, ...)                                       \
  (::ckpt::LogEnabled(::ckpt::LogLevel::k##level)                           \
       ? ::ckpt::LogEvent(::ckpt::LogLevel::k##level, event, {__VA_ARGS__}) \
       : void())
