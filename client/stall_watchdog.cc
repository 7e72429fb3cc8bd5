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

void StallWatchdog::Pause() {
  absl::MutexLock lock(&mu_);
  paused_ = true;
}

void StallWatchdog::Resume() {
  absl::MutexLock lock(&mu_);
  paused_ = false;
  last_progress_ = absl::Now();
}

bool StallWatchdog::fired() {
  absl::MutexLock lock(&mu_);
  return fired_;
}

void StallWatchdog::Watch() {
  {
    absl::MutexLock lock(&mu_);
    auto stopping_or_paused = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ || paused_;
    };
    auto stopping_or_running = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ || !paused_;
    };
    for (;;) {
      if (paused_) {
        mu_.Await(absl::Condition(&stopping_or_running));
      } else if (!mu_.AwaitWithDeadline(absl::Condition(&stopping_or_paused),
                                        last_progress_ + limit_) &&
                 absl::Now() >= last_progress_ + limit_) {
        break;
      }
      // Else woken early, or the deadline passed while Progress() or
      // Resume() moved it later: re-read the state.
      if (stopping_) return;
    }
    fired_ = true;
  }
  // Outside the lock: the reader may call Progress() meanwhile. The
  // destructor joins, so whatever on_stall touches outlives it.
  on_stall_();
}

}  // namespace ckpt::client
