#include "common/logging.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <random>
#include <string>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/quote.h"

namespace ckpt {
namespace {

std::atomic<int> min_level{static_cast<int>(LogLevel::kInfo)};

bool IsBare(absl::string_view value) {
  if (value.empty()) return false;
  for (unsigned char c : value) {
    if (c <= 0x20 || c >= 0x7f || c == '"' || c == '=' || c == '\\') {
      return false;
    }
  }
  return true;
}

void AppendKey(absl::string_view key, std::string* out) {
  if (key.empty()) key = "_";
  for (char c : key) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '_' || (c >= 'A' && c <= 'Z');
    out->push_back(ok ? c : '_');
  }
}

void AppendField(absl::string_view key, absl::string_view value,
                 std::string* out) {
  out->push_back(' ');
  AppendKey(key, out);
  out->push_back('=');
  out->append(FormatLogValue(value));
}

void WriteLine(std::string line) {
  line.push_back('\n');
  // One write keeps concurrent lines from interleaving.
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

std::string Timestamp() {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                          absl::UTCTimeZone());
}

}  // namespace

void SetMinLogLevel(LogLevel level) {
  min_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

bool LogEnabled(LogLevel level) {
  return static_cast<int>(level) >= min_level.load(std::memory_order_relaxed);
}

bool ParseLogLevel(absl::string_view text, LogLevel* level) {
  for (LogLevel candidate : {LogLevel::kDebug, LogLevel::kInfo,
                             LogLevel::kWarning, LogLevel::kError}) {
    if (text == LogLevelName(candidate)) {
      *level = candidate;
      return true;
    }
  }
  return false;
}

absl::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

std::string FormatLogValue(absl::string_view value, size_t max_bytes) {
  std::string cut;
  if (value.size() > max_bytes) {
    cut = TruncateUtf8(std::string(value), std::max<size_t>(max_bytes, 3));
    value = cut;
  }
  if (IsBare(value)) return std::string(value);
  // Non-ASCII text that prints as itself stays readable; anything else
  // (invalid UTF-8, C1 controls) is shown byte by byte.
  const bool keep_utf8 = IsPrintableUtf8(value);
  std::string out = "\"";
  for (unsigned char c : value) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f || (c >= 0x80 && !keep_utf8)) {
          out += absl::StrFormat("\\x%02x", c);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
  return out;
}

std::string FormatLogLine(LogLevel level, absl::string_view event,
                          std::initializer_list<LogField> fields) {
  std::string line = absl::StrCat("level=", LogLevelName(level));
  AppendField("event", event, &line);
  for (const LogField& field : fields) {
    AppendField(field.key, field.value, &line);
  }
  return line;
}

void LogEvent(LogLevel level, absl::string_view event,
              std::initializer_list<LogField> fields) {
  if (!LogEnabled(level)) return;
  WriteLine(absl::StrCat("ts=", Timestamp(), " ",
                         FormatLogLine(level, event, fields)));
}

void LogMessage(LogLevel level, absl::string_view file, int line,
                absl::string_view message) {
  if (!LogEnabled(level)) return;
  size_t slash = file.rfind('/');
  if (slash != absl::string_view::npos) file = file.substr(slash + 1);
  LogEvent(level, "message",
           {{"src", absl::StrCat(file, ":", line)}, {"msg", message}});
}

std::string NewIncidentId() {
  // A random start per process, then a counter, scrambled by splitmix64's
  // finalizer and cut to 32 bits: a repeat needs tens of thousands of
  // incidents, and an operator matches an id with its time anyway.
  static const uint64_t start = [] {
    std::random_device device;
    return (uint64_t{device()} << 32) | device();
  }();
  static std::atomic<uint64_t> counter{0};
  uint64_t x = start + counter.fetch_add(1, std::memory_order_relaxed);
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return absl::StrFormat("%08x", static_cast<uint32_t>(x));
}

}  // namespace ckpt
