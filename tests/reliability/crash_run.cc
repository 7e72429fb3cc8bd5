#include "tests/reliability/crash_run.h"

#include <stdlib.h>

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
// the default lease) are aborted within a second of their lease running
// out, garbage collection runs only when the workload or the observation
// asks for it, and spares chunks a save named for 5 s only, so that it
// sweeps what prunes and deletes left while saves run.
std::vector<std::string> ServerArgs() {
  return {"--lease-check-interval", "1", "--default-lease-seconds", "5",
          "--gc-interval",          "0", "--chunk-hold-seconds",    "5"};
}

constexpr char kFiredLine[] = "ckpt failpoint fired: ";

// Sets the failpoint environment of the servers started while it lives
// (they inherit this process's environment).
class ArmedEnvironment {
 public:
  ArmedEnvironment(const std::string& spec, uint64_t seed) {
    ::setenv("CKPT_FAILPOINT", spec.c_str(), 1);
    ::setenv("CKPT_FAILPOINT_SEED", std::to_string(seed).c_str(), 1);
  }
  ~ArmedEnvironment() {
    ::unsetenv("CKPT_FAILPOINT");
    ::unsetenv("CKPT_FAILPOINT_SEED");
  }
  ArmedEnvironment(const ArmedEnvironment&) = delete;
  ArmedEnvironment& operator=(const ArmedEnvironment&) = delete;
};

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
    for (int cycle = 1; cycle <= options_.cycles; ++cycle) {
      if (absl::Status status = Cycle(cycle); !status.ok()) return status;
      if (!CheckHistory(history_.records()).violations.empty()) break;
    }
    // The last crash's aftermath, then a clean stop.
    auto server = StartServer();
    if (!server.ok()) return server.status();
    auto client =
        client::Client::Connect((*server)->address(), ClientOptions());
    if (!client.ok()) return client.status();
    Observe(**client, options_.cycles + 1);
    client->reset();
    absl::StatusOr<int> stopped = (*server)->Stop();
    if (!stopped.ok()) return stopped.status();
    if (*stopped != 0) {
      return absl::InternalError(
          absl::StrCat("ckpt-server exited with ", *stopped, " on SIGTERM"));
    }
    return Summary();
  }

 private:
  absl::Status Cycle(int cycle) {
    return options_.mode == CrashMode::kKill ? KillCycle(cycle)
                                             : FailpointCycle(cycle);
  }

  absl::Status KillCycle(int cycle) {
    auto server = StartServer();
    if (!server.ok()) return server.status();
    auto client =
        client::Client::Connect((*server)->address(), ClientOptions());
    if (!client.ok()) return client.status();
    Observe(**client, cycle);
    ++cycles_;

    std::atomic<bool> stop{false};
    std::thread traffic([&] { workload_.RunCycle(**client, stop); });
    std::uniform_int_distribution<int64_t> delay_us(
        0, absl::ToInt64Microseconds(options_.cycle_length) - 1);
    absl::SleepFor(absl::Microseconds(delay_us(rng_)));
    (*server)->Kill();
    stop = true;
    traffic.join();
    return absl::OkStatus();
  }

  // T2: the observation on an unarmed server (its own GC and verify must
  // not hit the point), then the workload on a server with one point armed
  // until it fires.
  absl::Status FailpointCycle(int cycle) {
    {
      auto server = StartServer();
      if (!server.ok()) return server.status();
      auto client =
          client::Client::Connect((*server)->address(), ClientOptions());
      if (!client.ok()) return client.status();
      Observe(**client, cycle);
      client->reset();
      absl::StatusOr<int> stopped = (*server)->Stop();
      if (!stopped.ok()) return stopped.status();
      if (*stopped != 0) {
        return absl::InternalError(absl::StrCat(
            "the unarmed ckpt-server exited with ", *stopped, " on SIGTERM"));
      }
    }
    ++cycles_;
    const std::string point = PickFailpoint(cycle);
    const std::string spec = ArmingSpec(point);
    absl::StatusOr<std::unique_ptr<ServerProcess>> server;
    {
      ArmedEnvironment armed(spec, rng_());
      server = StartServer();
    }
    if (!server.ok()) return server.status();
    auto client =
        client::Client::Connect((*server)->address(), ClientOptions());
    if (!client.ok()) return client.status();
    std::atomic<bool> stop{false};
    std::thread traffic([&] { workload_.RunCycle(**client, stop); });
    absl::StatusOr<int> exited = (*server)->WaitExit(options_.failpoint_wait);
    if (!exited.ok()) {
      (*server)->Kill();  // the point was not reached in time
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

  // The points in turn for the first pass over them, then alternately in
  // turn and at random.
  std::string PickFailpoint(int cycle) {
    const std::vector<std::string>& names = options_.failpoints;
    const size_t turn = static_cast<size_t>(cycle - 1);
    if (turn < names.size() || turn % 2 == 0) return names[turn % names.size()];
    std::uniform_int_distribution<size_t> any(0, names.size() - 1);
    return names[any(rng_)];
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

  absl::StatusOr<std::unique_ptr<ServerProcess>> StartServer() {
    const absl::Time start = absl::Now();
    auto server =
        ServerProcess::Start(db_path_, ServerArgs(), options_.server_log_path);
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
    summary.copies = stats.copies;
    summary.fires = fires_;
    summary.failpoint_fallback_kills = fallback_kills_;
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
  ObserveStats observe_stats_;
  std::map<std::string, int> fires_;
  int fallback_kills_ = 0;
  uint64_t log_offset_ = 0;
};

}  // namespace

absl::StatusOr<CrashRunSummary> RunCrashTest(const CrashRunOptions& options) {
  auto history = HistoryRecorder::Create(options.history_path);
  if (!history.ok()) return history.status();
  return CrashRun(options, **history).Run();
}

}  // namespace ckpt::reliability
