#include "tests/reliability/crash_run.h"

#include <algorithm>
#include <atomic>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "tests/reliability/history.h"
#include "tests/reliability/server_observer.h"
#include "tests/testing/server_process.h"
#include "tests/testing/temp_dir.h"

namespace ckpt::reliability {
namespace {

using testing::ServerProcess;

// The server's flags: pending checkpoints a crash left behind (a copy's get
// the default lease, at most 5 s and no longer than the workload's) are
// aborted within a second of their lease running out, garbage collection
// runs only when the workload or the observation asks for it, and spares
// chunks a save named for 5 s only, so that it sweeps what prunes and
// deletes left while saves run.
std::vector<std::string> ServerArgs(absl::Duration lease) {
  const int64_t default_lease =
      std::clamp<int64_t>(absl::ToInt64Seconds(lease), 1, 5);
  return {"--lease-check-interval",  "1",
          "--default-lease-seconds", absl::StrCat(default_lease),
          "--gc-interval",           "0",
          "--chunk-hold-seconds",    "5"};
}

constexpr char kFiredLine[] = "ckpt failpoint fired: ";

client::ConnectOptions ClientOptions() {
  client::ConnectOptions options;
  options.connect_timeout = absl::Seconds(10);
  options.rpc_timeout = absl::Seconds(60);
  options.stream_stall_timeout = absl::Seconds(30);
  return options;
}

class CrashRun {
 public:
  CrashRun(const CrashRunOptions& options, HistoryRecorder& history)
      : options_(options),
        history_(history),
        rng_(options.seed),
        workload_(options.workload, options.seed, history) {}

  absl::StatusOr<CrashRunSummary> Run() {
    auto dir = testing::TempDir::Create("ckpt-crash");
    if (!dir.ok()) return dir.status();
    db_path_ = (*dir)->path() + "/db";
    for (int cycle = 1; cycle <= options_.cycles && !EveryPointFired();
         ++cycle) {
      if (absl::Status status = Cycle(cycle); !status.ok()) return status;
      if (!CheckHistory(history_.records()).violations.empty()) break;
    }
    // The last crash's aftermath, then a clean stop.
    if (absl::Status status = ObserveOnCleanServer(cycles_ + 1); !status.ok()) {
      return status;
    }
    return Summary();
  }

 private:
  absl::Status Cycle(int cycle) {
    switch (options_.mode) {
      case CrashMode::kKill:
        return KillCycle(cycle);
      case CrashMode::kFailpoint:
        return FailpointCycle(cycle);
      case CrashMode::kChaos:
        break;
    }
    switch (std::uniform_int_distribution<int>(0, 2)(rng_)) {
      case 0:
        ++chaos_kills_;
        return KillCycle(cycle);
      case 1:
        ++chaos_failpoints_;
        return FailpointCycle(cycle);
      default:
        ++chaos_clean_stops_;
        return CleanStopCycle(cycle);
    }
  }

  // A started server and a client connected to it.
  struct Running {
    std::unique_ptr<ServerProcess> server;
    std::unique_ptr<client::Client> client;
  };

  // `env`: NAME=VALUE entries added to the server's environment; `limits`:
  // flags added to its command line.
  absl::StatusOr<Running> StartConnected(
      const std::vector<std::string>& env = {},
      const std::vector<std::string>& limits = {}) {
    Running running;
    auto server = StartServer(env, limits);
    if (!server.ok()) return server.status();
    running.server = *std::move(server);
    auto client =
        client::Client::Connect(running.server->address(), ClientOptions());
    if (!client.ok()) return client.status();
    running.client = *std::move(client);
    return running;
  }

  // Starts an unarmed server, records what it serves, and stops it (it
  // must exit 0 on SIGTERM).
  absl::Status ObserveOnCleanServer(int64_t cycle) {
    auto running = StartConnected();
    if (!running.ok()) return running.status();
    Observe(*running->client, cycle);
    running->client.reset();
    absl::StatusOr<int> stopped = running->server->Stop();
    if (!stopped.ok()) return stopped.status();
    if (*stopped != 0) {
      return absl::InternalError(
          absl::StrCat("ckpt-server exited with ", *stopped, " on SIGTERM"));
    }
    return absl::OkStatus();
  }

  absl::Status KillCycle(int cycle) { return InterruptedCycle(cycle, false); }
  absl::Status CleanStopCycle(int cycle) {
    return InterruptedCycle(cycle, true);
  }

  // The server ended at a uniformly random moment of the workload: SIGKILL
  // (T1) or, with `clean_stop`, SIGTERM (T24), after which it must drain
  // its calls and exit 0; what the workload had in flight is unknown.
  absl::Status InterruptedCycle(int cycle, bool clean_stop) {
    auto running = StartConnected(
        {}, options_.mode == CrashMode::kChaos ? PickLimits() : Limits{});
    if (!running.ok()) return running.status();
    Observe(*running->client, cycle);
    ++cycles_;

    std::atomic<bool> stop{false};
    std::thread traffic([&] { workload_.RunCycle(*running->client, stop); });
    std::uniform_int_distribution<int64_t> delay_us(
        0, absl::ToInt64Microseconds(options_.cycle_length) - 1);
    absl::SleepFor(absl::Microseconds(delay_us(rng_)));
    absl::StatusOr<int> stopped = 0;
    if (clean_stop) {
      stopped = running->server->Stop();
    } else {
      running->server->Kill();
    }
    stop = true;
    traffic.join();
    if (!stopped.ok()) return stopped.status();
    if (*stopped != 0) {
      return absl::InternalError(
          absl::StrCat("ckpt-server exited with ", *stopped,
                       " on SIGTERM during the workload (cycle ", cycle,
                       "; see ", options_.server_log_path, ")"));
    }
    return absl::OkStatus();
  }

  // T2: the observation on an unarmed server (its own GC and verify must
  // not hit the point), then the workload on a server with one point armed
  // until it fires.
  absl::Status FailpointCycle(int cycle) {
    if (absl::Status status = ObserveOnCleanServer(cycle); !status.ok()) {
      return status;
    }
    ++cycles_;
    const std::string point = PickFailpoint(cycle);
    const std::string spec = ArmingSpec(point);
    auto running =
        StartConnected({absl::StrCat("CKPT_FAILPOINT=", spec),
                        absl::StrCat("CKPT_FAILPOINT_SEED=", rng_())});
    if (!running.ok()) return running.status();
    std::atomic<bool> stop{false};
    std::thread traffic([&] { workload_.RunCycle(*running->client, stop); });
    absl::StatusOr<int> exited =
        running->server->WaitForExit(options_.failpoint_wait);
    if (!exited.ok()) {
      running->server->Kill();  // the point was not reached in time
      ++fallback_kills_;
    }
    stop = true;
    traffic.join();
    const std::vector<std::string> fired = NewFires();
    for (const std::string& name : fired) ++fires_[name];
    if (exited.ok() && fired.empty()) {
      return absl::InternalError(absl::StrCat(
          "ckpt-server armed with CKPT_FAILPOINT=", spec, " exited with ",
          *exited, " but no failpoint fired: a crash of its own (see ",
          options_.server_log_path, ")"));
    }
    return absl::OkStatus();
  }

  using Limits = std::vector<std::string>;

  // T24 with T16/T18 mixed in: half of the chaos cycles that end in a kill
  // or a stop run their traffic against a server with one of the security
  // issue's limits set low, so that part of it is refused with
  // RESOURCE_EXHAUSTED (a kFail the model holds to "no effect") while the
  // rest commits, and the kill or stop lands among the refusals: the
  // tenant's stored bytes (T16's quota: a random level that some saves
  // pass and some do not, as prunes and GC free bytes), one upload stream
  // per tenant (two ranks upload at once), few bytes per upload stream, or
  // an upload buffer budget of a few messages or less (nothing refused:
  // streams wait for one another, and are killed or stopped waiting), in
  // turn.
  // Failpoint cycles keep their servers unlimited so the points are
  // reached. The observation before the traffic (lists, restores, GC,
  // verify) uploads nothing, so the limits do not touch it.
  Limits PickLimits() {
    if (rng_() % 2 == 0) return {};
    // In turn, so that a short run meets each of them.
    switch (limits_picked_++ % 4) {
      case 0:
        ++limited_cycles_["quota_bytes"];
        return {"--quota-bytes",
                absl::StrCat(std::uniform_int_distribution<int64_t>(
                    256 << 10, 4 << 20)(rng_))};
      case 1:
        ++limited_cycles_["quota_upload_streams"];
        return {"--quota-upload-streams", "1"};
      case 2:
        ++limited_cycles_["max_upload_stream_bytes"];
        return {"--max-upload-stream-bytes",
                absl::StrCat(std::uniform_int_distribution<int64_t>(
                    64 << 10, 512 << 10)(rng_))};
      default:
        ++limited_cycles_["upload_buffer_bytes"];
        return {"--upload-buffer-bytes",
                absl::StrCat(
                    std::uniform_int_distribution<int64_t>(1, 12 << 20)(rng_))};
    }
  }

  // Whether the run has its fires_per_point (never without one).
  bool EveryPointFired() const {
    if (options_.mode != CrashMode::kFailpoint ||
        options_.fires_per_point <= 0) {
      return false;
    }
    for (const std::string& name : options_.failpoints) {
      const auto it = fires_.find(name);
      if (it == fires_.end() || it->second < options_.fires_per_point) {
        return false;
      }
    }
    return true;
  }

  // With fires_per_point, one of the points fired least so far, at random.
  // Otherwise every fifth cycle a point at random, the others the points in
  // turn (so that N x 5 / 4 cycles arm each of N points at least N times).
  std::string PickFailpoint(int cycle) {
    const std::vector<std::string>& names = options_.failpoints;
    if (options_.fires_per_point > 0) {
      std::vector<std::string> least;
      int fewest = 0;
      for (const std::string& name : names) {
        const auto it = fires_.find(name);
        const int fired = it == fires_.end() ? 0 : it->second;
        if (least.empty() || fired < fewest) {
          least.clear();
          fewest = fired;
        }
        if (fired == fewest) least.push_back(name);
      }
      std::uniform_int_distribution<size_t> any(0, least.size() - 1);
      return least[any(rng_)];
    }
    if (cycle % 5 == 0) {
      std::uniform_int_distribution<size_t> any(0, names.size() - 1);
      return names[any(rng_)];
    }
    return names[in_turn_++ % names.size()];
  }

  // NAME@K (the K-th hit, K in 1..3) or NAME%N (each hit with probability
  // 1/N, N in 2..4), alternately.
  std::string ArmingSpec(const std::string& point) {
    if (rng_() % 2 == 0) {
      return absl::StrCat(point, "@", 1 + rng_() % 3);
    }
    return absl::StrCat(point, "%", 2 + rng_() % 3);
  }

  // The "ckpt failpoint fired: NAME" lines the server log gained since the
  // last call.
  std::vector<std::string> NewFires() {
    std::vector<std::string> names;
    std::ifstream log(options_.server_log_path);
    if (!log) return names;
    log.seekg(static_cast<std::streamoff>(log_offset_));
    std::string line;
    while (std::getline(log, line)) {
      if (log.eof()) break;  // a partial last line: read it next time
      log_offset_ += line.size() + 1;
      const size_t at = line.find(kFiredLine);
      if (at == std::string::npos) continue;
      // "ckpt failpoint fired: NAME (hit K)".
      std::string name = line.substr(at + sizeof(kFiredLine) - 1);
      name = name.substr(0, name.find_first_of(" \r"));
      names.push_back(std::move(name));
    }
    return names;
  }

  absl::StatusOr<std::unique_ptr<ServerProcess>> StartServer(
      const std::vector<std::string>& env, const Limits& limits) {
    const absl::Time start = absl::Now();
    std::vector<std::string> args = ServerArgs(options_.workload.lease);
    args.insert(args.end(), limits.begin(), limits.end());
    // Every other server stores whole workload chunks in chunk files (the
    // rest, and smaller pieces, in RocksDB): crashes strike both write paths
    // and a store that mixes them.
    if (++server_starts_ % 2 == 0) {
      args.push_back("--file-chunk-min-bytes");
      args.push_back(absl::StrCat(options_.workload.chunk_bytes));
    }
    auto server =
        ServerProcess::Start(db_path_, args, options_.server_log_path, env);
    if (!server.ok()) {
      return absl::Status(server.status().code(),
                          absl::StrCat("ckpt-server did not reopen ", db_path_,
                                       ": ", server.status().message()));
    }
    max_reopen_seconds_ = std::max(max_reopen_seconds_,
                                   absl::ToDoubleSeconds(absl::Now() - start));
    return server;
  }

  void Observe(client::Client& client, int64_t cycle) {
    history_.Observe(
        ObserveServer(client, workload_.JobNames(), cycle, observe_stats_));
  }

  CrashRunSummary Summary() const {
    CrashRunSummary summary;
    summary.seed = options_.seed;
    summary.cycles = cycles_;
    summary.check = CheckHistory(history_.records());
    const WorkloadStats& stats = workload_.stats();
    summary.saves_ok = stats.saves_ok;
    summary.saves_unknown = stats.saves_unknown;
    summary.prunes = stats.prunes;
    summary.deletes = stats.deletes;
    summary.gcs = stats.gcs;
    summary.gcs_skipped = stats.gcs_skipped;
    summary.copies = stats.copies;
    summary.fires = fires_;
    summary.failpoint_fallback_kills = fallback_kills_;
    summary.chaos_kills = chaos_kills_;
    summary.chaos_failpoints = chaos_failpoints_;
    summary.chaos_clean_stops = chaos_clean_stops_;
    summary.chaos_limited_cycles = limited_cycles_;
    summary.saves_refused = stats.saves_refused;
    summary.bytes_sent = stats.bytes_sent;
    summary.bytes_restored = observe_stats_.bytes_restored;
    summary.max_reopen_seconds = max_reopen_seconds_;
    return summary;
  }

  const CrashRunOptions& options_;
  HistoryRecorder& history_;
  std::mt19937_64 rng_;
  CrashWorkload workload_;
  std::string db_path_;
  int cycles_ = 0;
  double max_reopen_seconds_ = 0;
  int server_starts_ = 0;
  ObserveStats observe_stats_;
  std::map<std::string, int> fires_;
  int fallback_kills_ = 0;
  int chaos_kills_ = 0;
  int chaos_failpoints_ = 0;
  int chaos_clean_stops_ = 0;
  std::map<std::string, int> limited_cycles_;
  int limits_picked_ = 0;
  size_t in_turn_ = 0;
  uint64_t log_offset_ = 0;
};

}  // namespace

absl::StatusOr<CrashRunSummary> RunCrashTest(const CrashRunOptions& options) {
  auto history = HistoryRecorder::Create(options.history_path);
  if (!history.ok()) return history.status();
  return CrashRun(options, **history).Run();
}

}  // namespace ckpt::reliability
