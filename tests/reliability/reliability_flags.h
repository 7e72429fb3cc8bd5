// The flags every reliability program takes after gtest's own: --seed=N
// (absent: a random seed, printed) and one size flag (--cycles=N,
// --trials=N, ...), read by tests/reliability/soak.sh.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"

namespace ckpt::testing {

struct ReliabilityFlags {
  std::optional<uint64_t> seed;
  int size = 0;  // the CI size unless the size flag is given
};

// Parses what InitGoogleTest left in argv; false, after printing what is
// accepted, on anything else.
inline bool ParseReliabilityFlags(int argc, char** argv,
                                  absl::string_view size_flag,
                                  ReliabilityFlags* flags) {
  const std::string size_prefix = absl::StrCat("--", size_flag, "=");
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    uint64_t value = 0;
    if (absl::StartsWith(arg, "--seed=") &&
        absl::SimpleAtoi(arg.substr(7), &value)) {
      flags->seed = value;
    } else if (absl::StartsWith(arg, size_prefix) &&
               absl::SimpleAtoi(arg.substr(size_prefix.size()), &value) &&
               value > 0 && value < 1'000'000'000) {
      flags->size = static_cast<int>(value);
    } else {
      std::fprintf(stderr, "unknown flag %s (--seed=N, %sN)\n", argv[i],
                   size_prefix.c_str());
      return false;
    }
  }
  return true;
}

// A reliability program's main: gtest's flags, then ours into `flags`,
// then every test; 2 on a flag it does not know.
inline int RunReliabilityProgram(int argc, char** argv,
                                 absl::string_view size_flag,
                                 ReliabilityFlags* flags) {
  ::testing::InitGoogleTest(&argc, argv);
  if (!ParseReliabilityFlags(argc, argv, size_flag, flags)) return 2;
  return RUN_ALL_TESTS();
}

}  // namespace ckpt::testing
