#include "server/rpc/shutdown_watchdog.h"

#include <unistd.h>

#include <utility>

#include "absl/time/clock.h"
#include "common/logging.h"

namespace ckpt::server {

ShutdownWatchdog::ShutdownWatchdog(absl::Duration limit, std::string step,
                                   OnStuck on_stuck)
    : on_stuck_(std::move(on_stuck)),
      step_(std::move(step)),
      thread_([this, deadline = absl::Now() + limit] { Watch(deadline); }) {}

ShutdownWatchdog::~ShutdownWatchdog() {
  {
    absl::MutexLock lock(&mu_);
    done_ = true;
  }
  thread_.join();
}

void ShutdownWatchdog::SetStep(std::string step) {
  absl::MutexLock lock(&mu_);
  step_ = std::move(step);
}

void ShutdownWatchdog::Watch(absl::Time deadline) {
  std::string step;
  {
    absl::MutexLock lock(&mu_);
    if (mu_.AwaitWithDeadline(absl::Condition(&done_), deadline)) return;
    step = step_;
  }
  on_stuck_(step);
}

void ShutdownWatchdog::ExitStuck(absl::string_view step) {
  CKPT_LOG(Error, "event=shutdown_stuck step=", step,
           " exit_code=", kShutdownStuckExitCode,
           " msg=\"shutdown did not finish in time; exiting without closing "
           "the store (every commit that returned is on disk)\"");
  ::_exit(kShutdownStuckExitCode);
}

}  // namespace ckpt::server
