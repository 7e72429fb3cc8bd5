// FUZZ_CHECK: a harness's oracle. A violated property prints what was
// expected and traps, which libFuzzer reports as a crash (keeping the input)
// and the replay main (replay_main.cc) as a failed ctest.
#pragma once

#include <cstdio>

#define FUZZ_CHECK(condition, what)                                            \
  do {                                                                         \
    if (!(condition)) {                                                        \
      std::fprintf(stderr, "%s:%d: fuzz oracle violated: %s (%s)\n", __FILE__, \
                   __LINE__, what, #condition);                                \
      std::fflush(stderr);                                                     \
      __builtin_trap();                                                        \
    }                                                                          \
  } while (false)
