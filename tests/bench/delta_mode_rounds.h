// What ckpt-bench-delta's restart and cli-stateless modes share: a fresh
// server per round, the training step between saves, and the loop over
// table sizes and rounds that gathers their figures. Header-only.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/client.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "tests/bench/delta_modes.h"
#include "tests/bench/delta_workload.h"
#include "tests/bench/round_figures.h"
#include "tests/testing/server_process.h"

namespace ckpt::bench {

// A real ckpt-server on its own data directory under `base_dir` (removed
// with it), and a client of it.
struct RoundServer {
  std::unique_ptr<testing::TempDir> dir;
  std::unique_ptr<testing::ServerProcess> server;
  std::unique_ptr<client::Client> client;
};

inline absl::StatusOr<RoundServer> StartRoundServer(const std::string& base_dir,
                                                    const std::string& name) {
  RoundServer round;
  CKPT_ASSIGN_OR_RETURN(round.dir,
                        testing::TempDir::Create(base_dir + "/" + name));
  CKPT_ASSIGN_OR_RETURN(round.server, testing::ServerProcess::Start(
                                          round.dir->path() + "/db", {}));
  CKPT_ASSIGN_OR_RETURN(round.client,
                        client::Client::Connect(round.server->address()));
  return round;
}

// A training step: flags.fraction of the table's rows (at least one),
// chosen by ZipfRows from `seed`, nudged. Returns them, ascending.
inline std::vector<uint64_t> TrainingStep(const ModeFlags& flags,
                                          std::vector<float>& table,
                                          uint64_t seed) {
  std::mt19937_64 random(seed);
  const auto rows =
      static_cast<uint64_t>(table.size()) / static_cast<uint64_t>(flags.cols);
  const auto count = std::max<uint64_t>(
      1, static_cast<uint64_t>(
             std::llround(flags.fraction * static_cast<double>(rows))));
  std::vector<uint64_t> changed = ZipfRows(rows, count, random);
  NudgeRows(table, flags.cols, changed, random);
  return changed;
}

// One table size's run, as a round and the summary see it.
struct SizeRun {
  int64_t rows = 0;
  double mib = 0;              // the table's size
  uint64_t changed_rows = 0;   // per round (the same count each round)
  uint64_t changed_bytes = 0;  // ChangedBytes of those
  RoundFigures figures;
};

// Mode `name`: for each size of flags.sizes_rows, a table of uniform values
// (from `seed`) and flags.rounds calls of round(run, r, table), each followed
// by line(run, r) and, after the last, summary(run), unless flags.quiet.
// Returns each size's figures as JSON.
template <typename RoundFn, typename LineFn, typename SummaryFn>
absl::StatusOr<nlohmann::json> RunSizes(const ModeFlags& flags,
                                        absl::string_view name, uint64_t seed,
                                        RoundFn round, LineFn line,
                                        SummaryFn summary) {
  nlohmann::json out = nlohmann::json::array();
  for (const int64_t rows : flags.sizes_rows) {
    std::vector<float> table(static_cast<size_t>(rows * flags.cols));
    FillUniform(table, seed);
    SizeRun run;
    run.rows = rows;
    run.mib = static_cast<double>(table.size()) * 4 / (1 << 20);
    for (int r = 0; r < flags.rounds; ++r) {
      CKPT_RETURN_IF_ERROR(round(run, r, table));
      run.changed_bytes =
          ChangedBytes(run.changed_rows, static_cast<uint64_t>(flags.cols) * 4);
      if (!flags.quiet) line(run, r);
    }
    if (!flags.quiet) {
      std::cout << absl::StrFormat(
          "\n%s: %d rows x %d float32 (%.0f MiB), %.1f%% of rows modified (%d "
          "rows, %.2f MiB with indices); median [fastest-slowest] of %d "
          "rounds:\n",
          name, rows, flags.cols, run.mib, flags.fraction * 100,
          run.changed_rows, static_cast<double>(run.changed_bytes) / (1 << 20),
          flags.rounds);
      summary(run);
      std::cout << std::flush;
    }
    out.push_back({{"rows", rows},
                   {"cols", flags.cols},
                   {"row_bytes", flags.cols * 4},
                   {"fraction", flags.fraction},
                   {"changed_rows", run.changed_rows},
                   {"changed_bytes", run.changed_bytes},
                   {"figures", run.figures.Json()}});
  }
  return out;
}

}  // namespace ckpt::bench
