// The knobs and report of a reliability test (tests/reliability): its seed
// and size from the environment, so that one binary runs at CI size under
// ctest and at soak size from soak.sh, and the one-line JSON summary it
// prints at the end. Header-only, test code only.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "absl/strings/numbers.h"

namespace ckpt::testing {

// CKPT_SEED when set (a failing run's seed, to replay it), else a fresh
// random one. Print it with every failure (SCOPED_TRACE).
inline uint64_t RunSeed() {
  uint64_t seed = 0;
  const char* text = std::getenv("CKPT_SEED");
  if (text != nullptr && absl::SimpleAtoi(text, &seed)) return seed;
  return (static_cast<uint64_t>(std::random_device{}()) << 32) ^
         std::random_device{}();
}

// The positive integer in environment variable `name` (e.g. CKPT_TRIALS
// from soak.sh), else `ci_default`.
inline int RunCount(const char* name, int ci_default) {
  int value = 0;
  const char* text = std::getenv(name);
  if (text != nullptr && absl::SimpleAtoi(text, &value) && value > 0) {
    return value;
  }
  return ci_default;
}

// Prints `json` (one object) as the run's summary line, which soak.sh
// collects: `RELIABILITY_SUMMARY {...}` on stdout.
inline void PrintSummary(const std::string& json) {
  std::printf("RELIABILITY_SUMMARY %s\n", json.c_str());
  std::fflush(stdout);
}

}  // namespace ckpt::testing
