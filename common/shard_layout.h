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

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/manifest.h"

namespace ckpt {

// Whether `entry`'s box is its whole global shape.
bool IsWholeBox(const TensorEntry& entry);

// "[0:5, 0:4]": the box as slices, one per dimension.
std::string FormatBox(const Box& box);

// The layout of the shards of one checkpoint committed so far, compact
// (what the rule needs, no pieces), so that each commit is checked against
// all of them without reading them back: per tensor name, the distinct
// dtype and shape of the whole boxes (with a rank holding each) and every
// partial box. About 8 + 16 x dims bytes per partial box and one record
// per distinct whole shape. Not thread-safe.
//
// Each commit is checked against every shard before it, so the shards
// added always keep the rule. A commit costs, per entry, O(log k) plus the
// boxes its box must be compared with (a few for splits along one
// dimension, about sqrt(k) for a grid, k at worst), the last one also
// O(k log k) per sharded name of k boxes (sorting them to find a gap).
class ShardLayout {
 public:
  // The layout of `shards`, each checked (Check) against those before it:
  // the first refusal, for shards stored without these checks.
  static absl::StatusOr<ShardLayout> Of(absl::Span<const ShardManifest> shards);

  // OK when `shard` keeps the rule with the shards added so far; with
  // `completes_checkpoint` (no rank is left to commit) also that every
  // sharded name's distinct boxes cover its global shape. INVALID_ARGUMENT
  // naming the tensor and the two ranks with their dtypes and shapes, or
  // their overlapping boxes and an index both hold, or an uncovered index
  // and how many elements are uncovered.
  // REQUIRES: `shard` passed ValidateShardManifest and its rank was not
  // added.
  absl::Status Check(const ShardManifest& shard,
                     bool completes_checkpoint) const;

  // Records a committed shard. REQUIRES: its rank was not added.
  void Add(const ShardManifest& shard);

  // The ranks added, ascending.
  const std::vector<int32_t>& ranks() const { return ranks_; }

 private:
  // Ranks holding a name whole, by distinct dtype and shape.
  struct Whole {
    DType dtype;
    std::vector<int64_t> shape;
    int32_t rank;  // the first to hold it
  };
  struct Part {
    int32_t rank;
    size_t at;  // its offsets, then its lengths, in Name::coords
  };
  struct Name {
    std::vector<Whole> wholes;
    // The partial boxes, all of one dtype and shape (the rule).
    DType dtype = DType::kUint8;
    std::vector<int64_t> shape;
    std::vector<Part> parts;
    std::vector<int64_t> coords;
    // The parts that hold anything, indexed by their offset along `split`,
    // a dimension two distinct ones are apart in (-1 while they are all
    // identical): a new box is compared only with those that start less
    // than the longest part's length (`longest`) before its end along it.
    // Row, column and flat splits then compare a few boxes, not all.
    int split = -1;
    int64_t longest = 0;
    absl::btree_multimap<int64_t, size_t> by_offset;  // -> index in parts
    std::optional<size_t> first_filled;  // a part that holds anything
    size_t first_seen = 0;               // names added before it, plus one
  };

  absl::Status CheckEntry(const Name* name, int32_t rank,
                          const TensorEntry& entry) const;
  // Indexes `name.parts[index]`, just added.
  static void Index(Name& name, size_t index);
  static void IndexAlongSplit(Name& name, size_t index);
  // The last commit's check of one name (`extra`: the committing shard's
  // entry of it, when it has one; `name`: null for a name only it holds).
  static absl::Status CheckCovered(absl::string_view tensor, const Name* name,
                                   int32_t extra_rank,
                                   const TensorEntry* extra);

  absl::flat_hash_map<std::string, Name> names_;
  std::vector<int32_t> ranks_;
};

// ShardLayout::Of(committed), then Check(committing, completes_checkpoint):
// the whole rule over one checkpoint's shards.
absl::Status CheckShardLayout(absl::Span<const ShardManifest> committed,
                              const ShardManifest& committing,
                              bool completes_checkpoint);

}  // namespace ckpt
