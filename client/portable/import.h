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
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/client.h"
#include "common/manifest.h"

namespace ckpt::client::portable {

struct ImportOptions {
  // The rank this directory is, of a checkpoint of world_size ranks; nullopt:
  // what ckpt_checkpoint.json says, else rank 0 of 1.
  std::optional<int32_t> rank;
  std::optional<int32_t> world_size;
  // Metrics and tags given by the caller, over those of the JSON file.
  CheckpointMetadata metadata;
};

struct ImportReport {
  std::string job;
  int64_t step = 0;
  std::vector<std::string> files;  // the safetensors files read
  uint64_t tensors = 0;
  bool metadata_from_json = false;
  SaveResult saved;
};

// Checks every file of `dir`, then saves them as rank `rank`'s shard of
// checkpoint (job, step).
absl::StatusOr<ImportReport> ImportDirectory(Client& client,
                                             const std::string& dir,
                                             absl::string_view job,
                                             int64_t step,
                                             const ImportOptions& options);

}  // namespace ckpt::client::portable
