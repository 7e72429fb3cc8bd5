// StallWatchdog: ends a stream that makes no progress. A stream reading for
// as long as the data takes (a restore or copy of terabytes over a slow
// link) can have no overall deadline, and HTTP/2 keepalive only catches a
// peer that stops answering pings; a server that answers pings but sends
// nothing (stuck on a disk, a bug, a hostile peer) would hang the reader
// forever. The watchdog calls `on_stall` (e.g. cancelling the call) once
// `limit` has passed without Progress(), on a thread of its own. gRPC-free:
// the transport hands it the cancel.
//
// An upload pauses it while the client works (hashing, reading the next
// tensor) and resumes it while it waits on the server (a write blocked by
// flow control, the final status): only the server's silence counts, never
// a slow client's own work between messages.
#pragma once

#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace ckpt::client {

class StallWatchdog {
 public:
  // Starts timing: `on_stall` runs at most once, `limit` after the later
  // of construction and the last Progress(). An infinite limit never fires
  // (and starts no thread).
  StallWatchdog(absl::Duration limit, std::function<void()> on_stall);
  // Stops the watchdog; waits for an `on_stall` in progress.
  ~StallWatchdog();
  StallWatchdog(const StallWatchdog&) = delete;
  StallWatchdog& operator=(const StallWatchdog&) = delete;

  // The stream advanced: the limit counts from now.
  void Progress();
  // The client works on its own: no time counts until Resume().
  void Pause();
  // The client waits on the server again: Progress(), and the limit counts
  // from now.
  void Resume();
  // Whether on_stall ran (then the stream's error is the stall's).
  bool fired();

 private:
  void Watch();

  const absl::Duration limit_;
  const std::function<void()> on_stall_;
  absl::Mutex mu_;
  absl::Time last_progress_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  bool fired_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace ckpt::client
