#include "common/shard_layout.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/numeric/int128.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "common/quote.h"

namespace ckpt {
namespace {

using absl::uint128;

constexpr uint128 kSaturated = std::numeric_limits<uint128>::max();

// One rank's entry of a tensor name.
struct Part {
  int32_t rank = 0;
  const TensorEntry* entry = nullptr;
};

bool IsEmptyBox(const Box& box) {
  return std::find(box.lengths.begin(), box.lengths.end(), 0) !=
         box.lengths.end();
}

// Whether two boxes of one tensor share an element (never for an empty one).
bool BoxesOverlap(const Box& a, const Box& b) {
  if (IsEmptyBox(a) || IsEmptyBox(b)) return false;
  for (size_t d = 0; d < a.offsets.size(); ++d) {
    if (a.offsets[d] >= b.offsets[d] + b.lengths[d] ||
        b.offsets[d] >= a.offsets[d] + a.lengths[d]) {
      return false;
    }
  }
  return true;
}

// Products of extents overflow 64 bits for hostile shapes (each extent may
// be 2^48); counted in 128 bits, saturating.
uint128 SaturatingMul(uint128 a, uint128 b) {
  if (a == 0 || b == 0) return 0;
  if (a > kSaturated / b) return kSaturated;
  return a * b;
}

// Product of `extents` from dimension `from` on.
uint128 Volume(const std::vector<int64_t>& extents, size_t from = 0) {
  uint128 volume = 1;
  for (size_t d = from; d < extents.size(); ++d) {
    volume = SaturatingMul(volume, static_cast<uint64_t>(extents[d]));
  }
  return volume;
}

std::string FormatCount(uint128 count) {
  if (count == kSaturated) return "more than 2^127";
  std::ostringstream text;
  text << count;
  return text.str();
}

std::string FormatIndex(const std::vector<int64_t>& index) {
  return absl::StrCat("[", absl::StrJoin(index, ", "), "]");
}

std::string FormatPartBox(const Part& part) {
  return absl::StrCat(FormatBox(part.entry->box),
                      IsWholeBox(*part.entry) ? " (the whole tensor)" : "");
}

// "tensor 'w' (float32 [10, 4])".
std::string DescribeTensor(const TensorEntry& entry) {
  return absl::StrCat("tensor ", QuoteTruncated(entry.name), " (",
                      DTypeName(entry.dtype), " ",
                      FormatIndex(entry.global_shape), ")");
}

absl::Status Disagree(const Part& a, const Part& b) {
  return absl::InvalidArgumentError(absl::StrCat(
      "tensor ", QuoteTruncated(a.entry->name), " is sharded, but rank ",
      a.rank, " holds it as ", DTypeName(a.entry->dtype), " of global shape ",
      FormatIndex(a.entry->global_shape), " and rank ", b.rank, " as ",
      DTypeName(b.entry->dtype), " of global shape ",
      FormatIndex(b.entry->global_shape),
      "; every rank holding part of a sharded tensor must agree on both"));
}

absl::Status Overlapping(const Part& a, const Part& b) {
  std::vector<int64_t> shared(a.entry->box.offsets.size());
  for (size_t d = 0; d < shared.size(); ++d) {
    shared[d] = std::max(a.entry->box.offsets[d], b.entry->box.offsets[d]);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      DescribeTensor(*a.entry), ": rank ", a.rank, "'s box ", FormatPartBox(a),
      " overlaps rank ", b.rank, "'s box ", FormatPartBox(b), " (both hold ",
      FormatIndex(shared),
      "); the parts of a sharded tensor must not overlap (only identical "
      "boxes, replicated parts, may)"));
}

// An index of `shape` that no box of `boxes` holds, found by sweeping one
// dimension at a time: the boxes are pairwise disjoint, so along dimension
// d a slab [x, x+1) is fully covered exactly when the cross-sections
// (volumes over the later dimensions) of the boxes holding x add up to the
// slab's; the first slab short of that is narrowed down in the next
// dimension with only those boxes. O(dims * k log k). nullopt when no slab
// is short (which disjoint boxes covering less than `shape` cannot be).
// REQUIRES: boxes non-empty, of shape's rank; shape has a dimension.
std::optional<std::vector<int64_t>> FindUncovered(
    std::vector<const Box*> boxes, const std::vector<int64_t>& shape) {
  const size_t rank = shape.size();
  std::vector<int64_t> index(rank, 0);
  struct Edge {
    int64_t at;
    bool opens;
    uint128 cross;  // the box's volume over the dimensions after this one
  };
  std::vector<Edge> edges;
  for (size_t d = 0; d < rank; ++d) {
    const uint128 slab = Volume(shape, d + 1);
    edges.clear();
    for (const Box* box : boxes) {
      const uint128 cross = Volume(box->lengths, d + 1);
      edges.push_back({box->offsets[d], true, cross});
      edges.push_back({box->offsets[d] + box->lengths[d], false, cross});
    }
    std::sort(edges.begin(), edges.end(),
              [](const Edge& a, const Edge& b) { return a.at < b.at; });
    std::optional<int64_t> short_at;
    uint128 covered = 0;
    int64_t cursor = 0;
    for (size_t i = 0;;) {
      const int64_t next = i < edges.size() ? edges[i].at : shape[d];
      if (cursor < next && covered < slab) {
        short_at = cursor;
        break;
      }
      if (i == edges.size()) break;
      for (; i < edges.size() && edges[i].at == next; ++i) {
        // Only boxes already counted close here, so this never wraps.
        covered = edges[i].opens ? covered + edges[i].cross
                                 : covered - edges[i].cross;
      }
      cursor = next;
    }
    if (!short_at.has_value()) return std::nullopt;
    index[d] = *short_at;
    std::erase_if(boxes, [&](const Box* box) {
      return !(box->offsets[d] <= *short_at &&
               *short_at < box->offsets[d] + box->lengths[d]);
    });
  }
  return index;
}

// The layout checks of a checkpoint's last commit for one sharded name:
// no whole box next to a partial one, and the distinct boxes (replicas
// counted once) cover the global shape. `parts` agree on dtype and shape
// and their partial boxes are pairwise disjoint or identical.
absl::Status CheckCovered(const std::vector<Part>& parts) {
  const Part* partial = nullptr;
  for (const Part& part : parts) {
    if (!IsWholeBox(*part.entry) && !IsEmptyBox(part.entry->box)) {
      partial = &part;
      break;
    }
  }
  if (partial != nullptr) {
    for (const Part& part : parts) {
      if (IsWholeBox(*part.entry) && !IsEmptyBox(part.entry->box)) {
        return Overlapping(part, *partial);
      }
    }
  }
  const std::vector<int64_t>& shape = parts.front().entry->global_shape;
  const uint128 total = Volume(shape);
  if (total == 0) return absl::OkStatus();
  std::vector<const Box*> boxes;
  for (const Part& part : parts) {
    if (!IsEmptyBox(part.entry->box)) boxes.push_back(&part.entry->box);
  }
  auto by_corner = [](const Box* a, const Box* b) {
    return std::tie(a->offsets, a->lengths) < std::tie(b->offsets, b->lengths);
  };
  std::sort(boxes.begin(), boxes.end(), by_corner);
  boxes.erase(std::unique(boxes.begin(), boxes.end(),
                          [](const Box* a, const Box* b) { return *a == *b; }),
              boxes.end());
  uint128 covered = 0;
  for (const Box* box : boxes) covered += Volume(box->lengths);
  const std::string what = DescribeTensor(*parts.front().entry);
  if (covered > total) {
    // Disjoint boxes cannot: only shards that escaped the commit-time
    // checks (stored before them) get here.
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": its boxes hold ", FormatCount(covered),
        " elements but its global shape only ", FormatCount(total),
        ", so some overlap; the parts of a sharded tensor must not overlap"));
  }
  if (covered == total) return absl::OkStatus();
  const std::optional<std::vector<int64_t>> uncovered =
      FindUncovered(std::move(boxes), shape);
  return absl::InvalidArgumentError(absl::StrCat(
      what, ": the boxes of its ", parts.size(),
      parts.size() == 1 ? " rank" : " ranks", " leave ",
      FormatCount(total == kSaturated ? kSaturated : total - covered),
      " of its ", FormatCount(total), " elements uncovered",
      uncovered.has_value()
          ? absl::StrCat(", e.g. index ", FormatIndex(*uncovered))
          : "",
      "; the parts of a sharded tensor must cover it exactly (every rank has "
      "committed)"));
}

// The checks of one name: `parts` start with the committing rank's entry
// when it has one (`has_committing`).
absl::Status CheckName(const std::vector<Part>& parts, bool has_committing,
                       bool completes_checkpoint) {
  const bool sharded = std::any_of(parts.begin(), parts.end(), [](auto& part) {
    return !IsWholeBox(*part.entry);
  });
  if (!sharded) return absl::OkStatus();
  const Part& first = parts.front();
  for (const Part& part : parts) {
    if (part.entry->dtype != first.entry->dtype ||
        part.entry->global_shape != first.entry->global_shape) {
      return Disagree(first, part);
    }
  }
  if (has_committing) {
    for (size_t i = 1; i < parts.size(); ++i) {
      if (parts[i].entry->box != first.entry->box &&
          BoxesOverlap(first.entry->box, parts[i].entry->box)) {
        return Overlapping(first, parts[i]);
      }
    }
  }
  return completes_checkpoint ? CheckCovered(parts) : absl::OkStatus();
}

}  // namespace

bool IsWholeBox(const TensorEntry& entry) {
  for (size_t d = 0; d < entry.global_shape.size(); ++d) {
    if (entry.box.offsets[d] != 0 ||
        entry.box.lengths[d] != entry.global_shape[d]) {
      return false;
    }
  }
  return true;
}

bool HasPartialBox(const ShardManifest& shard) {
  return std::any_of(
      shard.tensors.begin(), shard.tensors.end(),
      [](const TensorEntry& entry) { return !IsWholeBox(entry); });
}

std::string FormatBox(const Box& box) {
  std::vector<std::string> slices;
  slices.reserve(box.offsets.size());
  for (size_t d = 0; d < box.offsets.size(); ++d) {
    slices.push_back(
        absl::StrCat(box.offsets[d], ":", box.offsets[d] + box.lengths[d]));
  }
  return absl::StrCat("[", absl::StrJoin(slices, ", "), "]");
}

absl::Status CheckShardLayout(absl::Span<const ShardManifest> committed,
                              const ShardManifest& committing,
                              bool completes_checkpoint) {
  // Names in first-seen order (the committing shard's first), so that the
  // first error reported does not depend on hashing.
  absl::flat_hash_map<absl::string_view, size_t> group_of;
  std::vector<std::vector<Part>> groups;
  for (const TensorEntry& entry : committing.tensors) {
    group_of.emplace(entry.name, groups.size());
    groups.push_back({Part{committing.rank, &entry}});
  }
  const size_t committing_groups = groups.size();
  for (const ShardManifest& shard : committed) {
    for (const TensorEntry& entry : shard.tensors) {
      auto it = group_of.find(entry.name);
      if (it != group_of.end()) {
        groups[it->second].push_back(Part{shard.rank, &entry});
      } else if (completes_checkpoint) {
        group_of.emplace(entry.name, groups.size());
        groups.push_back({Part{shard.rank, &entry}});
      }
    }
  }
  for (size_t g = 0; g < groups.size(); ++g) {
    if (absl::Status status =
            CheckName(groups[g], g < committing_groups, completes_checkpoint);
        !status.ok()) {
      return status;
    }
  }
  return absl::OkStatus();
}

}  // namespace ckpt
