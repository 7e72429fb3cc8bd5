#include "common/failpoint.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ckpt::failpoint {
namespace {

// The environment's arming, read once, and the armed point's hit counter.
// Trivially destructible, so a point hit while the process exits still
// finds it.
struct State {
  State();

  bool valid = true;
  std::optional<Arming> arming;
  std::atomic<uint64_t> hits{0};
};

std::optional<absl::string_view> ReadEnv(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr) return std::nullopt;
  return absl::string_view(value);
}

absl::StatusOr<std::optional<Arming>> ReadArming() {
  const std::optional<absl::string_view> spec = ReadEnv("CKPT_FAILPOINT");
  if (kEnabled) return ParseArming(spec, ReadEnv("CKPT_FAILPOINT_SEED"));
  if (spec.has_value() && !spec->empty()) {
    return absl::InvalidArgumentError(
        "CKPT_FAILPOINT is set but this build has no failpoints (configure "
        "with -DCKPT_FAILPOINTS=ON, as the dev, asan and tsan presets do)");
  }
  return std::nullopt;
}

// Why the environment's value was refused; read only once GetState() ran.
std::string& RefusalMessage() {
  static std::string message;
  return message;
}

State::State() {
  absl::StatusOr<std::optional<Arming>> read = ReadArming();
  if (read.ok()) {
    arming = *read;
  } else {
    valid = false;
    RefusalMessage() = std::string(read.status().message());
  }
}
static_assert(std::is_trivially_destructible_v<State>);

State& GetState() {
  // A function-local static: initialized once, thread-safely.
  static State state;
  return state;
}

// A well-mixed 64-bit function of its input (SplitMix64's finalizer).
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

absl::StatusOr<uint64_t> PositiveNumber(absl::string_view text,
                                        absl::string_view what,
                                        absl::string_view spec) {
  uint64_t value = 0;
  // SimpleAtoi takes a sign and blanks; a count is plain digits.
  const bool digits =
      !text.empty() && text.find_first_not_of("0123456789") == text.npos;
  if (!digits || !absl::SimpleAtoi(text, &value) || value == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CKPT_FAILPOINT=", spec, ": ", what,
        " must be a whole number from 1 to 2^64-1, got '", text, "'"));
  }
  return value;
}

void WriteAll(const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(STDERR_FILENO, data, size);
    if (n <= 0) return;
    data += n;
    size -= static_cast<size_t>(n);
  }
}

[[noreturn]] void Fire(size_t index, uint64_t hit) {
  char line[160];
  const absl::string_view name = kNames[index];
  const int size = std::snprintf(line, sizeof(line),
                                 "ckpt failpoint fired: %.*s (hit %llu)\n",
                                 static_cast<int>(name.size()), name.data(),
                                 static_cast<unsigned long long>(hit));
  if (size > 0) {
    WriteAll(line, std::min(static_cast<size_t>(size), sizeof(line) - 1));
  }
  std::abort();
}

}  // namespace

absl::StatusOr<std::optional<Arming>> ParseArming(
    std::optional<absl::string_view> spec,
    std::optional<absl::string_view> seed) {
  Arming arming;
  if (seed.has_value()) {
    uint64_t value = 0;
    const bool digits =
        !seed->empty() && seed->find_first_not_of("0123456789") == seed->npos;
    if (!digits || !absl::SimpleAtoi(*seed, &value)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "CKPT_FAILPOINT_SEED must be a whole number from 0 to 2^64-1, got '",
          *seed, "'"));
    }
    arming.seed = value;
  }
  if (!spec.has_value() || spec->empty()) return std::nullopt;
  absl::string_view name = *spec;
  const size_t mark = spec->find_first_of("@%");
  if (mark != spec->npos) {
    name = spec->substr(0, mark);
    const bool at = (*spec)[mark] == '@';
    arming.mode = at ? Arming::Mode::kAtHit : Arming::Mode::kOneIn;
    absl::StatusOr<uint64_t> k = PositiveNumber(
        spec->substr(mark + 1), at ? "K in NAME@K" : "N in NAME%N", *spec);
    if (!k.ok()) return k.status();
    arming.k = *k;
  }
  size_t index = 0;
  while (index < kNames.size() && absl::string_view(kNames[index]) != name) {
    ++index;
  }
  if (index == kNames.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("CKPT_FAILPOINT=", *spec, ": no failpoint is named '",
                     name, "'; the points are ", absl::StrJoin(kNames, ", "),
                     " (NAME, NAME@K or NAME%N)"));
  }
  arming.index = index;
  return arming;
}

bool Fires(const Arming& arming, uint64_t hit) {
  switch (arming.mode) {
    case Arming::Mode::kAtHit:
      return hit == arming.k;
    case Arming::Mode::kOneIn:
      // The seed and the hit's number alone decide, so concurrent hits
      // need no shared generator and a seed replays the same hits.
      return Mix(arming.seed ^ Mix(hit)) % arming.k == 0;
  }
  return false;
}

absl::StatusOr<std::optional<Arming>> ArmingFromEnvironment() {
  const State& state = GetState();
  if (!state.valid) return absl::InvalidArgumentError(RefusalMessage());
  return state.arming;
}

void Hit(size_t index) {
  State& state = GetState();
  if (!state.valid) {
    const std::string message =
        absl::StrCat("ckpt failpoint: ", RefusalMessage(), "\n");
    WriteAll(message.data(), message.size());
    std::abort();
  }
  const std::optional<Arming>& arming = state.arming;
  if (!arming.has_value() || arming->index != index) return;
  const uint64_t hit = state.hits.fetch_add(1, std::memory_order_relaxed) + 1;
  if (Fires(*arming, hit)) Fire(index, hit);
}

}  // namespace ckpt::failpoint
