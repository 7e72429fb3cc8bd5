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
#include "common/row_fingerprint.h"
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

// What put found for one file: the rows of its delta (--dirty-rows' or
// those that differ from the base) and the row fingerprints stored with it.
struct PutRows {
  std::vector<uint64_t> delta_rows;
  // For a delta, of delta_rows; for a full save, of every row (empty with
  // --no-fingerprints or when the file has no rows).
  std::vector<RowFingerprint> fingerprints;
  // How the base's rows were compared: "stored fingerprints", "read back"
  // (a base without stored fingerprints), or "dirty-rows".
  std::string rows_from;
  uint64_t base_bytes_read = 0;
};

// With --delta-against: makes each tensor the base checkpoint holds a
// matching tensor of (FindDeltaBase) a row delta on it, of the rows
// --dirty-rows gives or else of the rows RowsChangedSince finds, kept in
// `found`; the others stay full. FAILED_PRECONDITION when rows are given
// for a tensor without a base.
absl::Status SetDeltas(client::Client& client, const PutArgs& args,
                       const GivenRows& given,
                       std::vector<client::TensorData>& tensors,
                       std::vector<PutRows>& found) {
  CKPT_ASSIGN_OR_RETURN(Checkpoint base,
                        client.GetManifest(args.job, *args.delta_against));
  for (size_t i = 0; i < tensors.size(); ++i) {
    client::TensorData& tensor = tensors[i];
    absl::StatusOr<const TensorEntry*> base_entry =
        FindDeltaBase(base.shards, client::TensorLayout(tensor), args.rank);
    PutRows& rows = found[i];
    if (given[i].has_value()) {
      if (!base_entry.ok()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "--dirty-rows ", tensor.name, ": the base checkpoint, step ",
            *args.delta_against, ", cannot hold the delta's other rows, ",
            base_entry.status().message()));
      }
      rows.delta_rows = *given[i];
      rows.rows_from = "dirty-rows";
      CKPT_ASSIGN_OR_RETURN(
          rows.fingerprints,
          SelectedRowFingerprints(
              absl::MakeConstSpan(tensor.bytes.data(), tensor.bytes.size()),
              static_cast<size_t>(args.row_bytes), rows.delta_rows));
    } else if (base_entry.ok()) {
      CKPT_ASSIGN_OR_RETURN(
          client::RowsChanged changed,
          client::RowsChangedSince(client, args.job, *args.delta_against,
                                   **base_entry, tensor, kFingerprintThreads,
                                   args.rank));
      rows.delta_rows = std::move(changed.rows);
      rows.fingerprints = std::move(changed.fingerprints);
      rows.rows_from = changed.from_stored_fingerprints ? "stored fingerprints"
                                                        : "read back";
      rows.base_bytes_read = changed.base_bytes_read;
    } else {
      continue;  // no such tensor there: full
    }
    tensor.delta_rows = rows.delta_rows;
    tensor.delta_base_step = *args.delta_against;
    if (!args.no_fingerprints) {
      tensor.row_fingerprints = absl::MakeConstSpan(rows.fingerprints);
    }
  }
  return absl::OkStatus();
}

// The row fingerprints of each file saved in full as a row matrix, to store
// with it (not with --no-fingerprints or --quantize-bits).
absl::Status SetFullFingerprints(const PutArgs& args,
                                 std::vector<client::TensorData>& tensors,
                                 std::vector<PutRows>& found) {
  if (args.no_fingerprints || args.row_bytes == 0 ||
      args.quantize_bits.has_value()) {
    return absl::OkStatus();
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    client::TensorData& tensor = tensors[i];
    if (tensor.delta_base_step.has_value() || tensor.bytes.empty()) continue;
    CKPT_ASSIGN_OR_RETURN(
        found[i].fingerprints,
        RowFingerprints(
            absl::MakeConstSpan(tensor.bytes.data(), tensor.bytes.size()),
            static_cast<size_t>(args.row_bytes), kFingerprintThreads));
    tensor.row_fingerprints = absl::MakeConstSpan(found[i].fingerprints);
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

// `put --json`'s "deltas": the tensors saved as row deltas, where their
// rows came from (--dirty-rows, or fingerprints compared with the base's
// stored ones or with the base read back) and the base bytes read.
json DeltaSummaries(const std::vector<client::TensorData>& tensors,
                    const std::vector<PutRows>& found) {
  json deltas = json::array();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const client::TensorData& tensor = tensors[i];
    if (!tensor.delta_base_step.has_value()) continue;
    deltas.push_back({{"name", tensor.name},
                      {"base_step", *tensor.delta_base_step},
                      {"rows", tensor.delta_rows.size()},
                      {"total_rows", tensor.global_shape[0]},
                      {"rows_from", found[i].rows_from},
                      {"base_bytes_read", found[i].base_bytes_read}});
  }
  return deltas;
}

void PrintPutText(const PutArgs& args, int64_t step,
                  const std::vector<client::TensorData>& tensors,
                  const std::vector<PutRows>& found,
                  const client::SaveResult& result) {
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
              << " of " << tensor.global_shape[0] << " rows (from "
              << (found[i].rows_from == "dirty-rows"
                      ? std::string("--dirty-rows")
                      : absl::StrCat("the base's ",
                                     found[i].rows_from == "read back"
                                         ? "rows read back, "
                                         : "stored fingerprints, ",
                                     HumanBytes(found[i].base_bytes_read),
                                     " read"))
              << ")\n";
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
  // Per tensor, its delta's rows and the fingerprints stored with it; the
  // tensors' delta_rows and row_fingerprints view them.
  std::vector<PutRows> found(tensors.size());
  if (args.delta_against.has_value()) {
    CKPT_RETURN_IF_ERROR(SetDeltas(client, args, given, tensors, found));
  }
  CKPT_RETURN_IF_ERROR(SetFullFingerprints(args, tensors, found));
  uint64_t base_bytes_read = 0;
  for (const PutRows& rows : found) base_bytes_read += rows.base_bytes_read;

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
         {"deltas", DeltaSummaries(tensors, found)},
         {"base_bytes_read", base_bytes_read},
         {"quantized", QuantizedSummaries(result.quantized)},
         {"committed_ranks", result.checkpoint.committed_ranks},
         {"state", std::string(CheckpointStateName(result.checkpoint.state))}});
    return absl::OkStatus();
  }
  PrintPutText(args, step, tensors, found, result);
  return absl::OkStatus();
}

}  // namespace ckpt::cli
