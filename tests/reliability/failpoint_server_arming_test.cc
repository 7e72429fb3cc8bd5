// The failpoints' arming as a real ckpt-server takes it (T2,
// tests/reliability/README.md): `--list-failpoints` names every point,
// NAME@K and NAME%N fire at the hit they say, and a bad value refuses to
// start. The parser itself is failpoint_arming_test's; the crashes and
// what they leave are failpoint_crash_test's.
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "common/failpoint.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/reliability/failpoint_store_checks.h"
#include "tests/testing/real_server_test.h"
#include "tests/testing/server_process.h"
#include "tests/testing/temp_dir.h"

namespace ckpt::testing {
namespace {

using ::testing::HasSubstr;

// `ckpt-server --list-failpoints` prints kNames one a line.
TEST(FailpointServerArmingTest, ServerListsItsPoints) {
  auto dir = TempDir::Create("ckpt-failpoint-list");
  ASSERT_TRUE(dir.ok());
  const std::string out = (*dir)->path() + "/list.out";
  const int status =
      std::system(absl::StrCat(BuiltBinary("server/rpc/ckpt-server"),
                               " --list-failpoints >", out, " 2>&1")
                      .c_str());
  ASSERT_TRUE(WIFEXITED(status));
  if (!failpoint::kEnabled) {
    EXPECT_NE(WEXITSTATUS(status), 0);
    EXPECT_THAT(ReadWholeFile(out), HasSubstr("no failpoints"));
    return;
  }
  EXPECT_EQ(WEXITSTATUS(status), 0);
  std::string expected;
  for (const char* name : failpoint::kNames) {
    absl::StrAppend(&expected, name, "\n");
  }
  EXPECT_EQ(ReadWholeFile(out), expected);
}

// NAME@K and NAME%N in a real server: a save of ten new chunks hits
// chunk_put.after ten times; @3 fires at the third, and %4 at the hit
// failpoint::Fires names for the seed (so a seed replays).
TEST(FailpointServerArmingTest, CountedAndSeededArmingFireWhereTheySay) {
  if (!failpoint::kEnabled) GTEST_SKIP() << "this build has no failpoints";
  const rlimit none{0, 0};
  ::setrlimit(RLIMIT_CORE, &none);
  // A seed whose first firing hit of 1-in-4 is past the first and within
  // the ten.
  failpoint::Arming seeded;
  seeded.index = failpoint::IndexOf("chunk_put.after");
  seeded.mode = failpoint::Arming::Mode::kOneIn;
  seeded.k = 4;
  uint64_t expected_hit = 0;
  for (seeded.seed = 1; expected_hit == 0; ++seeded.seed) {
    uint64_t first = 1;
    while (!failpoint::Fires(seeded, first)) ++first;
    if (first >= 2 && first <= 10) expected_hit = first;
  }
  --seeded.seed;  // the loop stepped past it
  struct Run {
    std::vector<std::string> env;
    uint64_t hit;
  };
  const std::vector<Run> runs = {
      {{"CKPT_FAILPOINT=chunk_put.after@3"}, 3},
      {{"CKPT_FAILPOINT=chunk_put.after%4",
        absl::StrCat("CKPT_FAILPOINT_SEED=", seeded.seed)},
       expected_hit},
  };
  for (const Run& run : runs) {
    SCOPED_TRACE(run.env.back());
    auto dir = TempDir::Create("ckpt-failpoint-seeded");
    ASSERT_TRUE(dir.ok());
    const std::string log = (*dir)->path() + "/armed.log";
    auto server = ServerProcess::Start((*dir)->path() + "/db",
                                       {"--gc-interval", "0"}, log, run.env);
    ASSERT_TRUE(server.ok()) << server.status();
    {
      auto client = client::Client::Connect(
          (*server)->address(), {.connect_timeout = absl::Seconds(10)});
      ASSERT_TRUE(client.ok()) << client.status();
      EXPECT_FALSE(SaveStep(**client, 40).ok());
    }
    absl::StatusOr<int> exit = (*server)->WaitForExit(absl::Seconds(20));
    ASSERT_TRUE(exit.ok()) << exit.status();
    EXPECT_EQ(*exit, 128 + SIGABRT);
    EXPECT_THAT(ReadWholeFile(log),
                HasSubstr(absl::StrCat("ckpt failpoint fired: chunk_put.after "
                                       "(hit ",
                                       run.hit, ")")));
  }
}

// A typo or a bad count: the server refuses to start, saying why.
TEST(FailpointServerArmingTest, ServerRefusesABadArming) {
  auto dir = TempDir::Create("ckpt-failpoint-bad");
  ASSERT_TRUE(dir.ok());
  for (const std::string spec :
       {"commit_batch.aftr", "commit_batch.after@0", "gc_mark.before%x"}) {
    const std::string log = (*dir)->path() + "/server.log";
    auto server = ServerProcess::Start((*dir)->path() + "/db", {}, log,
                                       {absl::StrCat("CKPT_FAILPOINT=", spec)});
    ASSERT_FALSE(server.ok()) << spec << " was accepted";
    EXPECT_THAT(ReadWholeFile(log),
                HasSubstr(failpoint::kEnabled ? "CKPT_FAILPOINT=" + spec
                                              : "this build has no failpoints"))
        << spec;
  }
}

}  // namespace
}  // namespace ckpt::testing
