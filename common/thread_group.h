// ThreadGroup: the threads one call starts, always joined before the call
// returns (RAII), whether it returns, fails or unwinds; a thread the system
// cannot create is a RESOURCE_EXHAUSTED status instead of an uncaught
// std::system_error (which would end the process).
#pragma once

#include <cstddef>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"

namespace ckpt {

class ThreadGroup {
 public:
  ThreadGroup() = default;
  ThreadGroup(const ThreadGroup&) = delete;
  ThreadGroup& operator=(const ThreadGroup&) = delete;
  // Joins every thread started. Whatever makes them end (a stop flag) must
  // be set before: declare it after the group, or stop it first.
  ~ThreadGroup() { JoinAll(); }

  // Starts `body` on a new thread. RESOURCE_EXHAUSTED naming the system's
  // error when no thread can be created (too many threads or processes, no
  // memory for a stack); the threads already started go on.
  absl::Status Spawn(absl::AnyInvocable<void()> body);

  // Joins every thread started so far (each once).
  void JoinAll();

  // Threads started and not yet joined.
  size_t size() const { return threads_.size(); }

 private:
  std::vector<std::thread> threads_;
};

// For tests: while one exists, ThreadGroup::Spawn called on the thread that
// made it creates at most `allowed` more threads, then fails as the system
// does when it cannot create one (std::system_error, EAGAIN). Not nested.
class ScopedSpawnLimitForTesting {
 public:
  explicit ScopedSpawnLimitForTesting(int allowed);
  ~ScopedSpawnLimitForTesting();
  ScopedSpawnLimitForTesting(const ScopedSpawnLimitForTesting&) = delete;
  ScopedSpawnLimitForTesting& operator=(const ScopedSpawnLimitForTesting&) =
      delete;
};

}  // namespace ckpt
