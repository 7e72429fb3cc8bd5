// ShutdownWatchdog: bounds ckpt-server's shutdown. Started when the signal
// arrives, it ends the process (exit code kShutdownStuckExitCode, after one
// log line "event=shutdown_stuck step=STEP") should the shutdown not be
// done by its limit: RocksDB's close can wait forever behind a flush that
// failed on a full disk, and a service manager would otherwise have to kill
// the process without a word. Nothing committed is lost by exiting: a
// commit returns only after its data is synced.
#pragma once

#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace ckpt::server {

// EX_TEMPFAIL: the process stopped, but not cleanly; a restart is fine.
inline constexpr int kShutdownStuckExitCode = 75;

// Thread-safe.
class ShutdownWatchdog {
 public:
  // What happens when the limit passes: by default ExitStuck.
  using OnStuck = absl::AnyInvocable<void(absl::string_view step)>;

  // Starts watching now; `on_stuck` runs (once, on the watchdog's thread)
  // unless the watchdog is destroyed within `limit`. `step` names what the
  // shutdown is doing (SetStep changes it).
  ShutdownWatchdog(absl::Duration limit, std::string step,
                   OnStuck on_stuck = &ExitStuck);
  // The shutdown is done: disarms the watchdog and joins its thread.
  ~ShutdownWatchdog();

  ShutdownWatchdog(const ShutdownWatchdog&) = delete;
  ShutdownWatchdog& operator=(const ShutdownWatchdog&) = delete;

  void SetStep(std::string step);

  // Logs "event=shutdown_stuck step=STEP ..." and _exit()s with
  // kShutdownStuckExitCode, running no destructor (they may be what hangs).
  static void ExitStuck(absl::string_view step);

 private:
  void Watch(absl::Time deadline);

  OnStuck on_stuck_;
  absl::Mutex mu_;
  std::string step_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: starts once the rest exists
};

}  // namespace ckpt::server
