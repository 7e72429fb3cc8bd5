#include "server/rpc/executor.h"

#include <pthread.h>

#include <utility>

#include "absl/strings/str_cat.h"

namespace ckpt::server {

Executor::Executor(std::string name, int threads)
    : name_(std::move(name)), thread_count_(threads < 1 ? 1 : threads) {
  absl::MutexLock lock(&join_mu_);
  threads_.reserve(static_cast<size_t>(thread_count_));
  for (int i = 0; i < thread_count_; ++i) {
    threads_.emplace_back([this] { Work(); });
    // Linux keeps 15 characters of a thread's name; a longer one is refused
    // (the thread then keeps the process's name), which is harmless.
    const std::string thread_name = absl::StrCat(name_, "-", i);
    pthread_setname_np(threads_.back().native_handle(), thread_name.c_str());
  }
}

Executor::~Executor() { Shutdown(); }

bool Executor::Submit(absl::AnyInvocable<void()> task) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return false;
  queue_.push_back(std::move(task));
  return true;
}

void Executor::Shutdown() {
  absl::MutexLock join_lock(&join_mu_);
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
  threads_.clear();
}

size_t Executor::queued() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

void Executor::Work() {
  while (true) {
    absl::AnyInvocable<void()> task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &Executor::HasWorkOrStopping));
      // Stopping: drain what was queued before Shutdown, then leave.
      if (queue_.empty()) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

}  // namespace ckpt::server
