#include "server/rpc/upload_memory_budget.h"

#include <algorithm>

#include "absl/time/clock.h"

namespace ckpt::server {

UploadMemoryBudget::UploadMemoryBudget(uint64_t bytes, Metrics* metrics,
                                       absl::Duration stall_after)
    : limit_(bytes),
      metrics_(metrics),
      stall_after_(stall_after),
      reclaimer_([this] { ReclaimStalledReads(); }) {}

UploadMemoryBudget::~UploadMemoryBudget() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    queue_changed_.SignalAll();
  }
  reclaimer_.join();
}

bool UploadMemoryBudget::FitsLocked(uint64_t bytes) const {
  return reserved_ == 0 || bytes <= limit_ - std::min(limit_, reserved_);
}

void UploadMemoryBudget::AddLocked(uint64_t bytes) {
  reserved_ += bytes;
  peak_ = std::max(peak_, reserved_);
  if (metrics_ != nullptr && bytes != 0) {
    metrics_->UploadBufferReservedChanged(static_cast<int64_t>(bytes));
  }
}

void UploadMemoryBudget::SubtractLocked(uint64_t bytes) {
  const uint64_t taken = std::min(reserved_, bytes);
  reserved_ -= taken;
  if (metrics_ != nullptr && taken != 0) {
    metrics_->UploadBufferReservedChanged(-static_cast<int64_t>(taken));
  }
}

void UploadMemoryBudget::GrantLocked() {
  const absl::Time now = absl::Now();
  while (!queued_.empty() && FitsLocked(queued_.front().bytes)) {
    const Queued front = queued_.front();
    queued_.pop_front();
    AddLocked(front.bytes);
    reads_[front.waiter] = Read{front.bytes, now};
    granted_.push_back(front);
    WaitingChanged(-1);
  }
}

bool UploadMemoryBudget::Reserve(Waiter* waiter, uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  // Behind queued ones only: granted_ is reserved already.
  if (queued_.empty() && FitsLocked(bytes)) {
    AddLocked(bytes);
    reads_[waiter] = Read{bytes, absl::Now()};
    return true;
  }
  queued_.push_back({waiter, bytes});
  WaitingChanged(1);
  queue_changed_.SignalAll();
  return false;
}

void UploadMemoryBudget::ReadDone(Waiter* waiter, uint64_t message_bytes) {
  {
    absl::MutexLock lock(&mu_);
    uint64_t reservation = 0;  // given back already if it stalled
    if (auto read = reads_.find(waiter); read != reads_.end()) {
      reservation = read->second.bytes;
      reads_.erase(read);
    }
    if (message_bytes >= reservation) {
      AddLocked(message_bytes - reservation);
      return;
    }
    SubtractLocked(reservation - message_bytes);
    GrantLocked();
    if (granted_.empty()) return;
  }
  Deliver();
}

void UploadMemoryBudget::Release(uint64_t bytes) {
  if (bytes == 0) return;
  {
    absl::MutexLock lock(&mu_);
    SubtractLocked(bytes);
    GrantLocked();
    if (granted_.empty()) return;
  }
  Deliver();
}

bool UploadMemoryBudget::Cancel(Waiter* waiter) {
  bool withdrawn = false;
  {
    absl::MutexLock lock(&mu_);
    auto matches = [waiter](const Queued& q) { return q.waiter == waiter; };
    if (auto queued = std::find_if(queued_.begin(), queued_.end(), matches);
        queued != queued_.end()) {
      queued_.erase(queued);
      WaitingChanged(-1);
      withdrawn = true;
    } else if (auto undelivered =
                   std::find_if(granted_.begin(), granted_.end(), matches);
               undelivered != granted_.end()) {
      granted_.erase(undelivered);
      withdrawn = true;
    } else {
      // A BudgetGranted() for it may be running on another thread.
      while (in_call_ == waiter) call_returned_.Wait(&mu_);
    }
    if (auto read = reads_.find(waiter); read != reads_.end()) {
      SubtractLocked(read->second.bytes);
      reads_.erase(read);
    }
    // Withdrawing the front of the queue, or giving back a reservation, may
    // let the ones behind it fit.
    GrantLocked();
    if (granted_.empty()) return withdrawn;
  }
  Deliver();
  return withdrawn;
}

void UploadMemoryBudget::Deliver() {
  mu_.Lock();
  if (delivering_) {  // that caller takes ours too
    mu_.Unlock();
    return;
  }
  delivering_ = true;
  while (!granted_.empty()) {
    Waiter* const waiter = granted_.front().waiter;
    granted_.pop_front();
    in_call_ = waiter;
    mu_.Unlock();
    waiter->BudgetGranted();
    mu_.Lock();
    in_call_ = nullptr;
    call_returned_.SignalAll();
  }
  delivering_ = false;
  mu_.Unlock();
}

void UploadMemoryBudget::ReclaimStalledReads() {
  const absl::Duration tick =
      std::clamp(stall_after_ / 4, absl::Milliseconds(5), absl::Seconds(1));
  mu_.Lock();
  while (!stopping_) {
    if (queued_.empty()) {
      queue_changed_.Wait(&mu_);
      continue;
    }
    queue_changed_.WaitWithTimeout(&mu_, tick);
    const absl::Time cutoff = absl::Now() - stall_after_;
    bool reclaimed = false;
    for (auto read = reads_.begin(); read != reads_.end();) {
      if (read->second.granted < cutoff) {
        SubtractLocked(read->second.bytes);
        reads_.erase(read++);
        reclaimed = true;
      } else {
        ++read;
      }
    }
    if (!reclaimed) continue;
    GrantLocked();
    mu_.Unlock();
    Deliver();
    mu_.Lock();
  }
  mu_.Unlock();
}

uint64_t UploadMemoryBudget::reserved() const {
  absl::MutexLock lock(&mu_);
  return reserved_;
}

uint64_t UploadMemoryBudget::peak() const {
  absl::MutexLock lock(&mu_);
  return peak_;
}

size_t UploadMemoryBudget::waiting() const {
  absl::MutexLock lock(&mu_);
  return queued_.size();
}

void UploadMemoryBudget::WaitingChanged(int delta) {
  if (metrics_ != nullptr) metrics_->UploadWaitingForBufferChanged(delta);
}

}  // namespace ckpt::server
