#include "common/ordered_parallel.h"

#include <algorithm>
#include <exception>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/cleanup/cleanup.h"
#include "absl/synchronization/mutex.h"
#include "common/thread_group.h"

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

  // Waits until item `delivered_` (the next to deliver) is done; returns
  // what its work call threw, if it threw (else null).
  std::exception_ptr AwaitNext() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &OrderedRun::NextDone));
    return thrown_item_ == delivered_ ? thrown_ : nullptr;
  }

  // work(item) threw: no further item starts. The items before it were all
  // taken and finish, so the caller delivers them and then rethrows this,
  // as a one-thread loop would (the lowest such item's, if several threw).
  void Threw(size_t item, std::exception_ptr thrown) {
    absl::MutexLock lock(&mu_);
    if (!thrown_ || item < thrown_item_) {
      thrown_ = std::move(thrown);
      thrown_item_ = item;
    }
    done_[item] = true;
    stopped_ = true;
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
  std::exception_ptr thrown_ ABSL_GUARDED_BY(mu_);
  size_t thrown_item_ ABSL_GUARDED_BY(mu_) = 0;
};

absl::Status OneThread(size_t count, absl::FunctionRef<void(size_t)> work,
                       absl::FunctionRef<absl::Status(size_t)> deliver) {
  for (size_t i = 0; i < count; ++i) {
    work(i);
    absl::Status delivered = deliver(i);
    if (!delivered.ok()) return delivered;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status OrderedParallelFor(
    size_t count, int threads, absl::FunctionRef<void(size_t)> work,
    absl::FunctionRef<absl::Status(size_t)> deliver) {
  if (threads <= 1 || count <= 1) return OneThread(count, work, deliver);
  const size_t workers = std::min(static_cast<size_t>(threads), count);
  OrderedRun run(count, 2 * workers);
  // Declared in this order so that, however this function ends (a return,
  // or a deliver or work call that threw), the run is stopped first and
  // then every worker joined: no thread outlives `run` or the callbacks.
  ThreadGroup pool;
  absl::Cleanup stop_run = [&run] { run.Stop(); };
  for (size_t t = 0; t < workers; ++t) {
    const absl::Status started = pool.Spawn([&run, work] {
      while (std::optional<size_t> item = run.Take()) {
        try {
          work(*item);
        } catch (...) {
          run.Threw(*item, std::current_exception());
          return;
        }
        run.Done(*item);
      }
    });
    // Fewer threads than asked: those started do the work (a one-thread
    // loop when none could start; no item has been taken yet then).
    if (!started.ok()) break;
  }
  if (pool.size() == 0) return OneThread(count, work, deliver);
  absl::Status status;
  for (size_t i = 0; i < count; ++i) {
    // Unwinding stops the run and joins the workers (above).
    if (std::exception_ptr thrown = run.AwaitNext()) {
      std::rethrow_exception(thrown);
    }
    status = deliver(i);
    if (!status.ok()) break;
    run.Delivered();
  }
  return status;
}

int HardwareThreads() {
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

}  // namespace ckpt
