// Which saved entries a requested region (client/types.h, RegionRequest) is
// read from, and every check Client::ReadRegions makes before it fetches
// anything: the request against the checkpoint (INVALID_ARGUMENT, the
// caller's mistake) and the checkpoint's entries themselves, read as
// hostile bytes (DATA_LOSS: a box outside its global shape, sizes that
// overflow, pieces that do not add up, boxes that overlap partly). Pure:
// no I/O.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/types.h"
#include "common/manifest.h"

namespace ckpt::client {

// One saved entry a region is read from.
struct RegionSource {
  int32_t rank = 0;
  // Points into the checkpoint given to FindRegionSources.
  const TensorEntry* entry = nullptr;
  // The part of the region it holds: non-empty, inside entry->box.
  Box overlap;
  // Other ranks' entries of the same box that are row deltas. They match
  // `entry` here, but a delta's bytes are those of its whole chain, and
  // each rank's chain runs through its own bases: PlanRegions resolves
  // theirs too and refuses unless every link matches.
  std::vector<std::pair<int32_t, const TensorEntry*>> same_box_deltas;
};

// A checkpoint's entries by tensor name, each (rank, entry) in shard order,
// so that finding the sources of many requests is not a scan of every
// entry per request (quadratic: an export of 100,000 tensors). Points
// into the checkpoint.
using EntriesByName =
    absl::flat_hash_map<absl::string_view,
                        std::vector<std::pair<int32_t, const TensorEntry*>>>;
EntriesByName IndexEntries(const Checkpoint& checkpoint);

// Whether two ranks' entries of one box hold the same saved link: the same
// chunks, delta base step and quantization. For row deltas this compares
// one link only; the chains below them must match as well.
bool SameSavedBytes(const TensorEntry& a, const TensorEntry& b);

// INVALID_ARGUMENT: ranks `rank_a` and `rank_b` saved `box` of the tensor
// (its name quoted) with different contents.
absl::Status DifferentCopies(absl::string_view quoted_name, int32_t rank_a,
                             int32_t rank_b, const Box& box);

// The bytes of `request`'s region, once it is checked: a known dtype, a
// global shape of at most 2^48 per dimension, a region of its rank inside
// it, of at most 2^62 bytes. INVALID_ARGUMENT naming the tensor otherwise.
absl::StatusOr<uint64_t> RegionBytes(const RegionRequest& request);

// The entries of `checkpoint` that `request`'s region is read from, by
// ascending rank, with disjoint overlaps that together cover the region
// (none for an empty region), as Client::ReadRegions documents:
// request.source_rank's entry alone when set, else every rank's entry of
// that name, a box several ranks saved identically read from the lowest
// rank. INVALID_ARGUMENT naming the tensor when no rank saved it (or not
// source_rank, or source_rank is not in the checkpoint), a saved dtype or
// global shape differs from the request's (both named), identical boxes of
// two ranks differ in chunks, delta base or quantization (both ranks
// named), or the boxes leave part of the region uncovered (an uncovered
// element named). DATA_LOSS naming the tensor and rank when a saved entry
// is malformed: a box outside its global shape or too large, a piece of no
// bytes or more than kMaxChunkBytes, pieces that do not add up to its box
// (or quantized matrix), both a delta and quantized, a rank holding the
// name twice, or two boxes overlapping partly (both ranks named). Only the
// boxes that meet the region are compared with each other.
// REQUIRES: RegionBytes(request) is OK; `index` is IndexEntries(checkpoint).
absl::StatusOr<std::vector<RegionSource>> FindRegionSources(
    const Checkpoint& checkpoint, const RegionRequest& request,
    const EntriesByName& index);

// The same checks for an entry of a delta chain found in an older
// checkpoint (fetched as a delta's base, client/fetch_plan.h): its pieces
// and their sizes. DATA_LOSS naming the tensor and step otherwise.
absl::Status CheckChainEntry(const TensorEntry& entry, int64_t step);

}  // namespace ckpt::client
