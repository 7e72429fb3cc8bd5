// VerifyHeartbeats: one thread that calls each registered `beat` every
// `interval`. A verify may wait behind a long collection on the
// maintenance lane, or work for a long time between progress reports;
// its reactor beats (sends a heartbeat message) so that a client bounding
// the stream by its progress (ConnectOptions::stream_stall_timeout) knows
// the server is alive. One thread for all verifies: gRPC's callback API has
// no timers, and a verify's own thread may be the one it waits for.
//
// gRPC-free; thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace ckpt::server {

class VerifyHeartbeats {
 public:
  // An infinite `interval` never beats (and starts no thread).
  explicit VerifyHeartbeats(absl::Duration interval);
  // Stops the thread. REQUIRES: every registration removed.
  ~VerifyHeartbeats();
  VerifyHeartbeats(const VerifyHeartbeats&) = delete;
  VerifyHeartbeats& operator=(const VerifyHeartbeats&) = delete;

  // Calls `beat` every interval, first one interval from now, until
  // Remove(id). `beat` must not block, nor call Add or Remove.
  uint64_t Add(std::function<void()> beat);
  // Once it returns, `beat` of `id` is neither running nor will run.
  void Remove(uint64_t id);

  absl::Duration interval() const { return interval_; }

 private:
  void Run();

  const absl::Duration interval_;
  // Held while beats run, so that Remove waits for a beat in progress.
  absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, std::function<void()>> beats_
      ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace ckpt::server
