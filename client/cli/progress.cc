#include "client/cli/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "client/cli/format.h"

namespace ckpt::cli {
namespace {

constexpr absl::Duration kRedrawInterval = absl::Milliseconds(100);
// A bar narrower than this says little; leave it out instead.
constexpr int kMinBarWidth = 10;
constexpr int kDefaultWidth = 80;

int StderrWidth() {
  struct winsize size;
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) {
    return size.ws_col;
  }
  return kDefaultWidth;
}

std::string Amount(uint64_t value, ProgressUnit unit) {
  return unit == ProgressUnit::kBytes ? HumanBytes(value) : absl::StrCat(value);
}

}  // namespace

std::string RenderProgressLine(absl::string_view label, uint64_t done,
                               uint64_t total, ProgressUnit unit, int width) {
  done = std::min(done, total);
  // Nothing to do is all done.
  const double fraction =
      total == 0 ? 1.0 : static_cast<double>(done) / static_cast<double>(total);
  const std::string percent =
      absl::StrFormat("%3d%%", static_cast<int>(fraction * 100));
  const std::string amounts =
      absl::StrCat(Amount(done, unit), " / ", Amount(total, unit));
  // label, bar and the rest, two spaces apart; the bar has [] around it.
  const int fixed =
      static_cast<int>(label.size() + percent.size() + amounts.size()) + 2 * 3;
  const int bar_width = width - fixed - 2;
  if (bar_width < kMinBarWidth) {
    return absl::StrCat(label, "  ", percent, "  ", amounts);
  }
  const int filled = static_cast<int>(fraction * bar_width);
  return absl::StrCat(label, "  [", std::string(filled, '#'),
                      std::string(bar_width - filled, '.'), "]  ", percent,
                      "  ", amounts);
}

ProgressBar::ProgressBar()
    : ProgressBar(::isatty(STDERR_FILENO) ? &std::cerr : nullptr,
                  StderrWidth()) {}

ProgressBar::ProgressBar(std::ostream* out, int width)
    : out_(out), width_(width) {}

void ProgressBar::Update(absl::string_view label, uint64_t done, uint64_t total,
                         ProgressUnit unit) {
  if (out_ == nullptr) return;
  const absl::Time now = absl::Now();
  if (label == label_ && done < total && now - last_draw_ < kRedrawInterval) {
    return;
  }
  label_ = std::string(label);
  last_draw_ = now;
  drawn_ = true;
  // \r returns to the line's start, ESC[K erases what the last draw left.
  // One column is kept free: a full line would wrap on some terminals.
  *out_ << "\r" << RenderProgressLine(label, done, total, unit, width_ - 1)
        << "\x1b[K" << std::flush;
}

void ProgressBar::Clear() {
  if (out_ == nullptr || !drawn_) return;
  *out_ << "\r\x1b[K" << std::flush;
  drawn_ = false;
  label_.clear();
  last_draw_ = absl::InfinitePast();
}

}  // namespace ckpt::cli
