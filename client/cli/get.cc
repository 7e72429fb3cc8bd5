// `ckpt get`: a checkpoint restored as files under OUTDIR, one per tensor
// at the path its name spells (client/cli/output_tree.h): one rank's shard
// (--rank), or with --full every tensor whole, sharded ones assembled from
// all ranks' boxes. STEP is a step, `latest`, or `best` by --metric.
//
// Order, so that a get that fails leaves neither a file nor a `restored`
// event: every name is checked and every path planned before anything is
// fetched; the files are written under temporary names; the restore is
// reported (ReportRestore); only then are the files renamed into place.
#include <iostream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cli/args.h"
#include "client/cli/commands.h"
#include "client/cli/format.h"
#include "client/cli/json_output.h"
#include "client/cli/output_tree.h"
#include "client/cli/progress.h"
#include "client/whole_tensors.h"
#include "common/best_checkpoint.h"
#include "common/retention.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace ckpt::cli {
namespace {

using nlohmann::json;

// The checkpoint STEP names, and for `best` how it was chosen.
struct Chosen {
  std::optional<int64_t> step;  // nullopt: latest
  json best = nullptr;          // {"metric", "mode", "value"} for `best`
};

absl::StatusOr<Chosen> ChooseStep(client::Client& client, const GetArgs& args) {
  const bool best = args.step == "best";
  if (!best) {
    if (!args.metric.empty() || !args.mode.empty()) {
      return absl::InvalidArgumentError(
          "--metric and --mode go with STEP 'best'");
    }
    CKPT_ASSIGN_OR_RETURN(std::optional<int64_t> step,
                          ParseStepOrLatest(args.step));
    return Chosen{step};
  }
  if (args.metric.empty()) {
    return absl::InvalidArgumentError(
        "STEP 'best' needs --metric NAME (e.g. --metric val_loss)");
  }
  CKPT_ASSIGN_OR_RETURN(const MetricMode mode,
                        ParseMetricMode("--mode", args.mode));
  CKPT_ASSIGN_OR_RETURN(const MetricMode resolved,
                        ResolveMetricMode(args.metric, mode));
  CKPT_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> records,
                        client.ListCheckpoints(args.job));
  CKPT_ASSIGN_OR_RETURN(CheckpointRecord record,
                        BestCheckpoint(records, args.metric, mode));
  return Chosen{record.step,
                {{"metric", args.metric},
                 {"mode", std::string(MetricModeName(resolved))},
                 {"value", record.metadata.metrics.at(args.metric)}}};
}

// One file written: a tensor, or (--full) one rank's copy of a per-rank
// tensor.
struct Output {
  std::string path;  // relative to OUTDIR
  std::string tensor;
  std::optional<int32_t> rank;  // set for a per-rank copy under rank-N/
  absl::Span<const char> bytes;
};

// --full: each name's copies (client/whole_tensors.h), with the index of
// its first copy's request in the one RestoreRegions call.
struct FullTensor {
  client::WholeTensor plan;
  size_t first_request = 0;
};

std::vector<FullTensor> PlanFull(const Checkpoint& checkpoint,
                                 std::vector<client::RegionRequest>* requests) {
  std::vector<FullTensor> tensors;
  for (client::WholeTensor& plan : client::PlanWholeTensors(checkpoint)) {
    tensors.push_back({std::move(plan), requests->size()});
    for (const client::RegionRequest& copy : tensors.back().plan.copies) {
      requests->push_back(copy);
    }
  }
  return tensors;
}

std::string RankPath(int32_t rank, absl::string_view name) {
  return absl::StrCat("rank-", rank, "/", name);
}

// Reserves every path `tensors` may be written to: a per-rank tensor whose
// ranks hold different entries may go to rank-N/ paths or, if their bytes
// turn out equal, to its own.
absl::Status PlanFullPaths(const std::vector<FullTensor>& tensors,
                           OutputTree* tree) {
  for (const FullTensor& tensor : tensors) {
    const client::WholeTensor& plan = tensor.plan;
    CKPT_RETURN_IF_ERROR(tree->Plan(plan.name, plan.name));
    if (plan.copies.size() < 2) continue;
    for (const std::vector<int32_t>& ranks : plan.ranks) {
      for (int32_t rank : ranks) {
        CKPT_RETURN_IF_ERROR(tree->Plan(RankPath(rank, plan.name), plan.name));
      }
    }
  }
  return absl::OkStatus();
}

// The files --full writes, once the regions are in memory.
std::vector<Output> FullOutputs(const std::vector<FullTensor>& tensors,
                                const client::RestoredRegions& restored) {
  auto bytes_of = [&](size_t request) {
    const client::RestoredTensor& region = restored.tensors[request];
    return absl::Span<const char>(region.bytes.data(), region.bytes.size());
  };
  std::vector<Output> outputs;
  for (const FullTensor& tensor : tensors) {
    const client::WholeTensor& plan = tensor.plan;
    const size_t copies = plan.copies.size();
    const absl::Span<const char> first = bytes_of(tensor.first_request);
    bool same = true;
    for (size_t i = 1; i < copies; ++i) {
      same &= bytes_of(tensor.first_request + i) == first;
    }
    if (same) {
      outputs.push_back({plan.name, plan.name, std::nullopt, first});
      continue;
    }
    for (size_t i = 0; i < copies; ++i) {
      for (int32_t rank : plan.ranks[i]) {
        outputs.push_back({RankPath(rank, plan.name), plan.name, rank,
                           bytes_of(tensor.first_request + i)});
      }
    }
  }
  return outputs;
}

}  // namespace

absl::Status RunGet(client::Client& client, const GetArgs& args,
                    const OutputOptions& out) {
  if (args.out_dir.empty()) {
    return absl::InvalidArgumentError("OUTDIR must not be empty");
  }
  CKPT_ASSIGN_OR_RETURN(Chosen chosen, ChooseStep(client, args));
  // No restoring rank: the restore is reported once it has succeeded.
  CKPT_ASSIGN_OR_RETURN(Checkpoint checkpoint,
                        client.GetManifest(args.job, chosen.step));
  const int64_t step = checkpoint.record.step;

  // Every path is planned, and checked against what OUTDIR already holds,
  // before anything is fetched.
  OutputTree tree(args.out_dir);
  std::vector<client::RegionRequest> requests;
  std::vector<FullTensor> full;
  const ShardManifest* shard = nullptr;
  if (args.full) {
    full = PlanFull(checkpoint, &requests);
    CKPT_RETURN_IF_ERROR(PlanFullPaths(full, &tree));
  } else {
    for (const ShardManifest& candidate : checkpoint.shards) {
      if (candidate.rank == args.rank) shard = &candidate;
    }
    if (shard == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--rank ", args.rank, " is outside checkpoint ", step, " of job ",
          args.job, ", saved by ", checkpoint.record.world_size, " rank(s)"));
    }
    for (const TensorEntry& entry : shard->tensors) {
      CKPT_RETURN_IF_ERROR(tree.Plan(entry.name, entry.name));
    }
  }
  CKPT_RETURN_IF_ERROR(tree.CheckExisting());

  std::vector<client::RestoredTensor> tensors;
  client::RestoredRegions regions;
  std::vector<Output> outputs;
  {
    ProgressBar bar;
    auto progress = [&](uint64_t done, uint64_t total) {
      bar.Update("restoring", done, total, ProgressUnit::kBytes);
    };
    if (args.full) {
      CKPT_ASSIGN_OR_RETURN(
          regions, client.RestoreRegions(checkpoint, requests, progress));
      outputs = FullOutputs(full, regions);
    } else {
      CKPT_ASSIGN_OR_RETURN(
          tensors, client.RestoreShard(checkpoint, args.rank, progress));
      for (const client::RestoredTensor& tensor : tensors) {
        outputs.push_back({tensor.entry.name,
                           tensor.entry.name,
                           std::nullopt,
                           {tensor.bytes.data(), tensor.bytes.size()}});
      }
    }
  }
  for (const Output& output : outputs) {
    CKPT_RETURN_IF_ERROR(tree.Stage(
        output.path,
        absl::string_view(output.bytes.data(), output.bytes.size())));
  }
  // The files are ready: the restore succeeded. A checkpoint deleted since
  // it was read (NOT_FOUND) or a server older than the call (UNIMPLEMENTED)
  // only loses the history entry; any other refusal fails the get, and the
  // tree removes what it wrote.
  const int32_t reported_rank = args.full ? 0 : args.rank;
  absl::Status reported = client.ReportRestore(args.job, step, reported_rank);
  if (!reported.ok() && !absl::IsNotFound(reported) &&
      !absl::IsUnimplemented(reported)) {
    return reported;
  }
  CKPT_RETURN_IF_ERROR(tree.Commit());

  json files = json::array();
  std::vector<std::vector<std::string>> rows;
  uint64_t total = 0;
  for (const Output& output : outputs) {
    const std::string path = tree.FullPath(output.path);
    total += output.bytes.size();
    files.push_back({{"name", output.tensor},
                     {"path", path},
                     {"bytes", output.bytes.size()},
                     {"rank", output.rank.has_value() ? json(*output.rank)
                                                      : json(nullptr)}});
    rows.push_back({path, HumanBytes(output.bytes.size())});
  }
  if (out.json) {
    PrintJson({{"job", args.job},
               {"step", step},
               {"rank", args.full ? json(nullptr) : json(args.rank)},
               {"full", args.full},
               {"best", chosen.best},
               {"bytes", total},
               {"files", files}});
    return absl::OkStatus();
  }
  std::cout << "restored " << args.job << " step " << step;
  if (args.full) {
    std::cout << " whole (" << checkpoint.record.world_size << " rank(s))";
  } else {
    std::cout << " rank " << args.rank;
  }
  if (!chosen.best.is_null()) {
    std::cout << ", the best by " << args.metric << " ("
              << chosen.best["mode"].get<std::string>() << ")";
  }
  std::cout << ": " << outputs.size() << " file(s), " << HumanBytes(total)
            << "\n";
  PrintTable(std::cout, {"FILE", "SIZE"}, rows);
  return absl::OkStatus();
}

}  // namespace ckpt::cli
