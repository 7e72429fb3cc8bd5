// UploadMemoryBudget: the server-wide bound on the bytes of upload
// (PutChunks) messages the server holds at once (StreamLimits::
// upload_buffer_bytes), so that many streams together cannot hold more
// memory than configured. A stream reserves room before it starts reading a
// message; when there is none it waits without reading, and HTTP/2 flow
// control holds its client back, until other streams give room back.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/observability/metrics.h"

namespace ckpt::server {

// Thread-safe. Reservations are granted in the order they were asked for,
// so a stream that needs a large one is not passed over forever by small
// ones. One larger than the whole budget is granted once nothing else is
// reserved, so every message the transport accepts can be read.
//
// A read whose message has not arrived `stall_after` after its grant, while
// others wait, gives its reservation back (its client is slow or stalled,
// and must not hold room others could use); its message, when it comes, is
// counted in full all the same.
class UploadMemoryBudget {
 public:
  // A stream that may wait for room.
  class Waiter {
   public:
    // Its queued reservation has been granted: the bytes are reserved for
    // its read. Called once per queued reservation that was not cancelled,
    // on a thread that gave room back, with no lock of the budget held; one
    // such call runs at a time over the whole budget. It may call ReadDone
    // and Release, never Cancel.
    virtual void BudgetGranted() = 0;

   protected:
    ~Waiter() = default;
  };

  // `metrics` (outliving the budget; may be null) sees the streams waiting
  // and the bytes reserved.
  UploadMemoryBudget(uint64_t bytes, Metrics* metrics,
                     absl::Duration stall_after = absl::Seconds(1));
  ~UploadMemoryBudget();
  UploadMemoryBudget(const UploadMemoryBudget&) = delete;
  UploadMemoryBudget& operator=(const UploadMemoryBudget&) = delete;

  // Reserves `bytes` for `waiter`'s next read: true when granted at once.
  // Otherwise the waiter is queued, false is returned and BudgetGranted()
  // follows once there is room. REQUIRES: `waiter` has no reservation or
  // read outstanding.
  bool Reserve(Waiter* waiter, uint64_t bytes);

  // `waiter`'s granted read ended: its reservation (if not given back
  // meanwhile) is replaced by the `message_bytes` the message holds (0: no
  // message). Never waits: the bytes are in memory already.
  void ReadDone(Waiter* waiter, uint64_t message_bytes);

  // A message of `bytes` counted by ReadDone was freed.
  void Release(uint64_t bytes);

  // Withdraws `waiter`'s queued reservation or outstanding read. True: it
  // was still waiting and nothing is reserved for it any more. False
  // otherwise; returns only once a BudgetGranted() running for it has
  // returned, so the waiter may be destroyed after this.
  bool Cancel(Waiter* waiter);

  uint64_t limit() const { return limit_; }
  uint64_t reserved() const;
  // The most bytes reserved at once since the budget was made.
  uint64_t peak() const;
  size_t waiting() const;

 private:
  struct Queued {
    Waiter* waiter;
    uint64_t bytes;
  };
  struct Read {
    uint64_t bytes;
    absl::Time granted;
  };

  bool FitsLocked(uint64_t bytes) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddLocked(uint64_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SubtractLocked(uint64_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves the queued reservations that fit now, front first, to granted_.
  void GrantLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Calls BudgetGranted() for granted_, unless another thread is doing so
  // (it will take these too): one caller at a time, so a waiter that gives
  // its grant back from BudgetGranted does not nest further calls.
  void Deliver();
  // While streams wait: takes back the reservations of reads outstanding
  // for longer than stall_after_.
  void ReclaimStalledReads();
  void WaitingChanged(int delta);

  const uint64_t limit_;
  Metrics* const metrics_;
  const absl::Duration stall_after_;
  mutable absl::Mutex mu_;
  uint64_t reserved_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t peak_ ABSL_GUARDED_BY(mu_) = 0;
  // Invariant between calls: the front of queued_ does not fit.
  std::deque<Queued> queued_ ABSL_GUARDED_BY(mu_);
  // Reserved, BudgetGranted() not called yet.
  std::deque<Queued> granted_ ABSL_GUARDED_BY(mu_);
  // Granted reads whose message has not arrived, and still hold their
  // reservation.
  absl::flat_hash_map<Waiter*, Read> reads_ ABSL_GUARDED_BY(mu_);
  bool delivering_ ABSL_GUARDED_BY(mu_) = false;
  Waiter* in_call_ ABSL_GUARDED_BY(mu_) = nullptr;  // its BudgetGranted runs
  absl::CondVar call_returned_;                     // in_call_ was reset
  absl::CondVar queue_changed_;                     // for the reclaimer
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread reclaimer_;
};

}  // namespace ckpt::server
