// The operator's maintenance verbs of the ckpt CLI: `gc` (delete the chunks
// no checkpoint references) and `verify` (find missing and corrupt chunks
// and the checkpoints they damage). Both exit non-zero (DATA_LOSS) when
// they find damage.
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "client/cli/args.h"
#include "client/cli/commands.h"
#include "client/cli/format.h"
#include "client/cli/json_output.h"
#include "client/cli/progress.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace ckpt::cli {
namespace {

using nlohmann::json;

json GcReportJson(const GcReport& report) {
  json damaged = json::array();
  for (const DamagedCheckpoint& entry : report.damaged) {
    json missing = json::array();
    for (const ChunkId& id : entry.missing_chunks)
      missing.push_back(id.ToHex());
    damaged.push_back({{"job", entry.job},
                       {"step", entry.step},
                       {"state", CheckpointStateName(entry.state)},
                       {"missing_chunks", missing}});
  }
  json skipped = json::array();
  for (const auto& [tenant, reason] : report.skipped_tenants) {
    skipped.push_back({{"tenant", tenant}, {"reason", reason}});
  }
  json held = json::array();
  for (const HeldChunks& group : report.held) {
    held.push_back(
        {{"reason", HeldReasonName(group.reason)},
         {"tenant", group.tenant},
         {"job", group.job.empty() ? json(nullptr) : json(group.job)},
         {"step", group.job.empty() ? json(nullptr) : json(group.step)},
         {"chunk_count", group.chunk_count},
         {"bytes", group.bytes},
         {"until", group.until.has_value() ? json(FormatTimestamp(*group.until))
                                           : json(nullptr)}});
  }
  return {{"dry_run", report.dry_run},
          {"hold_seconds", report.hold.has_value()
                               ? json(absl::ToInt64Seconds(*report.hold))
                               : json(nullptr)},
          {"held", held},
          {"held_group_count", report.held_group_count},
          {"bytes_held", report.bytes_held},
          {"chunks_scanned", report.chunks_scanned},
          {"bytes_scanned", report.bytes_scanned},
          {"chunks_referenced", report.chunks_referenced},
          {"chunks_held", report.chunks_held},
          {"chunks_deleted", report.chunks_deleted},
          {"bytes_deleted", report.bytes_deleted},
          {"disk_bytes_before", report.disk_bytes_before},
          {"disk_bytes_after", report.disk_bytes_after},
          {"skipped_tenants", skipped},
          {"damaged", damaged},
          {"duration_seconds", absl::ToDoubleSeconds(report.duration)}};
}

// What frees a held group, for the text report.
std::string HeldUntil(const HeldChunks& group) {
  if (!group.until.has_value()) return "this collection's end";
  return FormatTimestamp(*group.until);
}

// The held chunks, one row per reason (and checkpoint), with what ends it.
void PrintHeld(const GcReport& report, bool hold_asked) {
  if (report.hold.has_value()) {
    std::cout << "hold window for saves in flight: "
              << absl::ToInt64Seconds(*report.hold) << " s"
              << (hold_asked ? " (--hold-seconds)" : " (the server's)") << "\n";
  }
  if (report.held.empty()) return;
  std::vector<std::vector<std::string>> rows;
  bool pending = false;
  bool in_flight = false;
  for (const HeldChunks& group : report.held) {
    std::string reason = HeldReasonName(group.reason);
    std::replace(reason.begin(), reason.end(), '_', ' ');
    pending |= group.reason == HeldReason::kPendingCheckpoint ||
               group.reason == HeldReason::kTenantSkipped;
    in_flight |= group.reason == HeldReason::kSaveInFlight;
    rows.push_back({reason, group.tenant,
                    group.job.empty()
                        ? std::string("-")
                        : absl::StrCat(group.job, "@", group.step),
                    absl::StrCat(group.chunk_count), HumanBytes(group.bytes),
                    HeldUntil(group)});
  }
  std::cout << "\nkept, and why (until: when the reason ends):\n";
  PrintTable(std::cout,
             {"REASON", "TENANT", "CHECKPOINT", "CHUNKS", "BYTES", "UNTIL"},
             rows);
  if (report.held.size() < report.held_group_count) {
    std::cout << "(" << report.held.size() << " of " << report.held_group_count
              << " groups listed, most bytes first)\n";
  }
  if (pending) {
    std::cout << "a pending checkpoint keeps its chunks until it commits, "
                 "is aborted or its lease ends; the next gc then frees "
                 "what nothing else references\n";
  }
  if (in_flight) {
    std::cout << "chunks a save uploaded are held for the hold window; "
                 "--hold-seconds N shortens it when no save is running\n";
  }
  std::cout << "\n";
}

void PrintGcReport(const GcReport& report, bool hold_asked) {
  std::cout << "scanned " << report.chunks_scanned << " chunk(s) ("
            << HumanBytes(report.bytes_scanned) << "); "
            << report.chunks_referenced << " referenced; " << report.chunks_held
            << " held (" << HumanBytes(report.bytes_held) << ")\n";
  PrintHeld(report, hold_asked);
  for (const auto& [tenant, reason] : report.skipped_tenants) {
    std::cout << "skipped tenant " << tenant << ": " << reason << "\n";
  }
  if (!report.damaged.empty()) {
    std::vector<std::vector<std::string>> rows;
    for (const DamagedCheckpoint& entry : report.damaged) {
      std::vector<std::string> ids;
      for (const ChunkId& id : entry.missing_chunks) {
        ids.push_back(id.ShortHex());
      }
      rows.push_back({entry.job, absl::StrCat(entry.step),
                      std::string(CheckpointStateName(entry.state)),
                      absl::StrJoin(ids, ", ")});
    }
    PrintTable(std::cout, {"JOB", "STEP", "STATE", "MISSING CHUNKS"}, rows);
  } else if (report.dry_run) {
    std::cout << "dry run: would delete " << report.chunks_deleted
              << " chunk(s) (" << HumanBytes(report.bytes_deleted)
              << "); nothing was deleted\n";
  } else {
    std::cout << "deleted " << report.chunks_deleted << " chunk(s) ("
              << HumanBytes(report.bytes_deleted) << ")\n";
    if (report.chunks_deleted > 0) {
      const uint64_t freed =
          report.disk_bytes_before > report.disk_bytes_after
              ? report.disk_bytes_before - report.disk_bytes_after
              : 0;
      std::cout << "chunk store on disk: "
                << HumanBytes(report.disk_bytes_before) << " -> "
                << HumanBytes(report.disk_bytes_after) << " (freed "
                << HumanBytes(freed) << ")\n";
    }
  }
  std::cout << "took " << absl::FormatDuration(report.duration) << "\n";
}

// Damaged chunks' checkpoints named in a table cell before "...".
constexpr size_t kMaxCheckpointsPerCell = 4;

std::string FormatCheckpoint(const CheckpointKey& key) {
  return absl::StrCat(key.job, "@", key.step);
}

json VerifyReportJson(const VerifyArgs& args, std::optional<int64_t> step,
                      const VerifyReport& report) {
  json chunks = json::array();
  for (const VerifyReport::DamagedChunk& chunk : report.damaged_chunks) {
    json checkpoints = json::array();
    for (const CheckpointKey& key : chunk.checkpoints) {
      checkpoints.push_back({{"job", key.job}, {"step", key.step}});
    }
    chunks.push_back({{"chunk", chunk.id.ShortHex()},
                      {"sha256", chunk.id.ToHex()},
                      {"tenant", chunk.tenant},
                      {"size", chunk.size},
                      {"problem", std::string(ChunkProblemName(chunk.problem))},
                      {"detail", chunk.detail},
                      {"checkpoints", checkpoints}});
  }
  json checkpoints = json::array();
  for (const VerifyReport::DamagedCheckpoint& damaged :
       report.damaged_checkpoints) {
    checkpoints.push_back({{"job", damaged.checkpoint.job},
                           {"step", damaged.checkpoint.step},
                           {"missing_chunks", damaged.missing_chunks},
                           {"corrupt_chunks", damaged.corrupt_chunks},
                           {"problems", damaged.problems}});
  }
  return {{"job", args.job.empty() ? json(nullptr) : json(args.job)},
          {"step", step.has_value() ? json(*step) : json(nullptr)},
          {"read_data", report.read_data},
          {"read_data_subset", report.read_data_subset.has_value()
                                   ? json(report.read_data_subset->ToString())
                                   : json(nullptr)},
          {"ok", report.ok()},
          {"checkpoints_checked", report.checkpoints_checked},
          {"pending_skipped", report.pending_skipped},
          {"chunks_checked", report.chunks_checked},
          {"chunks_read", report.chunks_read},
          {"bytes_read", report.bytes_read},
          {"damaged_chunk_count", report.damaged_chunk_count},
          {"damaged_chunks", chunks},
          {"damaged_checkpoints", checkpoints}};
}

void PrintVerifyReport(const VerifyArgs& args, std::optional<int64_t> step,
                       const VerifyReport& report) {
  const std::string scope =
      args.job.empty()   ? std::string("all jobs")
      : step.has_value() ? FormatCheckpoint(CheckpointKey{args.job, *step})
                         : args.job;
  std::cout << "verified " << report.checkpoints_checked
            << " committed checkpoint(s) of " << scope;
  if (report.pending_skipped > 0) {
    std::cout << " (" << report.pending_skipped << " pending skipped)";
  }
  std::cout << "\n"
            << "  " << report.chunks_checked
            << " chunk(s) checked for presence";
  if (report.read_data) {
    std::cout << "; " << report.chunks_read << " read and hashed ("
              << HumanBytes(report.bytes_read) << ")";
    if (report.read_data_subset.has_value()) {
      std::cout << ", subset " << report.read_data_subset->ToString();
    }
  } else {
    std::cout << "; data not read (--read-data reads it)";
  }
  std::cout << "\n";
  if (report.ok()) {
    std::cout << "no damage found\n";
    return;
  }
  if (report.damaged_chunk_count > 0) {
    std::vector<std::vector<std::string>> rows;
    for (const VerifyReport::DamagedChunk& chunk : report.damaged_chunks) {
      std::vector<std::string> names;
      for (const CheckpointKey& key : chunk.checkpoints) {
        if (names.size() == kMaxCheckpointsPerCell) {
          names.push_back(
              absl::StrCat("... (", chunk.checkpoints.size(), " in all)"));
          break;
        }
        names.push_back(FormatCheckpoint(key));
      }
      rows.push_back({chunk.id.ShortHex(), chunk.tenant, HumanBytes(chunk.size),
                      std::string(ChunkProblemName(chunk.problem)),
                      absl::StrJoin(names, ", "), chunk.detail});
    }
    std::cout << "\ndamaged chunks: " << report.damaged_chunk_count;
    if (report.damaged_chunks.size() < report.damaged_chunk_count) {
      std::cout << " (first " << report.damaged_chunks.size() << " listed)";
    }
    std::cout << "\n";
    PrintTable(std::cout,
               {"CHUNK", "TENANT", "SIZE", "PROBLEM", "CHECKPOINTS", "DETAIL"},
               rows);
  }
  std::vector<std::vector<std::string>> rows;
  for (const VerifyReport::DamagedCheckpoint& damaged :
       report.damaged_checkpoints) {
    rows.push_back({FormatCheckpoint(damaged.checkpoint),
                    absl::StrCat(damaged.missing_chunks),
                    absl::StrCat(damaged.corrupt_chunks),
                    damaged.problems.empty()
                        ? std::string("-")
                        : absl::StrJoin(damaged.problems, "; ")});
  }
  std::cout << "\ndamaged checkpoints: " << report.damaged_checkpoints.size()
            << "\n";
  PrintTable(std::cout, {"CHECKPOINT", "MISSING", "CORRUPT", "PROBLEMS"}, rows);
}

}  // namespace

absl::Status RunGc(client::Client& client, const GcArgs& args,
                   const OutputOptions& out) {
  if (!out.json && isatty(STDERR_FILENO)) {
    std::cerr << (args.dry_run ? "finding garbage" : "collecting garbage")
              << " on the server (reads every manifest; may take a while)..."
              << std::endl;
  }
  GcOptions options;
  options.dry_run = args.dry_run;
  if (args.hold_seconds_given) {
    int64_t seconds = 0;
    // SimpleAtoi also takes surrounding blanks; a value with them is a typo.
    if (absl::StripAsciiWhitespace(args.hold_seconds) != args.hold_seconds ||
        !absl::SimpleAtoi(args.hold_seconds, &seconds)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--hold-seconds: '", args.hold_seconds,
                       "' is not a whole number of seconds"));
    }
    options.hold = absl::Seconds(seconds);  // ranged by the server
  }
  CKPT_ASSIGN_OR_RETURN(GcReport report, client.CollectGarbage(options));
  if (options.hold.has_value() && !report.hold.has_value()) {
    std::cerr << "warning: the server ignored --hold-seconds (it predates "
                 "it) and held chunks for its own --chunk-hold-seconds\n";
  }
  if (out.json) {
    PrintJson(GcReportJson(report));
  } else {
    PrintGcReport(report, options.hold.has_value());
  }
  if (!report.damaged.empty()) {
    return absl::DataLossError(absl::StrCat(
        report.damaged.size(),
        " checkpoint(s) reference missing chunks, so nothing was deleted; "
        "`ckpt verify` names them, and deleting them lets GC run"));
  }
  return absl::OkStatus();
}

absl::Status RunVerify(client::Client& client, const VerifyArgs& args,
                       const OutputOptions& out) {
  VerifyOptions options;
  options.job = args.job;
  options.read_data = args.read_data;
  if (!args.read_data_subset.empty()) {
    absl::StatusOr<SubsetSpec> spec = ParseSubsetSpec(args.read_data_subset);
    if (!spec.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--read-data-subset: ", spec.status().message()));
    }
    uint64_t stored_bytes = 0;
    if (spec->bytes > 0) {
      // The job's own chunk bytes (what its checkpoints reference); the
      // tenant's from a server that predates them, the server's without a
      // job.
      CKPT_ASSIGN_OR_RETURN(client::Stats stats, client.GetStats(args.job));
      stored_bytes = stats.job_stored.has_value()
                         ? stats.job_stored->stored_bytes
                         : stats.stored_bytes;
    }
    std::random_device random;
    options.read_data_subset =
        ResolveSubset(*spec, stored_bytes, [&random](uint32_t parts) {
          return std::uniform_int_distribution<uint32_t>(1, parts)(random);
        });
  }
  if (!args.step.empty()) {
    CKPT_ASSIGN_OR_RETURN(std::optional<int64_t> step,
                          ParseStepOrLatest(args.step));
    if (step.has_value()) {
      options.step = step;
    } else {  // latest: the job's newest committed checkpoint
      CKPT_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> records,
                            client.ListCheckpoints(args.job));
      if (records.empty()) {
        return absl::NotFoundError(
            absl::StrCat("job '", args.job, "' has no committed checkpoint"));
      }
      options.step = records.back().step;
    }
  }

  absl::StatusOr<VerifyReport> report;
  {
    ProgressBar bar;
    report = client.VerifyCheckpoints(options, [&](const VerifyProgress& now) {
      if (now.stage == VerifyStage::kExistence) {
        bar.Update("checking chunks", now.chunks_done, now.chunks_total,
                   ProgressUnit::kCount);
      } else {
        bar.Update("reading data", now.bytes_done, now.bytes_total,
                   ProgressUnit::kBytes);
      }
    });
  }
  CKPT_RETURN_IF_ERROR(report.status());
  if (out.json) {
    PrintJson(VerifyReportJson(args, options.step, *report));
  } else {
    PrintVerifyReport(args, options.step, *report);
  }
  if (report->ok()) return absl::OkStatus();
  return absl::DataLossError(
      absl::StrCat("verify found damage: ", report->damaged_chunk_count,
                   " damaged chunk(s), ", report->damaged_checkpoints.size(),
                   " damaged checkpoint(s)"));
}

}  // namespace ckpt::cli
