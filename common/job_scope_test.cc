// JobScope: which scopes parse, and what each covers.

#include "common/job_scope.h"

#include "gtest/gtest.h"

namespace ckpt {
namespace {

TEST(JobScopeTest, AllCoversEveryJob) {
  auto all = JobScope::Parse("*");
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, JobScope::All());
  EXPECT_TRUE(all->IsAll());
  EXPECT_TRUE(all->Covers("any/job"));
  EXPECT_TRUE(all->CoversTenant("any"));
  EXPECT_EQ(all->tenant(), "");
  EXPECT_EQ(all->ToString(), "*");
}

TEST(JobScopeTest, ATenantScopeCoversThatTenantOnly) {
  auto bob = JobScope::Parse("bob/");
  ASSERT_TRUE(bob.ok()) << bob.status();
  EXPECT_TRUE(bob->Covers("bob/x"));
  EXPECT_TRUE(bob->Covers("bob/x/y"));
  EXPECT_FALSE(bob->Covers("bobby/x"));
  EXPECT_FALSE(bob->Covers("alice/x"));
  EXPECT_FALSE(bob->Covers("bob"));
  EXPECT_TRUE(bob->CoversTenant("bob"));
  EXPECT_FALSE(bob->CoversTenant("bo"));
  EXPECT_EQ(bob->tenant(), "bob");
}

TEST(JobScopeTest, APrefixScopeIsAPlainPrefix) {
  auto exp = JobScope::Parse("alice/exp1");
  ASSERT_TRUE(exp.ok()) << exp.status();
  EXPECT_TRUE(exp->Covers("alice/exp1"));
  EXPECT_TRUE(exp->Covers("alice/exp10"));
  EXPECT_TRUE(exp->Covers("alice/exp1/run"));
  EXPECT_FALSE(exp->Covers("alice/exp2"));
  EXPECT_FALSE(exp->CoversTenant("alice"));
  EXPECT_EQ(exp->tenant(), "alice");
  auto dir = JobScope::Parse("alice/exp1/");
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_FALSE(dir->Covers("alice/exp10"));
  EXPECT_TRUE(dir->Covers("alice/exp1/run"));
}

TEST(JobScopeTest, RefusesWhatIsNoJobNamePrefix) {
  for (const char* bad : {"", "**", "alice", "/x", "alice//", "alice/a//b",
                          "alice/a b", "alice/$", "a*", "*/"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(JobScope::Parse(bad).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace ckpt
