// Importing a directory of safetensors files as a checkpoint (`ckpt
// import`, ckpt.import_dir): one written by ExportCheckpoint (with its
// ckpt_checkpoint.json: metadata, metrics, tags), or plain safetensors
// files of another tool (e.g. a Hugging Face model directory with
// model.safetensors.index.json), as one rank's full tensors. Every file is
// checked whole before anything is sent: a header that lies (offsets out
// of range or overlapping, a dtype and byte count that disagree, a header
// longer than the file, names not UTF-8) is INVALID_ARGUMENT naming the
// file and the field, and nothing is stored.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/client.h"
#include "common/manifest.h"

namespace ckpt::client::portable {

struct ImportOptions {
  // The rank this directory is, of a checkpoint of world_size ranks; nullopt:
  // what ckpt_checkpoint.json says (rank R of M for a rank export, else 0 of
  // 1), else rank 0 of 1. Default: nullopt.
  std::optional<int32_t> rank;
  std::optional<int32_t> world_size;
  // Metrics and tags given by the caller, over those of the JSON file; its
  // writer_time, when set, over the file's (which is the exported
  // checkpoint's writer time, else its commit time, so that an imported
  // checkpoint keeps its time). Default: none.
  CheckpointMetadata metadata;
  // Tensors saved beside the directory's (e.g. the Python package's
  // `__ckpt_state__`, rebuilt from the JSON file's objects), views the
  // caller keeps valid during the call; a name the directory also holds is
  // INVALID_ARGUMENT. Default: none.
  std::vector<TensorData> extra_tensors = {};
  // Called as SaveOptions::progress while the tensors are saved (after
  // every check passed). Default: none.
  std::function<void(uint64_t bytes_done, uint64_t bytes_total)> progress =
      nullptr;
};

struct ImportReport {
  std::string job;
  int64_t step = 0;
  std::vector<std::string> files;  // the safetensors files read
  uint64_t tensors = 0;            // from the files
  uint64_t tensor_bytes = 0;       // their data bytes
  int32_t rank = 0;
  int32_t world_size = 1;
  bool metadata_from_json = false;
  // ckpt_checkpoint.json's "objects", as JSON text; empty when absent or
  // null.
  std::string objects_json;
  SaveResult saved;
};

// Checks every file of `dir` (the directory's *.safetensors files, or with
// model.safetensors.index.json the files its weight_map names: plain file
// names inside `dir`, every mapped tensor in its file and every tensor of
// those files mapped, none in two files; symbolic links are not followed;
// with ckpt_checkpoint.json its tensors must be the files', of the same
// dtypes and shapes), then saves them as rank `rank`'s shard of checkpoint
// (job, step): whole tensors, or the boxes the JSON file of a rank export
// gives when imported as that same rank of that world size. The data is
// read through read-only mappings (not copied). Nothing is sent before
// every check passed: a refusal stores nothing (no checkpoint, pending or
// not). A failure after that (the server's) leaves the checkpoint pending
// until its lease expires, as any failed save.
absl::StatusOr<ImportReport> ImportDirectory(Client& client,
                                             const std::string& dir,
                                             absl::string_view job,
                                             int64_t step,
                                             const ImportOptions& options);

}  // namespace ckpt::client::portable
