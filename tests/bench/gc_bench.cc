// ckpt-bench-gc: what garbage collection costs and returns, through a real
// ckpt-server on loopback. Each round, on a fresh server:
//   1. saves N checkpoints; each keeps half of its bytes from the first one
//      and rewrites the other half (so blob files end up half alive);
//   2. deletes the oldest half of them and times one collection: seconds,
//      GiB scanned per second, and disk bytes freed per logical byte
//      deleted (1.0 = every dead byte returned);
//   3. deletes all but the newest, then times two more saves while
//      collections run back to back, against two saves alone in the same
//      round: the slowdown GC imposes on training.
// The collection's time is also given as a ratio to the round's median
// save of one checkpoint.
#include <atomic>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "tests/bench/bench_util.h"
#include "tests/testing/server_process.h"

namespace ckpt::bench {
namespace {

// Long enough for a save's upload-to-commit here, short enough to wait out
// before the timed collection (with no hold, back-to-back collections can
// sweep a save's fresh chunks before each of its commit attempts).
constexpr int kHoldSeconds = 3;

struct Flags {
  int checkpoints = 8;
  int64_t mib_per_checkpoint = 128;
  int rounds = 3;
  std::string dir;
  bool json = false;
};

struct RoundResult {
  double save_alone = 0;    // median of the saves without GC
  double save_with_gc = 0;  // median of the saves during collections
  double gc_seconds = 0;
  double scanned_gib_per_second = 0;
  double freed_per_deleted = 0;
  uint64_t bytes_deleted = 0;
};

absl::StatusOr<RoundResult> RunRound(const Flags& flags,
                                     const std::string& base, int round) {
  CKPT_ASSIGN_OR_RETURN(auto dir, testing::TempDir::Create(base + "/ckpt-gc"));
  CKPT_ASSIGN_OR_RETURN(
      auto server,
      testing::ServerProcess::Start(
          dir->path() + "/db", {"--gc-interval", "0", "--chunk-hold-seconds",
                                absl::StrCat(kHoldSeconds)}));
  CKPT_ASSIGN_OR_RETURN(auto client,
                        client::Client::Connect(server->address()));
  const std::string job = "bench/gc";
  const size_t floats =
      static_cast<size_t>(flags.mib_per_checkpoint) * (1 << 20) / 4;
  std::vector<float> state(floats);
  Fill(state, uint64_t{1000} * round);
  std::vector<float> fresh(floats / 2);

  int64_t step = 0;
  auto save = [&]() -> absl::StatusOr<double> {
    ++step;
    Fill(fresh, int64_t{1000} * round + step);
    std::copy(fresh.begin(), fresh.end(), state.begin() + floats / 2);
    auto tensors = Tensors(state, 0, 1);
    const absl::Time start = absl::Now();
    CKPT_RETURN_IF_ERROR(client->SaveShard(job, step, tensors, {}).status());
    return Seconds(start);
  };

  std::vector<double> alone;
  for (int i = 0; i < flags.checkpoints; ++i) {
    CKPT_ASSIGN_OR_RETURN(double seconds, save());
    alone.push_back(seconds);
  }
  for (int64_t s = 1; s <= flags.checkpoints / 2; ++s) {
    CKPT_RETURN_IF_ERROR(client->DeleteCheckpoint(job, s));
  }
  absl::SleepFor(absl::Seconds(kHoldSeconds + 1));  // the holds end
  const absl::Time gc_start = absl::Now();
  CKPT_ASSIGN_OR_RETURN(GcReport report, client->CollectGarbage(false));
  RoundResult result;
  result.gc_seconds = Seconds(gc_start);
  result.bytes_deleted = report.bytes_deleted;
  result.scanned_gib_per_second =
      static_cast<double>(report.bytes_scanned) / (1 << 30) / result.gc_seconds;
  const uint64_t freed =
      report.disk_bytes_before > report.disk_bytes_after
          ? report.disk_bytes_before - report.disk_bytes_after
          : 0;
  result.freed_per_deleted =
      report.bytes_deleted == 0 ? 0
                                : static_cast<double>(freed) /
                                      static_cast<double>(report.bytes_deleted);

  // Two more saves alone, then two while collections run back to back
  // (the first of which has the rest of the old checkpoints to sweep).
  for (int i = 0; i < 2; ++i) {
    CKPT_ASSIGN_OR_RETURN(double seconds, save());
    alone.push_back(seconds);
  }
  for (int64_t s = flags.checkpoints / 2 + 1; s < step; ++s) {
    CKPT_RETURN_IF_ERROR(client->DeleteCheckpoint(job, s));
  }
  absl::SleepFor(absl::Seconds(kHoldSeconds + 1));
  std::atomic<bool> stop{false};
  absl::Status collector_status;
  std::thread collector([&] {
    auto gc_client = client::Client::Connect(server->address());
    if (!gc_client.ok()) {
      collector_status = gc_client.status();
      return;
    }
    while (!stop.load()) {
      auto collected = (*gc_client)->CollectGarbage(false);
      if (!collected.ok()) {
        collector_status = collected.status();
        return;
      }
    }
  });
  std::vector<double> with_gc;
  absl::Status save_status;
  for (int i = 0; i < 2 && save_status.ok(); ++i) {
    absl::StatusOr<double> seconds = save();
    if (seconds.ok()) {
      with_gc.push_back(*seconds);
    } else {
      save_status = seconds.status();
    }
  }
  stop.store(true);
  collector.join();
  CKPT_RETURN_IF_ERROR(save_status);
  CKPT_RETURN_IF_ERROR(collector_status);
  CKPT_RETURN_IF_ERROR(server->Stop().status());
  result.save_alone = Median(alone);
  result.save_with_gc = Median(with_gc);
  return result;
}

absl::Status Run(const Flags& flags) {
  const std::string base = BenchBaseDir(flags.dir);
  std::vector<double> gc_seconds, gib_per_second, freed, slowdown, gc_per_save;
  for (int round = 0; round < flags.rounds; ++round) {
    CKPT_ASSIGN_OR_RETURN(RoundResult r, RunRound(flags, base, round));
    gc_seconds.push_back(r.gc_seconds);
    gib_per_second.push_back(r.scanned_gib_per_second);
    freed.push_back(r.freed_per_deleted);
    slowdown.push_back(r.save_with_gc / r.save_alone);
    gc_per_save.push_back(r.gc_seconds / r.save_alone);
    if (!flags.json) {
      std::cout << absl::StrFormat(
                       "round %d: gc %.3fs (%.2f GiB scanned/s, %.2f of %.0f "
                       "MiB deleted freed on disk, %.2fx one save)  save "
                       "%.3fs alone, %.3fs during gc (%.2fx)",
                       round, r.gc_seconds, r.scanned_gib_per_second,
                       r.freed_per_deleted,
                       static_cast<double>(r.bytes_deleted) / (1 << 20),
                       r.gc_seconds / r.save_alone, r.save_alone,
                       r.save_with_gc, r.save_with_gc / r.save_alone)
                << std::endl;
    }
  }
  if (flags.json) {
    nlohmann::json out = {
        {"checkpoints", flags.checkpoints},
        {"mib_per_checkpoint", flags.mib_per_checkpoint},
        {"rounds", flags.rounds},
        {"gc_seconds", Median(gc_seconds)},
        {"gc_scanned_gib_per_second", Median(gib_per_second)},
        {"disk_freed_per_byte_deleted", Median(freed)},
        {"gc_seconds_per_save_seconds", Median(gc_per_save)},
        {"save_slowdown_during_gc", Median(slowdown)},
    };
    std::cout << out.dump(2) << std::endl;
  } else {
    std::cout << absl::StrFormat(
        "\n%d checkpoints of %d MiB, median of %d rounds\n"
        "  gc %.3fs = %.2fx one save; %.2f GiB scanned/s; %.2f of the deleted "
        "bytes freed on disk\n"
        "  saves during back-to-back collections: %.2fx as long as alone\n",
        flags.checkpoints, flags.mib_per_checkpoint, flags.rounds,
        Median(gc_seconds), Median(gc_per_save), Median(gib_per_second),
        Median(freed), Median(slowdown));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace ckpt::bench

int main(int argc, char** argv) {
  ckpt::bench::Flags flags;
  CLI::App app{
      "Garbage collection through ckpt-server: its time, the disk space it "
      "returns, and how much it slows saves running at the same time."};
  app.add_option("--checkpoints", flags.checkpoints,
                 "checkpoints saved per round; the oldest half is collected")
      ->capture_default_str()
      ->check(CLI::Range(2, 1000));
  app.add_option("--mib-per-checkpoint", flags.mib_per_checkpoint,
                 "float32 bytes per checkpoint, in MiB (half rewritten each)")
      ->capture_default_str()
      ->check(CLI::Range(8, 1 << 16));
  ckpt::bench::AddRoundsDirJsonFlags(
      app, &flags.rounds, &flags.dir, &flags.json,
      "directory for the server's data (default: $TMPDIR or /var/tmp)");
  CLI11_PARSE(app, argc, argv);
  return ckpt::bench::ExitCode("ckpt-bench-gc", ckpt::bench::Run(flags));
}
