// ckpt-bench-delta: Check-N-Run incremental saves of an embedding table
// through a real ckpt-server on loopback, next to a full save and to chunk
// dedup alone, in the same run.
//
// Workload: an embedding table of --rows x --cols float32 plus a small
// dense part (--dense-mib, rewritten at every save, as dense layers are).
// For each fraction f of --fractions, on a fresh server, every approach
// first saves the same state untimed (its baseline), then f * rows distinct
// rows are modified (chosen with a Zipf-like skew: a few hot rows, a long
// tail, scattered over the table) and each approach saves again, timed:
//   full         into a new tenant: every byte sent and stored
//   dedup        SaveShard into the baseline's job: 4 MiB chunks already
//                stored are skipped (chunk dedup alone)
//   delta-rows   SaveIncremental with the modified rows given by the caller
//   delta-auto   SaveIncremental finding them by XXH3 row fingerprints
// and reports bytes sent, bytes stored (growth of the tenant's chunk
// bytes) and wall time, with ratios to the full save and, for the table's
// bytes stored (all stored bytes but the dense part's, which every save
// rewrites), to the modified rows' bytes (rows plus 4-byte indices). Each
// incremental checkpoint is restored and compared byte for byte.
// Approaches take turns at going first from round to round.
//
// Quantization (opt-in, lossy) is measured on a --quantize-rows sample of
// the table saved through the server at 8, 4, 3 and 2 bits and lossless:
// bytes stored, save and restore time, and the error recorded in the
// manifest next to the one measured on the restored values.
//
// Those two are mode "saves", the default. --modes adds, on a table alone
// (--mode-rows sizes, --mode-fraction of rows modified, Zipf-like), each
// on a fresh server per round (delta_modes.h):
//   restart        a job's full baseline; a fresh IncrementalSaver's
//                  RestoreShardAndSeed (timed, with the stored fingerprint
//                  bytes it read); its first save after rows change,
//                  against a full save and an unseeded saver's
//   cli-stateless  `ckpt put --delta-against` of the changed table file
//                  (stored fingerprints), against torch.save + fsync of
//                  the table and the CLI reading a base saved with
//                  --no-fingerprints back
// with medians and spread over --rounds, and ratios to the issue's goals.
// They fail (exit 1) when a restarted save is not a delta of the modified
// rows, the CLI did not use stored fingerprints, or a restore differs.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "client/incremental.h"
#include "common/quantize.h"
#include "common/row_fingerprint.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "tests/bench/bench_util.h"
#include "tests/bench/delta_modes.h"
#include "tests/bench/delta_workload.h"
#include "tests/testing/server_process.h"

namespace ckpt::bench {
namespace {

struct Flags {
  int64_t rows = 4'194'304;
  int64_t cols = 64;
  int64_t dense_mib = 16;
  std::vector<double> fractions = {0.001, 0.01, 0.05};
  int64_t quantize_rows = 262'144;
  int rounds = 3;
  std::string dir;
  bool json = false;
  std::set<std::string> modes = {"saves"};
  // The restart and cli-stateless modes' table sizes and modified rows.
  std::vector<int64_t> mode_rows = {4'194'304, 1'048'576};
  double mode_fraction = 0.01;
  std::string python = "/usr/bin/python3";
};

// The approaches, in the order of the first round.
enum Approach { kFull, kDedup, kDeltaRows, kDeltaAuto, kApproaches };
constexpr const char* kNames[kApproaches] = {"full", "dedup", "delta-rows",
                                             "delta-auto"};

struct Measure {
  double seconds = 0;
  uint64_t bytes_sent = 0;
  uint64_t bytes_stored = 0;
};

// One fraction's figures in one round.
struct RoundResult {
  Measure measures[kApproaches];
  uint64_t changed_rows = 0;
  uint64_t changed_bytes = 0;  // rows plus 4-byte indices
};

// The state one approach saves: the table and the dense part.
struct State {
  std::vector<float> table;
  std::vector<float> dense;
};

std::vector<client::TensorData> TensorsOf(const State& state,
                                          const Flags& flags) {
  auto tensor = [](std::string name, const std::vector<float>& values,
                   const std::vector<int64_t>& shape) {
    client::TensorData data;
    data.name = std::move(name);
    data.dtype = DType::kFloat32;
    data.global_shape = shape;
    data.box.offsets.assign(shape.size(), 0);
    data.box.lengths = shape;
    data.bytes = absl::string_view(reinterpret_cast<const char*>(values.data()),
                                   values.size() * sizeof(float));
    return data;
  };
  const auto dense_cols = static_cast<int64_t>(1024);
  return {tensor("embedding.weight", state.table, {flags.rows, flags.cols}),
          tensor("dense.weight", state.dense,
                 {static_cast<int64_t>(state.dense.size()) / dense_cols,
                  dense_cols})};
}

// A training step's update of `rows` of the table, and of all the dense
// part.
void Modify(State& state, const Flags& flags, absl::Span<const uint64_t> rows,
            uint64_t seed) {
  std::mt19937_64 random(seed);
  NudgeRows(state.table, flags.cols, rows, random);
  std::normal_distribution<float> noise(0.0f, 1e-3f);
  for (float& value : state.dense) value += noise(random);
}

// Restores `step` of `job` and compares every byte with `state`.
absl::Status CheckRestore(client::Client& client, const std::string& job,
                          int64_t step, const State& state,
                          const Flags& flags) {
  CKPT_ASSIGN_OR_RETURN(std::vector<client::RestoredTensor> restored,
                        client.RestoreShard(job, step, 0));
  const std::vector<client::TensorData> expected = TensorsOf(state, flags);
  for (const client::TensorData& want : expected) {
    auto found = std::find_if(restored.begin(), restored.end(),
                              [&](const client::RestoredTensor& t) {
                                return t.entry.name == want.name;
                              });
    if (found == restored.end() || found->bytes.size() != want.bytes.size() ||
        std::memcmp(found->bytes.data(), want.bytes.data(),
                    want.bytes.size()) != 0) {
      return absl::InternalError(absl::StrCat("restore of ", job, "@", step,
                                              " differs in '", want.name, "'"));
    }
  }
  return absl::OkStatus();
}

// Quantization through the server: the first `sample_rows` rows of the
// table saved lossless and at each width into fresh tenants, restored, and
// the restored values compared with the saved ones. Reports per width the
// bytes stored against the lossless save's, save and restore time against
// the lossless ones, and the error recorded in the manifest next to the one
// measured here on the restored values.
absl::StatusOr<nlohmann::json> RunQuantization(const Flags& flags,
                                               const std::string& base,
                                               const State& state,
                                               int64_t sample_rows) {
  CKPT_ASSIGN_OR_RETURN(auto dir,
                        testing::TempDir::Create(base + "/ckpt-quantize"));
  CKPT_ASSIGN_OR_RETURN(auto server,
                        testing::ServerProcess::Start(dir->path() + "/db", {}));
  CKPT_ASSIGN_OR_RETURN(auto client,
                        client::Client::Connect(server->address()));
  const size_t values = static_cast<size_t>(sample_rows * flags.cols);
  client::TensorData sample;
  sample.name = "embedding.weight";
  sample.dtype = DType::kFloat32;
  sample.global_shape = {sample_rows, flags.cols};
  sample.box = Box{{0, 0}, {sample_rows, flags.cols}};
  sample.bytes = absl::string_view(
      reinterpret_cast<const char*>(state.table.data()), values * 4);
  if (!flags.json) {
    std::cout << absl::StrFormat(
                     "\nquantization through the server, %d rows (%.1f MiB; "
                     "values uniform in [-0.5, 0.5)), range search on 2 "
                     "threads:",
                     sample_rows, static_cast<double>(values * 4) / (1 << 20))
              << std::endl;
  }
  struct Result {
    double save_seconds = 0;
    double restore_seconds = 0;
    uint64_t stored = 0;
  };
  nlohmann::json out = nlohmann::json::array();
  Result lossless;
  for (int bits : {0, 8, 4, 3, 2}) {  // 0: lossless, the baseline
    sample.quantize_bits = bits == 0 ? std::nullopt : std::optional<int>(bits);
    const std::string job = absl::StrCat("q", bits, "/table");
    Result result;
    absl::Time start = absl::Now();
    client::SaveOptions options;
    options.hash_threads = 2;
    CKPT_ASSIGN_OR_RETURN(client::SaveResult saved,
                          client->SaveShard(job, 1, {&sample, 1}, options));
    result.save_seconds = Seconds(start);
    CKPT_ASSIGN_OR_RETURN(result.stored, StoredBytes(*client, job));
    start = absl::Now();
    CKPT_ASSIGN_OR_RETURN(std::vector<client::RestoredTensor> restored,
                          client->RestoreShard(job, 1, 0));
    result.restore_seconds = Seconds(start);
    if (restored.size() != 1 || restored[0].bytes.size() != values * 4) {
      return absl::InternalError("quantized restore has the wrong size");
    }
    const auto* got = reinterpret_cast<const float*>(restored[0].bytes.data());
    double max_abs = 0, diff2 = 0, norm2 = 0;
    for (size_t i = 0; i < values; ++i) {
      const double d = static_cast<double>(got[i]) - state.table[i];
      max_abs = std::max(max_abs, std::abs(d));
      diff2 += d * d;
      norm2 += static_cast<double>(state.table[i]) * state.table[i];
    }
    const double relative_l2 = norm2 > 0 ? std::sqrt(diff2 / norm2) : 0;
    if (bits == 0) {
      if (max_abs != 0) return absl::InternalError("lossless save lost data");
      lossless = result;
      if (!flags.json) {
        std::cout << absl::StrFormat(
                         "  lossless: stored %.1f MiB, save %.2f s, restore "
                         "%.2f s",
                         static_cast<double>(result.stored) / (1 << 20),
                         result.save_seconds, result.restore_seconds)
                  << std::endl;
      }
      continue;
    }
    const Quantization recorded = saved.quantized.at(sample.name);
    if (max_abs > recorded.max_abs_error) {
      return absl::InternalError(
          absl::StrCat(bits, " bits: restored values are off by ", max_abs,
                       ", more than the recorded ", recorded.max_abs_error));
    }
    const double compression = Ratio(static_cast<double>(lossless.stored),
                                     static_cast<double>(result.stored));
    const double save_ratio = Ratio(result.save_seconds, lossless.save_seconds);
    const double restore_ratio =
        Ratio(result.restore_seconds, lossless.restore_seconds);
    if (!flags.json) {
      std::cout << absl::StrFormat(
                       "  %d bits: stored %.2fx smaller; save %.2f s (%.1fx "
                       "lossless), restore %.2f s (%.2fx); error recorded "
                       "max abs %.3g, relative L2 %.3g; measured on the "
                       "restore %.3g, %.3g",
                       bits, compression, result.save_seconds, save_ratio,
                       result.restore_seconds, restore_ratio,
                       recorded.max_abs_error, recorded.relative_l2_error,
                       max_abs, relative_l2)
                << std::endl;
    }
    out.push_back({{"bits", bits},
                   {"bytes_stored", result.stored},
                   {"compression", compression},
                   {"save_seconds", result.save_seconds},
                   {"save_vs_lossless", save_ratio},
                   {"restore_seconds", result.restore_seconds},
                   {"restore_vs_lossless", restore_ratio},
                   {"max_abs_error", recorded.max_abs_error},
                   {"relative_l2_error", recorded.relative_l2_error},
                   {"measured_max_abs_error", max_abs},
                   {"measured_relative_l2_error", relative_l2}});
  }
  return out;
}

absl::StatusOr<RoundResult> RunFraction(const Flags& flags,
                                        const std::string& base,
                                        double fraction, int round,
                                        State& state) {
  CKPT_ASSIGN_OR_RETURN(auto dir,
                        testing::TempDir::Create(base + "/ckpt-delta"));
  CKPT_ASSIGN_OR_RETURN(auto server,
                        testing::ServerProcess::Start(dir->path() + "/db", {}));
  CKPT_ASSIGN_OR_RETURN(auto client,
                        client::Client::Connect(server->address()));
  // One tenant per approach, so each one's stored bytes are its own.
  const std::string jobs[kApproaches] = {"full/table", "dedup/table",
                                         "rows/table", "auto/table"};
  client::IncrementalSaver rows_saver, auto_saver;
  const std::vector<client::TensorData> before = TensorsOf(state, flags);
  // Baselines (untimed): the full approach's goes to another tenant, so its
  // timed save finds nothing stored.
  CKPT_RETURN_IF_ERROR(
      client->SaveShard("fullbase/table", 1, before, {}).status());
  CKPT_RETURN_IF_ERROR(client->SaveShard(jobs[kDedup], 1, before, {}).status());
  CKPT_RETURN_IF_ERROR(client::SaveIncremental(*client, rows_saver,
                                               jobs[kDeltaRows], 1, before, {})
                           .status());
  CKPT_RETURN_IF_ERROR(client::SaveIncremental(*client, auto_saver,
                                               jobs[kDeltaAuto], 1, before, {})
                           .status());

  RoundResult result;
  std::mt19937_64 random(static_cast<uint64_t>(round) * 7919 +
                         static_cast<uint64_t>(fraction * 1e6));
  const auto rows = static_cast<uint64_t>(flags.rows);
  const auto count = std::max<uint64_t>(
      1, static_cast<uint64_t>(
             std::llround(fraction * static_cast<double>(rows))));
  std::vector<uint64_t> changed = ZipfRows(rows, count, random);
  Modify(state, flags, changed, random());
  result.changed_rows = changed.size();
  result.changed_bytes =
      changed.size() * (static_cast<uint64_t>(flags.cols) * sizeof(float) + 4);
  const std::vector<client::TensorData> after = TensorsOf(state, flags);
  const std::map<std::string, std::vector<uint64_t>> dirty = {
      {"embedding.weight", changed}};

  for (int turn = 0; turn < kApproaches; ++turn) {
    const int a = (turn + round) % kApproaches;
    CKPT_ASSIGN_OR_RETURN(uint64_t stored_before,
                          StoredBytes(*client, jobs[a]));
    const absl::Time start = absl::Now();
    absl::StatusOr<client::SaveResult> saved;
    switch (a) {
      case kFull:
      case kDedup:
        saved = client->SaveShard(jobs[a], 2, after, {});
        break;
      case kDeltaRows:
        saved = client::SaveIncremental(*client, rows_saver, jobs[a], 2, after,
                                        {}, dirty);
        break;
      default:
        saved =
            client::SaveIncremental(*client, auto_saver, jobs[a], 2, after, {});
        break;
    }
    CKPT_RETURN_IF_ERROR(saved.status());
    Measure& m = result.measures[a];
    m.seconds = Seconds(start);
    m.bytes_sent = saved->bytes_sent;
    CKPT_ASSIGN_OR_RETURN(uint64_t stored_after, StoredBytes(*client, jobs[a]));
    m.bytes_stored = stored_after - stored_before;
  }
  for (Approach a : {kDeltaRows, kDeltaAuto}) {
    CKPT_RETURN_IF_ERROR(CheckRestore(*client, jobs[a], 2, state, flags));
  }
  CKPT_RETURN_IF_ERROR(server->Stop().status());
  return result;
}

// Bytes stored for the table alone: every save stores the dense part in
// full (each of its values changes), so it is the rest.
uint64_t TableStored(const Measure& m, uint64_t dense_bytes) {
  return m.bytes_stored > dense_bytes ? m.bytes_stored - dense_bytes : 0;
}

// The default mode ("saves"): the approaches at each fraction, and
// quantization; its --json object.
absl::StatusOr<nlohmann::json> RunSaves(const Flags& flags,
                                        const std::string& base) {
  State state;
  state.table.resize(static_cast<size_t>(flags.rows * flags.cols));
  FillUniform(state.table, 1);
  state.dense.resize(static_cast<size_t>(flags.dense_mib) * (1 << 20) / 4);
  FillUniform(state.dense, 2);
  const uint64_t dense_bytes = state.dense.size() * sizeof(float);
  const double table_mib =
      static_cast<double>(state.table.size()) * 4 / (1 << 20);
  if (!flags.json) {
    std::cout << absl::StrFormat(
                     "table %d x %d float32 (%.0f MiB) + dense %d MiB; "
                     "fingerprint kernel %s",
                     flags.rows, flags.cols, table_mib, flags.dense_mib,
                     Avx2KernelAvailable() ? "avx2" : "generic")
              << std::endl;
  }
  nlohmann::json json_fractions = nlohmann::json::array();
  for (double fraction : flags.fractions) {
    std::vector<RoundResult> results;
    for (int round = 0; round < flags.rounds; ++round) {
      CKPT_ASSIGN_OR_RETURN(RoundResult r,
                            RunFraction(flags, base, fraction, round, state));
      results.push_back(r);
      if (!flags.json) {
        std::string line =
            absl::StrFormat("%.1f%% round %d:", fraction * 100, round);
        for (int a = 0; a < kApproaches; ++a) {
          const Measure& m = r.measures[a];
          absl::StrAppendFormat(
              &line, "  %s %.3fs sent %.1f MiB stored %.1f MiB", kNames[a],
              m.seconds, static_cast<double>(m.bytes_sent) / (1 << 20),
              static_cast<double>(m.bytes_stored) / (1 << 20));
        }
        std::cout << line << std::endl;
      }
    }
    // Medians per approach, and same-round ratios to the full save.
    nlohmann::json approaches = nlohmann::json::object();
    std::string summary = absl::StrFormat(
        "\n%.1f%% of rows modified (%d rows, %.2f MiB with indices), median "
        "of %d rounds:\n",
        fraction * 100, results[0].changed_rows,
        static_cast<double>(results[0].changed_bytes) / (1 << 20),
        flags.rounds);
    for (int a = 0; a < kApproaches; ++a) {
      std::vector<double> seconds, sent, stored, time_ratio, stored_ratio;
      for (const RoundResult& r : results) {
        const Measure& m = r.measures[a];
        seconds.push_back(m.seconds);
        sent.push_back(static_cast<double>(m.bytes_sent));
        stored.push_back(static_cast<double>(m.bytes_stored));
        time_ratio.push_back(Ratio(m.seconds, r.measures[kFull].seconds));
        stored_ratio.push_back(
            Ratio(static_cast<double>(TableStored(m, dense_bytes)),
                  static_cast<double>(r.changed_bytes)));
      }
      absl::StrAppendFormat(
          &summary,
          "  %-10s %7.3fs (%.3fx full)  sent %9.2f MiB  stored %9.2f MiB, "
          "the table's %.2fx the modified rows\n",
          kNames[a], Median(seconds), Median(time_ratio),
          Median(sent) / (1 << 20), Median(stored) / (1 << 20),
          Median(stored_ratio));
      approaches[kNames[a]] = {
          {"seconds", Median(seconds)},
          {"seconds_vs_full", Median(time_ratio)},
          {"bytes_sent", Median(sent)},
          {"bytes_stored", Median(stored)},
          {"table_stored_vs_modified_rows", Median(stored_ratio)},
      };
    }
    if (!flags.json) std::cout << summary << std::flush;
    json_fractions.push_back({{"fraction", fraction},
                              {"changed_rows", results[0].changed_rows},
                              {"changed_bytes", results[0].changed_bytes},
                              {"approaches", approaches}});
  }

  nlohmann::json json_quantized = nlohmann::json::array();
  const auto sample_rows = std::min(flags.quantize_rows, flags.rows);
  if (sample_rows > 0) {
    CKPT_ASSIGN_OR_RETURN(json_quantized,
                          RunQuantization(flags, base, state, sample_rows));
  }
  return nlohmann::json{
      {"rows", flags.rows},           {"cols", flags.cols},
      {"dense_mib", flags.dense_mib}, {"rounds", flags.rounds},
      {"fractions", json_fractions},  {"quantization", json_quantized}};
}

absl::Status Run(const Flags& flags) {
  const std::string base = BenchBaseDir(flags.dir);
  nlohmann::json out = {{"rounds", flags.rounds}};
  if (flags.modes.contains("saves")) {
    CKPT_ASSIGN_OR_RETURN(out, RunSaves(flags, base));
  }
  ModeFlags mode_flags;
  mode_flags.sizes_rows = flags.mode_rows;
  mode_flags.cols = flags.cols;
  mode_flags.fraction = flags.mode_fraction;
  mode_flags.rounds = flags.rounds;
  mode_flags.base_dir = base;
  mode_flags.python = flags.python;
  mode_flags.quiet = flags.json;
  if (flags.modes.contains("restart")) {
    if (!flags.json) std::cout << std::endl;
    CKPT_ASSIGN_OR_RETURN(out["restart"], RunRestartMode(mode_flags));
  }
  if (flags.modes.contains("cli-stateless")) {
    if (!flags.json) std::cout << std::endl;
    CKPT_ASSIGN_OR_RETURN(out["cli_stateless"],
                          RunCliStatelessMode(mode_flags));
  }
  if (flags.json) std::cout << out.dump(2) << std::endl;
  return absl::OkStatus();
}

}  // namespace
}  // namespace ckpt::bench

int main(int argc, char** argv) {
  ckpt::bench::Flags flags;
  CLI::App app{
      "Check-N-Run incremental saves of an embedding table through "
      "ckpt-server, against a full save and chunk dedup alone: bytes sent, "
      "bytes stored and wall time; and quantization's size and error. "
      "--modes adds a restarted job's first save and the CLI's stateless "
      "delta."};
  app.add_option("--rows", flags.rows, "embedding table rows")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{16}, int64_t{1} << 30));
  app.add_option("--cols", flags.cols, "float32 columns per row")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 16));
  app.add_option("--dense-mib", flags.dense_mib,
                 "MiB of dense float32 weights, all rewritten at every save")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 14));
  app.add_option("--fractions", flags.fractions,
                 "fractions of rows modified between the two saves")
      ->capture_default_str()
      ->delimiter(',')
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--quantize-rows", flags.quantize_rows,
                 "rows of the table quantized at each bit width (0: skip)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  app.add_option("--modes", flags.modes,
                 "what to measure, comma-separated: saves (full, dedup "
                 "and delta saves at --fractions, and quantization), "
                 "restart (a restarted job's first save, a delta on the "
                 "checkpoint RestoreShardAndSeed restored, against a full "
                 "save), cli-stateless (`ckpt put --delta-against` from "
                 "stored fingerprints against torch.save + fsync)")
      ->capture_default_str()
      ->delimiter(',')
      ->check(CLI::IsMember({"saves", "restart", "cli-stateless"}));
  app.add_option("--mode-rows", flags.mode_rows,
                 "restart and cli-stateless: table rows (of --cols float32) "
                 "at each size measured")
      ->capture_default_str()
      ->delimiter(',')
      ->check(CLI::Range(int64_t{16}, int64_t{1} << 30));
  app.add_option("--mode-fraction", flags.mode_fraction,
                 "restart and cli-stateless: fraction of rows modified")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--python", flags.python,
                 "cli-stateless: python3 with torch, for torch.save")
      ->capture_default_str();
  ckpt::bench::AddRoundsDirJsonFlags(
      app, &flags.rounds, &flags.dir, &flags.json,
      "directory for the servers' data and the table files (default: "
      "$TMPDIR or /var/tmp)");
  CLI11_PARSE(app, argc, argv);
  return ckpt::bench::ExitCode("ckpt-bench-delta", ckpt::bench::Run(flags));
}
