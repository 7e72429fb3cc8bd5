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
  // the part rank `rank` of `world_size` would own (the rule is in
  // client/portable/export_plan.h and docs/portability.md).
  // Default: true.
  bool full = true;
  int32_t rank = 0;
  int32_t world_size = 1;
  // A safetensors file holds at most this many data bytes (a larger single
  // tensor gets a file of its own); more go to model-0000i-of-0000n files
  // listed by model.safetensors.index.json. Default: 5 GiB.
  uint64_t max_file_bytes = uint64_t{5} << 30;
  // A JSON value written under "objects" in ckpt_checkpoint.json (the
  // Python package puts each rank's decoded non-tensor state there);
  // INVALID_ARGUMENT when it is not JSON. Default: empty (null).
  std::string objects_json = "";
  // Tensors of the checkpoint not exported (e.g. the Python package's
  // `__ckpt_state__`, which it exports as objects_json); names the
  // checkpoint lacks are ignored. Default: none.
  std::vector<std::string> exclude_tensors = {};
  // Most tensor bytes held in memory at once: tensors are fetched in
  // slabs of at most this many bytes and written out before the next are
  // fetched (a quantized tensor is fetched whole). At least 1 MiB.
  // Default: 256 MiB.
  uint64_t buffer_bytes = uint64_t{256} << 20;
};

struct ExportReport {
  std::string job;
  int64_t step = 0;
  std::vector<std::string> files;  // names within the directory, written
  uint64_t tensors = 0;
  uint64_t tensor_bytes = 0;  // data bytes written
  // The names written (in the files), in order.
  std::vector<std::string> tensor_names;
};

// Writes `checkpoint` (from GetManifest) into directory `dir` (created if
// absent; an existing file of the same name is never overwritten:
// ALREADY_EXISTS naming it, also when `dir` already holds another export's
// files: *.safetensors, the index or ckpt_checkpoint.json). Everything is
// planned and checked before anything is fetched. Tensors are fetched slab
// by slab (options.buffer_bytes) and streamed into files under hidden
// temporary names; once all are complete and synced, the restore is
// recorded (a `restored` event of rank 0, or of options.rank: Client::
// ReportRestore; NOT_FOUND or UNIMPLEMENTED answers are ignored, as by
// `ckpt get`) and the files are renamed into place, never over an
// existing file. A failed export leaves none of its files and records no
// event; a crash may leave hidden ".*.ckpt-export.tmp" files.
// INVALID_ARGUMENT naming the tensor for what safetensors cannot hold or
// what the rank rule refuses; the client's errors as ReadRegions.
absl::StatusOr<ExportReport> ExportCheckpoint(
    Client& client, const Checkpoint& checkpoint, const std::string& dir,
    const ExportOptions& options, const RestoreProgressFn& progress = {});

}  // namespace ckpt::client::portable
