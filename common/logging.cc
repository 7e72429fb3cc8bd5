#include "common/logging.h"

#include <unistd.h>

#include <atomic>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace ckpt {
namespace {
std::atomic<int> min_level{0};
}  // namespace

void SetMinLogLevel(LogLevel level) {
  min_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

void LogMessage(LogLevel level, absl::string_view file, int line,
                absl::string_view message) {
  if (static_cast<int>(level) < min_level.load(std::memory_order_relaxed)) {
    return;
  }
  static constexpr char kLetters[] = {'I', 'W', 'E'};
  size_t slash = file.rfind('/');
  if (slash != absl::string_view::npos) file = file.substr(slash + 1);
  std::string text = absl::StrCat(
      std::string(1, kLetters[static_cast<int>(level)]),
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3S", absl::Now(), absl::UTCTimeZone()),
      " ", file, ":", line, "] ", message, "\n");
  // One write keeps concurrent messages from interleaving.
  ssize_t ignored = ::write(STDERR_FILENO, text.data(), text.size());
  (void)ignored;
}

}  // namespace ckpt
