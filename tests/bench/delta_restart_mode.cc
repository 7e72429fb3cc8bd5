// ckpt-bench-delta --modes restart: a restarted job's first save, a row
// delta on the checkpoint it restored (RestoreShardAndSeed), against a
// full save of the same state and against a fresh saver without seeding
// (the behaviour before fingerprints were stored: a full save).
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "client/incremental.h"
#include "common/row_fingerprint.h"
#include "common/status_macros.h"
#include "tests/bench/delta_mode_rounds.h"
#include "tests/bench/delta_modes.h"

namespace ckpt::bench {
namespace {

constexpr char kRestartJob[] = "restart/table";
constexpr char kUnseededJob[] = "unseeded/table";
constexpr char kFullJob[] = "full/table";
constexpr char kTableName[] = "embedding.weight";

// The timed saves after the restart, in the order of the first round.
enum Save { kFull, kRestarted, kUnseeded, kSaves };
constexpr const char* kSaveNames[kSaves] = {"full", "restarted", "unseeded"};

client::TensorData TableTensor(const std::vector<float>& table, int64_t rows,
                               int64_t cols) {
  client::TensorData tensor;
  tensor.name = kTableName;
  tensor.dtype = DType::kFloat32;
  tensor.global_shape = {rows, cols};
  tensor.box = Box{{0, 0}, {rows, cols}};
  tensor.bytes = absl::string_view(reinterpret_cast<const char*>(table.data()),
                                   table.size() * sizeof(float));
  return tensor;
}

// INTERNAL unless `restored` is exactly the table.
absl::Status CheckTable(const std::vector<client::RestoredTensor>& restored,
                        const std::vector<float>& table,
                        const std::string& what) {
  const size_t bytes = table.size() * sizeof(float);
  if (restored.size() != 1 || restored[0].entry.name != kTableName ||
      restored[0].bytes.size() != bytes ||
      std::memcmp(restored[0].bytes.data(), table.data(), bytes) != 0) {
    return absl::InternalError(
        absl::StrCat(what, ": the restored table differs from the saved one"));
  }
  return absl::OkStatus();
}

// The restarted save must be a row delta on step 1 of exactly the rows
// modified; the unseeded one a full save.
absl::Status CheckPlan(Save save, const client::IncrementalPlan& plan,
                       size_t changed_rows) {
  if (plan.decisions().size() != 1) {
    return absl::InternalError("the plan does not have the one table");
  }
  const client::TensorPlan& decided = plan.decisions()[0];
  const bool delta = decided.decision.kind == DeltaDecision::Kind::kDelta;
  if (save == kRestarted && (!delta || decided.decision.base_step != 1 ||
                             decided.changed_rows != changed_rows)) {
    return absl::InternalError(absl::StrCat(
        "the first save after the restart is not a row delta on step 1 of "
        "the ",
        changed_rows, " rows modified: ",
        delta ? absl::StrCat("a delta on step ",
                             decided.decision.base_step.value_or(-1), " of ",
                             decided.changed_rows, " rows")
              : absl::StrCat("a full save (", decided.decision.reason, ")")));
  }
  if (save == kUnseeded && delta) {
    return absl::InternalError("a saver without history made a delta");
  }
  return absl::OkStatus();
}

// One round at one size: its figures added to run.figures.
absl::Status RunRound(const ModeFlags& flags, SizeRun& run, int round,
                      std::vector<float>& table) {
  CKPT_ASSIGN_OR_RETURN(RoundServer round_server,
                        StartRoundServer(flags.base_dir, "ckpt-restart"));
  client::Client* client = round_server.client.get();
  RoundFigures& figures = run.figures;
  const int64_t rows = run.rows;
  const std::vector<client::TensorData> tensors = {
      TableTensor(table, rows, flags.cols)};

  // The job before its restart: a full baseline, with its fingerprints.
  // The saver goes with the process.
  {
    client::IncrementalSaver before_restart;
    const absl::Time start = absl::Now();
    CKPT_RETURN_IF_ERROR(client::SaveIncremental(*client, before_restart,
                                                 kRestartJob, 1, tensors, {})
                             .status());
    figures.Add("baseline_save_seconds", Seconds(start));
    client::IncrementalSaver unseeded_before;
    CKPT_RETURN_IF_ERROR(client::SaveIncremental(*client, unseeded_before,
                                                 kUnseededJob, 1, tensors, {})
                             .status());
  }

  // The restarted process.
  client::IncrementalSaver restarted;
  client::SeedReport report;
  absl::Time start = absl::Now();
  CKPT_ASSIGN_OR_RETURN(
      std::vector<client::RestoredTensor> restored,
      client::RestoreShardAndSeed(*client, restarted, kRestartJob, std::nullopt,
                                  0, &report));
  figures.Add("restore_and_seed_seconds", Seconds(start));
  CKPT_RETURN_IF_ERROR(CheckTable(restored, table, "RestoreShardAndSeed"));
  if (report.tensors.size() != 1 || !report.tensors[0].seeded ||
      report.tensors[0].how != "stored fingerprints") {
    return absl::InternalError(absl::StrCat(
        "the restarted saver was not seeded from stored fingerprints: ",
        report.tensors.empty() ? "no tensor" : report.tensors[0].how));
  }
  figures.Add("seed_fingerprint_bytes_read",
              static_cast<double>(report.fingerprint_bytes_read));
  // The seeding alone, by another fresh saver (not used further).
  {
    client::IncrementalSaver probe;
    start = absl::Now();
    const client::SeedReport again = probe.SeedFromCheckpoint(
        *client, kRestartJob, 1, {&restored[0].entry, 1});
    figures.Add("seed_seconds", Seconds(start));
    if (again.tensors.empty() || !again.tensors[0].seeded) {
      return absl::InternalError("the second seeding failed");
    }
  }
  restored.clear();

  // A training step.
  const std::vector<uint64_t> changed = TrainingStep(
      flags, table,
      static_cast<uint64_t>(round) * 7919 + static_cast<uint64_t>(rows));
  const size_t count = changed.size();
  run.changed_rows = count;
  const uint64_t row_bytes = static_cast<uint64_t>(flags.cols) * sizeof(float);

  // What hashing every row costs, alone (the saver does it on 2 threads).
  start = absl::Now();
  CKPT_RETURN_IF_ERROR(
      RowFingerprints(
          absl::MakeConstSpan(tensors[0].bytes.data(), tensors[0].bytes.size()),
          row_bytes, 2)
          .status());
  figures.Add("fingerprint_table_seconds", Seconds(start));

  double seconds[kSaves] = {};
  for (int turn = 0; turn < kSaves; ++turn) {
    const auto save = static_cast<Save>((turn + round) % kSaves);
    const std::string job = save == kFull        ? kFullJob
                            : save == kRestarted ? kRestartJob
                                                 : kUnseededJob;
    CKPT_ASSIGN_OR_RETURN(const uint64_t stored_before,
                          StoredBytes(*client, job));
    client::IncrementalSaver unseeded;  // a restart without seeding
    client::IncrementalPlan plan;
    start = absl::Now();
    absl::StatusOr<client::SaveResult> saved =
        save == kFull ? client->SaveShard(job, 2, tensors, {})
                      : client::SaveIncremental(
                            *client, save == kRestarted ? restarted : unseeded,
                            job, 2, tensors, {}, {}, &plan);
    seconds[save] = Seconds(start);
    CKPT_RETURN_IF_ERROR(saved.status());
    if (save != kFull) CKPT_RETURN_IF_ERROR(CheckPlan(save, plan, count));
    CKPT_ASSIGN_OR_RETURN(const uint64_t stored_after,
                          StoredBytes(*client, job));
    const std::string name = kSaveNames[save];
    figures.Add(name + "_seconds", seconds[save]);
    figures.Add(name + "_bytes_sent", static_cast<double>(saved->bytes_sent));
    figures.Add(name + "_bytes_stored",
                static_cast<double>(stored_after - stored_before));
    figures.Add(name + "_stored_vs_changed",
                Ratio(static_cast<double>(stored_after - stored_before),
                      static_cast<double>(ChangedBytes(count, row_bytes))));
  }
  figures.Add("restarted_vs_full", Ratio(seconds[kRestarted], seconds[kFull]));
  figures.Add("unseeded_vs_full", Ratio(seconds[kUnseeded], seconds[kFull]));
  CKPT_ASSIGN_OR_RETURN(restored, client->RestoreShard(kRestartJob, 2, 0));
  CKPT_RETURN_IF_ERROR(
      CheckTable(restored, table, "the restarted job's delta, restored"));
  return round_server.server->Stop().status();
}

}  // namespace

absl::StatusOr<nlohmann::json> RunRestartMode(const ModeFlags& flags) {
  auto line = [](const SizeRun& run, int round) {
    const RoundFigures& f = run.figures;
    std::cout << absl::StrFormat(
                     "restart %.0f MiB round %d: restore+seed %.3fs, full "
                     "%.3fs, restarted %.3fs, unseeded %.3fs",
                     run.mib, round, f.Last("restore_and_seed_seconds"),
                     f.Last("full_seconds"), f.Last("restarted_seconds"),
                     f.Last("unseeded_seconds"))
              << std::endl;
  };
  auto summary = [](const SizeRun& run) {
    const RoundFigures& f = run.figures;
    constexpr double kMiB = 1.0 / (1 << 20);
    std::cout
        << absl::StrFormat(
               "  restore + seeding        %ss (seeding alone %ss, %s MiB "
               "of stored fingerprints read)\n",
               f.Text("restore_and_seed_seconds"), f.Text("seed_seconds"),
               f.Text("seed_fingerprint_bytes_read", 2, kMiB))
        << absl::StrFormat("  full save                %ss, stored %s MiB\n",
                           f.Text("full_seconds"),
                           f.Text("full_bytes_stored", 1, kMiB))
        << absl::StrFormat(
               "  first save after restart %ss = %sx full (goal <= 0.1x: %s), "
               "stored %s MiB = %sx the modified rows (goal <= 1.1x: %s)\n",
               f.Text("restarted_seconds"), f.Text("restarted_vs_full"),
               f.Median("restarted_vs_full") <= 0.1 ? "met" : "NOT met",
               f.Text("restarted_bytes_stored", 2, kMiB),
               f.Text("restarted_stored_vs_changed"),
               f.Median("restarted_stored_vs_changed") <= 1.1 ? "met"
                                                              : "NOT met")
        << absl::StrFormat(
               "  without seeding (before) %ss = %sx full, stored %s MiB\n",
               f.Text("unseeded_seconds"), f.Text("unseeded_vs_full"),
               f.Text("unseeded_bytes_stored", 1, kMiB))
        << absl::StrFormat(
               "  (hashing every row alone, 2 threads: %ss; the baseline save "
               "before the restart: %ss)\n",
               f.Text("fingerprint_table_seconds"),
               f.Text("baseline_save_seconds"));
  };
  return RunSizes(
      flags, "restart", 3,
      [&](SizeRun& run, int round, std::vector<float>& table) {
        return RunRound(flags, run, round, table);
      },
      line, summary);
}

}  // namespace ckpt::bench
