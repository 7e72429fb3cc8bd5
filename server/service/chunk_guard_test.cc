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
  EXPECT_FALSE(guard.IsProtected("b", Sha256("during"), kT0));
  guard.EndCollection();
  EXPECT_FALSE(guard.IsProtected("a", Sha256("during"), kT0));
}

}  // namespace
}  // namespace ckpt::server
