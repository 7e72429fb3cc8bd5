// The region restore plan behind Client::ReadRegions and
// Client::RestoreRegions (a resharded restore): each requested region of a
// global tensor is assembled from the saved boxes that overlap it
// (client/region_sources.h chooses and checks them), fetching only the
// chunks that hold overlap bytes, each distinct chunk once over all
// requests:
//   - a full entry: the overlap is a sequence of contiguous runs of the
//     saved box's bytes (client/box_overlap.h); exactly the chunks that
//     meet a run are fetched. A chunk inside one run whose bytes are
//     contiguous in the region too is fetched straight into the region;
//     the others are fetched into scratch and their overlap bytes copied.
//   - a row delta: from the full entry at the bottom of its chain only the
//     chunks that cover the overlap's rows (dimension 0 of the box) are
//     fetched, into a scratch window; the deltas are fetched whole (they
//     are small and encoded), their rows inside the window applied, oldest
//     first, and the overlap copied out.
//   - a quantized entry: fetched whole and dequantized whole (its encoding
//     is a fraction of its size), then the overlap copied out.
// So a region reads at most one chunk beyond its overlap per edge of a
// saved box that cuts through a chunk (two per box for a row window), plus
// whole deltas and quantized entries. Talks to the server only through a
// Transport.
#pragma once

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "client/transport.h"
#include "client/types.h"
#include "common/manifest.h"

namespace ckpt::client {

// Fills `outs` (one per request, each exactly the region's bytes) as
// Client::ReadRegions documents: checked whole first (region_sources.h),
// then the delta chains resolved (each base manifest fetched once), then
// the chunks fetched over a few parallel ReadChunks streams (`progress`,
// when set, called one call at a time after every chunk) and the regions
// assembled. DATA_LOSS as ReadTensors for what a fetch or decode finds.
// When deltas or quantized entries are read, they are fetched and decoded
// into scratch first, and `outs` written only once that succeeded: bytes
// that do not decode (hostile or damaged) leave every out untouched (a
// chunk needed in both steps is fetched twice). A failed fetch can still
// leave outs partly written.
// Thread-safe as far as `transport` is.
absl::StatusOr<RegionReadStats> ReadRegions(
    Transport& transport, const Checkpoint& checkpoint,
    absl::Span<const RegionRequest> requests,
    absl::Span<const absl::Span<char>> outs, const RestoreProgressFn& progress);

// The same into one RestoreBuffer it allocates (a memfd the server on this
// host writes into when `shared_memory` and the system allow, as
// RestoreShard), each region on its own pages and the scratch after them,
// given back once the regions are assembled. RESOURCE_EXHAUSTED when the
// memory cannot be had.
absl::StatusOr<RestoredRegions> RestoreRegions(
    Transport& transport, const Checkpoint& checkpoint,
    absl::Span<const RegionRequest> requests, const RestoreProgressFn& progress,
    bool shared_memory);

}  // namespace ckpt::client
