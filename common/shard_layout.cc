#include "common/shard_layout.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/numeric/int128.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "common/quote.h"
#include "common/status_macros.h"

namespace ckpt {
namespace {

using absl::uint128;

constexpr uint128 kSaturated = std::numeric_limits<uint128>::max();

// A box of `dims` dimensions seen in place: an entry's, or one stored in
// ShardLayout's coordinates.
struct BoxRef {
  const int64_t* offsets;
  const int64_t* lengths;

  static BoxRef Of(const Box& box) {
    return {box.offsets.data(), box.lengths.data()};
  }
};

bool IsEmpty(BoxRef box, size_t dims) {
  return std::find(box.lengths, box.lengths + dims, 0) != box.lengths + dims;
}

bool Same(BoxRef a, BoxRef b, size_t dims) {
  return std::equal(a.offsets, a.offsets + dims, b.offsets) &&
         std::equal(a.lengths, a.lengths + dims, b.lengths);
}

// Whether two boxes share an element (never for an empty one).
bool Overlap(BoxRef a, BoxRef b, size_t dims) {
  if (IsEmpty(a, dims) || IsEmpty(b, dims)) return false;
  for (size_t d = 0; d < dims; ++d) {
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

// Product of `extents[from, dims)`.
uint128 Volume(const int64_t* extents, size_t dims, size_t from = 0) {
  uint128 volume = 1;
  for (size_t d = from; d < dims; ++d) {
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

// Messages show at most this many dimensions of a shape, index or box (a
// hostile entry may have thousands, and a status travels in gRPC's
// trailers, which are bounded).
constexpr size_t kShownDims = 8;

// "[a, b, c]", or "[a, ..., h, ... (N dimensions)]" past kShownDims items.
template <typename Item, typename Format>
std::string FormatList(const std::vector<Item>& items, Format format) {
  const size_t shown = std::min(items.size(), kShownDims);
  std::string text = "[";
  for (size_t i = 0; i < shown; ++i) {
    absl::StrAppend(&text, i == 0 ? "" : ", ", format(items[i]));
  }
  if (shown < items.size()) {
    absl::StrAppend(&text, ", ... (", items.size(), " dimensions)");
  }
  return text + "]";
}

std::string FormatIndex(const std::vector<int64_t>& index) {
  return FormatList(index, [](int64_t i) { return absl::StrCat(i); });
}

std::string ShownBox(const Box& box) {
  std::vector<size_t> dims(box.offsets.size());
  for (size_t d = 0; d < dims.size(); ++d) dims[d] = d;
  return FormatList(dims, [&](size_t d) {
    return absl::StrCat(box.offsets[d], ":", box.offsets[d] + box.lengths[d]);
  });
}

// One rank's entry of a tensor name, as an error message names it.
struct Holder {
  int32_t rank;
  DType dtype;
  std::vector<int64_t> shape;
  Box box;

  static Holder Of(int32_t rank, const TensorEntry& entry) {
    return {rank, entry.dtype, entry.global_shape, entry.box};
  }
  static Holder Whole(int32_t rank, DType dtype,
                      const std::vector<int64_t>& shape) {
    return {rank, dtype, shape,
            Box{std::vector<int64_t>(shape.size(), 0), shape}};
  }
  static Holder Part(int32_t rank, DType dtype,
                     const std::vector<int64_t>& shape, BoxRef box) {
    const size_t dims = shape.size();
    return {rank, dtype, shape,
            Box{{box.offsets, box.offsets + dims},
                {box.lengths, box.lengths + dims}}};
  }

  std::string BoxText() const {
    const bool whole = std::all_of(box.offsets.begin(), box.offsets.end(),
                                   [](int64_t o) { return o == 0; }) &&
                       box.lengths == shape;
    return absl::StrCat(ShownBox(box), whole ? " (the whole tensor)" : "");
  }
};

// "tensor 'w' (float32 [10, 4])".
std::string DescribeTensor(absl::string_view name, DType dtype,
                           const std::vector<int64_t>& shape) {
  return absl::StrCat("tensor ", QuoteTruncated(name), " (", DTypeName(dtype),
                      " ", FormatIndex(shape), ")");
}

absl::Status Disagree(absl::string_view name, const Holder& a,
                      const Holder& b) {
  return absl::InvalidArgumentError(absl::StrCat(
      "tensor ", QuoteTruncated(name), " is sharded, but rank ", a.rank,
      " holds it as ", DTypeName(a.dtype), " of global shape ",
      FormatIndex(a.shape), " and rank ", b.rank, " as ", DTypeName(b.dtype),
      " of global shape ", FormatIndex(b.shape),
      "; every rank holding part of a sharded tensor must agree on both"));
}

absl::Status Overlapping(absl::string_view name, const Holder& a,
                         const Holder& b) {
  std::vector<int64_t> shared(a.box.offsets.size());
  for (size_t d = 0; d < shared.size(); ++d) {
    shared[d] = std::max(a.box.offsets[d], b.box.offsets[d]);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      DescribeTensor(name, a.dtype, a.shape), ": rank ", a.rank, "'s box ",
      a.BoxText(), " overlaps rank ", b.rank, "'s box ", b.BoxText(),
      " (both hold ", FormatIndex(shared),
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
    const std::vector<BoxRef>& all, const std::vector<int64_t>& shape) {
  const size_t dims = shape.size();
  // Volumes over dimensions [d, dims), computed once: a level then costs
  // O(k log k), not O(k x dims).
  auto suffixes = [dims](const int64_t* extents) {
    std::vector<uint128> suffix(dims + 1, 1);
    for (size_t d = dims; d-- > 0;) {
      suffix[d] =
          SaturatingMul(suffix[d + 1], static_cast<uint64_t>(extents[d]));
    }
    return suffix;
  };
  const std::vector<uint128> slabs = suffixes(shape.data());
  std::vector<std::vector<uint128>> crosses;
  std::vector<size_t> boxes;  // indices into `all` still holding the index
  for (size_t i = 0; i < all.size(); ++i) {
    crosses.push_back(suffixes(all[i].lengths));
    boxes.push_back(i);
  }
  std::vector<int64_t> index(dims, 0);
  struct Edge {
    int64_t at;
    bool opens;
    uint128 cross;  // the box's volume over the dimensions after this one
  };
  std::vector<Edge> edges;
  for (size_t d = 0; d < dims; ++d) {
    const uint128 slab = slabs[d + 1];
    edges.clear();
    for (size_t i : boxes) {
      const BoxRef& box = all[i];
      const uint128 cross = crosses[i][d + 1];
      edges.push_back({box.offsets[d], true, cross});
      edges.push_back({box.offsets[d] + box.lengths[d], false, cross});
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
    std::erase_if(boxes, [&](size_t i) {
      return !(all[i].offsets[d] <= *short_at &&
               *short_at < all[i].offsets[d] + all[i].lengths[d]);
    });
  }
  return index;
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

std::string FormatBox(const Box& box) {
  std::vector<std::string> slices;
  slices.reserve(box.offsets.size());
  for (size_t d = 0; d < box.offsets.size(); ++d) {
    slices.push_back(
        absl::StrCat(box.offsets[d], ":", box.offsets[d] + box.lengths[d]));
  }
  return absl::StrCat("[", absl::StrJoin(slices, ", "), "]");
}

absl::StatusOr<ShardLayout> ShardLayout::Of(
    absl::Span<const ShardManifest> shards) {
  ShardLayout layout;
  for (const ShardManifest& shard : shards) {
    CKPT_RETURN_IF_ERROR(layout.Check(shard, /*completes_checkpoint=*/false));
    layout.Add(shard);
  }
  return layout;
}

absl::Status ShardLayout::CheckEntry(const Name* name, int32_t rank,
                                     const TensorEntry& entry) const {
  if (name == nullptr) return absl::OkStatus();
  const size_t dims = entry.global_shape.size();
  const BoxRef box = BoxRef::Of(entry.box);
  const bool sharded = !name->parts.empty();
  // A stored part has the stored name's dimensions, which a disagreeing
  // (hostile) entry's need not match.
  auto part_holder = [&](const Part& part) {
    const size_t part_dims = name->shape.size();
    return Holder::Part(
        part.rank, name->dtype, name->shape,
        {&name->coords[part.at], &name->coords[part.at + part_dims]});
  };
  if (sharded &&
      (entry.dtype != name->dtype || entry.global_shape != name->shape)) {
    return Disagree(entry.name, Holder::Of(rank, entry),
                    part_holder(name->parts.front()));
  }
  if (IsWholeBox(entry)) {
    // Per-rank state unless the name is sharded: then it overlaps every
    // part that holds anything.
    if (!sharded || IsEmpty(box, dims) || !name->first_filled.has_value()) {
      return absl::OkStatus();
    }
    return Overlapping(entry.name, Holder::Of(rank, entry),
                       part_holder(name->parts[*name->first_filled]));
  }
  for (const Whole& whole : name->wholes) {
    const Holder holder = Holder::Whole(whole.rank, whole.dtype, whole.shape);
    if (whole.dtype != entry.dtype || whole.shape != entry.global_shape) {
      return Disagree(entry.name, Holder::Of(rank, entry), holder);
    }
    if (!IsEmpty(box, dims) && Volume(whole.shape.data(), dims) > 0) {
      return Overlapping(entry.name, Holder::Of(rank, entry), holder);
    }
  }
  if (IsEmpty(box, dims) || !name->first_filled.has_value()) {
    return absl::OkStatus();
  }
  auto compare = [&](size_t index) -> absl::Status {
    const Part& part = name->parts[index];
    const BoxRef other{&name->coords[part.at], &name->coords[part.at + dims]};
    if (!Same(box, other, dims) && Overlap(box, other, dims)) {
      return Overlapping(entry.name, Holder::Of(rank, entry),
                         part_holder(part));
    }
    return absl::OkStatus();
  };
  if (name->split < 0) return compare(*name->first_filled);  // all identical
  // Only parts starting in (offset - longest, end) along `split` can meet
  // the box there.
  const size_t d = static_cast<size_t>(name->split);
  const int64_t end = entry.box.offsets[d] + entry.box.lengths[d];
  for (auto it =
           name->by_offset.upper_bound(entry.box.offsets[d] - name->longest);
       it != name->by_offset.end() && it->first < end; ++it) {
    CKPT_RETURN_IF_ERROR(compare(it->second));
  }
  return absl::OkStatus();
}

absl::Status ShardLayout::CheckCovered(absl::string_view tensor,
                                       const Name* name, int32_t extra_rank,
                                       const TensorEntry* extra) {
  const bool extra_partial = extra != nullptr && !IsWholeBox(*extra);
  if (!extra_partial && (name == nullptr || name->parts.empty())) {
    return absl::OkStatus();  // not sharded
  }
  // Agreeing with the parts was checked: take the shape from either.
  const TensorEntry* sample = extra_partial ? extra : nullptr;
  const DType dtype = sample != nullptr ? sample->dtype : name->dtype;
  const std::vector<int64_t>& shape =
      sample != nullptr ? sample->global_shape : name->shape;
  const size_t dims = shape.size();
  const uint128 total = Volume(shape.data(), dims);
  if (total == 0) return absl::OkStatus();
  // A whole box beside parts that hold anything was refused; beside empty
  // ones it covers everything.
  const bool whole_held =
      (extra != nullptr && !extra_partial) ||
      (name != nullptr &&
       std::any_of(name->wholes.begin(), name->wholes.end(),
                   [&](const Whole& w) { return w.shape == shape; }));
  if (whole_held) return absl::OkStatus();
  std::vector<BoxRef> boxes;
  std::vector<int32_t> ranks;
  if (name != nullptr) {
    for (const Part& part : name->parts) {
      boxes.push_back({&name->coords[part.at], &name->coords[part.at + dims]});
      ranks.push_back(part.rank);
    }
  }
  if (extra_partial) {
    boxes.push_back(BoxRef::Of(extra->box));
    ranks.push_back(extra_rank);
  }
  std::erase_if(boxes, [&](const BoxRef& box) { return IsEmpty(box, dims); });
  std::sort(boxes.begin(), boxes.end(), [&](const BoxRef& a, const BoxRef& b) {
    for (size_t d = 0; d < dims; ++d) {
      if (a.offsets[d] != b.offsets[d]) return a.offsets[d] < b.offsets[d];
      if (a.lengths[d] != b.lengths[d]) return a.lengths[d] < b.lengths[d];
    }
    return false;
  });
  boxes.erase(std::unique(boxes.begin(), boxes.end(),
                          [&](const BoxRef& a, const BoxRef& b) {
                            return Same(a, b, dims);
                          }),
              boxes.end());
  uint128 covered = 0;
  for (const BoxRef& box : boxes) covered += Volume(box.lengths, dims);
  if (covered == total) return absl::OkStatus();
  std::sort(ranks.begin(), ranks.end());
  ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
  const std::string what = DescribeTensor(tensor, dtype, shape);
  if (covered > total) {
    // Disjoint boxes cannot: the shards were added without Check.
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": its boxes hold ", FormatCount(covered),
        " elements but its global shape only ", FormatCount(total),
        ", so some overlap; the parts of a sharded tensor must not overlap"));
  }
  const std::optional<std::vector<int64_t>> uncovered =
      FindUncovered(boxes, shape);
  return absl::InvalidArgumentError(absl::StrCat(
      what, ": the boxes of its ", ranks.size(),
      ranks.size() == 1 ? " rank" : " ranks", " leave ",
      FormatCount(total == kSaturated ? kSaturated : total - covered),
      " of its ", FormatCount(total), " elements uncovered",
      uncovered.has_value()
          ? absl::StrCat(", e.g. index ", FormatIndex(*uncovered))
          : "",
      "; the parts of a sharded tensor must cover it exactly (every rank has "
      "committed)"));
}

absl::Status ShardLayout::Check(const ShardManifest& shard,
                                bool completes_checkpoint) const {
  absl::flat_hash_map<absl::string_view, const TensorEntry*> entries;
  for (const TensorEntry& entry : shard.tensors) {
    auto it = names_.find(entry.name);
    CKPT_RETURN_IF_ERROR(CheckEntry(it == names_.end() ? nullptr : &it->second,
                                    shard.rank, entry));
    if (completes_checkpoint) entries.emplace(entry.name, &entry);
  }
  if (!completes_checkpoint) return absl::OkStatus();
  // In first-seen order, so that the error reported does not depend on
  // hashing.
  std::vector<const std::pair<const std::string, Name>*> ordered;
  ordered.reserve(names_.size());
  for (const auto& named : names_) ordered.push_back(&named);
  std::sort(ordered.begin(), ordered.end(), [](const auto* a, const auto* b) {
    return a->second.first_seen < b->second.first_seen;
  });
  for (const auto* named : ordered) {
    auto it = entries.find(named->first);
    CKPT_RETURN_IF_ERROR(
        CheckCovered(named->first, &named->second, shard.rank,
                     it == entries.end() ? nullptr : it->second));
  }
  for (const TensorEntry& entry : shard.tensors) {
    if (names_.contains(entry.name)) continue;
    CKPT_RETURN_IF_ERROR(CheckCovered(entry.name, nullptr, shard.rank, &entry));
  }
  return absl::OkStatus();
}

void ShardLayout::Index(Name& name, size_t index) {
  const size_t dims = name.shape.size();
  auto box_of = [&](size_t i) {
    const size_t at = name.parts[i].at;
    return BoxRef{&name.coords[at], &name.coords[at + dims]};
  };
  const BoxRef box = box_of(index);
  if (IsEmpty(box, dims)) return;
  if (!name.first_filled.has_value()) {
    name.first_filled = index;
    return;
  }
  if (name.split < 0) {
    const BoxRef first = box_of(*name.first_filled);
    if (Same(box, first, dims)) return;  // a replica: comparing one is enough
    // Distinct and (checked) disjoint: apart along some dimension. Until
    // now every filled part was identical to the first.
    for (size_t d = 0; d < dims && name.split < 0; ++d) {
      if (box.offsets[d] >= first.offsets[d] + first.lengths[d] ||
          first.offsets[d] >= box.offsets[d] + box.lengths[d]) {
        name.split = static_cast<int>(d);
      }
    }
    if (name.split < 0) name.split = 0;  // overlapping: never Check-ed
    for (size_t i = 0; i < index; ++i) {
      if (!IsEmpty(box_of(i), dims)) IndexAlongSplit(name, i);
    }
  }
  IndexAlongSplit(name, index);
}

void ShardLayout::IndexAlongSplit(Name& name, size_t index) {
  const size_t d = static_cast<size_t>(name.split);
  const size_t at = name.parts[index].at;
  const size_t dims = name.shape.size();
  name.by_offset.emplace(name.coords[at + d], index);
  name.longest = std::max(name.longest, name.coords[at + dims + d]);
}

void ShardLayout::Add(const ShardManifest& shard) {
  for (const TensorEntry& entry : shard.tensors) {
    auto [it, added] = names_.try_emplace(entry.name);
    if (added) it->second.first_seen = names_.size();
    Name& name = it->second;
    if (IsWholeBox(entry)) {
      const bool known = std::any_of(name.wholes.begin(), name.wholes.end(),
                                     [&](const Whole& whole) {
                                       return whole.dtype == entry.dtype &&
                                              whole.shape == entry.global_shape;
                                     });
      if (!known) {
        name.wholes.push_back({entry.dtype, entry.global_shape, shard.rank});
      }
      continue;
    }
    if (name.parts.empty()) {
      name.dtype = entry.dtype;
      name.shape = entry.global_shape;
    }
    const size_t index = name.parts.size();
    name.parts.push_back({shard.rank, name.coords.size()});
    name.coords.insert(name.coords.end(), entry.box.offsets.begin(),
                       entry.box.offsets.end());
    name.coords.insert(name.coords.end(), entry.box.lengths.begin(),
                       entry.box.lengths.end());
    Index(name, index);
  }
  ranks_.insert(std::upper_bound(ranks_.begin(), ranks_.end(), shard.rank),
                shard.rank);
}

absl::Status CheckShardLayout(absl::Span<const ShardManifest> committed,
                              const ShardManifest& committing,
                              bool completes_checkpoint) {
  CKPT_ASSIGN_OR_RETURN(ShardLayout layout, ShardLayout::Of(committed));
  return layout.Check(committing, completes_checkpoint);
}

}  // namespace ckpt
