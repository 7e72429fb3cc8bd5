// The failpoints' arming (common/failpoint.h): CKPT_FAILPOINT values read
// right and refused when wrong, when @K and %N fire, the names' list, and
// (in a build with failpoints) a point that fires ends the process with
// SIGABRT after its line on stderr.
#include <signal.h>
#include <stdlib.h>

#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/failpoint.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt::failpoint {
namespace {

using ::testing::HasSubstr;

static_assert(IndexOf("chunk_put.before") == 0);
static_assert(IndexOf("lease_expiry.after") == kNames.size() - 1);

absl::StatusOr<std::optional<Arming>> Parse(
    std::optional<absl::string_view> spec,
    std::optional<absl::string_view> seed = std::nullopt) {
  return ParseArming(spec, seed);
}

// `spec` (with `seed`) parsed; a test failure when refused or unarmed.
std::optional<Arming> Armed(
    absl::string_view spec,
    std::optional<absl::string_view> seed = std::nullopt) {
  absl::StatusOr<std::optional<Arming>> arming = Parse(spec, seed);
  EXPECT_TRUE(arming.ok()) << spec << ": " << arming.status();
  if (!arming.ok()) return std::nullopt;
  EXPECT_TRUE(arming->has_value()) << spec;
  return *arming;
}

TEST(FailpointArmingTest, UnsetOrEmptyArmsNothing) {
  for (std::optional<absl::string_view> spec :
       {std::optional<absl::string_view>(),
        std::optional<absl::string_view>("")}) {
    absl::StatusOr<std::optional<Arming>> arming = Parse(spec);
    ASSERT_TRUE(arming.ok()) << arming.status();
    EXPECT_FALSE(arming->has_value());
  }
}

TEST(FailpointArmingTest, NameAloneFiresAtTheFirstHit) {
  const std::optional<Arming> arming = Armed("commit_batch.after");
  ASSERT_TRUE(arming.has_value());
  EXPECT_STREQ(kNames[arming->index], "commit_batch.after");
  EXPECT_EQ(arming->mode, Arming::Mode::kAtHit);
  EXPECT_EQ(arming->k, 1u);
  EXPECT_EQ(arming->seed, 1u);
  EXPECT_TRUE(Fires(*arming, 1));
  EXPECT_FALSE(Fires(*arming, 2));
}

TEST(FailpointArmingTest, AtKFiresAtTheKthHitOnly) {
  const std::optional<Arming> arming = Armed("gc_sweep.before@3");
  ASSERT_TRUE(arming.has_value());
  EXPECT_STREQ(kNames[arming->index], "gc_sweep.before");
  EXPECT_EQ(arming->mode, Arming::Mode::kAtHit);
  EXPECT_EQ(arming->k, 3u);
  std::vector<uint64_t> fired;
  for (uint64_t hit = 1; hit <= 10; ++hit) {
    if (Fires(*arming, hit)) fired.push_back(hit);
  }
  EXPECT_EQ(fired, std::vector<uint64_t>{3});
}

TEST(FailpointArmingTest, OneInNIsDeterministicPerSeedAndAboutOneInN) {
  const std::optional<Arming> arming = Armed("chunk_put.before%10", "42");
  ASSERT_TRUE(arming.has_value());
  EXPECT_EQ(arming->mode, Arming::Mode::kOneIn);
  EXPECT_EQ(arming->k, 10u);
  EXPECT_EQ(arming->seed, 42u);
  auto fired = [](const Arming& a) {
    std::vector<uint64_t> hits;
    for (uint64_t hit = 1; hit <= 100000; ++hit) {
      if (Fires(a, hit)) hits.push_back(hit);
    }
    return hits;
  };
  const std::vector<uint64_t> first = fired(*arming);
  EXPECT_EQ(first, fired(*arming)) << "the same seed must replay";
  EXPECT_GT(first.size(), 9000u);
  EXPECT_LT(first.size(), 11000u);
  Arming other = *arming;
  other.seed = 43;
  EXPECT_NE(first, fired(other)) << "another seed, other hits";
  // The default seed is 1.
  const std::optional<Arming> unseeded = Armed("chunk_put.before%10");
  ASSERT_TRUE(unseeded.has_value());
  EXPECT_EQ(unseeded->seed, 1u);
  // %1 fires at every hit.
  Arming always = *arming;
  always.k = 1;
  for (uint64_t hit = 1; hit <= 100; ++hit) EXPECT_TRUE(Fires(always, hit));
}

TEST(FailpointArmingTest, BadValuesAreRefusedSayingWhy) {
  struct Case {
    std::string spec;
    std::optional<std::string> seed;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"nope", std::nullopt, "no failpoint is named 'nope'"},
      {"commit_batch", std::nullopt, "no failpoint is named 'commit_batch'"},
      {"Commit_batch.after", std::nullopt, "no failpoint is named"},
      {" commit_batch.after", std::nullopt, "no failpoint is named"},
      {"@3", std::nullopt, "no failpoint is named ''"},
      {"commit_batch.after@0", std::nullopt, "K in NAME@K"},
      {"commit_batch.after@", std::nullopt, "K in NAME@K"},
      {"commit_batch.after@-1", std::nullopt, "K in NAME@K"},
      {"commit_batch.after@+1", std::nullopt, "K in NAME@K"},
      {"commit_batch.after@ 3", std::nullopt, "K in NAME@K"},
      {"commit_batch.after@3x", std::nullopt, "K in NAME@K"},
      {"commit_batch.after@3@4", std::nullopt, "K in NAME@K"},
      {"commit_batch.after@3%4", std::nullopt, "K in NAME@K"},
      {"commit_batch.after@99999999999999999999", std::nullopt, "K in NAME@K"},
      {"commit_batch.after%0", std::nullopt, "N in NAME%N"},
      {"commit_batch.after%", std::nullopt, "N in NAME%N"},
      {"commit_batch.after", std::string("abc"), "CKPT_FAILPOINT_SEED"},
      {"commit_batch.after", std::string("-1"), "CKPT_FAILPOINT_SEED"},
      {"commit_batch.after", std::string(""), "CKPT_FAILPOINT_SEED"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::optional<Arming>> arming = Parse(
        c.spec, c.seed.has_value() ? std::optional<absl::string_view>(*c.seed)
                                   : std::nullopt);
    ASSERT_FALSE(arming.ok()) << "'" << c.spec << "' was accepted";
    EXPECT_EQ(arming.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(arming.status().message()), HasSubstr(c.says))
        << c.spec;
  }
  // An unknown name's refusal lists the known ones.
  absl::StatusOr<std::optional<Arming>> typo = Parse("commit_bacth.after");
  ASSERT_FALSE(typo.ok());
  for (const char* name : kNames) {
    EXPECT_THAT(std::string(typo.status().message()), HasSubstr(name));
  }
}

TEST(FailpointArmingTest, NamesAreUniqueBeforeAndAfterPairs) {
  std::set<absl::string_view> seen;
  for (size_t i = 0; i < kNames.size(); i += 2) {
    const absl::string_view before = kNames[i];
    const absl::string_view after = kNames[i + 1];
    ASSERT_TRUE(absl::EndsWith(before, ".before")) << before;
    ASSERT_TRUE(absl::EndsWith(after, ".after")) << after;
    EXPECT_EQ(before.substr(0, before.size() - 7),
              after.substr(0, after.size() - 6));
    EXPECT_TRUE(seen.insert(before).second) << before;
    EXPECT_TRUE(seen.insert(after).second) << after;
    for (char c : before) {
      EXPECT_TRUE((c >= 'a' && c <= 'z') || c == '_' || c == '.') << before;
    }
  }
}

// The environment is read once per process: each case runs in a fresh
// process (a death test re-executing this binary) with its variables set.
class FailpointFiringTest : public ::testing::Test {
 protected:
  void SetUp() override {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    if (!kEnabled) GTEST_SKIP() << "this build has no failpoints";
  }
  void TearDown() override {
    ::unsetenv("CKPT_FAILPOINT");
    ::unsetenv("CKPT_FAILPOINT_SEED");
  }
};

TEST_F(FailpointFiringTest, TheArmedPointAbortsAtItsHitSayingSo) {
  ::setenv("CKPT_FAILPOINT", "gc_mark.after@3", 1);
  EXPECT_EXIT(
      {
        CKPT_FAILPOINT("gc_mark.before");  // another point: not counted
        CKPT_FAILPOINT("gc_mark.after");
        CKPT_FAILPOINT("gc_mark.after");
        CKPT_FAILPOINT("gc_mark.before");
        CKPT_FAILPOINT("gc_mark.after");
        ::_exit(0);  // not reached
      },
      ::testing::KilledBySignal(SIGABRT),
      "ckpt failpoint fired: gc_mark.after \\(hit 3\\)");
}

// Hits from many threads are each counted once: the 1000th fires (and
// none before), and 999 hits fire nothing.
TEST_F(FailpointFiringTest, ConcurrentHitsAreCountedOnce) {
  ::setenv("CKPT_FAILPOINT", "gc_sweep.after@1000", 1);
  auto hit_from_threads = [](int threads, int each) {
    std::vector<std::thread> running;
    for (int t = 0; t < threads; ++t) {
      running.emplace_back([each] {
        for (int i = 0; i < each; ++i) CKPT_FAILPOINT("gc_sweep.after");
      });
    }
    for (std::thread& thread : running) thread.join();
  };
  EXPECT_EXIT(
      {
        hit_from_threads(4, 500);
        ::_exit(0);
      },
      ::testing::KilledBySignal(SIGABRT),
      "ckpt failpoint fired: gc_sweep.after \\(hit 1000\\)");
  EXPECT_EXIT(
      {
        hit_from_threads(9, 111);
        ::_exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST_F(FailpointFiringTest, ABadValueAbortsAtTheFirstPointSayingWhy) {
  ::setenv("CKPT_FAILPOINT", "gc_mark.aftr", 1);
  EXPECT_EXIT(
      {
        CKPT_FAILPOINT("chunk_put.before");
        ::_exit(0);
      },
      ::testing::KilledBySignal(SIGABRT),
      "no failpoint is named 'gc_mark.aftr'");
}

TEST_F(FailpointFiringTest, UnarmedPointsDoNothing) {
  EXPECT_EXIT(
      {
        for (int i = 0; i < 100; ++i) {
          CKPT_FAILPOINT("chunk_put.before");
          CKPT_FAILPOINT("commit_batch.after");
        }
        ::_exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace ckpt::failpoint
