// StallWatchdog: fires once a stream makes no progress for its limit, never
// while progress keeps coming however long the stream lasts, never for
// paused time, and not after it is destroyed.
#include "client/stall_watchdog.h"

#include <atomic>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace ckpt::client {
namespace {

TEST(StallWatchdogTest, FiresOnceWhenNoProgressComesWithinTheLimit) {
  std::atomic<int> fired{0};
  const absl::Time start = absl::Now();
  StallWatchdog watchdog(absl::Milliseconds(100), [&fired] { ++fired; });
  while (fired.load() == 0 && absl::Now() - start < absl::Seconds(30)) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_TRUE(watchdog.fired());
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(100));
  absl::SleepFor(absl::Milliseconds(250));
  EXPECT_EQ(fired.load(), 1);
}

// A long stream (five times the limit) that keeps making progress is never
// cut short: the limit counts from the last progress, not the start.
TEST(StallWatchdogTest, ProgressKeepsALongStreamAlive) {
  std::atomic<int> fired{0};
  StallWatchdog watchdog(absl::Milliseconds(200), [&fired] { ++fired; });
  const absl::Time end = absl::Now() + absl::Seconds(1);
  while (absl::Now() < end) {
    absl::SleepFor(absl::Milliseconds(20));
    watchdog.Progress();
  }
  EXPECT_FALSE(watchdog.fired());
  EXPECT_EQ(fired.load(), 0);
}

// An upload's client work (hashing the next message) is paused time: a
// pause five times the limit does not fire, and Resume() gives the wait on
// the server a whole limit again; a wait longer than that fires.
TEST(StallWatchdogTest, PausedTimeNeverCountsAndResumeRestartsTheLimit) {
  std::atomic<int> fired{0};
  StallWatchdog watchdog(absl::Milliseconds(200), [&fired] { ++fired; });
  for (int message = 0; message < 3; ++message) {
    absl::SleepFor(absl::Milliseconds(100));  // waiting on the server
    watchdog.Pause();
    absl::SleepFor(absl::Milliseconds(400));  // the client's own work
    watchdog.Resume();
  }
  EXPECT_FALSE(watchdog.fired());
  const absl::Time resumed = absl::Now();
  while (fired.load() == 0 && absl::Now() - resumed < absl::Seconds(30)) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(fired.load(), 1);
  EXPECT_GE(absl::Now() - resumed, absl::Milliseconds(200));
}

TEST(StallWatchdogTest, NeverFiresAfterDestructionOrWithAnInfiniteLimit) {
  std::atomic<int> fired{0};
  {
    StallWatchdog watchdog(absl::Milliseconds(100), [&fired] { ++fired; });
  }
  {
    StallWatchdog forever(absl::InfiniteDuration(), [&fired] { ++fired; });
    absl::SleepFor(absl::Milliseconds(50));
    EXPECT_FALSE(forever.fired());
  }
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(fired.load(), 0);
}

}  // namespace
}  // namespace ckpt::client
