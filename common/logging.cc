#include "common/logging.h"

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <random>
#include <string>

#include "absl/strings/str_format.h"
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
