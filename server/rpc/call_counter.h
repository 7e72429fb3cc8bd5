// CallCounter: the calls of the gRPC edge in flight, so that shutdown can
// wait for them alone. gRPC's own graceful shutdown also waits for every
// client connection to close, which idle clients (a training job between
// saves) may not do for many seconds.
#pragma once

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace ckpt::server {

// Thread-safe. A call is counted from its handler's Enter until the Exit
// after its Finish (run on an executor thread for work queued there), so
// WaitUntilIdle also waits for work still queued.
class CallCounter {
 public:
  // Counts a call in. False once draining: the call is to be refused with
  // UNAVAILABLE (and is still counted out with Exit).
  bool Enter();
  void Exit();
  // From now on Enter returns false.
  void StartDraining();
  // Blocks until no call is in flight or `deadline` passes; true when idle.
  bool WaitUntilIdle(absl::Time deadline);

 private:
  absl::Mutex mu_;
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace ckpt::server
