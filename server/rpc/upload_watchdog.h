// UploadWatchdog: ends upload streams on which the client has sent nothing
// for longer than StreamLimits::upload_idle_timeout, so that a stalled or
// vanished client cannot hold a stream, its buffers and its tenant's
// stream quota forever. One thread checks the registered streams a few
// times per timeout.
#pragma once

#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace ckpt::server {

// A stream the watchdog may end.
class IdleStream {
 public:
  virtual ~IdleStream() = default;
  // Whether the stream has waited for its client since before `cutoff` and
  // nothing else has finished it; when true, the stream has committed to
  // being ended by EndIdle and nothing else will finish it. Called with the
  // watchdog's lock held: must not block or call into gRPC.
  virtual bool ClaimIfIdleSince(absl::Time cutoff) = 0;
  // Ends a claimed stream (DEADLINE_EXCEEDED); called once, without the
  // watchdog's lock. The stream stays registered until it removes itself.
  virtual void EndIdle() = 0;
};

// Thread-safe.
class UploadWatchdog {
 public:
  // REQUIRES: timeout > 0.
  explicit UploadWatchdog(absl::Duration timeout);
  // Stops the thread. REQUIRES: every stream removed itself.
  ~UploadWatchdog();

  UploadWatchdog(const UploadWatchdog&) = delete;
  UploadWatchdog& operator=(const UploadWatchdog&) = delete;

  absl::Duration timeout() const { return timeout_; }

  // Watches `stream` until Remove(stream), which it must call before it is
  // destroyed (Remove waits for a check of it in progress).
  void Add(IdleStream* stream);
  void Remove(IdleStream* stream);

 private:
  void Run();

  const absl::Duration timeout_;
  absl::Mutex mu_;
  absl::flat_hash_set<IdleStream*> streams_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread thread_;  // last: starts once the rest exists
};

}  // namespace ckpt::server
