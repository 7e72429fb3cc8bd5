// Named failpoints for the crash tests (tests/reliability, T2): points
// before and after each persistence step of the server where, in a build
// configured with -DCKPT_FAILPOINTS=ON (the dev, asan and tsan presets), the
// process can be made to abort() as a crash would. Without that option
// CKPT_FAILPOINT(...) compiles to nothing and nothing can be armed.
//
// Arming is read once from the environment, at the first use:
//   CKPT_FAILPOINT=NAME      abort at the first hit of NAME
//   CKPT_FAILPOINT=NAME@K    abort at the K-th hit (K >= 1)
//   CKPT_FAILPOINT=NAME%N    abort with probability 1/N per hit (N >= 1),
//                            decided from CKPT_FAILPOINT_SEED (default 1)
//                            and the hit's number, so a seed replays
// An unknown name or a malformed value is an error (ckpt-server refuses to
// start: CheckArmingFromEnvironment), never a point silently not armed.
// Before aborting, the point writes "ckpt failpoint fired: NAME (hit K)" to
// stderr with write(2); abort() then ends the process without destructors
// or flushes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ckpt::failpoint {

// Every point, in the order `ckpt-server --list-failpoints` prints them.
// A name is STEP.before or STEP.after; docs: tests/reliability/README.md.
inline constexpr std::array<const char*, 18> kNames = {
    "chunk_put.before",    "chunk_put.after",         "chunk_flush.before",
    "chunk_flush.after",   "shard_manifest.before",   "shard_manifest.after",
    "commit_batch.before", "commit_batch.after",      "copy_commit.before",
    "copy_commit.after",   "retention_delete.before", "retention_delete.after",
    "gc_mark.before",      "gc_mark.after",           "gc_sweep.before",
    "gc_sweep.after",      "lease_expiry.before",     "lease_expiry.after",
};

// Whether this build has failpoints (CKPT_FAILPOINTS).
constexpr bool kEnabled =
#ifdef CKPT_FAILPOINTS
    true;
#else
    false;
#endif

// Not constexpr: reaching it in a constant evaluation (IndexOf of a name
// not in kNames) is a compile error at the CKPT_FAILPOINT call site.
void UnknownFailpointName();

constexpr bool SameName(const char* a, const char* b) {
  while (*a != '\0' && *a == *b) {
    ++a;
    ++b;
  }
  return *a == *b;
}

consteval size_t IndexOf(const char* name) {
  for (size_t i = 0; i < kNames.size(); ++i) {
    if (SameName(kNames[i], name)) return i;
  }
  UnknownFailpointName();
  return kNames.size();
}

// How one point is armed.
struct Arming {
  enum class Mode { kAtHit, kOneIn };
  size_t index = 0;  // into kNames
  Mode mode = Mode::kAtHit;
  uint64_t k = 1;  // kAtHit: the hit that fires; kOneIn: N
  uint64_t seed = 1;

  bool operator==(const Arming&) const = default;
};

// Parses CKPT_FAILPOINT's value `spec` and CKPT_FAILPOINT_SEED's `seed`
// (each nullopt when unset). nullopt when nothing is armed (spec unset or
// empty); INVALID_ARGUMENT naming the problem and the known names otherwise.
absl::StatusOr<std::optional<Arming>> ParseArming(
    std::optional<absl::string_view> spec,
    std::optional<absl::string_view> seed);

// Whether hit number `hit` (1-based) of the armed point fires.
bool Fires(const Arming& arming, uint64_t hit);

// Reads the environment (once per process; later calls return the same)
// and returns what is armed. INVALID_ARGUMENT for a bad value, and for any
// CKPT_FAILPOINT in a build without failpoints.
absl::StatusOr<std::optional<Arming>> ArmingFromEnvironment();

// The body of CKPT_FAILPOINT: counts the hit of point `index` when it is
// the armed one, and fires it when due. A bad environment value aborts
// here too, saying why (ckpt-server has refused it before).
void Hit(size_t index);

}  // namespace ckpt::failpoint

#ifdef CKPT_FAILPOINTS
#define CKPT_FAILPOINT(name) \
  ::ckpt::failpoint::Hit(    \
      std::integral_constant<size_t, ::ckpt::failpoint::IndexOf(name)>::value)
#else
// Nothing at run time; the name is still checked.
#define CKPT_FAILPOINT(name)                         \
  do {                                               \
    static_assert(::ckpt::failpoint::IndexOf(name) < \
                  ::ckpt::failpoint::kNames.size()); \
  } while (false)
#endif
