#include "common/ordered_parallel.h"

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/thread_group.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt {
namespace {

class OrderedParallelForTest : public ::testing::TestWithParam<int> {};

// Runs 500 items on `threads` threads and checks each was worked once and
// delivered in order on the calling thread, after its work.
void CheckDeliversEveryItemOnceInOrder(int threads) {
  constexpr size_t kCount = 500;
  const std::thread::id caller = std::this_thread::get_id();
  std::vector<std::atomic<int>> worked(kCount);
  std::vector<uint64_t> squares(kCount);
  std::vector<size_t> order;
  absl::Status status = OrderedParallelFor(
      kCount, threads,
      [&](size_t i) {
        worked[i].fetch_add(1);
        squares[i] = uint64_t{i} * i;
      },
      [&](size_t i) {
        EXPECT_EQ(std::this_thread::get_id(), caller);
        EXPECT_EQ(squares[i], uint64_t{i} * i);  // sees work(i)'s writes
        order.push_back(i);
        return absl::OkStatus();
      });
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_EQ(order.size(), kCount);
  for (size_t i = 0; i < kCount; ++i) {
    EXPECT_EQ(order[i], i);
    EXPECT_EQ(worked[i].load(), 1) << i;
  }
}

TEST_P(OrderedParallelForTest, DeliversEveryItemOnceInOrderOnTheCaller) {
  CheckDeliversEveryItemOnceInOrder(GetParam());
}

TEST_P(OrderedParallelForTest, AFailedDeliveryStopsTheRunWithItsStatus) {
  constexpr size_t kCount = 1000;
  constexpr size_t kFailAt = 37;
  std::atomic<size_t> started{0};
  std::vector<size_t> order;
  absl::Status status = OrderedParallelFor(
      kCount, GetParam(), [&](size_t) { started.fetch_add(1); },
      [&](size_t i) {
        order.push_back(i);
        if (i == kFailAt) return absl::CancelledError("caller went away");
        return absl::OkStatus();
      });
  EXPECT_EQ(status, absl::CancelledError("caller went away"));
  ASSERT_EQ(order.size(), kFailAt + 1);
  EXPECT_EQ(order.back(), kFailAt);
  // Only the window past the failed item had started; every thread ended.
  EXPECT_LE(started.load(),
            kFailAt + 1 + 2 * static_cast<size_t>(std::max(1, GetParam())));
}

TEST_P(OrderedParallelForTest, StartsAtMostTwiceTheThreadsAheadOfDelivery) {
  constexpr size_t kCount = 300;
  const size_t window = 2 * static_cast<size_t>(std::max(1, GetParam()));
  std::atomic<size_t> started{0};
  std::atomic<size_t> delivered{0};
  std::atomic<size_t> worst{0};
  absl::Status status = OrderedParallelFor(
      kCount, GetParam(),
      [&](size_t) {
        const size_t ahead = started.fetch_add(1) + 1 - delivered.load();
        size_t seen = worst.load();
        while (ahead > seen && !worst.compare_exchange_weak(seen, ahead)) {
        }
      },
      [&](size_t) {
        delivered.fetch_add(1);
        return absl::OkStatus();
      });
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(started.load(), kCount);
  EXPECT_LE(worst.load(), window);
}

// A work call that throws ends the run as in a one-thread loop: the items
// before it delivered, then the exception on the caller, every thread
// joined (an exception escaping a worker, or a joinable thread destroyed,
// would end the process).
TEST_P(OrderedParallelForTest, AThrowingWorkCallReachesTheCallerInOrder) {
  constexpr size_t kCount = 400;
  constexpr size_t kThrowAt = 123;
  std::vector<size_t> order;
  EXPECT_THROW((void)OrderedParallelFor(
                   kCount, GetParam(),
                   [&](size_t i) {
                     if (i == kThrowAt || i == kThrowAt + 5) {
                       throw std::runtime_error("no memory for item");
                     }
                   },
                   [&](size_t i) {
                     order.push_back(i);
                     return absl::OkStatus();
                   }),
               std::runtime_error);
  ASSERT_EQ(order.size(), kThrowAt);
  for (size_t i = 0; i < kThrowAt; ++i) EXPECT_EQ(order[i], i);
}

TEST_P(OrderedParallelForTest, AThrowingDeliveryJoinsTheWorkers) {
  constexpr size_t kCount = 400;
  std::atomic<size_t> worked{0};
  EXPECT_THROW((void)OrderedParallelFor(
                   kCount, GetParam(), [&](size_t) { worked.fetch_add(1); },
                   [&](size_t i) -> absl::Status {
                     if (i == 50) throw std::runtime_error("deliver failed");
                     return absl::OkStatus();
                   }),
               std::runtime_error);
  // Nothing runs once it returned: the count stays put.
  const size_t after = worked.load();
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(worked.load(), after);
  EXPECT_LE(after, 51 + 2 * static_cast<size_t>(std::max(1, GetParam())));
}

// Threads the system will not create: the run goes on with those it could
// start (none: on the caller alone), with the same result.
TEST_P(OrderedParallelForTest, GoesOnWithTheThreadsThatCouldStart) {
  for (int allowed : {0, 1, 2}) {
    SCOPED_TRACE(::testing::Message() << allowed << " threads may start");
    ScopedSpawnLimitForTesting limit(allowed);
    CheckDeliversEveryItemOnceInOrder(GetParam());
  }
}

INSTANTIATE_TEST_SUITE_P(Threads, OrderedParallelForTest,
                         ::testing::Values(0, 1, 2, 3, 8));

TEST(OrderedParallelForTest, OneThreadStartsNoThread) {
  const std::thread::id caller = std::this_thread::get_id();
  absl::Status status = OrderedParallelFor(
      10, 1, [&](size_t) { EXPECT_EQ(std::this_thread::get_id(), caller); },
      [](size_t) { return absl::OkStatus(); });
  EXPECT_TRUE(status.ok());
}

TEST(OrderedParallelForTest, NothingToDoIsOk) {
  EXPECT_TRUE(OrderedParallelFor(
                  0, 4, [](size_t) { ADD_FAILURE(); },
                  [](size_t) { return absl::InternalError("never"); })
                  .ok());
}

TEST(HardwareThreadsTest, AtLeastOne) { EXPECT_GE(HardwareThreads(), 1); }

}  // namespace
}  // namespace ckpt
