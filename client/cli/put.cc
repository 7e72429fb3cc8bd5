// `ckpt put`: files as one rank's shard of a checkpoint, in full, as row
// deltas against an older checkpoint (--delta-against, rows found by the
// client library's RowsChangedSince or given by --dirty-rows), or quantized
// (--quantize-bits).
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "client/cli/args.h"
#include "client/cli/commands.h"
#include "client/cli/format.h"
#include "client/cli/json_output.h"
#include "client/cli/local_files.h"
#include "client/incremental.h"
#include "common/delta_base.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace ckpt::cli {
namespace {

using nlohmann::json;

// Threads fingerprinting a file and its base for --delta-against.
constexpr int kFingerprintThreads = 2;

// The checks of put's flags against each other, before any file is read.
absl::Status CheckPutFlags(const PutArgs& args, int64_t step) {
  if (args.row_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--row-bytes must be >= 0, got ", args.row_bytes));
  }
  if (args.delta_against.has_value() && args.row_bytes == 0) {
    return absl::InvalidArgumentError(
        "--delta-against needs --row-bytes (the rows a delta replaces), as "
        "the base was saved with");
  }
  if (args.delta_against.has_value() && *args.delta_against >= step) {
    return absl::InvalidArgumentError(
        absl::StrCat("--delta-against ", *args.delta_against,
                     " must be an older step than ", step));
  }
  if (args.quantize_bits.has_value()) {
    const int bits = *args.quantize_bits;
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
      return absl::InvalidArgumentError(
          absl::StrCat("--quantize-bits must be 2, 3, 4 or 8, got ", bits));
    }
    if (args.delta_against.has_value()) {
      return absl::InvalidArgumentError(
          "--quantize-bits cannot go with --delta-against: a quantized "
          "tensor is always saved in full");
    }
    if (args.row_bytes % 4 != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--row-bytes ", args.row_bytes,
          " is not a multiple of 4: --quantize-bits rows are float32"));
    }
  }
  if (!args.dirty_rows.empty() && !args.delta_against.has_value()) {
    return absl::InvalidArgumentError(
        "--dirty-rows needs --delta-against (the step whose rows the others "
        "are taken from) and --row-bytes");
  }
  return absl::OkStatus();
}

// Maps each file into `files` and describes it as a tensor viewing its
// mapping, named after its base name: a uint8 (float32 with
// --quantize-bits) vector, or a matrix of --row-bytes rows.
absl::Status MapFiles(const PutArgs& args,
                      std::vector<std::unique_ptr<MappedFile>>& files,
                      std::vector<client::TensorData>& tensors) {
  absl::flat_hash_set<std::string> names;
  for (const std::string& path : args.files) {
    std::string name = std::filesystem::path(path).filename().string();
    CKPT_RETURN_IF_ERROR(CheckSafeFileName(name));
    if (!names.insert(name).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "two files are named '", name, "'; tensor names must be unique"));
    }
    CKPT_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file,
                          MappedFile::Open(path));
    const auto size = static_cast<int64_t>(file->bytes().size());
    // float32 elements with --quantize-bits, else bytes.
    const int64_t element_bytes = args.quantize_bits.has_value() ? 4 : 1;
    if (size % element_bytes != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, " has ", size,
          " bytes, not a multiple of 4 (float32) for --quantize-bits"));
    }
    std::vector<int64_t> shape = {size / element_bytes};
    if (args.row_bytes > 0) {
      if (size % args.row_bytes != 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, " has ", size, " bytes, not a multiple of ",
                         "--row-bytes ", args.row_bytes));
      }
      shape = {size / args.row_bytes, args.row_bytes / element_bytes};
    }
    client::TensorData tensor;
    tensor.name = name;
    tensor.dtype =
        args.quantize_bits.has_value() ? DType::kFloat32 : DType::kUint8;
    tensor.quantize_bits = args.quantize_bits;
    tensor.global_shape = shape;
    tensor.box.offsets.assign(shape.size(), 0);
    tensor.box.lengths = shape;
    tensor.bytes = file->bytes();
    tensors.push_back(std::move(tensor));
    files.push_back(std::move(file));
  }
  return absl::OkStatus();
}

// With --delta-against: makes each tensor the base checkpoint holds a
// matching tensor of (FindDeltaBase) a row delta on it, of the rows
// --dirty-rows gives or else of the rows RowsChangedSince finds, kept in
// `changed_rows`; the others stay full. FAILED_PRECONDITION when rows are
// given for a tensor without a base.
absl::Status SetDeltas(client::Client& client, const PutArgs& args,
                       const GivenRows& given,
                       std::vector<client::TensorData>& tensors,
                       std::vector<std::vector<uint64_t>>& changed_rows) {
  CKPT_ASSIGN_OR_RETURN(Checkpoint base,
                        client.GetManifest(args.job, *args.delta_against));
  for (size_t i = 0; i < tensors.size(); ++i) {
    client::TensorData& tensor = tensors[i];
    absl::StatusOr<const TensorEntry*> base_entry =
        FindDeltaBase(base.shards, client::TensorLayout(tensor));
    if (given[i].has_value()) {
      if (!base_entry.ok()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "--dirty-rows ", tensor.name, ": the base checkpoint, step ",
            *args.delta_against, ", cannot hold the delta's other rows, ",
            base_entry.status().message()));
      }
      tensor.delta_rows = *given[i];
    } else if (base_entry.ok()) {
      CKPT_ASSIGN_OR_RETURN(changed_rows[i], client::RowsChangedSince(
                                                 client, args.job, **base_entry,
                                                 tensor, kFingerprintThreads));
      tensor.delta_rows = changed_rows[i];
    } else {
      continue;  // no such tensor there: full
    }
    tensor.delta_base_step = *args.delta_against;
  }
  return absl::OkStatus();
}

// `put --json`'s "quantized": each tensor saved quantized, with its width
// and error as the manifest records them.
json QuantizedSummaries(const std::map<std::string, Quantization>& quantized) {
  json summaries = json::array();
  for (const auto& [name, quantization] : quantized) {
    json summary = QuantizationJson(quantization);
    summary["name"] = name;
    summaries.push_back(std::move(summary));
  }
  return summaries;
}

// `put --json`'s "deltas": the tensors saved as row deltas, and whether
// their rows came from --dirty-rows or from comparing fingerprints.
json DeltaSummaries(const std::vector<client::TensorData>& tensors,
                    const GivenRows& given) {
  json deltas = json::array();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const client::TensorData& tensor = tensors[i];
    if (!tensor.delta_base_step.has_value()) continue;
    deltas.push_back(
        {{"name", tensor.name},
         {"base_step", *tensor.delta_base_step},
         {"rows", tensor.delta_rows.size()},
         {"total_rows", tensor.global_shape[0]},
         {"rows_from", given[i].has_value() ? "dirty-rows" : "fingerprints"}});
  }
  return deltas;
}

void PrintPutText(const PutArgs& args, int64_t step,
                  const std::vector<client::TensorData>& tensors,
                  const GivenRows& given, const client::SaveResult& result) {
  std::cout << "saved " << args.job << " step " << step << " rank " << args.rank
            << " of " << args.world_size << ": " << tensors.size()
            << " file(s), " << HumanBytes(result.logical_bytes) << "\n"
            << "chunks: " << result.chunks_total << " total, "
            << result.chunks_sent << " sent (" << HumanBytes(result.bytes_sent)
            << ")\n";
  for (size_t i = 0; i < tensors.size(); ++i) {
    const client::TensorData& tensor = tensors[i];
    if (!tensor.delta_base_step.has_value()) {
      if (args.delta_against.has_value()) {
        std::cout << tensor.name << ": saved in full (step "
                  << *args.delta_against << " has no tensor '" << tensor.name
                  << "' of this dtype and shape)\n";
      }
      continue;
    }
    std::cout << tensor.name << ": delta against step "
              << *tensor.delta_base_step << ", " << tensor.delta_rows.size()
              << " of " << tensor.global_shape[0] << " rows"
              << (given[i].has_value() ? " (from --dirty-rows)" : "") << "\n";
  }
  for (const auto& [name, quantization] : result.quantized) {
    std::cout << name << ": quantized to " << quantization.bits
              << " bits, error " << FormatQuantizationError(quantization)
              << "\n";
  }
  if (result.checkpoint.state == CheckpointState::kCommitted) {
    std::cout << "checkpoint committed\n";
  } else {
    std::cout << "waiting for other ranks: "
              << result.checkpoint.committed_ranks.size() << " of "
              << result.checkpoint.world_size << " committed\n";
  }
}

}  // namespace

absl::Status RunPut(client::Client& client, const PutArgs& args,
                    const OutputOptions& out) {
  CKPT_ASSIGN_OR_RETURN(int64_t step, ParseStep(args.step));
  client::SaveOptions options;
  options.rank = args.rank;
  options.world_size = args.world_size;
  CKPT_ASSIGN_OR_RETURN(options.metadata,
                        ParseMetadata(args.metrics, args.tags, args.time));
  CKPT_RETURN_IF_ERROR(CheckPutFlags(args, step));

  std::vector<std::unique_ptr<MappedFile>> files;
  std::vector<client::TensorData> tensors;
  CKPT_RETURN_IF_ERROR(MapFiles(args, files, tensors));
  // Checked before any base is read or anything saved.
  CKPT_ASSIGN_OR_RETURN(const GivenRows given,
                        ParseDirtyRows(args.dirty_rows, tensors));
  // Rows changed since the base, per tensor saved as a delta by
  // fingerprints; tensors' delta_rows view them.
  std::vector<std::vector<uint64_t>> changed_rows(tensors.size());
  if (args.delta_against.has_value()) {
    CKPT_RETURN_IF_ERROR(SetDeltas(client, args, given, tensors, changed_rows));
  }

  CKPT_ASSIGN_OR_RETURN(client::SaveResult result,
                        client.SaveShard(args.job, step, tensors, options));
  if (out.json) {
    PrintJson(
        {{"job", args.job},
         {"step", step},
         {"rank", args.rank},
         {"world_size", args.world_size},
         {"tensors", tensors.size()},
         {"logical_bytes", result.logical_bytes},
         {"chunks_total", result.chunks_total},
         {"chunks_sent", result.chunks_sent},
         {"bytes_sent", result.bytes_sent},
         {"checkpoint_committed", result.checkpoint_committed},
         {"deltas", DeltaSummaries(tensors, given)},
         {"quantized", QuantizedSummaries(result.quantized)},
         {"committed_ranks", result.checkpoint.committed_ranks},
         {"state", std::string(CheckpointStateName(result.checkpoint.state))}});
    return absl::OkStatus();
  }
  PrintPutText(args, step, tensors, given, result);
  return absl::OkStatus();
}

}  // namespace ckpt::cli
