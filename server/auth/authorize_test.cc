// Role and scope decisions, and the principal's pure data.

#include "server/auth/authorize.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

Principal Make(std::string name, Role role, absl::string_view scope) {
  return Principal{std::move(name), role, *JobScope::Parse(scope)};
}

TEST(RoleTest, NamesRoundTrip) {
  for (Role role :
       {Role::kReader, Role::kWriter, Role::kAdmin, Role::kOperator}) {
    EXPECT_EQ(ParseRole(RoleName(role)), role);
  }
  EXPECT_EQ(ParseRole("root"), std::nullopt);
  EXPECT_EQ(ParseRole(""), std::nullopt);
}

TEST(AuthorizeTest, EachRoleMayDoWhatTheOnesBelowMay) {
  const Role roles[] = {Role::kReader, Role::kWriter, Role::kAdmin,
                        Role::kOperator};
  for (Role have : roles) {
    for (Role need : roles) {
      const Principal who =
          Make("p", have, have == Role::kOperator ? "*" : "t/");
      EXPECT_EQ(AuthorizeRole(who, "Rpc", need).ok(), have >= need)
          << RoleName(have) << " for " << RoleName(need);
    }
  }
}

TEST(AuthorizeTest, ARoleRefusalNamesRpcPrincipalAndNeed) {
  const absl::Status status = AuthorizeRole(
      Make("job-7", Role::kWriter, "alice/"), "DeleteCheckpoint", Role::kAdmin);
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(status.message(),
            "DeleteCheckpoint: principal 'job-7' has role writer; this call "
            "needs role admin or above");
}

TEST(AuthorizeTest, WriterIsAppendOnly) {
  EXPECT_EQ(RoleToPin(true), Role::kWriter);
  EXPECT_EQ(RoleToPin(false), Role::kAdmin);
  EXPECT_EQ(RoleToTag(false), Role::kWriter);
  EXPECT_EQ(RoleToTag(true), Role::kAdmin);
  EXPECT_EQ(RoleToPrune(true), Role::kReader);
  EXPECT_EQ(RoleToPrune(false), Role::kAdmin);
  EXPECT_FALSE(MayDeleteHistory(Make("w", Role::kWriter, "t/")));
  EXPECT_TRUE(MayDeleteHistory(Make("a", Role::kAdmin, "t/")));
  EXPECT_TRUE(MayDeleteHistory(AnonymousPrincipal()));
}

TEST(AuthorizeTest, ScopeIsDecidedFromTheNameAlone) {
  const Principal bob = Make("bob", Role::kAdmin, "bob/");
  EXPECT_TRUE(AuthorizeJob(bob, "Rpc", Role::kReader, "bob/x").ok());
  const absl::Status a = AuthorizeJob(bob, "Rpc", Role::kReader, "alice/real");
  const absl::Status b = AuthorizeJob(bob, "Rpc", Role::kReader, "alice/fake");
  EXPECT_EQ(a.code(), absl::StatusCode::kPermissionDenied);
  // Never quotes the job: the same answer for any job outside the scope.
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.message(),
            "Rpc: the job is outside the scope of principal 'bob' (bob/)");
  EXPECT_THAT(a.message(), Not(HasSubstr("alice")));
  // A tenant whose name starts with bob's is another tenant.
  EXPECT_FALSE(AuthorizeJob(bob, "Rpc", Role::kReader, "bobby/x").ok());
  // The role is checked first.
  EXPECT_THAT(AuthorizeJob(Make("r", Role::kReader, "bob/"), "Rpc",
                           Role::kWriter, "bob/x")
                  .message(),
              HasSubstr("needs role writer"));
}

TEST(AuthorizeTest, AnonymousHasEveryRight) {
  EXPECT_TRUE(
      AuthorizeJob(AnonymousPrincipal(), "Rpc", Role::kOperator, "any/job")
          .ok());
}

}  // namespace
}  // namespace ckpt::server
