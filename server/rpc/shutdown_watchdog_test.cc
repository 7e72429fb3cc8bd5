#include "server/rpc/shutdown_watchdog.h"

#include <optional>
#include <string>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt::server {
namespace {

TEST(ShutdownWatchdogTest, ReportsTheStepInProgressWhenTheLimitPasses) {
  absl::Notification stuck;
  std::string reported;
  const absl::Time start = absl::Now();
  ShutdownWatchdog watchdog(absl::Milliseconds(300), "draining_calls",
                            [&](absl::string_view step) {
                              reported = std::string(step);
                              stuck.Notify();
                            });
  watchdog.SetStep("closing_store");
  ASSERT_TRUE(stuck.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(reported, "closing_store");
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(300));
}

TEST(ShutdownWatchdogTest, ADoneShutdownNeverFiresAndEndsAtOnce) {
  bool fired = false;
  const absl::Time start = absl::Now();
  {
    ShutdownWatchdog watchdog(absl::Seconds(60), "draining_calls",
                              [&](absl::string_view) { fired = true; });
    watchdog.SetStep("closing_store");
  }
  EXPECT_FALSE(fired);
  // The destructor does not wait for the limit.
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST(ShutdownWatchdogDeathTest, ExitsWithCode75AndOneShutdownStuckLine) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        ShutdownWatchdog watchdog(absl::Milliseconds(100), "closing_store");
        absl::SleepFor(absl::Seconds(30));  // "stuck"
      },
      testing::ExitedWithCode(kShutdownStuckExitCode),
      "event=shutdown_stuck step=closing_store");
}

}  // namespace
}  // namespace ckpt::server
