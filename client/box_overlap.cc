#include "client/box_overlap.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ckpt::client {
namespace {

// A box of no dimensions (a scalar) as one of one element, so that the
// layouts need no special case.
Box AtLeastOneDimension(const Box& box) {
  if (!box.lengths.empty()) return box;
  return Box{{0}, {1}};
}

// Whether `boxes` (disjoint) cover `area`, counted by elements.
bool Covers(const Box& area, absl::Span<const Box> boxes) {
  uint64_t covered = 0;
  for (const Box& box : boxes) covered += BoxElements(box);
  return covered == BoxElements(area);
}

}  // namespace

uint64_t BoxElements(const Box& box) {
  uint64_t elements = 1;
  for (int64_t length : box.lengths) elements *= static_cast<uint64_t>(length);
  return elements;
}

bool BoxIsEmpty(const Box& box) {
  return std::any_of(box.lengths.begin(), box.lengths.end(),
                     [](int64_t length) { return length == 0; });
}

Box IntersectBoxes(const Box& a, const Box& b) {
  Box common;
  for (size_t d = 0; d < a.offsets.size(); ++d) {
    const int64_t begin = std::max(a.offsets[d], b.offsets[d]);
    const int64_t end =
        std::min(a.offsets[d] + a.lengths[d], b.offsets[d] + b.lengths[d]);
    common.offsets.push_back(begin);
    common.lengths.push_back(end > begin ? end - begin : 0);
  }
  return common;
}

bool BoxContains(const Box& outer, const Box& inner) {
  for (size_t d = 0; d < outer.offsets.size(); ++d) {
    if (inner.offsets[d] < outer.offsets[d] ||
        inner.offsets[d] + inner.lengths[d] >
            outer.offsets[d] + outer.lengths[d]) {
      return false;
    }
  }
  return true;
}

std::string BoxText(const Box& box) {
  return absl::StrCat("[", absl::StrJoin(box.offsets, ", "), "]+[",
                      absl::StrJoin(box.lengths, ", "), "]");
}

std::string IndexText(absl::Span<const int64_t> index) {
  return absl::StrCat("[", absl::StrJoin(index, ", "), "]");
}

// Takes the first box that meets `area` away from it, which leaves at most
// two slabs per dimension, and looks in those slabs that the remaining
// boxes do not cover. Only uncovered slabs are entered, so each level of
// the recursion enters one and it ends within boxes.size() levels.
std::optional<std::vector<int64_t>> FindUncoveredElement(
    const Box& area, absl::Span<const Box> boxes) {
  std::vector<Box> inside;
  for (const Box& box : boxes) {
    Box common = IntersectBoxes(area, box);
    if (!BoxIsEmpty(common)) inside.push_back(std::move(common));
  }
  if (BoxIsEmpty(area) || Covers(area, inside)) return std::nullopt;
  if (inside.empty()) return area.offsets;
  const Box& taken = inside.front();
  const absl::Span<const Box> rest = absl::MakeConstSpan(inside).subspan(1);
  Box left = area;  // what is left of `area` around `taken`, narrowed
  for (size_t d = 0; d < area.offsets.size(); ++d) {
    const int64_t end = left.offsets[d] + left.lengths[d];
    const int64_t taken_end = taken.offsets[d] + taken.lengths[d];
    Box below = left;
    below.lengths[d] = taken.offsets[d] - left.offsets[d];
    Box above = left;
    above.offsets[d] = taken_end;
    above.lengths[d] = end - taken_end;
    for (const Box* slab : {&below, &above}) {
      if (BoxIsEmpty(*slab)) continue;
      std::optional<std::vector<int64_t>> found =
          FindUncoveredElement(*slab, rest);
      if (found.has_value()) return found;
    }
    left.offsets[d] = taken.offsets[d];
    left.lengths[d] = taken.lengths[d];
  }
  return std::nullopt;  // unreachable for disjoint boxes
}

OverlapRuns::OverlapRuns(const Box& source, const Box& dest, const Box& overlap,
                         uint64_t element_bytes) {
  const Box one_overlap = AtLeastOneDimension(overlap);
  source_ = MakeLayout(AtLeastOneDimension(source), one_overlap, element_bytes);
  dest_ = MakeLayout(AtLeastOneDimension(dest), one_overlap, element_bytes);
  run_count_ = 1;
  for (size_t d = 0; d < source_.run_dim; ++d) {
    run_count_ *= source_.lengths[d];
  }
}

OverlapRuns::Layout OverlapRuns::MakeLayout(const Box& box, const Box& overlap,
                                            uint64_t element_bytes) {
  Layout layout;
  const size_t rank = box.lengths.size();
  layout.strides.assign(rank, element_bytes);
  for (size_t d = rank - 1; d > 0; --d) {
    layout.strides[d - 1] =
        layout.strides[d] * static_cast<uint64_t>(box.lengths[d]);
  }
  layout.run_dim = rank - 1;
  while (layout.run_dim > 0 &&
         overlap.lengths[layout.run_dim] == box.lengths[layout.run_dim]) {
    --layout.run_dim;
  }
  layout.run_bytes = layout.strides[layout.run_dim] *
                     static_cast<uint64_t>(overlap.lengths[layout.run_dim]);
  for (size_t d = 0; d < rank; ++d) {
    layout.base += static_cast<uint64_t>(overlap.offsets[d] - box.offsets[d]) *
                   layout.strides[d];
    layout.lengths.push_back(static_cast<uint64_t>(overlap.lengths[d]));
  }
  return layout;
}

uint64_t OverlapRuns::Layout::RunStart(uint64_t run) const {
  uint64_t offset = base;
  for (size_t d = run_dim; d > 0; --d) {
    offset += (run % lengths[d - 1]) * strides[d - 1];
    run /= lengths[d - 1];
  }
  return offset;
}

uint64_t OverlapRuns::FirstRunEndingAfter(uint64_t offset) const {
  uint64_t low = 0, high = run_count_;
  while (low < high) {
    const uint64_t middle = low + (high - low) / 2;
    if (source_.RunStart(middle) + source_.run_bytes > offset) {
      high = middle;
    } else {
      low = middle + 1;
    }
  }
  return low;
}

bool OverlapRuns::Intersects(uint64_t begin, uint64_t end) const {
  const uint64_t run = FirstRunEndingAfter(begin);
  return run < run_count_ && source_.RunStart(run) < end;
}

std::optional<uint64_t> OverlapRuns::DestOffsetIfContiguous(
    uint64_t begin, uint64_t end) const {
  const uint64_t run = FirstRunEndingAfter(begin);
  if (run == run_count_) return std::nullopt;
  const uint64_t start = source_.RunStart(run);
  if (begin < start || end > start + source_.run_bytes) return std::nullopt;
  const uint64_t linear = run * source_.run_bytes + (begin - start);
  const uint64_t dest_run = linear / dest_.run_bytes;
  if ((linear + (end - begin) - 1) / dest_.run_bytes != dest_run) {
    return std::nullopt;
  }
  return dest_.RunStart(dest_run) + linear % dest_.run_bytes;
}

}  // namespace ckpt::client
