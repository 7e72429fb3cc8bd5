// UploadMemoryBudget: reservations within the limit are granted at once and
// the rest in the order asked once room is given back; one larger than the
// whole budget waits for an empty budget; withdrawing a reservation lets the
// ones behind it in; grants given back from BudgetGranted do not nest; a
// read stalled past stall_after gives its reservation back while others
// wait; and Cancel waits out a BudgetGranted running on another thread.

#include "server/rpc/upload_memory_budget.h"

#include <atomic>
#include <cstdint>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace ckpt::server {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

class CountingMetrics final : public Metrics {
 public:
  void UploadWaitingForBufferChanged(int delta) override { waiting += delta; }
  void UploadBufferReservedChanged(int64_t delta) override {
    reserved += delta;
  }
  std::atomic<int> waiting{0};
  std::atomic<int64_t> reserved{0};
};

// Records its grants; optionally gives the bytes back at once, as a stream
// that finished while it waited does.
class RecordingWaiter final : public UploadMemoryBudget::Waiter {
 public:
  RecordingWaiter(UploadMemoryBudget* budget, uint64_t bytes,
                  bool give_back = false)
      : budget_(budget), bytes_(bytes), give_back_(give_back) {}

  void BudgetGranted() override {
    static thread_local int depth = 0;
    ++depth;
    max_depth_seen = std::max(max_depth_seen.load(), depth);
    ++grants;
    if (give_back_) budget_->ReadDone(this, 0);
    --depth;
  }
  bool Reserve() { return budget_->Reserve(this, bytes_); }

  std::atomic<int> grants{0};
  static inline std::atomic<int> max_depth_seen{0};

 private:
  UploadMemoryBudget* const budget_;
  const uint64_t bytes_;
  const bool give_back_;
};

TEST(UploadMemoryBudgetTest, GrantsWithinTheLimitAtOnceAndTheRestInOrder) {
  CountingMetrics metrics;
  UploadMemoryBudget budget(10 * kMiB, &metrics);
  RecordingWaiter a(&budget, 4 * kMiB), b(&budget, 4 * kMiB),
      c(&budget, 4 * kMiB), d(&budget, 2 * kMiB);
  EXPECT_TRUE(a.Reserve());
  EXPECT_TRUE(b.Reserve());
  EXPECT_FALSE(c.Reserve());  // 12 MiB would pass 10
  // 10 MiB would fit, but c asked first: no overtaking.
  EXPECT_FALSE(d.Reserve());
  EXPECT_EQ(budget.reserved(), 8 * kMiB);
  EXPECT_EQ(budget.waiting(), 2u);
  EXPECT_EQ(metrics.waiting.load(), 2);

  budget.ReadDone(&a, 4 * kMiB);  // a's message arrived at its reservation
  EXPECT_EQ(c.grants.load(), 0);
  budget.Release(4 * kMiB);  // and was processed: c, then d fit
  EXPECT_EQ(c.grants.load(), 1);
  EXPECT_EQ(d.grants.load(), 1);
  EXPECT_EQ(budget.reserved(), 10 * kMiB);
  EXPECT_EQ(metrics.reserved.load(), int64_t{10} << 20);
  EXPECT_EQ(budget.waiting(), 0u);
  EXPECT_EQ(metrics.waiting.load(), 0);
  EXPECT_EQ(a.grants.load() + b.grants.load(), 0);  // granted at once instead
  EXPECT_EQ(budget.peak(), 10 * kMiB);
}

TEST(UploadMemoryBudgetTest, AMessageLargerThanReservedIsChargedInFull) {
  UploadMemoryBudget budget(8 * kMiB, nullptr);
  RecordingWaiter a(&budget, 4 * kMiB), b(&budget, 1 * kMiB);
  ASSERT_TRUE(a.Reserve());
  budget.ReadDone(&a, 16 * kMiB);  // a's message arrived at 16 MiB
  EXPECT_EQ(budget.reserved(), 16 * kMiB);
  EXPECT_EQ(budget.peak(), 16 * kMiB);
  EXPECT_FALSE(b.Reserve());  // nothing more reads until it is freed
  budget.Release(16 * kMiB);
  EXPECT_EQ(b.grants.load(), 1);
  EXPECT_EQ(budget.reserved(), 1 * kMiB);
  // A smaller message gives the rest of its reservation back.
  budget.ReadDone(&b, 1024);
  EXPECT_EQ(budget.reserved(), 1024u);
}

TEST(UploadMemoryBudgetTest, OneLargerThanTheBudgetWaitsForAnEmptyBudget) {
  UploadMemoryBudget budget(8 * kMiB, nullptr);
  RecordingWaiter small(&budget, 1 * kMiB), huge(&budget, 64 * kMiB),
      later(&budget, 1 * kMiB);
  ASSERT_TRUE(small.Reserve());
  EXPECT_FALSE(huge.Reserve());
  EXPECT_FALSE(later.Reserve());  // behind huge
  budget.ReadDone(&small, 0);     // its stream ended
  EXPECT_EQ(huge.grants.load(), 1);
  EXPECT_EQ(later.grants.load(), 0);
  EXPECT_EQ(budget.reserved(), 64 * kMiB);
  budget.ReadDone(&huge, 64 * kMiB);
  budget.Release(64 * kMiB);
  EXPECT_EQ(later.grants.load(), 1);

  // Alone, it is granted at once.
  UploadMemoryBudget empty(8 * kMiB, nullptr);
  RecordingWaiter alone(&empty, 64 * kMiB);
  EXPECT_TRUE(alone.Reserve());
}

TEST(UploadMemoryBudgetTest, CancellingTheFrontLetsTheOnesBehindIn) {
  CountingMetrics metrics;
  UploadMemoryBudget budget(8 * kMiB, &metrics);
  RecordingWaiter holder(&budget, 6 * kMiB), big(&budget, 4 * kMiB),
      small(&budget, 2 * kMiB);
  ASSERT_TRUE(holder.Reserve());
  ASSERT_FALSE(big.Reserve());
  ASSERT_FALSE(small.Reserve());  // would fit, but big is ahead
  EXPECT_TRUE(budget.Cancel(&big));
  EXPECT_EQ(big.grants.load(), 0);
  EXPECT_EQ(small.grants.load(), 1);
  EXPECT_EQ(budget.reserved(), 8 * kMiB);
  EXPECT_EQ(metrics.waiting.load(), 0);
  // Granted and delivered: its outstanding read's reservation goes back.
  EXPECT_FALSE(budget.Cancel(&small));
  EXPECT_EQ(budget.reserved(), 6 * kMiB);
  // Never queued.
  RecordingWaiter stranger(&budget, 1 * kMiB);
  EXPECT_FALSE(budget.Cancel(&stranger));
}

TEST(UploadMemoryBudgetTest, GrantsGivenBackFromTheCallbackDoNotNest) {
  UploadMemoryBudget budget(1 * kMiB, nullptr);
  RecordingWaiter holder(&budget, 1 * kMiB);
  ASSERT_TRUE(holder.Reserve());
  // Streams that ended while they waited: each gives its grant back, which
  // grants the next one.
  constexpr int kWaiters = 20000;
  std::vector<std::unique_ptr<RecordingWaiter>> waiters;
  for (int i = 0; i < kWaiters; ++i) {
    waiters.push_back(
        std::make_unique<RecordingWaiter>(&budget, 1 * kMiB, true));
    ASSERT_FALSE(waiters.back()->Reserve());
  }
  RecordingWaiter::max_depth_seen = 0;
  budget.ReadDone(&holder, 0);
  for (const auto& waiter : waiters) ASSERT_EQ(waiter->grants.load(), 1);
  EXPECT_EQ(RecordingWaiter::max_depth_seen.load(), 1);
  EXPECT_EQ(budget.reserved(), 0u);
  EXPECT_EQ(budget.waiting(), 0u);
}

// Blocks in BudgetGranted until told to go on.
class BlockingWaiter final : public UploadMemoryBudget::Waiter {
 public:
  void BudgetGranted() override {
    entered.Notify();
    proceed.WaitForNotification();
    returned = true;
  }
  absl::Notification entered;
  absl::Notification proceed;
  std::atomic<bool> returned{false};
};

TEST(UploadMemoryBudgetTest, CancelWaitsOutAGrantRunningOnAnotherThread) {
  UploadMemoryBudget budget(1 * kMiB, nullptr);
  RecordingWaiter holder(&budget, 1 * kMiB);
  ASSERT_TRUE(holder.Reserve());
  BlockingWaiter waiter;
  ASSERT_FALSE(budget.Reserve(&waiter, 1 * kMiB));
  std::thread releaser([&] { budget.ReadDone(&holder, 0); });
  waiter.entered.WaitForNotification();
  std::atomic<bool> cancel_returned{false};
  std::thread canceller([&] {
    EXPECT_FALSE(budget.Cancel(&waiter));  // its read's reservation goes back
    EXPECT_TRUE(waiter.returned.load());
    cancel_returned = true;
  });
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_FALSE(cancel_returned.load());
  waiter.proceed.Notify();
  canceller.join();
  releaser.join();
  EXPECT_TRUE(cancel_returned.load());
  EXPECT_EQ(budget.reserved(), 0u);
}

TEST(UploadMemoryBudgetTest, AStalledReadGivesItsReservationBackToWaiters) {
  UploadMemoryBudget budget(8 * kMiB, nullptr, absl::Milliseconds(50));
  RecordingWaiter stalled(&budget, 8 * kMiB), active(&budget, 4 * kMiB);
  ASSERT_TRUE(stalled.Reserve());
  // Nobody waits: the stalled read keeps its room however long it waits.
  absl::SleepFor(absl::Milliseconds(120));
  EXPECT_EQ(budget.reserved(), 8 * kMiB);
  const absl::Time queued = absl::Now();
  ASSERT_FALSE(active.Reserve());
  for (int i = 0; i < 400 && active.grants.load() == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(active.grants.load(), 1);
  EXPECT_LT(absl::Now() - queued, absl::Seconds(1));
  EXPECT_EQ(budget.reserved(), 4 * kMiB);
  // The stalled client sends at last: its message counts in full.
  budget.ReadDone(&stalled, 8 * kMiB);
  EXPECT_EQ(budget.reserved(), 12 * kMiB);
  budget.Release(8 * kMiB);
  budget.ReadDone(&active, 0);
  EXPECT_EQ(budget.reserved(), 0u);
}

// Streams on several threads: reserve, sometimes end, take their grant,
// resize it to a message size at most the reservation, free it. The budget
// never holds more than its limit, and ends empty with every waiter served.
TEST(UploadMemoryBudgetTest, ConcurrentStreamsStayWithinTheLimit) {
  CountingMetrics metrics;
  constexpr uint64_t kLimit = 16 * kMiB;
  UploadMemoryBudget budget(kLimit, &metrics);

  class Stream final : public UploadMemoryBudget::Waiter {
   public:
    void BudgetGranted() override {
      absl::MutexLock lock(&mu);
      granted = true;
    }
    absl::Mutex mu;
    bool granted ABSL_GUARDED_BY(mu) = false;
  };
  constexpr int kThreads = 6;
  constexpr int kRounds = 2000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      Stream stream;
      for (int round = 0; round < kRounds; ++round) {
        const uint64_t bytes = (1 + rng() % 6) * kMiB;
        {
          absl::MutexLock lock(&stream.mu);
          stream.granted = false;
        }
        if (!budget.Reserve(&stream, bytes)) {
          // A stream ending: its queued reservation, or the read granted
          // meanwhile, is given back either way.
          if (rng() % 4 == 0) {
            budget.Cancel(&stream);
            continue;
          }
          absl::MutexLock lock(&stream.mu);
          stream.mu.Await(absl::Condition(&stream.granted));
        }
        const uint64_t message = bytes - rng() % bytes;
        budget.ReadDone(&stream, message);
        budget.Release(message);
      }
      budget.Cancel(&stream);  // nothing queued: returns at once
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(budget.reserved(), 0u);
  EXPECT_EQ(metrics.reserved.load(), 0);
  EXPECT_EQ(budget.waiting(), 0u);
  EXPECT_EQ(metrics.waiting.load(), 0);
  EXPECT_LE(budget.peak(), kLimit);
  EXPECT_GE(budget.peak(), 6 * kMiB);  // it was used
}

}  // namespace
}  // namespace ckpt::server
