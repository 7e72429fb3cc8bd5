#include "client/cli/row_set.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace ckpt::cli {
namespace {

// Below this many ranges a Merge is not worth its sort.
constexpr size_t kMinRangesBeforeMerge = 4096;

std::optional<uint64_t> ParseRowIndex(absl::string_view text) {
  uint64_t row;
  if (text.empty() ||
      !std::all_of(text.begin(), text.end(),
                   [](char c) { return absl::ascii_isdigit(c); }) ||
      !absl::SimpleAtoi(text, &row)) {
    return std::nullopt;
  }
  return row;
}

// Whether `next`, starting at or after `back`'s first row, overlaps or
// directly follows `back`, so that one range covers both.
bool Joins(const RowRange& back, const RowRange& next) {
  return back.last == UINT64_MAX || next.first <= back.last + 1;
}

}  // namespace

std::optional<RowRange> ParseRowRange(absl::string_view text) {
  const size_t dash = text.find('-');
  std::optional<uint64_t> first = ParseRowIndex(text.substr(0, dash));
  std::optional<uint64_t> last = dash == absl::string_view::npos
                                     ? first
                                     : ParseRowIndex(text.substr(dash + 1));
  if (!first.has_value() || !last.has_value() || *last < *first) {
    return std::nullopt;
  }
  return RowRange{*first, *last};
}

std::string PastLastRow(uint64_t row, uint64_t rows) {
  return absl::StrCat("row ", row, " is past its last row (it has ", rows,
                      " rows)");
}

void RowSetBuilder::Add(RowRange range) {
  // Ascending input (a sorted file, a run of indices) extends the last range.
  if (!ranges_.empty()) {
    RowRange& back = ranges_.back();
    if (range.first >= back.first && Joins(back, range)) {
      back.last = std::max(back.last, range.last);
      return;
    }
  }
  ranges_.push_back(range);
  if (ranges_.size() >= std::max(2 * merged_size_, kMinRangesBeforeMerge)) {
    Merge();
  }
}

void RowSetBuilder::Merge() {
  std::sort(
      ranges_.begin(), ranges_.end(),
      [](const RowRange& a, const RowRange& b) { return a.first < b.first; });
  size_t kept = 0;
  for (const RowRange& range : ranges_) {
    if (kept > 0 && Joins(ranges_[kept - 1], range)) {
      ranges_[kept - 1].last = std::max(ranges_[kept - 1].last, range.last);
    } else {
      ranges_[kept++] = range;
    }
  }
  ranges_.resize(kept);
  merged_size_ = kept;
}

std::vector<uint64_t> RowSetBuilder::TakeRows() && {
  Merge();
  size_t count = 0;
  for (const RowRange& range : ranges_) count += range.last - range.first + 1;
  std::vector<uint64_t> rows;
  rows.reserve(count);
  for (const RowRange& range : ranges_) {
    for (uint64_t row = range.first;; ++row) {
      rows.push_back(row);
      if (row == range.last) break;
    }
  }
  ranges_.clear();
  return rows;
}

}  // namespace ckpt::cli
