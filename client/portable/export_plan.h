// What `ckpt export` writes, decided before anything is fetched: which
// tensors, under which names, read from which regions of the checkpoint,
// in which files. Pure: the one decision that needs bytes (whether a
// per-rank tensor's copies are equal) is asked of the caller.
//
// --full (ExportOptions::full): every tensor whole. A sharded one (some
// rank saved only part of it) assembled from every rank's box; a tensor
// every holder saved whole once when its copies are equal, else each
// rank's copy as "rank-N/NAME" (as `ckpt get --full`).
//
// Rank R of M (full = false), the part of the checkpoint rank R of a job
// of M ranks owns:
//   - a sharded tensor of global shape [d0, ...]: rows [R*c, min((R+1)*c,
//     d0)) of dimension 0 with c = ceil(d0 / M), as torch.chunk splits
//     (ranks past the last chunk get zero rows);
//   - a tensor every rank saved whole and alike (one entry, every rank of
//     the checkpoint: replicated): whole, on every rank;
//   - any other whole tensor is per-rank state (a data loader's position,
//     an RNG state): rank R's own when the checkpoint has rank R (absent
//     when rank R did not save it); when it has no rank R,
//     INVALID_ARGUMENT listing every such tensor, as they cannot be mapped.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "client/portable/export.h"
#include "client/types.h"
#include "client/whole_tensors.h"
#include "common/manifest.h"

namespace ckpt::client::portable {

// One tensor of the export.
struct ExportTensor {
  std::string name;  // in the files
  // The region it is read from (its lengths are `shape`): region.name is
  // the checkpoint's tensor, source_rank set for one rank's copy.
  RegionRequest source;
  // The ranks whose saved value this is: every holder of a sharded or
  // replicated tensor, one rank for a per-rank copy.
  std::vector<int32_t> ranks;
  // The checkpoint's plan of the name (saved entries, layout); points into
  // the plans given to PlanExport.
  const WholeTensor* plan = nullptr;
  // Some entry it is read from is quantized: read whole (a region of a
  // quantized entry is dequantized from the whole entry, so slabs would
  // repeat that work).
  bool quantized = false;

  const std::vector<int64_t>& shape() const { return source.region.lengths; }
  uint64_t ByteSize() const;
};

// Whether every copy of a per-rank tensor (`plan.copies`, two or more, all
// of one dtype and shape) holds the same bytes: read by the caller.
using SameBytesFn = std::function<absl::StatusOr<bool>(const WholeTensor&)>;

// The tensors to export, in the order of `plans` (rank-N copies by rank),
// without those named in options.exclude_tensors. INVALID_ARGUMENT as the
// rules above say, or when two exported names collide (a "rank-N/NAME"
// that is also a tensor's name).
absl::StatusOr<std::vector<ExportTensor>> PlanExport(
    const Checkpoint& checkpoint, absl::Span<const WholeTensor> plans,
    const ExportOptions& options, const SameBytesFn& same_bytes);

// One safetensors file of the export.
struct ExportFile {
  std::string name;
  std::vector<size_t> tensors;  // indices into the plan, in file order
  uint64_t bytes = 0;           // tensor data
};

// The tensors, in order, cut into files of at most max_file_bytes of data
// each (a larger tensor alone in its file): "model.safetensors" when one
// file does, else "model-00001-of-0000N.safetensors", ... as Hugging Face
// names them. One file (of no tensors) for an empty export.
std::vector<ExportFile> AssignFiles(absl::Span<const ExportTensor> tensors,
                                    uint64_t max_file_bytes);

// `region` cut into boxes of at most max_bytes each (at least one element
// each, so a single element larger than max_bytes is one box), in
// row-major order, each contiguous in the region's row-major bytes: runs
// of the outermost dimension whose slices fit, or finer. One box for an
// empty region. REQUIRES: max_bytes >= element_bytes > 0.
std::vector<Box> SplitRegion(const Box& region, uint64_t element_bytes,
                             uint64_t max_bytes);

}  // namespace ckpt::client::portable
