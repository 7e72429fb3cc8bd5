// Minimal leveled logging to stderr (Debian's Abseil 20220623 has no
// absl/log). Thread-safe: each message is one write(2).
#pragma once

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace ckpt {

enum class LogLevel { kInfo = 0, kWarning = 1, kError = 2 };

// Messages below this level are dropped. Default: kInfo.
void SetMinLogLevel(LogLevel level);
void LogMessage(LogLevel level, absl::string_view file, int line,
                absl::string_view message);

// A short id (8 hex digits), rarely repeated, that ties a message a client sees
// to the log line holding what it must not see (file paths, library error
// text): "incident 1a2b3c4d".
std::string NewIncidentId();

}  // namespace ckpt

#define CKPT_LOG(level, ...)                                         \
  ::ckpt::LogMessage(::ckpt::LogLevel::k##level, __FILE__, __LINE__, \
                     ::absl::StrCat(__VA_ARGS__))
