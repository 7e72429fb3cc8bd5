// Executor: tasks run on the pool's threads in order, shutdown drains what
// was queued and refuses the rest, and a pool whose threads are all held
// makes the next task wait (why GC and verify get a lane of their own).

#include "server/rpc/executor.h"

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace ckpt::server {
namespace {

TEST(ExecutorTest, RunsEveryTaskOnItsOwnThreads) {
  Executor executor("test", 3);
  EXPECT_EQ(executor.threads(), 3);
  constexpr int kTasks = 100;
  absl::BlockingCounter done(kTasks);
  std::atomic<int> on_caller{0};
  const std::thread::id caller = std::this_thread::get_id();
  for (int i = 0; i < kTasks; ++i) {
    ASSERT_TRUE(executor.Submit([&] {
      if (std::this_thread::get_id() == caller) ++on_caller;
      done.DecrementCount();
    }));
  }
  done.Wait();
  EXPECT_EQ(on_caller.load(), 0);
}

TEST(ExecutorTest, OneThreadRunsTasksInSubmissionOrder) {
  std::vector<int> order;
  {
    Executor executor("test", 1);
    for (int i = 0; i < 50; ++i) {
      ASSERT_TRUE(executor.Submit([&order, i] { order.push_back(i); }));
    }
  }  // the destructor drains
  ASSERT_EQ(order.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(order[i], i);
}

TEST(ExecutorTest, ShutdownRunsQueuedTasksThenRefusesNewOnes) {
  Executor executor("test", 1);
  absl::Notification release;
  absl::Notification started;
  ASSERT_TRUE(executor.Submit([&] {
    started.Notify();
    release.WaitForNotification();
  }));
  started.WaitForNotification();
  std::atomic<int> ran{0};
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(executor.Submit([&] { ++ran; }));
  EXPECT_EQ(executor.queued(), 5u);

  std::thread shutdown([&] { executor.Shutdown(); });
  // Once shutdown has begun, Submit refuses (and destroys the task).
  auto owned = std::make_shared<int>(0);
  while (true) {
    if (!executor.Submit([owned] {})) break;
    std::this_thread::yield();
  }
  release.Notify();
  shutdown.join();
  EXPECT_EQ(ran.load(), 5);
  // The refused task (and any accepted while shutdown was starting: they
  // ran) no longer holds `owned`.
  EXPECT_EQ(owned.use_count(), 1);
  EXPECT_FALSE(executor.Submit([] {}));
  executor.Shutdown();  // idempotent
}

TEST(ExecutorTest, TasksHoldingEveryThreadDelayTheNextOne) {
  // The failure mode the separate maintenance lane prevents: two long tasks
  // on a two-thread pool leave a short one waiting until they end.
  Executor executor("test", 2);
  absl::Notification release;
  absl::BlockingCounter holding(2);
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(executor.Submit([&] {
      holding.DecrementCount();
      release.WaitForNotification();
    }));
  }
  holding.Wait();
  absl::Notification short_done;
  ASSERT_TRUE(executor.Submit([&] { short_done.Notify(); }));
  EXPECT_FALSE(
      short_done.WaitForNotificationWithTimeout(absl::Milliseconds(50)));
  release.Notify();
  short_done.WaitForNotification();
}

}  // namespace
}  // namespace ckpt::server
