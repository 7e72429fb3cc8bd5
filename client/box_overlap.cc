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

std::optional<std::pair<size_t, size_t>> FindOverlappingBoxes(
    absl::Span<const Box> boxes) {
  if (boxes.size() < 2) return std::nullopt;
  const size_t rank = boxes.front().offsets.size();
  if (rank == 0) return std::make_pair(size_t{0}, size_t{1});
  size_t sweep = 0;
  size_t most_offsets = 0;
  for (size_t d = 0; d < rank; ++d) {
    std::vector<int64_t> offsets;
    for (const Box& box : boxes) offsets.push_back(box.offsets[d]);
    std::sort(offsets.begin(), offsets.end());
    const size_t distinct = static_cast<size_t>(
        std::unique(offsets.begin(), offsets.end()) - offsets.begin());
    if (distinct > most_offsets) {
      most_offsets = distinct;
      sweep = d;
    }
  }
  std::vector<size_t> order(boxes.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return boxes[a].offsets[sweep] < boxes[b].offsets[sweep];
  });
  std::vector<size_t> active;  // boxes still open at the sweep's position
  for (size_t i : order) {
    const int64_t start = boxes[i].offsets[sweep];
    std::erase_if(active, [&](size_t j) {
      return boxes[j].offsets[sweep] + boxes[j].lengths[sweep] <= start;
    });
    for (size_t j : active) {
      if (!BoxIsEmpty(IntersectBoxes(boxes[i], boxes[j]))) {
        return std::make_pair(std::min(i, j), std::max(i, j));
      }
    }
    if (!BoxIsEmpty(boxes[i])) active.push_back(i);
  }
  return std::nullopt;
}

// Takes the first box that meets `area` away from it, which leaves at most
// two slabs per dimension, and goes on in a slab the remaining boxes do not
// cover (one exists while `area` is not covered): each step drops a box, so
// it ends within boxes.size() steps, without recursion (a hostile manifest
// may list many boxes).
std::optional<std::vector<int64_t>> FindUncoveredElement(
    const Box& area, absl::Span<const Box> boxes) {
  Box search = area;
  std::vector<Box> inside;
  for (const Box& box : boxes) {
    Box common = IntersectBoxes(search, box);
    if (!BoxIsEmpty(common)) inside.push_back(std::move(common));
  }
  if (BoxIsEmpty(search) || Covers(search, inside)) return std::nullopt;
  for (;;) {
    if (inside.empty()) return search.offsets;
    const Box taken = inside.front();
    const absl::Span<const Box> rest = absl::MakeConstSpan(inside).subspan(1);
    std::optional<std::pair<Box, std::vector<Box>>> next;
    Box left = search;  // what is left of `search` around `taken`, narrowed
    for (size_t d = 0; d < search.offsets.size() && !next.has_value(); ++d) {
      const int64_t end = left.offsets[d] + left.lengths[d];
      const int64_t taken_end = taken.offsets[d] + taken.lengths[d];
      Box below = left;
      below.lengths[d] = taken.offsets[d] - left.offsets[d];
      Box above = left;
      above.offsets[d] = taken_end;
      above.lengths[d] = end - taken_end;
      for (Box* slab : {&below, &above}) {
        if (BoxIsEmpty(*slab)) continue;
        std::vector<Box> in_slab;
        for (const Box& box : rest) {
          Box common = IntersectBoxes(*slab, box);
          if (!BoxIsEmpty(common)) in_slab.push_back(std::move(common));
        }
        if (!Covers(*slab, in_slab)) {
          next.emplace(std::move(*slab), std::move(in_slab));
          break;
        }
      }
      left.offsets[d] = taken.offsets[d];
      left.lengths[d] = taken.lengths[d];
    }
    if (!next.has_value()) return std::nullopt;  // unreachable if disjoint
    search = std::move(next->first);
    inside = std::move(next->second);
  }
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
