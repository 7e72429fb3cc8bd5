#include "common/ordered_parallel.h"

#include <algorithm>
#include <optional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace ckpt {
namespace {

// The shared state of one run: which item starts next, which are done and
// how many are delivered.
class OrderedRun {
 public:
  OrderedRun(size_t count, size_t window)
      : count_(count), window_(window), done_(count, false) {}

  // The next item to work on, once the window has room; nullopt when every
  // item has started or the run stopped.
  std::optional<size_t> Take() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &OrderedRun::MayTake));
    if (stopped_ || next_ >= count_) return std::nullopt;
    return next_++;
  }

  void Done(size_t item) {
    absl::MutexLock lock(&mu_);
    done_[item] = true;
  }

  // Waits until item `delivered_` (the next to deliver) is done.
  void AwaitNext() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &OrderedRun::NextDone));
  }

  void Delivered() {
    absl::MutexLock lock(&mu_);
    ++delivered_;
  }

  void Stop() {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
  }

 private:
  bool MayTake() const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return stopped_ || next_ >= count_ || next_ < delivered_ + window_;
  }
  bool NextDone() const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return done_[delivered_];
  }

  const size_t count_;
  const size_t window_;
  absl::Mutex mu_;
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;
  size_t delivered_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<bool> done_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::Status OrderedParallelFor(
    size_t count, int threads, absl::FunctionRef<void(size_t)> work,
    absl::FunctionRef<absl::Status(size_t)> deliver) {
  if (threads <= 1 || count <= 1) {
    for (size_t i = 0; i < count; ++i) {
      work(i);
      absl::Status delivered = deliver(i);
      if (!delivered.ok()) return delivered;
    }
    return absl::OkStatus();
  }
  const size_t workers = std::min(static_cast<size_t>(threads), count);
  OrderedRun run(count, 2 * workers);
  std::vector<std::thread> pool;
  pool.reserve(workers);
  for (size_t t = 0; t < workers; ++t) {
    pool.emplace_back([&run, work] {
      while (std::optional<size_t> item = run.Take()) {
        work(*item);
        run.Done(*item);
      }
    });
  }
  absl::Status status;
  for (size_t i = 0; i < count; ++i) {
    run.AwaitNext();
    status = deliver(i);
    if (!status.ok()) {
      run.Stop();
      break;
    }
    run.Delivered();
  }
  for (std::thread& thread : pool) thread.join();
  return status;
}

int HardwareThreads() {
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

}  // namespace ckpt
