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

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "client/cli/args.h"
#include "client/cli/commands.h"
#include "client/cli/format.h"
#include "client/cli/json_output.h"
#include "client/cli/output_tree.h"
#include "client/cli/progress.h"
#include "common/best_checkpoint.h"
#include "common/retention.h"
#include "common/shard_layout.h"
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

// --full: how a tensor name of the checkpoint is fetched. A sharded one
// (some rank holds part of it) is one region, the whole tensor, assembled
// from every rank's box. A per-rank one (every rank holds it whole) is one
// region per distinct entry, with the ranks whose entry it is; its copies
// are compared once fetched.
struct FullTensor {
  std::string name;
  std::vector<size_t> requests;
  std::vector<std::vector<int32_t>> ranks;  // per request (per-rank ones)
  bool sharded = false;
};

absl::StatusOr<std::vector<FullTensor>> PlanFull(
    const Checkpoint& checkpoint,
    std::vector<client::RegionRequest>* requests) {
  // Each name's entries, by rank, in first-seen order.
  std::vector<std::vector<std::pair<int32_t, const TensorEntry*>>> entries;
  absl::flat_hash_map<absl::string_view, size_t> index;
  for (const ShardManifest& shard : checkpoint.shards) {
    for (const TensorEntry& entry : shard.tensors) {
      auto [it, added] = index.emplace(entry.name, entries.size());
      if (added) entries.emplace_back();
      entries[it->second].emplace_back(shard.rank, &entry);
    }
  }
  std::vector<FullTensor> tensors;
  for (const auto& held : entries) {
    FullTensor tensor;
    tensor.name = held.front().second->name;
    const TensorEntry* partial = nullptr;
    for (const auto& [rank, entry] : held) {
      if (!IsWholeBox(*entry)) partial = entry;
    }
    if (partial != nullptr) {
      tensor.sharded = true;
      tensor.requests.push_back(requests->size());
      requests->push_back(client::RegionRequest{
          .name = tensor.name,
          .dtype = partial->dtype,
          .global_shape = partial->global_shape,
          .region = Box{std::vector<int64_t>(partial->global_shape.size(), 0),
                        partial->global_shape},
          .source_rank = std::nullopt});
    } else {
      // Identical entries hold identical bytes: fetched once.
      std::vector<const TensorEntry*> distinct;
      for (const auto& [rank, entry] : held) {
        size_t d = 0;
        while (d < distinct.size() && !(*distinct[d] == *entry)) ++d;
        if (d == distinct.size()) {
          distinct.push_back(entry);
          tensor.requests.push_back(requests->size());
          tensor.ranks.emplace_back();
          requests->push_back(
              client::RegionRequest{.name = tensor.name,
                                    .dtype = entry->dtype,
                                    .global_shape = entry->global_shape,
                                    .region = entry->box,
                                    .source_rank = rank});
        }
        tensor.ranks[d].push_back(rank);
      }
    }
    tensors.push_back(std::move(tensor));
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
    CKPT_RETURN_IF_ERROR(tree->Plan(tensor.name, tensor.name));
    if (tensor.requests.size() < 2) continue;
    for (const std::vector<int32_t>& ranks : tensor.ranks) {
      for (int32_t rank : ranks) {
        CKPT_RETURN_IF_ERROR(
            tree->Plan(RankPath(rank, tensor.name), tensor.name));
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
    const absl::Span<const char> first = bytes_of(tensor.requests.front());
    bool same = true;
    for (size_t request : tensor.requests) same &= bytes_of(request) == first;
    if (same) {
      outputs.push_back({tensor.name, tensor.name, std::nullopt, first});
      continue;
    }
    for (size_t i = 0; i < tensor.requests.size(); ++i) {
      for (int32_t rank : tensor.ranks[i]) {
        outputs.push_back({RankPath(rank, tensor.name), tensor.name, rank,
                           bytes_of(tensor.requests[i])});
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
    CKPT_ASSIGN_OR_RETURN(full, PlanFull(checkpoint, &requests));
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
