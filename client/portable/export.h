// Exporting a committed checkpoint as portable files (`ckpt export`,
// CheckpointManager.export): whole, assembled tensors (delta chains
// applied, quantized tensors dequantized) in safetensors files, split with
// a Hugging Face index JSON when large, plus `ckpt_checkpoint.json` with
// the checkpoint's metadata, metrics, tags and layout. Names, dtypes,
// shapes and bytes are exactly what a restore gives. The torch format is
// written by the Python package (ckpt/portable.py), not here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/client.h"
#include "common/manifest.h"

namespace ckpt::client::portable {

// The JSON file beside the tensors.
inline constexpr char kCheckpointJsonName[] = "ckpt_checkpoint.json";

struct ExportOptions {
  // true: every tensor whole (sharded ones assembled from all ranks' boxes;
  // per-rank ones once, or per rank when the ranks' bytes differ). false:
  // the part rank `rank` of `world_size` would own.
  bool full = true;
  int32_t rank = 0;
  int32_t world_size = 1;
  // A safetensors file holds at most this many data bytes (a larger single
  // tensor gets a file of its own); more go to model-0000i-of-0000n files
  // listed by model.safetensors.index.json.
  uint64_t max_file_bytes = uint64_t{5} << 30;
  // A JSON value (its text) written under "objects" in kCheckpointJsonName:
  // each rank's non-tensor state, as the Python package renders it
  // (ckpt/tree_json.py). Default: empty, no "objects".
  std::string objects_json;
};

struct ExportReport {
  std::string job;
  int64_t step = 0;
  std::vector<std::string> files;  // names within the directory, written
  uint64_t tensors = 0;
  uint64_t tensor_bytes = 0;  // data bytes written
};

// Writes `checkpoint` (from GetManifest) into directory `dir` (created if
// absent; an existing file of the same name is never overwritten:
// ALREADY_EXISTS naming it). Files are written under temporary names and
// renamed once all are complete, so a failed export leaves none of them.
// INVALID_ARGUMENT naming the tensor for what safetensors cannot hold.
absl::StatusOr<ExportReport> ExportCheckpoint(
    Client& client, const Checkpoint& checkpoint, const std::string& dir,
    const ExportOptions& options, const RestoreProgressFn& progress = {});

}  // namespace ckpt::client::portable
