// ckpt-crash-test: the crash tests of tests/reliability/README.md (T1: the
// server SIGKILLed at random times; T2: named failpoints) for one seed, or
// for every seed of a seeds file, each run's history checked against the
// model of committed checkpoints. Prints one JSON line per run and a
// summary line last; exits 1 on any violation, printing the seed and the
// history's path (kept for `--check-history`).
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "tests/reliability/crash_run.h"
#include "tests/reliability/history.h"
#include "tests/reliability/model_checker.h"
#include "tests/testing/server_process.h"

namespace ckpt::reliability {
namespace {

using nlohmann::json;

struct SeedRun {
  uint64_t seed = 0;
  int cycles = 0;
};

// "SEED [CYCLES]" a line; '#' starts a comment.
absl::StatusOr<std::vector<SeedRun>> ReadSeeds(const std::string& path,
                                               int default_cycles) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::vector<SeedRun> runs;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    line = line.substr(0, line.find('#'));
    std::istringstream fields(line);
    SeedRun run{.seed = 0, .cycles = default_cycles};
    if (!(fields >> run.seed)) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", number, ": not a seed"));
    }
    if (!(fields >> run.cycles)) run.cycles = default_cycles;
    if (run.cycles < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", number, ": cycles must be positive"));
    }
    runs.push_back(run);
  }
  if (runs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": no seeds"));
  }
  return runs;
}

void PrintViolations(const CheckResult& result) {
  size_t shown = 0;
  for (const Violation& violation : result.violations) {
    if (++shown > 20) {
      std::fprintf(stderr, "... and %zu more\n", result.violations.size() - 20);
      break;
    }
    std::fprintf(stderr, "VIOLATION %s\n", ViolationText(violation).c_str());
  }
}

// The failpoints `ckpt-server --list-failpoints` names, one a line.
absl::StatusOr<std::vector<std::string>> ListFailpoints() {
  const std::string command =
      testing::BuiltBinary("server/rpc/ckpt-server") + " --list-failpoints";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return absl::InternalError("cannot run " + command);
  std::string out;
  char buffer[4096];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) {
    out.append(buffer, n);
  }
  const int status = ::pclose(pipe);
  if (status != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(command, " failed (a build without CKPT_FAILPOINTS?)"));
  }
  std::vector<std::string> names =
      absl::StrSplit(out, '\n', absl::SkipWhitespace());
  if (names.empty()) {
    return absl::FailedPreconditionError(command + " named no failpoint");
  }
  return names;
}

int CheckFile(const std::string& path) {
  auto records = ReadHistory(path);
  if (!records.ok()) {
    std::fprintf(stderr, "%s\n", records.status().ToString().c_str());
    return 2;
  }
  const CheckResult result = CheckHistory(*records);
  PrintViolations(result);
  std::printf("%s\n", json{{"history", path},
                           {"observations", result.observations},
                           {"commits_acked", result.commits_acked},
                           {"commits_unknown", result.commits_unknown},
                           {"checkpoints_checked", result.checkpoints_checked},
                           {"violations", result.violations.size()}}
                          .dump()
                          .c_str());
  return result.violations.empty() ? 0 : 1;
}

// The plan's name of a mode, and the mode's flag value.
const char* TestName(CrashMode mode) {
  switch (mode) {
    case CrashMode::kKill:
      return "T1";
    case CrashMode::kFailpoint:
      return "T2";
    case CrashMode::kChaos:
      return "T24";
  }
  return "?";
}
const char* ModeName(CrashMode mode) {
  switch (mode) {
    case CrashMode::kKill:
      return "kill";
    case CrashMode::kFailpoint:
      return "failpoint";
    case CrashMode::kChaos:
      return "chaos";
  }
  return "?";
}

json RunJson(const CrashRunSummary& summary, CrashMode mode) {
  json out = {{"test", TestName(mode)},
              {"mode", ModeName(mode)},
              {"seed", summary.seed},
              {"cycles", summary.cycles},
              {"commits_acked", summary.check.commits_acked},
              {"commits_unknown", summary.check.commits_unknown},
              {"unknown_seen_committed", summary.check.unknown_seen_committed},
              {"checkpoints_checked", summary.check.checkpoints_checked},
              {"bytes_restored", summary.bytes_restored},
              {"bytes_sent", summary.bytes_sent},
              {"saves_ok", summary.saves_ok},
              {"saves_unknown", summary.saves_unknown},
              {"saves_refused", summary.saves_refused},
              {"prunes", summary.prunes},
              {"deletes", summary.deletes},
              {"gcs", summary.gcs},
              {"gcs_skipped", summary.gcs_skipped},
              {"copies", summary.copies},
              {"violations", summary.check.violations.size()},
              {"max_reopen_seconds", summary.max_reopen_seconds}};
  if (mode != CrashMode::kKill) {
    out["fires"] = summary.fires;
    out["fallback_kills"] = summary.failpoint_fallback_kills;
  }
  if (mode == CrashMode::kChaos) {
    out["chaos_kills"] = summary.chaos_kills;
    out["chaos_failpoints"] = summary.chaos_failpoints;
    out["chaos_clean_stops"] = summary.chaos_clean_stops;
    out["chaos_limited_cycles"] = summary.chaos_limited_cycles;
  }
  return out;
}

// Adds a run's figures into the totals (max for the reopen time).
void Accumulate(json& total, const json& run) {
  for (const char* key :
       {"cycles", "commits_acked", "commits_unknown", "unknown_seen_committed",
        "checkpoints_checked", "bytes_restored", "bytes_sent", "saves_ok",
        "saves_unknown", "saves_refused", "prunes", "deletes", "gcs",
        "gcs_skipped", "copies", "violations"}) {
    total[key] = total.value(key, int64_t{0}) + run[key].get<int64_t>();
  }
  total["max_reopen_seconds"] =
      std::max(total.value("max_reopen_seconds", 0.0),
               run["max_reopen_seconds"].get<double>());
  total["seeds"].push_back(run["seed"]);
  if (run.contains("fires")) {
    if (!total.contains("fires")) total["fires"] = json::object();
    for (const auto& [name, count] : run["fires"].items()) {
      total["fires"][name] =
          total["fires"].value(name, int64_t{0}) + count.get<int64_t>();
    }
    total["fallback_kills"] = total.value("fallback_kills", int64_t{0}) +
                              run["fallback_kills"].get<int64_t>();
  }
  for (const char* key :
       {"chaos_kills", "chaos_failpoints", "chaos_clean_stops"}) {
    if (run.contains(key)) {
      total[key] = total.value(key, int64_t{0}) + run[key].get<int64_t>();
    }
  }
  if (run.contains("chaos_limited_cycles")) {
    json& limited = total["chaos_limited_cycles"];
    if (!limited.is_object()) limited = json::object();
    for (const auto& [name, count] : run["chaos_limited_cycles"].items()) {
      limited[name] = limited.value(name, int64_t{0}) + count.get<int64_t>();
    }
  }
}

int Main(int argc, char** argv) {
  CLI::App app{
      "Crash tests of ckpt-server (tests/reliability/README.md): a workload "
      "of multi-rank saves, prunes, deletes and garbage collections through "
      "the client library while the server is SIGKILLed (--mode kill, T1) "
      "or aborted by a named failpoint (--mode failpoint, T2); after every "
      "restart the history is checked against the model of committed "
      "checkpoints."};
  uint64_t seed = std::random_device{}();
  std::string seeds_file;
  int cycles = 20;
  std::string mode_name = "kill";
  CrashRunOptions options;
  WorkloadOptions& workload = options.workload;
  size_t min_kib = 256, max_kib = 2048, chunk_kib = 64;
  int64_t cycle_ms = 2000;
  int lease_seconds = 0;
  std::string history_dir = std::filesystem::temp_directory_path().string();
  bool keep_history = false;
  std::string check_history;
  app.add_option("--seed", seed, "Seed of the run (default: random)");
  app.add_option("--seeds-file", seeds_file,
                 "Run every seed of this file instead, one 'SEED [CYCLES]' "
                 "a line ('#' comments; tests/reliability/seeds.txt)");
  CLI::Option* cycles_option =
      app.add_option("--cycles", cycles,
                     "Crash cycles per seed (with --fires: the most, by "
                     "default 3 x fires x points)");
  cycles_option->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--mode", mode_name,
                 "kill (T1), failpoint (T2), or chaos (T24: each cycle a "
                 "SIGKILL, a failpoint or a clean SIGTERM stop, at random)")
      ->capture_default_str()
      ->check(CLI::IsMember({"kill", "failpoint", "chaos"}));
  app.add_option("--jobs", workload.jobs, "Jobs saving at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--ranks", workload.ranks, "Ranks per job")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--min-shard-kib", min_kib, "Smallest rank shard")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--max-shard-kib", max_kib, "Largest rank shard")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--chunk-kib", chunk_kib, "Chunk size of the saves")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--change-fraction", workload.change_fraction,
                 "Share of chunks rewritten each step (the rest dedup)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--max-to-keep", workload.max_to_keep,
                 "Prune each job to this many checkpoints every "
                 "--prune-every steps; 0: never prune")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  app.add_option("--prune-every", workload.prune_every, "Steps between prunes")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--delete-every", workload.delete_every,
                 "Steps between deletes of a job's oldest checkpoint; 0: none")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  app.add_option("--gc-every", workload.gc_every,
                 "Steps of job 0 between garbage collections; 0: none")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  int abandon_every = -1;
  app.add_option("--abandon-every", abandon_every,
                 "Steps between checkpoints a job leaves incomplete (one "
                 "rank never saves) with a 1 s lease, for lease expiry; 0: "
                 "none (default: 0 in kill mode, 3 in failpoint mode)")
      ->check(CLI::Range(0, 1000));
  int copy_every = -1;
  app.add_option("--copy-every", copy_every,
                 "Steps between copies of a job's newest checkpoint to "
                 "another job; 0: none (default: 0 in kill mode, 4 in "
                 "failpoint mode)")
      ->check(CLI::Range(0, 1000));
  std::string failpoints;
  app.add_option("--failpoints", failpoints,
                 "Failpoint mode: the points to arm, comma-separated "
                 "(default: all that ckpt-server --list-failpoints names)");
  int min_fires = 0;
  app.add_option("--min-fires", min_fires,
                 "Failpoint mode: fail unless every point fired at least "
                 "this often over all seeds")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000000));
  int fires_per_point = 0;
  app.add_option("--fires", fires_per_point,
                 "Failpoint mode: instead of --cycles cycles, run until every "
                 "point fired this often, each cycle arming one of the least "
                 "fired (--cycles is then the most cycles a seed runs)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000000));
  int failpoint_wait_seconds = 10;
  app.add_option("--failpoint-wait-seconds", failpoint_wait_seconds,
                 "Failpoint mode: how long a cycle waits for its point to "
                 "fire before it SIGKILLs the server instead")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  app.add_option("--lease-seconds", lease_seconds,
                 "Lease of each pending checkpoint (default: 10 in kill "
                 "mode; 2 in failpoint mode, where a checkpoint a crash left "
                 "pending keeps the next server's garbage collections from "
                 "sweeping until its lease ends)")
      ->check(CLI::Range(1, 3600));
  app.add_option("--cycle-ms", cycle_ms,
                 "Kill mode: the SIGKILL comes uniformly within this many ms "
                 "of the cycle's start")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600 * 1000));
  app.add_option("--history-dir", history_dir,
                 "Where histories (JSON lines) and server logs go")
      ->capture_default_str();
  app.add_flag("--keep-history", keep_history,
               "Keep histories of runs without violations too");
  app.add_option("--check-history", check_history,
                 "Only check this history file offline, and exit");
  CLI11_PARSE(app, argc, argv);

  if (!check_history.empty()) return CheckFile(check_history);
  if (min_kib > max_kib) {
    std::fprintf(stderr, "--min-shard-kib is above --max-shard-kib\n");
    return 2;
  }
  workload.min_shard_bytes = min_kib << 10;
  workload.max_shard_bytes = max_kib << 10;
  workload.chunk_bytes = chunk_kib << 10;
  options.mode = mode_name == "kill"        ? CrashMode::kKill
                 : mode_name == "failpoint" ? CrashMode::kFailpoint
                                            : CrashMode::kChaos;
  // Chaos mode takes failpoint mode's defaults.
  const bool arms_failpoints = options.mode != CrashMode::kKill;
  if (lease_seconds == 0) {
    lease_seconds = arms_failpoints ? 2 : 10;
  }
  workload.lease = absl::Seconds(lease_seconds);
  options.fires_per_point = fires_per_point;
  options.cycle_length = absl::Milliseconds(cycle_ms);
  options.failpoint_wait = absl::Seconds(failpoint_wait_seconds);
  workload.abandon_every =
      abandon_every >= 0 ? abandon_every : (arms_failpoints ? 3 : 0);
  workload.copy_every =
      copy_every >= 0 ? copy_every : (arms_failpoints ? 4 : 0);
  if (arms_failpoints) {
    if (failpoints.empty()) {
      auto listed = ListFailpoints();
      if (!listed.ok()) {
        std::fprintf(stderr, "%s\n", listed.status().ToString().c_str());
        return 2;
      }
      options.failpoints = *std::move(listed);
    } else {
      options.failpoints = absl::StrSplit(failpoints, ',', absl::SkipEmpty());
    }
    if (fires_per_point > 0 && cycles_option->count() == 0) {
      cycles =
          3 * fires_per_point * static_cast<int>(options.failpoints.size());
    }
  }

  std::vector<SeedRun> runs = {{.seed = seed, .cycles = cycles}};
  if (!seeds_file.empty()) {
    auto read = ReadSeeds(seeds_file, cycles);
    if (!read.ok()) {
      std::fprintf(stderr, "%s\n", read.status().ToString().c_str());
      return 2;
    }
    runs = *std::move(read);
  }

  json total = {{"test", TestName(options.mode)},
                {"mode", mode_name},
                {"summary", true},
                {"seeds", json::array()}};
  for (const SeedRun& run : runs) {
    options.seed = run.seed;
    options.cycles = run.cycles;
    const std::string stem = absl::StrCat(
        history_dir, "/ckpt-crash-", mode_name, "-", run.seed, "-", ::getpid());
    options.history_path = stem + ".jsonl";
    options.server_log_path = stem + ".server.log";
    absl::StatusOr<CrashRunSummary> summary = RunCrashTest(options);
    if (!summary.ok()) {
      std::fprintf(
          stderr, "FAILED seed %llu: %s\nhistory: %s\nserver log: %s\n",
          static_cast<unsigned long long>(run.seed),
          summary.status().ToString().c_str(), options.history_path.c_str(),
          options.server_log_path.c_str());
      return 1;
    }
    const json line = RunJson(*summary, options.mode);
    std::printf("%s\n", line.dump().c_str());
    std::fflush(stdout);
    Accumulate(total, line);
    if (!summary->check.violations.empty()) {
      PrintViolations(summary->check);
      std::fprintf(stderr,
                   "FAILED seed %llu: %zu violations\nhistory: %s\nserver "
                   "log: %s\nreplay: ckpt-crash-test --seed %llu --cycles %d "
                   "--mode %s; check again: ckpt-crash-test "
                   "--check-history %s\n",
                   static_cast<unsigned long long>(run.seed),
                   summary->check.violations.size(),
                   options.history_path.c_str(),
                   options.server_log_path.c_str(),
                   static_cast<unsigned long long>(run.seed), run.cycles,
                   mode_name.c_str(), options.history_path.c_str());
      std::printf("%s\n", total.dump().c_str());
      return 1;
    }
    if (!keep_history) {
      std::filesystem::remove(options.history_path);
      std::filesystem::remove(options.server_log_path);
    }
  }
  std::printf("%s\n", total.dump().c_str());
  int short_points = 0;
  for (const std::string& point : options.failpoints) {
    const int64_t fired =
        total.contains("fires") ? total["fires"].value(point, int64_t{0}) : 0;
    if (fired < min_fires) {
      std::fprintf(stderr, "failpoint %s fired %lld times, fewer than %d\n",
                   point.c_str(), static_cast<long long>(fired), min_fires);
      ++short_points;
    }
  }
  return short_points == 0 ? 0 : 1;
}

}  // namespace
}  // namespace ckpt::reliability

int main(int argc, char** argv) { return ckpt::reliability::Main(argc, argv); }
