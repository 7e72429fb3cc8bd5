// ckpt-bench-save-restore: full save and restore of ~1 GiB of float32
// tensors from N ranks through a real ckpt-server on loopback, each measured
// side by side with its floor in the same run:
//   save    vs writing the same bytes to a file in 1 MiB pieces + fsync;
//   restore vs reading that file back and computing its SHA-256 (per
//           4 MiB piece, as ckpt verifies each chunk); each round restores
//           twice, through shared memory (the default on one host) and
//           streamed (shared_memory_restore = false), in alternating order.
// Rounds alternate baseline and ckpt so machine noise hits both alike; the
// report gives medians and ratios. --tls runs the server and clients over
// TLS (throwaway certificates from tests/testing/make_test_pki.sh), and
// --shared-memory-restore=false makes restores stream every byte over the
// connection, so that TLS's cost shows on restores too. --server-arg passes
// a flag to ckpt-server (e.g. --server-arg=--quota-bytes=1T), to measure
// what a server setting costs.
//
// Each save also times every rank's SaveShard alone: the report gives the
// slowest rank against the median one (with --ranks 8, issue 19's "no rank
// waits more than 1.5x the median rank"), and the aggregate against the
// disk's floor. --verify adds, after the rounds, `verify --read-data` of the
// last checkpoint on one thread and on every core (the server restarted
// with --verify-threads 1 and the core count in turn, alternating which
// goes first), next to the floor's one-thread read+SHA-256 of the same
// bytes.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "common/ordered_parallel.h"
#include "common/status_macros.h"
#include "common/verify.h"
#include "nlohmann/json.hpp"
#include "tests/bench/bench_util.h"
#include "tests/bench/disk_floor.h"
#include "tests/testing/server_process.h"
#include "tests/testing/test_pki.h"

namespace ckpt::bench {
namespace {

struct Flags {
  int64_t total_mib = 1024;
  int32_t ranks = 2;
  int rounds = 3;
  std::string dir;
  bool json = false;
  bool tls = false;
  bool shared_memory_restore = true;
  bool verify = false;
  std::vector<std::string> server_args;
};

// The slowest rank's time over the median rank's.
double SlowestOverMedian(const std::vector<double>& rank_seconds) {
  return *std::max_element(rank_seconds.begin(), rank_seconds.end()) /
         Median(rank_seconds);
}

// Seconds `verify --read-data` of (job, step) takes on a server over `db`
// restarted with --verify-threads `threads`; fails unless
// it finds the checkpoint intact with `bytes` read.
absl::StatusOr<double> VerifySeconds(const std::string& db,
                                     std::vector<std::string> server_flags,
                                     const client::ConnectOptions& connect,
                                     int threads, const std::string& job,
                                     int64_t step, size_t bytes) {
  server_flags.push_back(absl::StrCat("--verify-threads=", threads));
  CKPT_ASSIGN_OR_RETURN(
      auto server, testing::ServerProcess::Start(db, std::move(server_flags)));
  CKPT_ASSIGN_OR_RETURN(auto client,
                        client::Client::Connect(server->address(), connect));
  VerifyOptions options;
  options.job = job;
  options.step = step;
  options.read_data = true;
  const absl::Time start = absl::Now();
  CKPT_ASSIGN_OR_RETURN(VerifyReport report,
                        client->VerifyCheckpoints(options));
  const double seconds = Seconds(start);
  if (!report.ok() || report.bytes_read != bytes) {
    return absl::DataLossError(absl::StrCat("verify found damage or read ",
                                            report.bytes_read, " bytes, not ",
                                            bytes));
  }
  client.reset();
  CKPT_RETURN_IF_ERROR(server->Stop().status());
  return seconds;
}

absl::Status Run(const Flags& flags) {
  const std::string base = BenchBaseDir(flags.dir);
  CKPT_ASSIGN_OR_RETURN(auto dir,
                        testing::TempDir::Create(base + "/ckpt-bench"));
  client::ConnectOptions connect;
  connect.shared_memory_restore = flags.shared_memory_restore;
  std::vector<std::string> server_flags;
  if (flags.tls) {
    CKPT_ASSIGN_OR_RETURN(testing::TestPki pki,
                          testing::TestPki::Create(dir->path() + "/pki"));
    server_flags = pki.ServerFlags(/*mutual=*/false);
    connect.tls_ca_pem = pki.Pem("ca.pem");
  }
  server_flags.insert(server_flags.end(), flags.server_args.begin(),
                      flags.server_args.end());
  CKPT_ASSIGN_OR_RETURN(auto server,
                        testing::ServerProcess::Start(dir->path() + "/db",
                                                      std::move(server_flags)));
  std::vector<std::unique_ptr<client::Client>> clients, streaming_clients;
  client::ConnectOptions streamed = connect;
  streamed.shared_memory_restore = false;
  for (int32_t r = 0; r < flags.ranks; ++r) {
    CKPT_ASSIGN_OR_RETURN(auto c,
                          client::Client::Connect(server->address(), connect));
    clients.push_back(std::move(c));
    CKPT_ASSIGN_OR_RETURN(auto s,
                          client::Client::Connect(server->address(), streamed));
    streaming_clients.push_back(std::move(s));
  }
  const size_t floats_per_rank =
      static_cast<size_t>(flags.total_mib) * (1 << 20) / 4 / flags.ranks;
  const size_t total_bytes = floats_per_rank * 4 * flags.ranks;
  std::vector<std::vector<float>> data(flags.ranks,
                                       std::vector<float>(floats_per_rank));
  // Each round writes a new file and keeps the old ones, as successive
  // torch.save checkpoints would (and as the server keeps its checkpoints):
  // overwriting one file would recycle warm page-cache pages and flatter the
  // baseline on virtual machines, where first-touched pages are slow.
  std::vector<std::string> baseline_files;
  std::vector<double> base_save, ckpt_save, base_restore, ckpt_restore,
      ckpt_stream_restore, ckpt_resave, rank_ratio;
  std::vector<std::vector<double>> rank_seconds_all;

  for (int round = 0; round < flags.rounds; ++round) {
    for (int32_t r = 0; r < flags.ranks; ++r) Fill(data[r], round * 100 + r);
    const std::string job = "bench/model";
    const int64_t step = round;

    const std::string baseline_file =
        absl::StrCat(dir->path(), "/baseline-", round, ".bin");
    baseline_files.push_back(baseline_file);
    CKPT_ASSIGN_OR_RETURN(double bs, BaselineSave(baseline_file, data));
    const absl::Time save_start = absl::Now();
    std::vector<double> rank_seconds(flags.ranks);
    CKPT_RETURN_IF_ERROR(ParallelRanks(flags.ranks, [&](int32_t r) {
      client::SaveOptions options;
      options.rank = r;
      options.world_size = flags.ranks;
      auto tensors = Tensors(data[r], r, flags.ranks);
      absl::Status saved =
          clients[r]->SaveShard(job, step, tensors, options).status();
      rank_seconds[r] = Seconds(save_start);
      return saved;
    }));
    const double cs = Seconds(save_start);

    CKPT_ASSIGN_OR_RETURN(double br,
                          BaselineRestore(baseline_file, total_bytes));
    // One restore by every rank through `by`, checked byte for byte.
    auto restore_all = [&](std::vector<std::unique_ptr<client::Client>>& by)
        -> absl::StatusOr<double> {
      std::vector<std::vector<client::RestoredTensor>> restored(flags.ranks);
      const absl::Time restore_start = absl::Now();
      CKPT_RETURN_IF_ERROR(ParallelRanks(flags.ranks, [&](int32_t r) {
        CKPT_ASSIGN_OR_RETURN(restored[r], by[r]->RestoreShard(job, step, r));
        return absl::OkStatus();
      }));
      const double seconds = Seconds(restore_start);
      for (int32_t r = 0; r < flags.ranks; ++r) {
        auto expected = Tensors(data[r], r, flags.ranks);
        for (size_t i = 0; i < expected.size(); ++i) {
          if (restored[r][i].bytes != expected[i].bytes) {
            return absl::DataLossError(
                absl::StrCat("restored bytes differ, rank ", r, " tensor ", i));
          }
        }
      }
      return seconds;
    };
    double cr = 0, csr = 0;
    if (round % 2 == 0) {
      CKPT_ASSIGN_OR_RETURN(cr, restore_all(clients));
      CKPT_ASSIGN_OR_RETURN(csr, restore_all(streaming_clients));
    } else {
      CKPT_ASSIGN_OR_RETURN(csr, restore_all(streaming_clients));
      CKPT_ASSIGN_OR_RETURN(cr, restore_all(clients));
    }

    // Re-saving unchanged state: only hashing and FindMissingChunks.
    const absl::Time resave_start = absl::Now();
    CKPT_RETURN_IF_ERROR(ParallelRanks(flags.ranks, [&](int32_t r) {
      client::SaveOptions options;
      options.rank = r;
      options.world_size = flags.ranks;
      auto tensors = Tensors(data[r], r, flags.ranks);
      CKPT_ASSIGN_OR_RETURN(
          auto result,
          clients[r]->SaveShard(job, step + 1000, tensors, options));
      if (result.bytes_sent != 0) {
        return absl::InternalError("unchanged re-save sent chunk bytes");
      }
      return absl::OkStatus();
    }));
    const double crs = Seconds(resave_start);

    base_save.push_back(bs);
    ckpt_save.push_back(cs);
    base_restore.push_back(br);
    ckpt_restore.push_back(cr);
    ckpt_stream_restore.push_back(csr);
    ckpt_resave.push_back(crs);
    rank_ratio.push_back(SlowestOverMedian(rank_seconds));
    rank_seconds_all.push_back(rank_seconds);
    if (!flags.json) {
      std::cout << absl::StrFormat(
                       "round %d: save %.3fs (baseline %.3fs, %.2fx; slowest "
                       "rank %.2fx the median)  restore "
                       "%.3fs (baseline %.3fs, %.2fx)  streamed restore "
                       "%.3fs  unchanged re-save %.3fs",
                       round, cs, bs, cs / bs, rank_ratio.back(), cr, br,
                       cr / br, csr, crs)
                << std::endl;
    }
  }
  for (const auto& file : baseline_files) ::unlink(file.c_str());
  CKPT_RETURN_IF_ERROR(server->Stop().status());

  // Verify of the last checkpoint, one thread against every core.
  std::vector<double> verify_one, verify_all;
  for (int round = 0; flags.verify && round < flags.rounds; ++round) {
    double one = 0, all = 0;
    for (int turn = 0; turn < 2; ++turn) {
      const bool one_thread = (turn == 0) == (round % 2 == 0);
      CKPT_ASSIGN_OR_RETURN(
          double seconds,
          VerifySeconds(dir->path() + "/db", server_flags, connect,
                        one_thread ? 1 : HardwareThreads(), "bench/model",
                        flags.rounds - 1, total_bytes));
      (one_thread ? one : all) = seconds;
    }
    verify_one.push_back(one);
    verify_all.push_back(all);
    if (!flags.json) {
      std::cout << absl::StrFormat(
                       "verify round %d: one thread %.3fs, every core %.3fs "
                       "(%.2fx faster)",
                       round, one, all, one / all)
                << std::endl;
    }
  }

  const double gib = static_cast<double>(total_bytes) / (1 << 30);
  const double s = Median(ckpt_save), bs = Median(base_save);
  const double r = Median(ckpt_restore), br = Median(base_restore);
  const double sr = Median(ckpt_stream_restore);
  const double rs = Median(ckpt_resave);
  if (flags.json) {
    nlohmann::json out = {
        {"tls", flags.tls},
        {"shared_memory_restore", flags.shared_memory_restore},
        {"server_args", flags.server_args},
        {"save_seconds_all", ckpt_save},
        {"bytes", total_bytes},
        {"ranks", flags.ranks},
        {"rounds", flags.rounds},
        {"save_seconds", s},
        {"save_baseline_seconds", bs},
        {"save_ratio", s / bs},
        {"restore_seconds", r},
        {"restore_baseline_seconds", br},
        {"restore_ratio", r / br},
        {"unchanged_resave_seconds", rs},
        {"restore_seconds_all", ckpt_restore},
        {"streamed_restore_seconds", sr},
        {"streamed_restore_seconds_all", ckpt_stream_restore},
        {"save_baseline_seconds_all", base_save},
        {"restore_baseline_seconds_all", base_restore},
        {"save_floor_over_ckpt", bs / s},
        {"save_rank_seconds_all", rank_seconds_all},
        {"slowest_rank_over_median", Median(rank_ratio)},
        {"slowest_rank_over_median_all", rank_ratio},
    };
    if (flags.verify) {
      out["verify_one_thread_seconds_all"] = verify_one;
      out["verify_all_cores_seconds_all"] = verify_all;
      out["verify_speedup"] = Median(verify_one) / Median(verify_all);
      out["cores"] = HardwareThreads();
    }
    std::cout << out.dump(2) << std::endl;
  } else {
    std::cout << absl::StrFormat(
        "\n%.2f GiB, %d ranks, %s, median of %d rounds\n"
        "  save     %.3fs  %.2f GiB/s   baseline write+fsync %.3fs   "
        "ratio %.2fx\n"
        "  restore  %.3fs  %.2f GiB/s   baseline read+sha256 %.3fs   "
        "ratio %.2fx   (range %s)\n"
        "  streamed restore %.3fs  %.2f GiB/s   (range %s; shared memory "
        "takes %.2fx its time)\n"
        "  unchanged re-save %.3fs (%.2fx the baseline save)\n",
        gib, flags.ranks, flags.tls ? "TLS" : "plaintext", flags.rounds, s,
        gib / s, bs, s / bs, r, gib / r, br, r / br, Spread(ckpt_restore), sr,
        gib / sr, Spread(ckpt_stream_restore), r / sr, rs, rs / bs);
    std::cout << absl::StrFormat(
        "  save spread %s (baseline %s); aggregate %.2fx the floor's speed; "
        "slowest rank %.2fx the median rank (worst round %.2fx)\n",
        Spread(ckpt_save), Spread(base_save), bs / s, Median(rank_ratio),
        *std::max_element(rank_ratio.begin(), rank_ratio.end()));
    if (flags.verify) {
      const double one = Median(verify_one), all = Median(verify_all);
      std::cout << absl::StrFormat(
          "  verify --read-data: one thread %.3fs %.2f GiB/s (range %s), "
          "%d cores %.3fs %.2f GiB/s (range %s): %.2fx; floor read+sha256 "
          "%.2f GiB/s\n",
          one, gib / one, Spread(verify_one), HardwareThreads(), all, gib / all,
          Spread(verify_all), one / all, gib / br);
    }
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace ckpt::bench

int main(int argc, char** argv) {
  ckpt::bench::Flags flags;
  CLI::App app{
      "Full save and restore through ckpt-server vs. the disk's floor "
      "(write+fsync) and a verified read (read+SHA-256), side by side."};
  app.add_option("--total-mib", flags.total_mib,
                 "bytes of float32 tensors over all ranks, in MiB")
      ->capture_default_str()
      ->check(CLI::Range(8, 1 << 16));
  app.add_option("--ranks", flags.ranks, "ranks saving concurrently")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  ckpt::bench::AddRoundsDirJsonFlags(
      app, &flags.rounds, &flags.dir, &flags.json,
      "directory for the server's data and the baseline file (default: "
      "$TMPDIR or /var/tmp); both on one disk");
  app.add_flag("--tls", flags.tls,
               "serve and connect over TLS (test certificates made with "
               "openssl)");
  app.add_option("--shared-memory-restore", flags.shared_memory_restore,
                 "restore through shared memory when the server offers it "
                 "(true) or stream every byte over the connection (false)")
      ->capture_default_str();
  app.add_flag("--verify", flags.verify,
               "after the rounds, time verify --read-data of the last "
               "checkpoint on one thread and on every core");
  app.add_option("--server-arg", flags.server_args,
                 "one more ckpt-server argument (repeat it, e.g. "
                 "--server-arg=--metrics-listen --server-arg=127.0.0.1:0), to "
                 "measure what a server feature costs")
      ->allow_extra_args(false);
  CLI11_PARSE(app, argc, argv);
  return ckpt::bench::ExitCode("ckpt-bench-save-restore",
                               ckpt::bench::Run(flags));
}
