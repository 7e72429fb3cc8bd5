// The layout rule of a checkpoint's sharded tensors, which CommitShard
// enforces: for every tensor name some rank holds only part of (a box other
// than the whole global shape), every rank holding it agrees on its dtype
// and global shape, and the boxes tile the global shape exactly: no two
// overlap (identical boxes of several ranks are allowed: replicated parts)
// and, once every rank has committed, none of it is left uncovered. A name
// whose every box is whole is per-rank state (data loader position, RNG
// state): ranks may hold different values, even of different shapes, and
// it is not checked. Pure: no I/O.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "common/manifest.h"

namespace ckpt {

// Whether `entry`'s box is its whole global shape.
bool IsWholeBox(const TensorEntry& entry);
// Whether some entry of `shard` holds only part of its tensor: only then can
// committing it before the last rank break the layout rule.
bool HasPartialBox(const ShardManifest& shard);

// "[0:5, 0:4]": the box as slices, one per dimension.
std::string FormatBox(const Box& box);

// Checks `committing` against the shards of the same checkpoint that
// `committed` holds (other ranks), as CommitShard does before recording it.
// Incremental: `committed` are taken to have passed this check when each
// was committed (two committed partial boxes were checked against each
// other when the later one came). So it checks, for each sharded name of
// `committing`, its entry against every committed entry of that name
// (dtype, global shape, overlap); with `completes_checkpoint` (no rank is
// left to commit) also, for every sharded name of the checkpoint, that all
// its entries agree, that no whole box coexists with a partial one (a
// whole box overlaps every other part), and that the distinct boxes cover
// the global shape. Costs O(entries) plus O(k log k) per sharded name of k
// boxes. INVALID_ARGUMENT naming the tensor and the two ranks with their
// dtypes and shapes, or their overlapping boxes and a shared index, or an
// uncovered index and how many elements are uncovered.
// REQUIRES: every shard passed ValidateShardManifest; `committed` holds no
// shard of committing.rank.
absl::Status CheckShardLayout(absl::Span<const ShardManifest> committed,
                              const ShardManifest& committing,
                              bool completes_checkpoint);

}  // namespace ckpt
