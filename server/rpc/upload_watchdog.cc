#include "server/rpc/upload_watchdog.h"

#include <algorithm>
#include <vector>

#include "absl/time/clock.h"

namespace ckpt::server {

UploadWatchdog::UploadWatchdog(absl::Duration timeout)
    : timeout_(timeout), thread_([this] { Run(); }) {}

UploadWatchdog::~UploadWatchdog() {
  stop_.Notify();
  thread_.join();
}

void UploadWatchdog::Add(IdleStream* stream) {
  absl::MutexLock lock(&mu_);
  streams_.insert(stream);
}

void UploadWatchdog::Remove(IdleStream* stream) {
  absl::MutexLock lock(&mu_);
  streams_.erase(stream);
}

void UploadWatchdog::Run() {
  // A stream is ended between timeout and timeout + interval after its last
  // message: a quarter of the timeout, at most a second, at least 10 ms.
  const absl::Duration interval =
      std::clamp(timeout_ / 4, absl::Milliseconds(10), absl::Seconds(1));
  while (!stop_.WaitForNotificationWithTimeout(interval)) {
    std::vector<IdleStream*> idle;
    {
      absl::MutexLock lock(&mu_);
      const absl::Time cutoff = absl::Now() - timeout_;
      for (IdleStream* stream : streams_) {
        if (stream->ClaimIfIdleSince(cutoff)) idle.push_back(stream);
      }
    }
    // A claimed stream cannot finish (and so cannot be destroyed) before
    // EndIdle finishes it, so it is safe to use without the lock, which
    // EndIdle must not hold: gRPC may run the stream's OnDone, which calls
    // Remove, before Finish returns.
    for (IdleStream* stream : idle) stream->EndIdle();
  }
}

}  // namespace ckpt::server
