// `ckpt copy` between two real ckpt-server processes: killed halfway
// (--limit-rate makes "halfway" certain) it never leaves a checkpoint
// listed half-copied, a rerun sends only what is missing and a third run
// nothing; a dry run changes nothing; careless use is refused with a clear
// message; a target token that may not set policies still copies, and says
// how to finish.
#include <signal.h>
#include <sys/wait.h>

#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/copy_fixture.h"
#include "tests/testing/stalling_proxy.h"
#include "tests/testing/test_pki.h"

namespace ckpt::testing {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

class CopyCliTest : public TwoServersTest {
 protected:
  std::string CopyArgs(const std::string& job = kJob) const {
    return absl::StrCat("copy ", job, " --from ", from(), " --to ", to());
  }

  // The report of a `copy --json` that succeeded.
  static json Report(const CommandResult& result) {
    EXPECT_EQ(result.exit_code, 0) << result.err;
    json report = json::parse(result.out, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(report.is_discarded()) << result.out;
    return report;
  }

  static std::vector<std::string> Outcomes(const json& report) {
    std::vector<std::string> outcomes;
    for (const json& entry : report["checkpoints"]) {
      outcomes.push_back(entry["outcome"].get<std::string>());
    }
    return outcomes;
  }

  uint64_t StoredBytes(client::Client& client, const std::string& job) {
    auto stats = client.GetStats(job);
    EXPECT_TRUE(stats.ok()) << stats.status();
    return stats.ok() ? stats->stored_bytes : 0;
  }
};

// A job of three checkpoints (1, 6 and 1 MiB of distinct bytes) copied at
// 2 MiB/s. The upload stream packs these 64 KiB chunks into 4 MiB messages,
// so the target stores step 1 at about 0.5 s and the first 4 MiB of step 2
// at about 2.5 s, then nothing until step 2's last 2 MiB a second later:
// the CLI is killed in that second, with step 2 pending on the target.
TEST_F(CopyCliTest, KilledHalfwayItResumesSendingOnlyWhatIsMissing) {
  StartServers();
  constexpr char kBig[] = "team/big";
  std::map<int64_t, uint64_t> logical;  // step -> its bytes on the source
  for (const auto& [step, mib] : {std::pair{1, 1}, {2, 6}, {3, 1}}) {
    const std::string bytes = PatternBytes(mib << 20, 500 + step);
    client::SaveOptions options;
    options.chunk_bytes = 64 << 10;
    auto saved =
        source_->SaveShard(kBig, step, {Uint8Tensor("w", bytes)}, options);
    ASSERT_TRUE(saved.ok()) << saved.status();
    logical[step] = saved->logical_bytes;
  }
  const uint64_t total = StoredBytes(*source_, kBig);
  ASSERT_EQ(total, 8u << 20);

  const pid_t cli = StartCkpt(
      absl::StrCat(CopyArgs(kBig), " --limit-rate 2M --json"), "killed");
  ASSERT_GT(cli, 0);
  // While it runs, every checkpoint the target lists (the library's
  // listing, and now and then the CLI's `ls`) is whole.
  uint64_t stored = 0;
  int polls = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (absl::Now() < deadline) {
    auto listed = target_->ListCheckpoints(kBig);
    if (listed.ok()) {
      for (const CheckpointRecord& record : *listed) {
        EXPECT_EQ(record.state, CheckpointState::kCommitted);
        EXPECT_EQ(record.committed_ranks.size(), 1u);
        EXPECT_EQ(record.logical_bytes, logical[record.step]) << record.step;
      }
    }
    if (++polls % 10 == 0) {
      CommandResult ls =
          Ckpt(absl::StrCat("--server ", to(), " ls ", kBig, " --json"));
      if (ls.exit_code == 0) {
        for (const json& entry : json::parse(ls.out)) {
          EXPECT_EQ(entry["state"], "committed");
          EXPECT_EQ(entry["logical_bytes"].get<uint64_t>(),
                    logical[entry["step"].get<int64_t>()]);
        }
      }
    }
    stored = listed.ok() ? StoredBytes(*target_, kBig) : 0;
    if (stored >= 5u << 20) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_EQ(kill(cli, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(cli, &status, 0), cli);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the copy ended before it was killed; "
                                      "stored "
                                   << stored << " of " << total;
  stored = StoredBytes(*target_, kBig);
  EXPECT_EQ(stored, 5u << 20);
  // What it left: step 1 committed, step 2 pending (and not listed).
  auto left = target_->ListCheckpoints(kBig, /*include_uncommitted=*/true);
  ASSERT_TRUE(left.ok()) << left.status();
  ASSERT_EQ(left->size(), 2u);
  EXPECT_EQ((*left)[0].state, CheckpointState::kCommitted);
  EXPECT_EQ((*left)[1].state, CheckpointState::kPending);

  // The rerun sends exactly what the target still lacks.
  const json rerun = Report(Ckpt(absl::StrCat(CopyArgs(kBig), " --json")));
  EXPECT_EQ(rerun["bytes_sent"].get<uint64_t>(), total - stored);
  EXPECT_EQ(StoredBytes(*target_, kBig), total);
  EXPECT_EQ(Outcomes(rerun),
            (std::vector<std::string>{"already_there", "copied", "copied"}));
  for (int64_t step : {1, 2, 3}) ExpectSameCheckpoint(step, kBig, kBig);

  // A third run sends nothing.
  const json third = Report(Ckpt(absl::StrCat(CopyArgs(kBig), " --json")));
  EXPECT_EQ(third["bytes_sent"].get<uint64_t>(), 0u);
  EXPECT_EQ(third["chunks_sent"].get<uint64_t>(), 0u);
  EXPECT_EQ(Outcomes(third), std::vector<std::string>(3, "already_there"));
}

TEST_F(CopyCliTest, ADryRunShowsThePlanAndChangesNothing) {
  StartServers();
  MakeSourceJob();
  const json plan =
      Report(Ckpt(absl::StrCat(CopyArgs(), " --steps 200 --dry-run --json")));
  EXPECT_EQ(Outcomes(plan),
            (std::vector<std::string>{"would_copy", "would_copy"}));
  EXPECT_TRUE(plan["checkpoints"][0]["as_delta_base"].get<bool>());
  EXPECT_GT(plan["bytes_sent"].get<uint64_t>(), 0u);
  EXPECT_EQ(plan["policy_would_set"]["max_to_keep"], 10);
  EXPECT_TRUE(plan["policy_set"].is_null());
  auto jobs = target_->ListJobs();
  ASSERT_TRUE(jobs.ok());
  EXPECT_THAT(*jobs, IsEmpty());

  // The table for people says the same.
  CommandResult table = Ckpt(absl::StrCat(CopyArgs(), " --latest --dry-run"));
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, HasSubstr("would copy"));
  EXPECT_THAT(table.out, HasSubstr("full (as a base)"));
  EXPECT_THAT(table.out, HasSubstr("nothing was changed"));

  // --to-job with the real copy.
  const json copied = Report(Ckpt(
      absl::StrCat(CopyArgs(), " --steps 200 --to-job team/renamed --json")));
  EXPECT_EQ(copied["target_job"], "team/renamed");
  EXPECT_EQ(copied["bytes_sent"], plan["bytes_sent"]);
  ExpectSameCheckpoint(100, "team/renamed");
  ExpectSameCheckpoint(200, "team/renamed");
}

TEST_F(CopyCliTest, CarelessUseIsRefusedWithAClearMessage) {
  StartServers();
  MakeSourceJob();
  struct Case {
    std::string args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {absl::StrCat("copy ", kJob, " --from ", from(), " --to ", from()),
       "INVALID_ARGUMENT: copy: the source and the target are the same job"},
      {CopyArgs("team/nope"), "NOT_FOUND"},
      {absl::StrCat(CopyArgs(), " --steps 100,150"),
       "step 150 is not a committed checkpoint of team/model on the source "
       "(" +
           from() + "); its committed steps: 100, 200, 300, 400"},
      {absl::StrCat("copy ", kJob, " --from ", from(), " --to 127.0.0.1:1"),
       "UNAVAILABLE: copy: the target (127.0.0.1:1)"},
      {absl::StrCat(CopyArgs(), " --limit-rate 0"),
       "--limit-rate takes bytes per second"},
      {absl::StrCat(CopyArgs(), " --stall-timeout 0"),
       "--stall-timeout takes a positive duration"},
      {absl::StrCat(CopyArgs(), " --steps x"), "--steps takes steps"},
      {absl::StrCat(CopyArgs(), " --to-job no-tenant"),
       "copy: the target: job:"},
      {absl::StrCat(CopyArgs(), " --steps 100 --latest"), "excludes"},
      {absl::StrCat("copy ", kJob, " --to ", to()), "--from is required"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args);
    CommandResult result = Ckpt(c.args);
    EXPECT_NE(result.exit_code, 0);
    EXPECT_THAT(result.err + result.out, HasSubstr(c.message));
  }
  auto jobs = target_->ListJobs();
  ASSERT_TRUE(jobs.ok());
  EXPECT_THAT(*jobs, IsEmpty());

  // The same server under another name is a copy that sends nothing: the
  // chunks are the tenant's already.
  const json within =
      Report(Ckpt(absl::StrCat("copy ", kJob, " --from ", from(), " --to ",
                               from(), " --to-job team/copy --json")));
  EXPECT_EQ(within["bytes_sent"].get<uint64_t>(), 0u);
  auto listed = source_->ListCheckpoints("team/copy");
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->size(), 4u);
}

// A source that accepts the chunk read and never sends a chunk, though it
// answers keepalive pings (tests/integration/stalling_proxy.py in front of
// the real source): the copy stops with DEADLINE_EXCEEDED after
// --stall-timeout, exits 1 and leaves nothing visible on the target,
// instead of hanging and renewing the target's pending checkpoint
// forever. A rerun, once the source sends again, resumes.
TEST_F(CopyCliTest, AStalledSourceEndsTheCopyAndARerunResumes) {
  StartServers();
  MakeSourceJob();
  auto proxy = StallingProxy::Start(from(), dir_->path(), "read");
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  const std::string via = (*proxy)->address();
  const std::string args =
      absl::StrCat("copy ", kJob, " --from ", via, " --to ", to(),
                   " --steps 100 --no-policy --stall-timeout 1s");
  // In the background, killed if it runs 30 s: a hang fails the test
  // instead of hanging it.
  bool ended = false;
  int status = 0;
  absl::Duration took;
  {
    const absl::Time start = absl::Now();
    const pid_t cli = StartCkpt(args, "stalled");
    while (!(ended = waitpid(cli, &status, WNOHANG) == cli) &&
           absl::Now() - start < absl::Seconds(30)) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    took = absl::Now() - start;
    if (!ended) {
      kill(cli, SIGKILL);
      waitpid(cli, &status, 0);
    }
  }
  // Nothing of it is visible on the target.
  auto listed = target_->ListCheckpoints(kJob);
  CommandResult resumed;
  if (ended) resumed = Ckpt(absl::StrCat(args, " --json"));
  proxy->reset();

  ASSERT_TRUE(ended) << "the copy hung on the stalled source for " << took;
  const std::string err = ReadWholeFile(Path("stalled.err"));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << err;
  EXPECT_THAT(err, HasSubstr("DEADLINE_EXCEEDED"));
  EXPECT_THAT(err,
              HasSubstr("copy of step 100: reading chunks from the source: "));
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_THAT(*listed, IsEmpty());
  // The rerun joined the pending copy, which was not committed before.
  EXPECT_THAT(Outcomes(Report(resumed)), ::testing::ElementsAre("copied"));
  ExpectSameCheckpoint(100);
}

// The target needs tokens; the copy gets a writer's ($CKPT_TO_TOKEN, the
// source needing none), which may copy checkpoints (and pins) but not set
// a policy: the checkpoints are copied, the report printed, and the error
// says how to finish. --no-policy then succeeds sending nothing, and an
// admin's token (--to-token-file) sets the policy.
TEST_F(CopyCliTest, APolicyTheTargetTokenMayNotSetIsReportedAfterTheCopy) {
  const std::string writer_token = "tok-writer-copy-5e1";
  const std::string admin_token = "tok-admin-copy-a07";
  std::ofstream(Path("tokens"))
      << Sha256(writer_token).ToHex() << " copier writer team/\n"
      << Sha256(admin_token).ToHex() << " team-admin admin team/\n";
  std::ofstream(Path("admin-token")) << admin_token << "\n";
  StartServers({"--auth-tokens", Path("tokens")}, {.token = admin_token});
  MakeSourceJob();

  const std::string env = "CKPT_TO_TOKEN=" + writer_token;
  CommandResult refused = Ckpt(CopyArgs(), env);
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.out, HasSubstr("copied"));
  EXPECT_THAT(refused.err, HasSubstr("PERMISSION_DENIED"));
  EXPECT_THAT(refused.err, HasSubstr("The checkpoints were copied"));
  EXPECT_THAT(refused.err, HasSubstr("--no-policy"));
  EXPECT_THAT(refused.err, Not(HasSubstr(writer_token)));
  for (int64_t step : {100, 200, 300, 400}) ExpectSameCheckpoint(step);
  auto policy = target_->GetRetentionPolicy(kJob);
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_EQ(*policy, std::nullopt);

  const json no_policy =
      Report(Ckpt(absl::StrCat(CopyArgs(), " --no-policy --json"), env));
  EXPECT_EQ(no_policy["bytes_sent"].get<uint64_t>(), 0u);
  EXPECT_TRUE(no_policy["policy_error"].is_null());

  const json as_admin =
      Report(Ckpt(absl::StrCat(CopyArgs(), " --to-token-file ",
                               Path("admin-token"), " --json"),
                  env));
  EXPECT_EQ(as_admin["policy_set"]["max_to_keep"], 10);
  policy = target_->GetRetentionPolicy(kJob);
  ASSERT_TRUE(policy.ok()) << policy.status();
  ASSERT_TRUE(policy->has_value());
  EXPECT_EQ((*policy)->max_to_keep, 10);

  // Without a token for the target, nothing happens there.
  CommandResult anonymous = Ckpt(CopyArgs());
  EXPECT_EQ(anonymous.exit_code, 1);
  EXPECT_THAT(anonymous.err, HasSubstr("UNAUTHENTICATED"));
}

// The global TLS flags apply to both servers and --to-tls-* replace them
// for the target: a TLS source and a plaintext target take --tls-ca with
// --to-tls-ca ''.
TEST_F(CopyCliTest, TheGlobalTlsFlagsApplyToBothAndToFlagsToTheTarget) {
  const TestPki& pki = TestPki::Shared();
  StartServers({}, {}, pki.ServerFlags(/*mutual=*/false),
               {.tls_ca_pem = pki.Pem("ca.pem")});
  MakeSourceJob();
  const std::string ca = pki.Path("ca.pem");

  CommandResult both_tls = Ckpt(absl::StrCat("--tls-ca ", ca, " ", CopyArgs()));
  EXPECT_EQ(both_tls.exit_code, 1);
  EXPECT_THAT(both_tls.err,
              HasSubstr("UNAVAILABLE: copy: the target (" + to() + ")"));

  CommandResult none_tls = Ckpt(CopyArgs());
  EXPECT_EQ(none_tls.exit_code, 1);
  EXPECT_THAT(none_tls.err,
              HasSubstr("UNAVAILABLE: copy: the source (" + from() + ")"));
  auto jobs = target_->ListJobs();
  ASSERT_TRUE(jobs.ok());
  EXPECT_THAT(*jobs, IsEmpty());

  const json copied = Report(Ckpt(absl::StrCat("--tls-ca ", ca, " ", CopyArgs(),
                                               " --to-tls-ca '' --json")));
  EXPECT_EQ(copied["checkpoints"].size(), 4u);
  ExpectSameCheckpoint(400);

  CommandResult half_mtls =
      Ckpt(absl::StrCat(CopyArgs(), " --to-tls-ca ", ca, " --to-tls-cert ",
                        pki.Path("client.pem")));
  EXPECT_EQ(half_mtls.exit_code, 1);
  EXPECT_THAT(half_mtls.err, HasSubstr("--to-tls-cert needs --to-tls-key"));
}

}  // namespace
}  // namespace ckpt::testing
