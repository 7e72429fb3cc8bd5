// Geometry of boxes of one global tensor, for the region restore (client/
// region_plan.h): intersections, an element the union of some boxes leaves
// uncovered, and where the bytes of an overlap lie in the row-major layouts
// of two boxes that hold it (the saved box it is read from and the region
// it is written to). Pure: no I/O.
//
// Every function here REQUIRES boxes of one rank, with non-negative
// offsets and lengths whose element counts (times the element size) fit in
// 2^62: the callers check boxes against the global shape first
// (region_sources.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/types/span.h"
#include "common/manifest.h"

namespace ckpt::client {

// The elements of `box` (1 for a box of no dimensions).
uint64_t BoxElements(const Box& box);
// Some length is 0.
bool BoxIsEmpty(const Box& box);
// The common part of `a` and `b`; empty (BoxIsEmpty) when they are apart.
Box IntersectBoxes(const Box& a, const Box& b);
// Every element of `inner` is in `outer`.
bool BoxContains(const Box& outer, const Box& inner);
// "[0, 4]+[8, 4]": offsets, then lengths.
std::string BoxText(const Box& box);
// "[3, 0]".
std::string IndexText(absl::Span<const int64_t> index);

// Two of `boxes` (indices, first < second) that share an element, or
// nullopt when they are pairwise disjoint. A sweep along the dimension in
// which their offsets are most spread: a box is compared only with the
// boxes it meets in that dimension, so a layout split along some
// dimension costs O(n log n), not O(n^2).
std::optional<std::pair<size_t, size_t>> FindOverlappingBoxes(
    absl::Span<const Box> boxes);

// An element of `area` that none of `boxes` holds, or nullopt when they
// cover it. REQUIRES: `boxes` are pairwise disjoint (or empty). Costs
// O(boxes^2 * rank) at worst.
std::optional<std::vector<int64_t>> FindUncoveredElement(
    const Box& area, absl::Span<const Box> boxes);

// Where the bytes of `overlap` lie in two row-major layouts that hold it:
// the `source` box (a saved entry) and the `dest` box (a requested
// region), at `element_bytes` per element. In the source layout the
// overlap is a sequence of equal runs of contiguous bytes, in increasing
// order; taken in that order they are the overlap's own row-major bytes,
// which the dest layout cuts into runs of its own. A stretch is a piece of
// a source run that lies within one dest run: contiguous in both.
class OverlapRuns {
 public:
  // REQUIRES: `overlap` is non-empty and inside `source` and `dest`.
  OverlapRuns(const Box& source, const Box& dest, const Box& overlap,
              uint64_t element_bytes);

  uint64_t run_count() const { return run_count_; }
  uint64_t run_bytes() const { return source_.run_bytes; }
  // Byte offset in the source layout where run `run` starts.
  uint64_t SourceRunStart(uint64_t run) const { return source_.RunStart(run); }

  // Source bytes [begin, end) hold some of the overlap's bytes.
  bool Intersects(uint64_t begin, uint64_t end) const;
  // When source bytes [begin, end) are all overlap bytes, contiguous in the
  // dest layout too, the dest offset of `begin`; else nullopt.
  // REQUIRES: begin < end.
  std::optional<uint64_t> DestOffsetIfContiguous(uint64_t begin,
                                                 uint64_t end) const;
  // Calls fn(source_offset, dest_offset, bytes) for every stretch of the
  // overlap inside source bytes [begin, end), in increasing order.
  template <typename Fn>
  void ForEachStretch(uint64_t begin, uint64_t end, Fn fn) const {
    for (uint64_t run = FirstRunEndingAfter(begin);
         run < run_count_ && source_.RunStart(run) < end; ++run) {
      const uint64_t start = source_.RunStart(run);
      uint64_t from = begin > start ? begin : start;
      const uint64_t to =
          end < start + source_.run_bytes ? end : start + source_.run_bytes;
      // The offset in the overlap's own row-major bytes.
      uint64_t linear = run * source_.run_bytes + (from - start);
      while (from < to) {
        const uint64_t within = linear % dest_.run_bytes;
        const uint64_t room = dest_.run_bytes - within;
        const uint64_t bytes = to - from < room ? to - from : room;
        fn(from, dest_.RunStart(linear / dest_.run_bytes) + within, bytes);
        from += bytes;
        linear += bytes;
      }
    }
  }

 private:
  // The overlap's runs in one layout.
  struct Layout {
    // Dimensions [0, run_dim) index the runs; the overlap spans the
    // layout's whole extent in every dimension after run_dim.
    size_t run_dim = 0;
    uint64_t run_bytes = 0;
    uint64_t base = 0;  // byte offset of the overlap's first element
    std::vector<uint64_t> strides;  // bytes per step, per dimension
    std::vector<uint64_t> lengths;  // the overlap's, per dimension
    uint64_t RunStart(uint64_t run) const;
  };
  static Layout MakeLayout(const Box& box, const Box& overlap,
                           uint64_t element_bytes);
  // The first run that ends after source byte `offset` (run_count() when
  // none does).
  uint64_t FirstRunEndingAfter(uint64_t offset) const;

  Layout source_;
  Layout dest_;
  uint64_t run_count_ = 0;
};

}  // namespace ckpt::client
