// Executor: a fixed pool of threads that run submitted tasks in FIFO order.
// The gRPC edge runs its blocking work here (every unary body, PutChunks'
// hashing and stores, ReadChunks' reads, verify and GC), so that gRPC's
// callback threads never block (gRPC's callback API guide). Nothing in it
// is specific to gRPC; it would move to common/ if another layer needed one.
//
// Bounded in threads, not in queue: a task is queued by a call in flight
// (each reactor has at most one task queued or running at a time), so the
// queue never holds more tasks than the server has calls. gRPC bounds those
// (connections times concurrent streams) except for streams reset as soon
// as they open, which the unary edge bounds itself
// (StreamLimits::max_queued_calls). Refusing work when the queue is merely
// long would turn a burst of ranks saving at once into errors; queueing it
// only makes them wait.
//
// Thread-safe.
#pragma once

#include <cstddef>
#include <deque>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace ckpt::server {

class Executor {
 public:
  // Starts `threads` threads (at least one), named `name`-<i> in top and
  // gdb (Linux shows names of at most 15 characters).
  Executor(std::string name, int threads);
  // Shutdown().
  ~Executor();

  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Queues `task` to run once on one of the threads. False once Shutdown
  // has begun: `task` is then destroyed without running, and the caller
  // finishes its work another way (a reactor finishes its call with
  // UNAVAILABLE).
  //
  // A task must not wait for another task of the same executor: a pool whose
  // every thread waits that way deadlocks. It may wait for gRPC (a write to
  // complete) and take locks, as long as no lock is held across Submit.
  bool Submit(absl::AnyInvocable<void()> task);

  // Refuses new tasks, lets the threads run every task already queued, then
  // joins them. Blocks; idempotent (a concurrent call waits for the first).
  // REQUIRES: not called from one of this executor's tasks.
  void Shutdown();

  int threads() const { return thread_count_; }
  // Tasks waiting for a thread (not those running). For tests and logs.
  size_t queued() const;

 private:
  void Work();
  bool HasWorkOrStopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || !queue_.empty();
  }

  const std::string name_;
  const int thread_count_;

  mutable absl::Mutex mu_;
  std::deque<absl::AnyInvocable<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  // Held across the joins, so a second Shutdown returns only once the
  // threads are gone. The threads never take it.
  absl::Mutex join_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(join_mu_);
};

}  // namespace ckpt::server
