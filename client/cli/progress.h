// ProgressBar: one line on stderr, redrawn in place, for long CLI work
// (verify, get). It draws only when stderr is a terminal, so scripts,
// redirected output and --json consumers never see it.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ckpt::cli {

enum class ProgressUnit { kCount, kBytes };

// "checking  [#####.....]  50%  12 / 24" fitted to `width` columns (the
// bar shrinks, and goes when there is no room).
std::string RenderProgressLine(absl::string_view label, uint64_t done,
                               uint64_t total, ProgressUnit unit, int width);

// Not thread-safe: one caller at a time.
class ProgressBar {
 public:
  // Draws on stderr if it is a terminal, at its width; else does nothing.
  ProgressBar();
  // Draws on `out` (when not null) at `width` columns, e.g. in tests.
  ProgressBar(std::ostream* out, int width);
  ~ProgressBar() { Clear(); }
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // Redraws at most every 100 ms, and always for a new label or at the end
  // (done == total), so the last state is what stays visible.
  void Update(absl::string_view label, uint64_t done, uint64_t total,
              ProgressUnit unit);
  // Erases the line, e.g. before printing results. Update draws it again.
  void Clear();

 private:
  std::ostream* const out_;
  const int width_;
  std::string label_;
  absl::Time last_draw_ = absl::InfinitePast();
  bool drawn_ = false;
};

}  // namespace ckpt::cli
