// ThreadGroup: a thread that cannot be created is a RESOURCE_EXHAUSTED
// status (not std::terminate), and every thread started is joined when the
// group ends, also when the scope unwinds.
#include "common/thread_group.h"

#include <atomic>
#include <stdexcept>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt {
namespace {

using ::testing::HasSubstr;

TEST(ThreadGroupTest, ARefusedThreadIsResourceExhaustedAndTheOthersRun) {
  std::atomic<int> ran{0};
  {
    ScopedSpawnLimitForTesting limit(2);
    ThreadGroup group;
    EXPECT_TRUE(group.Spawn([&ran] { ran.fetch_add(1); }).ok());
    EXPECT_TRUE(group.Spawn([&ran] { ran.fetch_add(1); }).ok());
    const absl::Status refused = group.Spawn([&ran] { ran.fetch_add(100); });
    EXPECT_TRUE(absl::IsResourceExhausted(refused)) << refused;
    EXPECT_THAT(refused.message(),
                HasSubstr("cannot start a thread (2 started for this call)"));
    EXPECT_EQ(group.size(), 2u);
  }
  EXPECT_EQ(ran.load(), 2) << "the group ended before joining its threads";
}

TEST(ThreadGroupTest, TheLimitEndsWithItsScope) {
  { ScopedSpawnLimitForTesting limit(0); }
  ThreadGroup group;
  EXPECT_TRUE(group.Spawn([] {}).ok());
}

TEST(ThreadGroupTest, UnwindingJoinsTheThreads) {
  std::atomic<bool> finished{false};
  absl::Notification started;
  EXPECT_THROW(
      {
        ThreadGroup group;
        ASSERT_TRUE(group
                        .Spawn([&] {
                          started.Notify();
                          absl::SleepFor(absl::Milliseconds(50));
                          finished = true;
                        })
                        .ok());
        started.WaitForNotification();
        throw std::runtime_error("the caller failed");
      },
      std::runtime_error);
  EXPECT_TRUE(finished.load());
}

TEST(ThreadGroupTest, JoinAllJoinsOnce) {
  std::atomic<int> ran{0};
  ThreadGroup group;
  ASSERT_TRUE(group.Spawn([&ran] { ran.fetch_add(1); }).ok());
  group.JoinAll();
  EXPECT_EQ(ran.load(), 1);
  EXPECT_EQ(group.size(), 0u);
  group.JoinAll();  // nothing left to join
}

}  // namespace
}  // namespace ckpt
