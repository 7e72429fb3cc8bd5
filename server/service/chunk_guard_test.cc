#include "server/service/chunk_guard.h"

#include "common/sha256.h"
#include "gtest/gtest.h"

namespace ckpt::server {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

TEST(ChunkGuardTest, AnnouncedChunksAreHeldForTheHoldPerTenant) {
  ChunkGuard guard(absl::Minutes(5));
  guard.Announce("a", {Sha256("x")}, kT0);
  EXPECT_TRUE(guard.IsProtected("a", Sha256("x"), kT0 + absl::Minutes(4)));
  EXPECT_FALSE(guard.IsProtected("b", Sha256("x"), kT0));
  EXPECT_FALSE(guard.IsProtected("a", Sha256("y"), kT0));
  EXPECT_FALSE(guard.IsProtected("a", Sha256("x"), kT0 + absl::Minutes(5)));
  // A later announcement extends the hold; an earlier one never shortens it.
  guard.Announce("a", {Sha256("x")}, kT0 + absl::Minutes(4));
  guard.Announce("a", {Sha256("x")}, kT0);
  EXPECT_TRUE(guard.IsProtected("a", Sha256("x"), kT0 + absl::Minutes(8)));
}

TEST(ChunkGuardTest, ACollectionMayShortenTheHoldButNotLengthenIt) {
  ChunkGuard guard(absl::Minutes(5));
  guard.Announce("a", {Sha256("x")}, kT0);
  const absl::Time later = kT0 + absl::Minutes(2);
  auto held = guard.Protects("a", Sha256("x"), later, absl::Minutes(3));
  ASSERT_TRUE(held.has_value());
  EXPECT_EQ(held->kind, ChunkGuard::Protection::Kind::kAnnounced);
  EXPECT_EQ(held->until, kT0 + absl::Minutes(3));
  EXPECT_FALSE(guard.Protects("a", Sha256("x"), later, absl::Minutes(2)));
  EXPECT_FALSE(guard.Protects("a", Sha256("x"), kT0, absl::ZeroDuration()));
  // Past the guard's own hold: capped at it.
  held = guard.Protects("a", Sha256("x"), later, absl::Hours(1));
  ASSERT_TRUE(held.has_value());
  EXPECT_EQ(held->until, kT0 + absl::Minutes(5));
  EXPECT_FALSE(guard.Protects("a", Sha256("x"), kT0 + absl::Minutes(5),
                              absl::InfiniteDuration()));
}

TEST(ChunkGuardTest, ExpireHoldsForgetsEndedOnes) {
  ChunkGuard guard(absl::Minutes(5));
  guard.Announce("a", {Sha256("x"), Sha256("y")}, kT0);
  guard.Announce("b", {Sha256("z")}, kT0 + absl::Minutes(3));
  EXPECT_EQ(guard.held_count(), 3u);
  guard.ExpireHolds(kT0 + absl::Minutes(6));
  EXPECT_EQ(guard.held_count(), 1u);
  EXPECT_TRUE(guard.IsProtected("b", Sha256("z"), kT0 + absl::Minutes(6)));
}

TEST(ChunkGuardTest, CommitsAreRecordedOnlyDuringACollection) {
  ChunkGuard guard(absl::ZeroDuration());
  guard.Committed("a", {Sha256("before")});
  guard.BeginCollection();
  guard.Committed("a", {Sha256("during")});
  EXPECT_FALSE(guard.IsProtected("a", Sha256("before"), kT0));
  EXPECT_TRUE(guard.IsProtected("a", Sha256("during"), kT0));
  // Whatever the hold: the mark did not see its shard.
  auto held = guard.Protects("a", Sha256("during"), kT0, absl::ZeroDuration());
  ASSERT_TRUE(held.has_value());
  EXPECT_EQ(held->kind,
            ChunkGuard::Protection::Kind::kCommittedDuringCollection);
  EXPECT_FALSE(guard.IsProtected("b", Sha256("during"), kT0));
  guard.EndCollection();
  EXPECT_FALSE(guard.IsProtected("a", Sha256("during"), kT0));
}

}  // namespace
}  // namespace ckpt::server
