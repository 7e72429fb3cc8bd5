// RunCrashTest: one seeded run of the crash test. Each cycle starts a real
// ckpt-server on the same RocksDB directory (timing its reopen), records
// and checks what it serves (server_observer.h, model_checker.h), runs the
// workload (crash_workload.h) and crashes the server: T1 SIGKILLs it at a
// uniformly random time; T2 (--mode failpoint) arms one named failpoint
// (ckpt-server's CKPT_FAILPOINT) and waits for it to abort the server; T24
// (--mode chaos) picks one of those or a clean stop (SIGTERM, which must
// exit 0) at random for each cycle.
// After the last cycle the server is restarted once more, checked and
// stopped cleanly.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/reliability/crash_workload.h"
#include "tests/reliability/model_checker.h"

namespace ckpt::reliability {

enum class CrashMode { kKill, kFailpoint, kChaos };

struct CrashRunOptions {
  uint64_t seed = 1;
  int cycles = 20;
  CrashMode mode = CrashMode::kKill;
  // Kill mode: the SIGKILL comes uniformly within [0, cycle_length) of the
  // workload's start.
  absl::Duration cycle_length = absl::Seconds(2);
  // Failpoint mode: the names to arm, one per cycle (in turn, every fifth
  // one at random; see fires_per_point), and how long a cycle waits for the
  // point to fire before it falls back to SIGKILL.
  std::vector<std::string> failpoints;
  absl::Duration failpoint_wait = absl::Seconds(10);
  // Failpoint mode: when positive, the run goes on until every point has
  // fired this often, each cycle arming one of the points fired least so
  // far; `cycles` is then the most it runs.
  int fires_per_point = 0;
  // Where the history goes (JSON lines).
  std::string history_path;
  // The server's log (appended); empty: this process's stderr.
  std::string server_log_path;
  WorkloadOptions workload;
};

struct CrashRunSummary {
  uint64_t seed = 0;
  int cycles = 0;
  CheckResult check;  // over the whole history
  int64_t saves_ok = 0;
  int64_t saves_unknown = 0;
  int64_t prunes = 0;
  int64_t deletes = 0;
  int64_t gcs = 0;
  int64_t gcs_skipped = 0;  // WorkloadStats::gcs_skipped
  int64_t copies = 0;
  uint64_t bytes_restored = 0;
  uint64_t bytes_sent = 0;
  double max_reopen_seconds = 0;
  // Failpoint mode: fires per point (and cycles that fell back to SIGKILL).
  std::map<std::string, int> fires;
  int failpoint_fallback_kills = 0;
  // Chaos mode: how each cycle ended.
  int chaos_kills = 0;
  int chaos_failpoints = 0;
  int chaos_clean_stops = 0;
  // Chaos mode: cycles whose server had a limit set low, per limit, and
  // saves refused with RESOURCE_EXHAUSTED (in every mode).
  std::map<std::string, int> chaos_limited_cycles;
  int64_t saves_refused = 0;
};

// Errors are the harness's own (a server that would not start within 30 s,
// a data directory that cannot be made); violations are in the summary.
absl::StatusOr<CrashRunSummary> RunCrashTest(const CrashRunOptions& options);

}  // namespace ckpt::reliability
