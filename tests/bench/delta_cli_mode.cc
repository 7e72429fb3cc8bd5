// ckpt-bench-delta --modes cli-stateless: `ckpt put --delta-against`, a
// process with no history of the job, saving a changed table file as a row
// delta from the base's stored fingerprints, against torch.save + fsync of
// the table and against the CLI's read-back fallback (a base saved with
// --no-fingerprints).
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "client/client.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "tests/bench/child_process.h"
#include "tests/bench/delta_mode_rounds.h"
#include "tests/bench/delta_modes.h"
#include "tests/bench/disk_floor.h"

namespace ckpt::bench {
namespace {

using nlohmann::json;

constexpr char kStoredJob[] = "stored/table";      // base with fingerprints
constexpr char kReadBackJob[] = "readback/table";  // --no-fingerprints base
constexpr char kFileName[] = "table.bin";          // the tensor's name too

// torch.save of the table file as one float32 tensor [rows, cols] in a
// state dict, into a new file, flush and fsync (as torch_bench.py times
// torch.save): the load is not timed. argv: table rows cols out. Prints
// the seconds.
constexpr char kTorchSave[] = R"(
import os, sys, time, torch
path, rows, cols, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
table = torch.from_file(path, shared=False, size=rows * cols,
                        dtype=torch.float32).view(rows, cols)
state = {"embedding.weight": table}
start = time.perf_counter()
with open(out, "wb") as f:
    torch.save(state, f)
    f.flush()
    os.fsync(f.fileno())
print(time.perf_counter() - start)
)";

// The timed saves, in the order of the first round.
enum Save { kCliStored, kCliReadBack, kTorch, kSaves };
constexpr const char* kSaveNames[kSaves] = {"cli_stored", "cli_read_back",
                                            "torch_save"};

// `ckpt put` of `file` as step `step` of `job`, rows of `row_bytes`, with
// `extra` flags; its --json output.
absl::StatusOr<json> CkptPut(const std::string& server, const std::string& job,
                             int64_t step, const std::string& file,
                             uint64_t row_bytes,
                             const std::vector<std::string>& extra,
                             const std::string& out_path) {
  std::vector<std::string> argv = {testing::BuiltBinary("client/ckpt"),
                                   "--server",
                                   server,
                                   "put",
                                   job,
                                   absl::StrCat(step),
                                   file,
                                   "--row-bytes",
                                   absl::StrCat(row_bytes),
                                   "--json"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  CKPT_ASSIGN_OR_RETURN(const std::string out,
                        RunChild(std::move(argv), out_path));
  json parsed = json::parse(out, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object()) {
    return absl::InternalError(
        absl::StrCat("`ckpt put` printed no JSON object: ", out));
  }
  return parsed;
}

// `put --json` of a delta must show one delta of exactly `changed_rows`
// rows on step 1 whose rows came `rows_from` as expected.
absl::Status CheckDelta(const json& put, size_t changed_rows,
                        const std::string& rows_from) {
  const json& deltas = put.value("deltas", json::array());
  if (!deltas.is_array() || deltas.size() != 1 ||
      deltas[0].value("rows", uint64_t{0}) != changed_rows ||
      deltas[0].value("base_step", int64_t{0}) != 1 ||
      deltas[0].value("rows_from", std::string()) != rows_from) {
    return absl::InternalError(absl::StrCat(
        "`ckpt put --delta-against 1` did not save a delta of the ",
        changed_rows, " rows modified, found from ", rows_from, ": ",
        put.dump()));
  }
  return absl::OkStatus();
}

// INTERNAL unless step 2 of `job` restores as exactly `table`.
absl::Status CheckRestored(client::Client& client, const std::string& job,
                           const std::vector<float>& table) {
  CKPT_ASSIGN_OR_RETURN(std::vector<client::RestoredTensor> restored,
                        client.RestoreShard(job, 2, 0));
  const size_t bytes = table.size() * sizeof(float);
  if (restored.size() != 1 || restored[0].entry.name != kFileName ||
      restored[0].bytes.size() != bytes ||
      std::memcmp(restored[0].bytes.data(), table.data(), bytes) != 0) {
    return absl::InternalError(
        absl::StrCat(job, "@2: the restored table differs from the file put"));
  }
  return absl::OkStatus();
}

absl::StatusOr<double> TorchSave(const ModeFlags& flags,
                                 const std::string& table_path, int64_t rows,
                                 const std::string& out_path,
                                 const std::string& log_path) {
  CKPT_ASSIGN_OR_RETURN(
      const std::string printed,
      RunChild({flags.python, "-c", kTorchSave, table_path, absl::StrCat(rows),
                absl::StrCat(flags.cols), out_path},
               log_path));
  double seconds = 0;
  if (!absl::SimpleAtod(absl::StripAsciiWhitespace(printed), &seconds)) {
    return absl::InternalError(absl::StrCat("the torch.save helper printed '",
                                            printed, "', not its seconds"));
  }
  std::error_code error;
  const uintmax_t size = std::filesystem::file_size(out_path, error);
  if (error || size < static_cast<uintmax_t>(rows * flags.cols * 4)) {
    return absl::InternalError("torch.save wrote less than the table");
  }
  std::filesystem::remove(out_path, error);
  return seconds;
}

// One round at one size: its figures added to run.figures.
absl::Status RunRound(const ModeFlags& flags, SizeRun& run, int round,
                      std::vector<float>& table) {
  CKPT_ASSIGN_OR_RETURN(RoundServer round_server,
                        StartRoundServer(flags.base_dir, "ckpt-cli-delta"));
  client::Client* client = round_server.client.get();
  const testing::ServerProcess* server = round_server.server.get();
  const testing::TempDir* dir = round_server.dir.get();
  RoundFigures& figures = run.figures;
  const int64_t rows = run.rows;
  const uint64_t row_bytes = static_cast<uint64_t>(flags.cols) * sizeof(float);
  const absl::string_view bytes(reinterpret_cast<const char*>(table.data()),
                                table.size() * sizeof(float));
  // Same base name in both, as a delta's tensor must have its base's.
  const std::string before = dir->path() + "/before";
  const std::string after = dir->path() + "/after";
  std::filesystem::create_directories(before);
  std::filesystem::create_directories(after);
  const std::string out = dir->path() + "/cli.out";

  // The bases, untimed: by `put` with fingerprints, and without.
  CKPT_RETURN_IF_ERROR(WriteFileSynced(before + "/" + kFileName, bytes));
  CKPT_RETURN_IF_ERROR(CkptPut(server->address(), kStoredJob, 1,
                               before + "/" + kFileName, row_bytes, {}, out)
                           .status());
  CKPT_RETURN_IF_ERROR(CkptPut(server->address(), kReadBackJob, 1,
                               before + "/" + kFileName, row_bytes,
                               {"--no-fingerprints"}, out)
                           .status());
  std::filesystem::remove(before + "/" + kFileName);

  // A training step, and the table written out again (synced, so that no
  // writeback runs during the timed saves).
  const std::vector<uint64_t> changed = TrainingStep(
      flags, table,
      static_cast<uint64_t>(round) * 7919 + static_cast<uint64_t>(rows) + 1);
  const size_t count = changed.size();
  run.changed_rows = count;
  const std::string file = after + "/" + kFileName;
  CKPT_RETURN_IF_ERROR(WriteFileSynced(file, bytes));

  double seconds[kSaves] = {};
  for (int turn = 0; turn < kSaves; ++turn) {
    const auto save = static_cast<Save>((turn + round) % kSaves);
    const std::string name = kSaveNames[save];
    if (save == kTorch) {
      CKPT_ASSIGN_OR_RETURN(
          seconds[save], TorchSave(flags, file, rows, dir->path() + "/torch.pt",
                                   dir->path() + "/torch.out"));
      figures.Add(name + "_seconds", seconds[save]);
      continue;
    }
    const std::string job = save == kCliStored ? kStoredJob : kReadBackJob;
    CKPT_ASSIGN_OR_RETURN(const uint64_t stored_before,
                          StoredBytes(*client, job));
    const absl::Time start = absl::Now();
    CKPT_ASSIGN_OR_RETURN(const json put,
                          CkptPut(server->address(), job, 2, file, row_bytes,
                                  {"--delta-against", "1"}, out));
    seconds[save] = Seconds(start);
    CKPT_RETURN_IF_ERROR(CheckDelta(
        put, count, save == kCliStored ? "stored fingerprints" : "read back"));
    CKPT_ASSIGN_OR_RETURN(const uint64_t stored_after,
                          StoredBytes(*client, job));
    const double stored = static_cast<double>(stored_after - stored_before);
    figures.Add(name + "_seconds", seconds[save]);
    figures.Add(name + "_base_bytes_read", put.value("base_bytes_read", 0.0));
    figures.Add(name + "_bytes_sent", put.value("bytes_sent", 0.0));
    figures.Add(name + "_bytes_stored", stored);
    figures.Add(
        name + "_stored_vs_changed",
        Ratio(stored, static_cast<double>(ChangedBytes(count, row_bytes))));
  }
  figures.Add("cli_stored_vs_torch_save",
              Ratio(seconds[kCliStored], seconds[kTorch]));
  figures.Add("cli_read_back_vs_torch_save",
              Ratio(seconds[kCliReadBack], seconds[kTorch]));
  CKPT_RETURN_IF_ERROR(CheckRestored(*client, kStoredJob, table));
  CKPT_RETURN_IF_ERROR(CheckRestored(*client, kReadBackJob, table));
  return round_server.server->Stop().status();
}

}  // namespace

absl::StatusOr<json> RunCliStatelessMode(const ModeFlags& flags) {
  auto line = [](const SizeRun& run, int round) {
    const RoundFigures& f = run.figures;
    std::cout << absl::StrFormat(
                     "cli-stateless %.0f MiB round %d: put (stored "
                     "fingerprints) %.3fs, put (read back) %.3fs, "
                     "torch.save+fsync %.3fs",
                     run.mib, round, f.Last("cli_stored_seconds"),
                     f.Last("cli_read_back_seconds"),
                     f.Last("torch_save_seconds"))
              << std::endl;
  };
  auto summary = [](const SizeRun& run) {
    const RoundFigures& f = run.figures;
    constexpr double kMiB = 1.0 / (1 << 20);
    std::cout
        << absl::StrFormat("  torch.save+fsync %ss\n",
                           f.Text("torch_save_seconds"))
        << absl::StrFormat(
               "  ckpt put --delta-against, stored fingerprints %ss = %sx "
               "torch.save (goal <= 0.3x: %s); base bytes read %s MiB; "
               "stored %s MiB = %sx the modified rows\n",
               f.Text("cli_stored_seconds"), f.Text("cli_stored_vs_torch_save"),
               f.Median("cli_stored_vs_torch_save") <= 0.3 ? "met" : "NOT met",
               f.Text("cli_stored_base_bytes_read", 2, kMiB),
               f.Text("cli_stored_bytes_stored", 2, kMiB),
               f.Text("cli_stored_stored_vs_changed"))
        << absl::StrFormat(
               "  ckpt put --delta-against, base read back (saved with "
               "--no-fingerprints) %ss = %sx torch.save; base bytes read %s "
               "MiB; stored %s MiB\n",
               f.Text("cli_read_back_seconds"),
               f.Text("cli_read_back_vs_torch_save"),
               f.Text("cli_read_back_base_bytes_read", 1, kMiB),
               f.Text("cli_read_back_bytes_stored", 2, kMiB));
  };
  return RunSizes(
      flags, "cli-stateless", 4,
      [&](SizeRun& run, int round, std::vector<float>& table) {
        return RunRound(flags, run, round, table);
      },
      line, summary);
}

}  // namespace ckpt::bench
