// The read-only verbs of the ckpt CLI: `ls` (jobs, or a job's checkpoints),
// `show` (a manifest), `stats` (sizes and dedup) and `events` (a job's
// history). None of them changes anything on the server.
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/cli/args.h"
#include "client/cli/commands.h"
#include "client/cli/format.h"
#include "client/cli/json_output.h"
#include "common/best_checkpoint.h"
#include "common/event.h"
#include "common/quote.h"
#include "common/status_macros.h"
#include "common/tags.h"
#include "nlohmann/json.hpp"

namespace ckpt::cli {
namespace {

using nlohmann::json;

// `ls` without a job: every job with its size, latest step and policy.
absl::Status ListJobs(client::Client& client, const OutputOptions& out) {
  CKPT_ASSIGN_OR_RETURN(std::vector<client::JobSummary> jobs,
                        client.ListJobs());
  if (out.json) {
    json list = json::array();
    for (const client::JobSummary& job : jobs) {
      list.push_back(
          {{"name", job.job.name},
           {"checkpoint_count", job.checkpoint_count},
           {"logical_bytes", job.logical_bytes},
           {"latest_step", job.latest_step.has_value() ? json(*job.latest_step)
                                                       : json(nullptr)},
           {"create_time", FormatTimestamp(job.job.create_time)},
           {"policy", job.job.retention_policy.has_value()
                          ? PolicyJson(*job.job.retention_policy)
                          : json(nullptr)},
           {"policy_origin", PolicyOriginJson(job.job.policy_origin)}});
    }
    PrintJson(list);
    return absl::OkStatus();
  }
  std::vector<std::vector<std::string>> rows;
  rows.reserve(jobs.size());
  for (const client::JobSummary& job : jobs) {
    rows.push_back(
        {job.job.name, absl::StrCat(job.checkpoint_count),
         HumanBytes(job.logical_bytes),
         job.latest_step.has_value() ? absl::StrCat(*job.latest_step)
                                     : std::string("-"),
         job.job.retention_policy.has_value()
             ? absl::StrCat(RetentionPolicyText(*job.job.retention_policy),
                            job.job.policy_origin.has_value() &&
                                    job.job.policy_origin->source ==
                                        PolicyOrigin::Source::kTenantDefault
                                ? " (tenant default)"
                                : "")
             : std::string("-")});
  }
  PrintTable(std::cout, {"JOB", "CHECKPOINTS", "SIZE", "LATEST", "POLICY"},
             rows);
  return absl::OkStatus();
}

// A quantized entry's error, else "-".
std::string EntryError(const TensorEntry& entry) {
  return entry.IsQuantized() ? FormatQuantizationError(*entry.quantization)
                             : "-";
}

json EntryQuantizationJson(const TensorEntry& entry) {
  return entry.IsQuantized() ? QuantizationJson(*entry.quantization)
                             : json(nullptr);
}

json ShowJson(const Checkpoint& checkpoint) {
  json shards = json::array();
  for (const ShardManifest& shard : checkpoint.shards) {
    json tensors = json::array();
    for (const TensorEntry& entry : shard.tensors) {
      json chunks = json::array();
      for (const ChunkRef& piece : entry.pieces) {
        chunks.push_back({{"sha256", piece.id.ToHex()}, {"size", piece.size}});
      }
      json fingerprint_chunks = json::array();
      for (const ChunkRef& piece : entry.fingerprint_pieces) {
        fingerprint_chunks.push_back(
            {{"sha256", piece.id.ToHex()}, {"size", piece.size}});
      }
      tensors.push_back(
          {{"name", entry.name},
           {"dtype", std::string(DTypeName(entry.dtype))},
           {"global_shape", entry.global_shape},
           {"box",
            {{"offsets", entry.box.offsets}, {"lengths", entry.box.lengths}}},
           {"bytes", entry.ByteSize()},
           {"stored_bytes", entry.StoredBytes()},
           {"delta", entry.IsDelta()},
           {"base_step",
            entry.IsDelta() ? json(*entry.delta_base_step) : json(nullptr)},
           {"quantization", EntryQuantizationJson(entry)},
           {"chunk_count", entry.pieces.size()},
           {"chunks", chunks},
           {"fingerprint_bytes", entry.FingerprintBytes()},
           {"fingerprint_chunks", fingerprint_chunks}});
    }
    shards.push_back({{"rank", shard.rank},
                      {"bytes", shard.ByteSize()},
                      {"tensors", tensors}});
  }
  json value = RecordJson(checkpoint.record);
  value["shards"] = shards;
  return value;
}

// logical / stored: how many times over the stored bytes are referenced.
// 1.0 when nothing is stored, i.e. no savings to report.
double DedupRatio(uint64_t logical_bytes, uint64_t stored_bytes) {
  return stored_bytes == 0 ? 1.0
                           : static_cast<double>(logical_bytes) /
                                 static_cast<double>(stored_bytes);
}

std::string FormatRatio(double ratio) {
  return absl::StrFormat("%.2fx", ratio);
}

// The stored bytes and chunks `stats` stands for: a job's own figures when
// the server reports them (a job's stored bytes are what its checkpoints
// reference), else the scope's tenant's (the whole server's without a job).
struct StoredFigures {
  uint64_t bytes = 0;
  uint64_t chunks = 0;
};
StoredFigures StoredFiguresOf(const client::Stats& stats) {
  if (stats.job_stored.has_value()) {
    return {stats.job_stored->stored_bytes, stats.job_stored->chunk_count};
  }
  return {stats.stored_bytes, stats.chunk_count};
}

std::string BytesWithCount(uint64_t bytes) {
  return absl::StrCat(HumanBytes(bytes), " (", bytes, ")");
}

json StatsJson(const StatsArgs& args, const client::Stats& stats) {
  json jobs = json::array();
  for (const client::JobStats& job : stats.jobs) {
    jobs.push_back({{"job", job.job},
                    {"checkpoint_count", job.checkpoint_count},
                    {"logical_bytes", job.logical_bytes}});
  }
  json tenants = json::array();
  for (const client::TenantStats& tenant : stats.tenants) {
    tenants.push_back({{"tenant", tenant.tenant},
                       {"job_count", tenant.job_count},
                       {"checkpoint_count", tenant.checkpoint_count},
                       {"logical_bytes", tenant.logical_bytes},
                       {"stored_bytes", tenant.stored_bytes},
                       {"chunk_count", tenant.chunk_count},
                       {"dedup_ratio", DedupRatio(tenant.logical_bytes,
                                                  tenant.stored_bytes)}});
  }
  const StoredFigures stored = StoredFiguresOf(stats);
  json value = {{"logical_bytes", stats.logical_bytes},
                {"stored_bytes", stored.bytes},
                {"chunk_count", stored.chunks},
                {"dedup_ratio", DedupRatio(stats.logical_bytes, stored.bytes)},
                {"job_count", stats.job_count},
                {"checkpoint_count", stats.checkpoint_count},
                {"jobs", jobs},
                {"tenants", tenants}};
  if (!args.job.empty()) {
    value["job"] = args.job;
    // "tenant" (own and shared null) from a server that reports only the
    // tenant's figures.
    value["stored_bytes_of"] = stats.job_stored.has_value() ? "job" : "tenant";
    const JobStoredBytes* job = stats.job_stored ? &*stats.job_stored : nullptr;
    value["own_bytes"] =
        job ? json(job->stored_bytes - job->shared_bytes) : json(nullptr);
    value["shared_bytes"] = job ? json(job->shared_bytes) : json(nullptr);
    value["own_chunk_count"] =
        job ? json(job->chunk_count - job->shared_chunk_count) : json(nullptr);
    value["shared_chunk_count"] =
        job ? json(job->shared_chunk_count) : json(nullptr);
  }
  return value;
}

// `listed` best first by --sort (ranked ones, then NaN values, then those
// without the metric; see common/best_checkpoint.h).
absl::StatusOr<std::vector<client::CheckpointUsage>> SortedByMetric(
    std::vector<client::CheckpointUsage> listed, const LsArgs& args) {
  CKPT_ASSIGN_OR_RETURN(const MetricMode mode,
                        ParseMetricMode("--mode", args.mode));
  std::vector<CheckpointRecord> records;
  records.reserve(listed.size());
  for (const client::CheckpointUsage& usage : listed) {
    records.push_back(usage.record);
  }
  CKPT_ASSIGN_OR_RETURN(records,
                        SortByMetric(std::move(records), args.sort, mode));
  std::map<int64_t, client::CheckpointUsage> by_step;
  for (client::CheckpointUsage& usage : listed) {
    const int64_t step = usage.record.step;
    by_step.emplace(step, std::move(usage));
  }
  std::vector<client::CheckpointUsage> sorted;
  sorted.reserve(records.size());
  for (const CheckpointRecord& record : records) {
    sorted.push_back(std::move(by_step.at(record.step)));
  }
  return sorted;
}

// For `ls JOB` that found no committed checkpoint: when the job has pending
// or aborted ones, says so on stderr and how to list them.
absl::Status PrintUncommittedHint(client::Client& client,
                                  const std::string& job) {
  CKPT_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> all,
                        client.ListCheckpoints(job, true));
  int pending = 0;
  int aborted = 0;
  for (const CheckpointRecord& record : all) {
    if (record.state == CheckpointState::kPending) ++pending;
    if (record.state == CheckpointState::kAborted) ++aborted;
  }
  if (pending + aborted == 0) return absl::OkStatus();
  std::cerr << "ckpt: " << job << " has no committed checkpoint yet, but "
            << pending << " pending and " << aborted << " aborted; `ckpt ls "
            << job << " --all` lists them\n";
  return absl::OkStatus();
}

}  // namespace

absl::Status RunLs(client::Client& client, const LsArgs& args,
                   const OutputOptions& out) {
  if (args.sort.empty() && !args.mode.empty()) {
    return absl::InvalidArgumentError("--mode goes with --sort METRIC");
  }
  if (args.job.empty()) {
    if (!args.sort.empty()) {
      return absl::InvalidArgumentError(
          "--sort orders a job's checkpoints: give JOB");
    }
    return ListJobs(client, out);
  }

  for (const std::string& query : args.tags) {
    // A query is a tag as `tag` takes it: KEY or KEY=VALUE.
    CKPT_RETURN_IF_ERROR(ParseTag(query).status());
  }
  CKPT_ASSIGN_OR_RETURN(
      std::vector<client::CheckpointUsage> listed,
      client.ListCheckpointsWithUniqueBytes(args.job, args.all));
  std::erase_if(listed, [&](const client::CheckpointUsage& usage) {
    for (const std::string& query : args.tags) {
      if (!MatchesTag(usage.record.metadata.tags, query)) return true;
    }
    return false;
  });
  if (!args.sort.empty()) {
    CKPT_ASSIGN_OR_RETURN(listed, SortedByMetric(std::move(listed), args));
  }
  if (out.json) {
    json list = json::array();
    for (const client::CheckpointUsage& usage : listed) {
      json value = RecordJson(usage.record);
      value["unique_bytes"] = usage.unique_bytes.has_value()
                                  ? json(*usage.unique_bytes)
                                  : json(nullptr);
      list.push_back(std::move(value));
    }
    PrintJson(list);
    return absl::OkStatus();
  }
  if (listed.empty() && !args.all && args.tags.empty()) {
    CKPT_RETURN_IF_ERROR(PrintUncommittedHint(client, args.job));
  }
  // UNIQUE: what deleting the checkpoint alone would free at the next GC;
  // ADDED: what saving it stored new; BASE: the steps its deltas apply to.
  std::vector<std::string> header = {"STEP",   "TIME", "WORLD",  "KIND",
                                     "BASE",   "SIZE", "ADDED",  "UNIQUE",
                                     "PINNED", "TAGS", "METRICS"};
  if (args.all) header.push_back("STATE");
  std::vector<std::vector<std::string>> rows;
  for (const client::CheckpointUsage& usage : listed) {
    const CheckpointRecord& record = usage.record;
    std::vector<std::string> row = {absl::StrCat(record.step),
                                    FormatTimestamp(DisplayTime(record)),
                                    absl::StrCat(record.world_size),
                                    std::string(CheckpointKindName(record)),
                                    FormatSteps(record.base_steps),
                                    HumanBytes(record.logical_bytes),
                                    HumanBytes(record.bytes_added),
                                    usage.unique_bytes.has_value()
                                        ? HumanBytes(*usage.unique_bytes)
                                        : std::string("-"),
                                    record.pinned ? "pinned" : "-",
                                    FormatTags(record.metadata.tags),
                                    FormatMetrics(record.metadata.metrics)};
    if (args.all) row.emplace_back(CheckpointStateName(record.state));
    rows.push_back(std::move(row));
  }
  PrintTable(std::cout, header, rows);
  return absl::OkStatus();
}

absl::Status RunShow(client::Client& client, const ShowArgs& args,
                     const OutputOptions& out) {
  CKPT_ASSIGN_OR_RETURN(std::optional<int64_t> step,
                        ParseStepOrLatest(args.step));
  CKPT_ASSIGN_OR_RETURN(Checkpoint checkpoint,
                        client.GetManifest(args.job, step));
  if (out.json) {
    PrintJson(ShowJson(checkpoint));
    return absl::OkStatus();
  }
  const CheckpointRecord& record = checkpoint.record;
  std::cout << "job " << record.job << " step " << record.step << " ("
            << CheckpointStateName(record.state) << ", "
            << FormatTimestamp(DisplayTime(record)) << ")\n"
            << "world size " << record.world_size << ", "
            << HumanBytes(record.logical_bytes) << "\n"
            << "kind " << CheckpointKindName(record);
  if (record.IsIncremental()) {
    std::cout << " (deltas against step(s) " << FormatSteps(record.base_steps)
              << ")";
  }
  std::cout << ", " << HumanBytes(record.bytes_added) << " added"
            << (record.pinned ? ", pinned" : "") << "\n";
  if (record.copied_from.has_value()) {
    // The label is the copying client's text: checked by the server, and
    // escaped here in case an older or hostile one did not.
    std::cout << "copied from "
              << EscapeControlBytes(CopyPeerText(*record.copied_from)) << "\n";
  }
  std::cout << "metrics: " << FormatMetrics(record.metadata.metrics) << "\n"
            << "tags: " << FormatTags(record.metadata.tags) << "\n\n";
  std::vector<std::vector<std::string>> rows;
  for (const ShardManifest& shard : checkpoint.shards) {
    for (const TensorEntry& entry : shard.tensors) {
      rows.push_back(
          {absl::StrCat(shard.rank), EscapeControlBytes(entry.name),
           std::string(DTypeName(entry.dtype)), FormatShape(entry.global_shape),
           FormatBox(entry.box), TensorEntryKind(entry),
           entry.IsDelta() ? absl::StrCat(*entry.delta_base_step)
                           : std::string("-"),
           absl::StrCat(entry.pieces.size()), HumanBytes(entry.ByteSize()),
           HumanBytes(entry.StoredBytes()), EntryError(entry)});
    }
  }
  // SIZE: the tensor's bytes; STORED: what its pieces hold (a delta's rows,
  // a quantized tensor's codes); ERROR: a quantized tensor's measured error.
  PrintTable(std::cout,
             {"RANK", "TENSOR", "DTYPE", "SHAPE", "BOX", "KIND", "BASE",
              "CHUNKS", "SIZE", "STORED", "ERROR"},
             rows);
  return absl::OkStatus();
}

absl::Status RunStats(client::Client& client, const StatsArgs& args,
                      const OutputOptions& out) {
  CKPT_ASSIGN_OR_RETURN(client::Stats stats, client.GetStats(args.job));
  if (out.json) {
    PrintJson(StatsJson(args, stats));
    return absl::OkStatus();
  }
  std::cout << (args.job.empty() ? std::string("server")
                                 : absl::StrCat("job ", args.job))
            << "\n";
  const StoredFigures stored = StoredFiguresOf(stats);
  std::vector<std::vector<std::string>> rows = {
      {"logical bytes", BytesWithCount(stats.logical_bytes)},
      {"stored bytes", BytesWithCount(stored.bytes)}};
  if (const std::optional<JobStoredBytes>& job = stats.job_stored) {
    // The stored bytes split by who else needs them.
    rows.push_back({"  own", absl::StrCat(BytesWithCount(job->stored_bytes -
                                                         job->shared_bytes),
                                          ", only this job's checkpoints")});
    rows.push_back(
        {"  shared",
         absl::StrCat(BytesWithCount(job->shared_bytes),
                      ", also referenced by other jobs of the tenant")});
    rows.push_back(
        {"chunks", absl::StrCat(job->chunk_count, " (", job->shared_chunk_count,
                                " shared)")});
  } else {
    if (!args.job.empty()) {
      rows.back()[1] +=
          " of the whole tenant (this server does not report "
          "a job's own)";
    }
    rows.push_back({"chunks", absl::StrCat(stored.chunks)});
  }
  rows.push_back({"dedup ratio",
                  FormatRatio(DedupRatio(stats.logical_bytes, stored.bytes))});
  rows.push_back({"checkpoints", absl::StrCat(stats.checkpoint_count)});
  if (args.job.empty()) {
    rows.push_back({"jobs", absl::StrCat(stats.job_count)});
  }
  for (const auto& row : rows) {
    std::cout << "  " << row[0] << std::string(15 - row[0].size(), ' ')
              << row[1] << "\n";
  }
  std::vector<std::vector<std::string>> job_rows;
  for (const client::JobStats& job : stats.jobs) {
    job_rows.push_back({job.job, absl::StrCat(job.checkpoint_count),
                        HumanBytes(job.logical_bytes)});
  }
  std::cout << "\n";
  PrintTable(std::cout, {"JOB", "CHECKPOINTS", "LOGICAL"}, job_rows);
  // Chunks are stored, and deduplicated, per tenant.
  std::vector<std::vector<std::string>> tenant_rows;
  for (const client::TenantStats& tenant : stats.tenants) {
    tenant_rows.push_back(
        {tenant.tenant, absl::StrCat(tenant.job_count),
         absl::StrCat(tenant.checkpoint_count),
         HumanBytes(tenant.logical_bytes), HumanBytes(tenant.stored_bytes),
         absl::StrCat(tenant.chunk_count),
         FormatRatio(DedupRatio(tenant.logical_bytes, tenant.stored_bytes))});
  }
  std::cout << "\n";
  PrintTable(
      std::cout,
      {"TENANT", "JOBS", "CHECKPOINTS", "LOGICAL", "STORED", "CHUNKS", "DEDUP"},
      tenant_rows);
  return absl::OkStatus();
}

absl::Status RunEvents(client::Client& client, const EventsArgs& args,
                       const OutputOptions& out) {
  if (args.limit < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--limit must be >= 0 (0: every kept event), got ", args.limit));
  }
  CKPT_ASSIGN_OR_RETURN(std::vector<JobEvent> events,
                        client.ListEvents(args.job, args.limit));
  if (out.json) {
    json list = json::array();
    for (const JobEvent& event : events) {
      list.push_back(
          {{"sequence", event.sequence},
           {"time", FormatTimestamp(event.time)},
           {"step", event.step.has_value() ? json(*event.step) : json(nullptr)},
           {"kind", std::string(EventKindName(event.kind))},
           {"principal", event.principal},
           {"detail", event.detail}});
    }
    PrintJson(list);
    return absl::OkStatus();
  }
  std::vector<std::vector<std::string>> rows;
  rows.reserve(events.size());
  for (const JobEvent& event : events) {
    rows.push_back(
        {FormatTimestamp(event.time),
         event.step.has_value() ? absl::StrCat(*event.step) : std::string("-"),
         std::string(EventKindName(event.kind)),
         event.principal.empty() ? std::string("-") : event.principal,
         event.detail.empty() ? std::string("-") : event.detail});
  }
  PrintTable(std::cout, {"TIME", "STEP", "KIND", "BY", "DETAIL"}, rows);
  return absl::OkStatus();
}

}  // namespace ckpt::cli
