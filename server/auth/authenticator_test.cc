// Authentication without gRPC: the one answer for every bad credential,
// the loopback-only default, and reloading the token file.

#include "server/auth/authenticator.h"

#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace ckpt::server {
namespace {

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

std::string Line(absl::string_view token, absl::string_view rest) {
  return absl::StrCat(Sha256(token).ToHex(), " ", rest, "\n");
}

CallCredentials Bearer(absl::string_view value) {
  CallCredentials credentials;
  credentials.authorization.push_back(value);
  return credentials;
}

class AuthenticatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = testing::TempDir::Create("ckpt-auth");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *std::move(dir);
    path_ = dir_->path() + "/tokens";
  }
  std::unique_ptr<testing::TempDir> dir_;
  std::string path_;
};

TEST_F(AuthenticatorTest, WithoutTokensOnlyLocalCallersAreServed) {
  auto open = Authenticator::WithoutTokens(/*allow_remote=*/false);
  EXPECT_FALSE(open->requires_tokens());
  CallCredentials local;
  local.local_peer = true;
  auto who = open->Authenticate(local);
  ASSERT_TRUE(who.ok()) << who.status();
  EXPECT_EQ(*who, AnonymousPrincipal());
  auto remote = open->Authenticate(CallCredentials{});
  EXPECT_EQ(remote.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(Authenticator::WithoutTokens(/*allow_remote=*/true)
                  ->Authenticate(CallCredentials{})
                  .ok());
  EXPECT_TRUE(open->Reload().ok());
}

TEST_F(AuthenticatorTest, EveryBadCredentialGetsTheSameAnswer) {
  WriteFile(path_, Line("good-token", "alice writer alice/"));
  auto auth = Authenticator::FromTokenFile(path_);
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_TRUE((*auth)->requires_tokens());

  auto good = (*auth)->Authenticate(Bearer("Bearer good-token"));
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ(good->name, "alice");
  EXPECT_TRUE((*auth)->Authenticate(Bearer("bearer good-token")).ok());

  CallCredentials none;
  none.local_peer = true;  // loopback does not excuse a missing token
  CallCredentials twice = Bearer("Bearer good-token");
  twice.authorization.push_back("Bearer good-token");
  const CallCredentials bad[] = {
      none,
      twice,
      Bearer("Bearer wrong-token"),
      Bearer("good-token"),
      Bearer("Basic good-token"),
      Bearer("Bearer"),
      Bearer("Bearer "),
      Bearer("Bearer  good-token"),
      Bearer("Bearer good-token "),
      Bearer(Sha256("good-token").ToHex()),
      Bearer(absl::StrCat("Bearer ", Sha256("good-token").ToHex())),
  };
  for (const CallCredentials& credentials : bad) {
    auto who = (*auth)->Authenticate(credentials);
    ASSERT_FALSE(who.ok());
    EXPECT_EQ(who.status(), absl::UnauthenticatedError(kInvalidCredentials));
  }
}

TEST_F(AuthenticatorTest, ReloadReplacesTokensAndABadFileKeepsThem) {
  WriteFile(path_, Line("old", "a writer t/") + Line("kept", "b reader t/"));
  auto auth = Authenticator::FromTokenFile(path_);
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_EQ((*auth)->token_count(), 2u);

  WriteFile(path_, Line("kept", "b reader t/") + Line("new", "c admin t/"));
  ASSERT_TRUE((*auth)->Reload().ok());
  EXPECT_FALSE((*auth)->Authenticate(Bearer("Bearer old")).ok());
  EXPECT_TRUE((*auth)->Authenticate(Bearer("Bearer kept")).ok());
  EXPECT_EQ((*auth)->Authenticate(Bearer("Bearer new"))->role, Role::kAdmin);

  WriteFile(path_, Line("kept", "b reader t/") + "not a valid line\n");
  const absl::Status bad = (*auth)->Reload();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("line 2"), absl::string_view::npos) << bad;
  EXPECT_TRUE((*auth)->Authenticate(Bearer("Bearer new")).ok());

  std::remove(path_.c_str());
  EXPECT_FALSE((*auth)->Reload().ok());
  EXPECT_TRUE((*auth)->Authenticate(Bearer("Bearer new")).ok());
}

TEST_F(AuthenticatorTest, ABadFileAtStartIsAnError) {
  WriteFile(path_, "oops\n");
  EXPECT_EQ(Authenticator::FromTokenFile(path_).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Authenticator::FromTokenFile(path_ + ".absent").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace ckpt::server
