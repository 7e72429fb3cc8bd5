// The rows a --dirty-rows entry lists, whether inline or from a file: the
// syntax of one item (an index or an inclusive range A-B), and a set built
// from such ranges that merges them as they come, so that repeated or
// overlapping ranges cost neither time nor memory per row they repeat.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace ckpt::cli {

// Rows first..last, both included.
struct RowRange {
  uint64_t first = 0;
  uint64_t last = 0;
};

// One item: "N" or "A-B" with A <= B, decimal digits only (no sign, space
// or prefix), so that a typo is refused instead of read as some other row.
// nullopt for anything else.
std::optional<RowRange> ParseRowRange(absl::string_view text);

// Why `row` is refused for a tensor of `rows` rows (row >= rows): "row N is
// past its last row (it has R rows)".
std::string PastLastRow(uint64_t row, uint64_t rows);

// Collects ranges in any order, repeats and overlaps allowed, merging them
// whenever it holds twice as many as after the last merge (and at least
// 4096): however many are added, it holds O(disjoint ranges), so O(rows)
// for rows below a bound, and adding n ranges costs O(n log n).
class RowSetBuilder {
 public:
  // REQUIRES: range.first <= range.last.
  void Add(RowRange range);
  // The rows added, sorted and without repeats. REQUIRES: the caller bounds
  // the rows it adds (e.g. by a tensor's row count): they are expanded.
  std::vector<uint64_t> TakeRows() &&;

 private:
  // Sorts and merges ranges_ into disjoint, non-adjacent ranges.
  void Merge();

  std::vector<RowRange> ranges_;
  // ranges_.size() after the last Merge: the next is due at twice that.
  size_t merged_size_ = 0;
};

}  // namespace ckpt::cli
