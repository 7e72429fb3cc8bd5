// ckpt_checkpoint.json, the file an export writes beside its safetensors
// files: what the checkpoint was (job, step, world size, metadata, commit
// time), how it was exported (--full, or rank R of M) and, per tensor, its
// file, dtype, shape, layout and how each rank saved it (box, delta base,
// quantization record: quantized tensors are exported dequantized), plus
// the caller's "objects". Its writer and its strict reader sit side by
// side so that they change together; `ckpt import` reads it back (the
// metadata, and the boxes of a rank export).
//
// Numbers are exact (metrics round-trip through JSON's shortest form;
// NaN and infinities, which JSON lacks, are the strings "NaN",
// "Infinity" and "-Infinity"); times are RFC 3339 in UTC.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "client/portable/export.h"
#include "client/portable/export_plan.h"
#include "common/manifest.h"

namespace ckpt::client::portable {

inline constexpr int kCheckpointJsonVersion = 1;
// Largest ckpt_checkpoint.json import reads (its objects may be large).
inline constexpr uint64_t kMaxCheckpointJsonBytes = uint64_t{256} << 20;

// The file's text (indented, ending in a newline). `files[i]` holds the
// tensors files[i].tensors of `tensors`. REQUIRES: options.objects_json is
// empty or JSON.
std::string WriteCheckpointJson(const Checkpoint& checkpoint,
                                const ExportOptions& options,
                                absl::Span<const ExportTensor> tensors,
                                absl::Span<const ExportFile> files);

// One tensor as the file describes it.
struct CheckpointJsonTensor {
  std::string file;
  DType dtype = DType::kUint8;
  std::vector<int64_t> shape;
  // Where the exported part lies in the saved tensor: its global shape and
  // the box (lengths == shape).
  std::vector<int64_t> global_shape;
  Box box;
};

// What import uses of the file.
struct CheckpointJson {
  std::string job;
  int64_t step = 0;
  CheckpointMetadata metadata;
  absl::Time commit_time = absl::UnixEpoch();
  bool full = true;
  int32_t rank = 0;        // of the export (0 for --full)
  int32_t world_size = 1;  // of the export (1 for --full)
  std::map<std::string, CheckpointJsonTensor> tensors;
  std::string objects_json;  // "objects" dumped; empty when null
};

// Parses `text` strictly (client/portable/strict_json.h), naming `file` and
// the field in every INVALID_ARGUMENT: a format or version it does not
// know, a missing or mistyped field, a metric that is no number, a time
// that is not RFC 3339, a box outside its global shape or not of the
// tensor's shape, a rank outside its world size.
absl::StatusOr<CheckpointJson> ParseCheckpointJson(absl::string_view text,
                                                   absl::string_view file);

}  // namespace ckpt::client::portable
