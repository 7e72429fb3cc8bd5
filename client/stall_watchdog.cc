#include "client/stall_watchdog.h"

#include <utility>

#include "absl/time/clock.h"

namespace ckpt::client {

StallWatchdog::StallWatchdog(absl::Duration limit,
                             std::function<void()> on_stall)
    : limit_(limit), on_stall_(std::move(on_stall)) {
  absl::MutexLock lock(&mu_);
  last_progress_ = absl::Now();
  if (limit_ != absl::InfiniteDuration()) {
    thread_ = std::thread([this] { Watch(); });
  }
}

StallWatchdog::~StallWatchdog() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void StallWatchdog::Progress() {
  absl::MutexLock lock(&mu_);
  last_progress_ = absl::Now();
}

bool StallWatchdog::fired() {
  absl::MutexLock lock(&mu_);
  return fired_;
}

void StallWatchdog::Watch() {
  {
    absl::MutexLock lock(&mu_);
    for (;;) {
      // Wakes at the deadline, re-reading it: Progress() moves it later.
      if (mu_.AwaitWithDeadline(absl::Condition(&stopping_),
                                last_progress_ + limit_)) {
        return;
      }
      if (absl::Now() >= last_progress_ + limit_) break;
    }
    fired_ = true;
  }
  // Outside the lock: the reader may call Progress() meanwhile. The
  // destructor joins, so whatever on_stall touches outlives it.
  on_stall_();
}

}  // namespace ckpt::client
