// The one rule that matches a row delta (Check-N-Run) to its base tensor.
// The server enforces it at commit, restores follow it to rebuild a delta,
// and the savers (IncrementalSaver, `ckpt put --delta-against`) use it to
// choose what they may save as a delta. Pure: no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/manifest.h"

namespace ckpt {

// What a delta shares with its base: name, dtype, global shape and box.
bool SameTensorLayout(const TensorEntry& a, const TensorEntry& b);

// "float32 shape [8, 4] box [0, 0]+[4, 4]", for messages.
std::string TensorLayoutText(const TensorEntry& tensor);

// The entry of the base checkpoint (`base_shards`) that a row delta of
// `tensor` is taken against: the one with its name and layout
// (SameTensorLayout), of shard `rank` when that shard holds one (per-rank
// state: ranks may hold different values under one name and whole box,
// and a rank's saver takes its delta against its own), else of the first
// shard that does; provided it is not quantized, since a quantized base
// restores to other values than were saved and the rows a delta leaves out
// would not be the caller's. `tensor`'s pieces and delta_base_step are not
// looked at. FAILED_PRECONDITION otherwise, with a message that reads on
// from "the base checkpoint": "which has no tensor 'x'", "which holds it
// as <layout>, not as this delta's <layout>" or "which holds it quantized to N
// bits".
absl::StatusOr<const TensorEntry*> FindDeltaBase(
    absl::Span<const ShardManifest> base_shards, const TensorEntry& tensor,
    std::optional<int32_t> rank = std::nullopt);

}  // namespace ckpt
