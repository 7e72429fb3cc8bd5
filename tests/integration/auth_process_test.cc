// Authentication against the real ckpt-server binary: the token file
// reloaded on SIGHUP (a revoked token is refused, a bad file or a directory
// keeps the tokens loaded before and the log says why), tokens never in the
// log, and the startup rules without a token file (loopback only unless
// explicitly allowed).

#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ckpt/v1/ckpt.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/raw_calls.h"
#include "tests/testing/real_server_test.h"
#include "tests/testing/server_process.h"
#include "tests/testing/temp_dir.h"

namespace ckpt::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Stub = v1::CheckpointService::Stub;

constexpr char kJob[] = "alice/model";

std::unique_ptr<Stub> Connect(const std::string& address) {
  return v1::CheckpointService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
}

grpc::StatusCode ListJobsCode(Stub* stub, const std::string& token) {
  return RawCaller(stub, token)
      .Call(&Stub::ListJobs, v1::ListJobsRequest())
      .error_code();
}

// Polls `done` every 20 ms for up to 10 s: a signal's effect cannot be
// awaited otherwise from outside the process.
template <typename Done>
bool Eventually(Done done) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return done();
}

class AuthProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::Create("ckpt-auth-it");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *std::move(dir);
  }
  std::string Path(absl::string_view name) const {
    return absl::StrCat(dir_->path(), "/", name);
  }
  std::unique_ptr<TempDir> dir_;
};

TEST_F(AuthProcessTest, SighupRevokesATokenAndABadFileKeepsTheOldOnes) {
  const std::string tokens = Path("tokens");
  const TestToken writer{"tok-writer-3f9a", "trainer", "writer", "alice/"};
  const TestToken reader{"tok-reader-77c1", "viewer", "reader", "alice/"};
  const TestToken admin{"tok-admin-b2e4", "alice-admin", "admin", "alice/"};
  WriteTokenFile(tokens, {writer, reader});
  auto server = ServerProcess::Start(Path("db"), {"--auth-tokens", tokens},
                                     Path("server.log"));
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = Connect((*server)->address());
  ASSERT_TRUE(RawCaller(stub.get(), writer.token).Save(kJob, 1, "one").ok());
  EXPECT_EQ(ListJobsCode(stub.get(), admin.token),
            grpc::StatusCode::UNAUTHENTICATED);

  // Revoke the writer, add an admin.
  WriteTokenFile(tokens, {reader, admin});
  ASSERT_EQ(::kill((*server)->pid(), SIGHUP), 0);
  ASSERT_TRUE(Eventually([&] {
    return ListJobsCode(stub.get(), writer.token) ==
           grpc::StatusCode::UNAUTHENTICATED;
  }));
  v1::ListEventsRequest events_request;
  events_request.set_job(kJob);
  v1::ListEventsResponse before;
  ASSERT_TRUE(RawCaller(stub.get(), admin.token)
                  .Call(&Stub::ListEvents, events_request, &before)
                  .ok());
  const grpc::Status revoked =
      RawCaller(stub.get(), writer.token).Save(kJob, 2, "two");
  EXPECT_EQ(revoked.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(revoked.error_message(),
            "BeginCheckpoint: missing or invalid credentials: send the "
            "metadata 'authorization: Bearer <token>' with a token this "
            "server's token file lists");
  v1::ListEventsResponse after;
  ASSERT_TRUE(RawCaller(stub.get(), admin.token)
                  .Call(&Stub::ListEvents, events_request, &after)
                  .ok());
  EXPECT_EQ(after.ShortDebugString(), before.ShortDebugString());
  EXPECT_EQ(ListJobsCode(stub.get(), reader.token), grpc::StatusCode::OK);

  // A bad file: the server logs why and keeps the tokens it had.
  std::ofstream(tokens, std::ios::trunc)
      << TokenFileText({reader}) << "tok-admin-b2e4 alice-admin admin alice/\n";
  ASSERT_EQ(::kill((*server)->pid(), SIGHUP), 0);
  ASSERT_TRUE(Eventually([&] {
    return ReadWholeFile(Path("server.log")).find("keeping the") !=
           std::string::npos;
  }));
  EXPECT_EQ(ListJobsCode(stub.get(), admin.token), grpc::StatusCode::OK);
  EXPECT_EQ(ListJobsCode(stub.get(), reader.token), grpc::StatusCode::OK);
  EXPECT_EQ(ListJobsCode(stub.get(), writer.token),
            grpc::StatusCode::UNAUTHENTICATED);

  absl::StatusOr<int> code = (*server)->Stop();
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
  const std::string log = ReadWholeFile(Path("server.log"));
  EXPECT_THAT(log, HasSubstr("reloaded the token file: 2 token(s)"));
  EXPECT_THAT(log, HasSubstr("keeping the 2 token(s) loaded before"));
  EXPECT_THAT(log, HasSubstr("line 3: the first field must be the SHA-256"));
  // The events and logs name principals; no token ever reaches the log.
  EXPECT_THAT(log, HasSubstr("principal=trainer"));
  for (const TestToken& t : {writer, reader, admin}) {
    EXPECT_THAT(log, Not(HasSubstr(t.token))) << t.principal;
  }
}

// Runs ckpt-server with `args` until it exits (it must refuse to start):
// its exit code and what it printed.
std::pair<int, std::string> RunToExit(const std::string& args) {
  const std::string command =
      absl::StrCat(BuiltBinary("server/rpc/ckpt-server"), " ", args, " 2>&1");
  FILE* pipe = ::popen(command.c_str(), "r");
  std::string out;
  char buf[512];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// A token file path that became a directory (a careless `mkdir`, a config
// tool's mistake) used to abort the server on SIGHUP: libstdc++'s ifstream
// throws reading a directory. Now the reload fails like any bad file.
TEST_F(AuthProcessTest, SighupWithADirectoryForTheTokenFileKeepsServing) {
  const std::string tokens = Path("tokens");
  const TestToken reader{"tok-reader-5b0d", "viewer", "reader", "alice/"};
  WriteTokenFile(tokens, {reader});
  auto server = ServerProcess::Start(Path("db"), {"--auth-tokens", tokens},
                                     Path("server.log"));
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = Connect((*server)->address());
  ASSERT_EQ(ListJobsCode(stub.get(), reader.token), grpc::StatusCode::OK);

  ASSERT_TRUE(std::filesystem::remove(tokens));
  ASSERT_TRUE(std::filesystem::create_directory(tokens));
  ASSERT_EQ(::kill((*server)->pid(), SIGHUP), 0);
  ASSERT_TRUE(Eventually([&] {
    return ReadWholeFile(Path("server.log")).find("keeping the") !=
           std::string::npos;
  })) << ReadWholeFile(Path("server.log"));
  EXPECT_EQ(ListJobsCode(stub.get(), reader.token), grpc::StatusCode::OK);
  absl::StatusOr<int> code = (*server)->Stop();
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
  EXPECT_THAT(ReadWholeFile(Path("server.log")), HasSubstr("is a directory"));

  // At startup it is an error that says so, not an abort.
  auto [exit_code, out] = RunToExit(
      absl::StrCat("--data-dir ", Path("db"), " --auth-tokens ", tokens));
  EXPECT_EQ(exit_code, 1) << out;
  EXPECT_THAT(out, HasSubstr("is a directory"));
}

TEST_F(AuthProcessTest, WithoutTokensItServesLoopbackOnlyUnlessToldOtherwise) {
  const std::string db = absl::StrCat("--data-dir ", Path("db"));
  auto [code, out] = RunToExit(absl::StrCat(db, " --listen 0.0.0.0:0"));
  EXPECT_EQ(code, 1) << out;
  EXPECT_THAT(out, HasSubstr("--listen 0.0.0.0:0 may be reachable from other "
                             "hosts"));
  EXPECT_THAT(out, HasSubstr("--auth-tokens FILE"));
  EXPECT_THAT(out, HasSubstr("--insecure-allow-unauthenticated"));

  WriteTokenFile(Path("tokens"), {{"t", "p", "reader", "a/"}});
  std::tie(code, out) = RunToExit(
      absl::StrCat(db, " --listen 0.0.0.0:0 --auth-tokens ", Path("tokens"),
                   " --insecure-allow-unauthenticated"));
  EXPECT_EQ(code, 1) << out;
  EXPECT_THAT(out, HasSubstr("contradicts --auth-tokens"));

  std::ofstream(Path("bad"), std::ios::trunc)
      << "# tokens\nsecret-token-1234 p reader a/\n";
  std::tie(code, out) =
      RunToExit(absl::StrCat(db, " --auth-tokens ", Path("bad")));
  EXPECT_EQ(code, 1) << out;
  EXPECT_THAT(out, HasSubstr("line 2: the first field must be the SHA-256"));
  EXPECT_THAT(out, Not(HasSubstr("secret-token-1234")));

  std::tie(code, out) = RunToExit("--help");
  EXPECT_EQ(code, 0);
  EXPECT_THAT(out, HasSubstr("--auth-tokens"));
  EXPECT_THAT(out, HasSubstr("--insecure-allow-unauthenticated"));

  // On loopback it starts and says so; explicitly allowed, so on any address.
  auto local = ServerProcess::Start(Path("db"), {}, Path("local.log"));
  ASSERT_TRUE(local.ok()) << local.status();
  auto stub = Connect((*local)->address());
  EXPECT_EQ(ListJobsCode(stub.get(), ""), grpc::StatusCode::OK);
  ASSERT_TRUE((*local)->Stop().ok());
  EXPECT_THAT(ReadWholeFile(Path("local.log")),
              HasSubstr("no --auth-tokens: serving only clients on this host"));
  auto open = ServerProcess::Start(
      Path("db"), {"--listen", "0.0.0.0:0", "--insecure-allow-unauthenticated"},
      Path("open.log"));
  ASSERT_TRUE(open.ok()) << open.status();
  stub = Connect((*open)->address());
  EXPECT_EQ(ListJobsCode(stub.get(), ""), grpc::StatusCode::OK);
  ASSERT_TRUE((*open)->Stop().ok());
  EXPECT_THAT(ReadWholeFile(Path("open.log")),
              HasSubstr("may read, change and delete every checkpoint"));
}

}  // namespace
}  // namespace ckpt::testing
