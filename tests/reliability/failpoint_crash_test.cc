// T2, named failpoints (tests/reliability/README.md): for every point of
// common/failpoint.h, a real ckpt-server armed with CKPT_FAILPOINT=NAME is
// driven through the client library to the step the point guards; it must
// die with SIGABRT after logging "ckpt failpoint fired: NAME". A server
// restarted on the same RocksDB directory must then show what a crash
// there may leave and nothing else: every acknowledged checkpoint restores
// byte-identical, the interrupted operation is absent or complete (and for
// points after a synced write, complete), verify finds nothing missing,
// and a garbage collection removes nothing a checkpoint references.
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "client/copy.h"
#include "common/failpoint.h"
#include "common/retention_policy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/client_tensors.h"
#include "tests/testing/real_server_test.h"
#include "tests/testing/server_process.h"
#include "tests/testing/temp_dir.h"

namespace ckpt::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kJob[] = "fp/model";
constexpr size_t kChunkBytes = 16 << 10;
// The step the interrupted operation saves (the baseline has 10, 20, 30).
constexpr int64_t kNewStep = 40;

// The tensors of one checkpoint: a tensor of its own and one every step
// shares (deduplicated), by name.
using Tensors = std::map<std::string, std::string>;

Tensors TensorsOf(int64_t step) {
  return {{"own", PatternBytes(6 * kChunkBytes, static_cast<uint32_t>(step))},
          {"shared", PatternBytes(4 * kChunkBytes, 7)}};
}

std::vector<client::TensorData> Views(const Tensors& tensors) {
  std::vector<client::TensorData> views;
  for (const auto& [name, bytes] : tensors) {
    views.push_back(Uint8Tensor(name, bytes));
  }
  return views;
}

absl::StatusOr<client::SaveResult> Save(client::Client& client, int64_t step,
                                        int32_t world_size = 1,
                                        absl::Duration lease = {}) {
  const Tensors tensors = TensorsOf(step);
  client::SaveOptions options;
  options.world_size = world_size;
  options.chunk_bytes = kChunkBytes;
  options.lease = lease;
  return client.SaveShard(kJob, step, Views(tensors), options);
}

// What the operation the point interrupts leaves after a restart.
enum class After {
  kUndone,  // as if it never ran
  kDone,    // complete (the point follows its synced write)
  kEither,  // either of the two
};

// The operation that reaches a point.
enum class Drive {
  kSave,         // SaveShard of kNewStep, one rank
  kRankOfTwo,    // SaveShard of rank 0 of kNewStep, of two ranks
  kPrune,        // PruneCheckpoints to max_to_keep 1 (deletes step 20)
  kGc,           // CollectGarbage (step 10's own chunks are garbage)
  kLeaseExpiry,  // rank 0 of two saved with a 3 s lease (slack for a slow save
                 // under ASan), left to expire
  kCopy,         // Client::Copy of the job to an armed, empty server
};

struct Case {
  std::string point;
  Drive drive;
  After after;
};

void PrintTo(const Case& c, std::ostream* out) { *out << c.point; }

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  std::string name = info.param.point;
  for (char& c : name) {
    if (c == '.') c = '_';
  }
  return name;
}

// Every point once; FailpointCrashTest.EveryPointHasACase checks the list.
const std::vector<Case>& Cases() {
  static const std::vector<Case> cases = {
      {"chunk_put.before", Drive::kSave, After::kUndone},
      {"chunk_put.after", Drive::kSave, After::kUndone},
      {"chunk_flush.before", Drive::kSave, After::kUndone},
      {"chunk_flush.after", Drive::kSave, After::kUndone},
      {"shard_manifest.before", Drive::kRankOfTwo, After::kUndone},
      {"shard_manifest.after", Drive::kRankOfTwo, After::kDone},
      {"commit_batch.before", Drive::kSave, After::kUndone},
      {"commit_batch.after", Drive::kSave, After::kDone},
      {"copy_commit.before", Drive::kCopy, After::kUndone},
      {"copy_commit.after", Drive::kCopy, After::kDone},
      {"retention_delete.before", Drive::kPrune, After::kUndone},
      {"retention_delete.after", Drive::kPrune, After::kDone},
      {"gc_mark.before", Drive::kGc, After::kUndone},
      {"gc_mark.after", Drive::kGc, After::kUndone},
      {"gc_sweep.before", Drive::kGc, After::kUndone},
      // The batch's deletes are not flushed yet: either may remain.
      {"gc_sweep.after", Drive::kGc, After::kEither},
      {"lease_expiry.before", Drive::kLeaseExpiry, After::kUndone},
      {"lease_expiry.after", Drive::kLeaseExpiry, After::kDone},
  };
  return cases;
}

// The armed server's reaper runs often (lease_expiry); the restarted one's
// not at all within a test, so what the crash left pending stays so.
std::vector<std::string> ServerFlags() {
  return {"--gc-interval", "0", "--lease-check-interval", "0.2"};
}
std::vector<std::string> RestartFlags() {
  return {"--gc-interval", "0", "--lease-check-interval", "3600"};
}

class FailpointCrashTest : public ::testing::TestWithParam<Case> {
 protected:
  static void SetUpTestSuite() {
    // A crash is expected: no core files.
    const rlimit none{0, 0};
    ::setrlimit(RLIMIT_CORE, &none);
  }

  void SetUp() override {
    if (!failpoint::kEnabled) {
      GTEST_SKIP() << "this build has no failpoints (CKPT_FAILPOINTS=OFF)";
    }
    auto dir = TempDir::Create("ckpt-failpoint-it");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *std::move(dir);
  }

  std::string Path(absl::string_view name) const {
    return absl::StrCat(dir_->path(), "/", name);
  }

  static std::unique_ptr<client::Client> Connect(const ServerProcess& server) {
    auto client = client::Client::Connect(
        server.address(), {.connect_timeout = absl::Seconds(10)});
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  // Steps 10, 20 and 30 committed on a server over `db`, then step 10
  // deleted (its own chunks become garbage); a clean shutdown.
  void MakeBaseline(const std::string& db) {
    auto server = ServerProcess::Start(db, ServerFlags());
    ASSERT_TRUE(server.ok()) << server.status();
    std::unique_ptr<client::Client> client = Connect(**server);
    ASSERT_NE(client, nullptr);
    for (int64_t step : {10, 20, 30}) {
      auto saved = Save(*client, step);
      ASSERT_TRUE(saved.ok()) << saved.status();
      ASSERT_TRUE(saved->checkpoint_committed);
    }
    ASSERT_TRUE(client->DeleteCheckpoint(kJob, 10).ok());
    client.reset();
    absl::StatusOr<int> stopped = (*server)->Stop();
    ASSERT_TRUE(stopped.ok()) << stopped.status();
    ASSERT_EQ(*stopped, 0);
  }

  // Starts a server over `db` armed with the case's point, its log in
  // `log`.
  std::unique_ptr<ServerProcess> StartArmed(const std::string& db,
                                            const std::string& log) {
    auto server = ServerProcess::Start(
        db, ServerFlags(), log,
        {absl::StrCat("CKPT_FAILPOINT=", GetParam().point)});
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }

  // The server must die of the point: SIGABRT, the line in its log.
  void ExpectFired(ServerProcess& server, const std::string& log) {
    absl::StatusOr<int> exit = server.WaitForExit(absl::Seconds(20));
    ASSERT_TRUE(exit.ok()) << exit.status() << "; the point did not fire";
    EXPECT_EQ(*exit, 128 + SIGABRT) << ReadWholeFile(log);
    EXPECT_THAT(ReadWholeFile(log),
                HasSubstr(absl::StrCat(
                    "ckpt failpoint fired: ", GetParam().point, " (hit 1)")));
  }

  // Once the armed server died of the point, a server restarted over
  // `db`; nullptr (and a test failure) when either went wrong.
  std::unique_ptr<ServerProcess> FiredThenRestarted(
      std::unique_ptr<ServerProcess> armed, const std::string& log,
      const std::string& db) {
    ExpectFired(*armed, log);
    armed.reset();
    auto restarted = ServerProcess::Start(db, RestartFlags());
    EXPECT_TRUE(restarted.ok()) << restarted.status();
    return restarted.ok() ? *std::move(restarted) : nullptr;
  }

  // Every committed checkpoint of the job on `client`'s server: its steps,
  // each restored (rank 0) and compared with what was saved.
  static std::vector<int64_t> CommittedRestoringExactly(
      client::Client& client) {
    std::vector<int64_t> steps;
    auto listed = client.ListCheckpoints(kJob);
    EXPECT_TRUE(listed.ok()) << listed.status();
    if (!listed.ok()) return steps;
    for (const CheckpointRecord& record : *listed) {
      steps.push_back(record.step);
      auto restored = client.RestoreShard(kJob, record.step, 0);
      EXPECT_TRUE(restored.ok())
          << "step " << record.step << ": " << restored.status();
      if (!restored.ok()) continue;
      Tensors got;
      for (const client::RestoredTensor& tensor : *restored) {
        got[tensor.entry.name] =
            std::string(tensor.bytes.data(), tensor.bytes.size());
      }
      EXPECT_TRUE(got == TensorsOf(record.step))
          << "step " << record.step << " restores other bytes";
    }
    return steps;
  }

  // The invariants on a server restarted after the crash. `allowed`: the
  // committed steps the case allows (one of them).
  void CheckAfterRestart(client::Client& client,
                         const std::vector<std::vector<int64_t>>& allowed) {
    const std::vector<int64_t> before_gc = CommittedRestoringExactly(client);
    EXPECT_THAT(allowed, ::testing::Contains(before_gc))
        << "committed steps after the crash: "
        << ::testing::PrintToString(before_gc);
    VerifyOptions verify;
    verify.read_data = true;
    auto report = client.VerifyCheckpoints(verify);
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_TRUE(report->ok()) << "verify found damage after the crash";
    EXPECT_EQ(report->checkpoints_checked,
              static_cast<int64_t>(before_gc.size()));
    GcOptions gc;
    gc.hold = absl::ZeroDuration();
    auto collected = client.CollectGarbage(gc);
    ASSERT_TRUE(collected.ok()) << collected.status();
    EXPECT_TRUE(collected->damaged.empty());
    // Nothing referenced went: all still restore, verify still clean.
    EXPECT_EQ(CommittedRestoringExactly(client), before_gc);
    auto again = client.VerifyCheckpoints(verify);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_TRUE(again->ok()) << "verify found damage after GC";
  }

  // The state of kNewStep on `client`'s server: nullopt when absent.
  static std::optional<CheckpointState> NewStepState(client::Client& client) {
    auto listed = client.ListCheckpoints(kJob, /*include_uncommitted=*/true);
    EXPECT_TRUE(listed.ok()) << listed.status();
    if (!listed.ok()) return std::nullopt;
    for (const CheckpointRecord& record : *listed) {
      if (record.step == kNewStep) return record.state;
    }
    return std::nullopt;
  }

  void RunOnOneServer();
  void RunCopy();

  std::unique_ptr<TempDir> dir_;
};

void FailpointCrashTest::RunOnOneServer() {
  const Case& c = GetParam();
  const std::string db = Path("db");
  MakeBaseline(db);
  if (HasFatalFailure()) return;
  const std::string log = Path("armed.log");
  std::unique_ptr<ServerProcess> armed = StartArmed(db, log);
  ASSERT_NE(armed, nullptr);
  {
    std::unique_ptr<client::Client> client = Connect(*armed);
    ASSERT_NE(client, nullptr);
    switch (c.drive) {
      case Drive::kSave:
        EXPECT_FALSE(Save(*client, kNewStep).ok());
        break;
      case Drive::kRankOfTwo:
        EXPECT_FALSE(Save(*client, kNewStep, 2).ok());
        break;
      case Drive::kPrune: {
        RetentionPolicy keep_one;
        keep_one.max_to_keep = 1;
        EXPECT_FALSE(client->PruneCheckpoints(kJob, keep_one, false).ok());
        break;
      }
      case Drive::kGc: {
        GcOptions gc;
        gc.hold = absl::ZeroDuration();
        EXPECT_FALSE(client->CollectGarbage(gc).ok());
        break;
      }
      case Drive::kLeaseExpiry: {
        auto saved = Save(*client, kNewStep, 2, absl::Seconds(3));
        ASSERT_TRUE(saved.ok()) << saved.status();
        EXPECT_FALSE(saved->checkpoint_committed);
        break;  // the reaper (every 0.2 s) finds it expired after 3 s
      }
      case Drive::kCopy:
        FAIL() << "not a one-server case";
    }
  }
  std::unique_ptr<ServerProcess> restarted =
      FiredThenRestarted(std::move(armed), log, db);
  ASSERT_NE(restarted, nullptr);
  std::unique_ptr<client::Client> client = Connect(*restarted);
  ASSERT_NE(client, nullptr);
  // Read before the restarted server's own reaper may end a pending one.
  const std::optional<CheckpointState> new_step = NewStepState(*client);
  std::vector<std::vector<int64_t>> allowed;
  auto allow = [&](After after, std::vector<int64_t> undone,
                   std::vector<int64_t> done) {
    if (after != After::kDone) allowed.push_back(undone);
    if (after != After::kUndone) allowed.push_back(done);
  };
  switch (c.drive) {
    case Drive::kSave:
      allow(c.after, {20, 30}, {20, 30, kNewStep});
      break;
    case Drive::kRankOfTwo:
      allowed = {{20, 30}};
      // Begin's batch is synced: the checkpoint is pending either way,
      // with rank 0's shard only once its batch was written.
      EXPECT_EQ(new_step, CheckpointState::kPending);
      break;
    case Drive::kPrune:
      allow(c.after, {20, 30}, {30});
      break;
    case Drive::kGc:
      allowed = {{20, 30}};
      break;
    case Drive::kLeaseExpiry:
      allowed = {{20, 30}};
      EXPECT_EQ(new_step, c.after == After::kDone
                              ? std::optional(CheckpointState::kAborted)
                              : std::optional(CheckpointState::kPending));
      break;
    case Drive::kCopy:
      break;
  }
  if (c.drive == Drive::kRankOfTwo && c.after == After::kDone) {
    auto record = client->ListCheckpoints(kJob, true);
    ASSERT_TRUE(record.ok());
    for (const CheckpointRecord& r : *record) {
      if (r.step == kNewStep) {
        EXPECT_EQ(r.committed_ranks, std::vector{0});
      }
    }
  }
  CheckAfterRestart(*client, allowed);
  if (HasFatalFailure()) return;
  if (c.drive == Drive::kSave || c.drive == Drive::kRankOfTwo) {
    // The interrupted save can be done again (rank 1 too, for two ranks)
    // and then restores exactly.
    const int32_t world_size = c.drive == Drive::kSave ? 1 : 2;
    for (int32_t rank = 0; rank < world_size; ++rank) {
      const Tensors tensors = TensorsOf(kNewStep);
      client::SaveOptions options;
      options.rank = rank;
      options.world_size = world_size;
      options.chunk_bytes = kChunkBytes;
      auto saved = client->SaveShard(kJob, kNewStep, Views(tensors), options);
      // A checkpoint the crash left committed is refused as such.
      if (!saved.ok()) {
        EXPECT_EQ(saved.status().code(), absl::StatusCode::kAlreadyExists)
            << saved.status();
      }
    }
    EXPECT_THAT(CommittedRestoringExactly(*client),
                ::testing::Contains(kNewStep));
  }
  client.reset();
  absl::StatusOr<int> stopped = restarted->Stop();
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(*stopped, 0);
}

void FailpointCrashTest::RunCopy() {
  const Case& c = GetParam();
  const std::string source_db = Path("source-db");
  MakeBaseline(source_db);
  if (HasFatalFailure()) return;
  auto source = ServerProcess::Start(source_db, ServerFlags());
  ASSERT_TRUE(source.ok()) << source.status();
  std::unique_ptr<client::Client> from = Connect(**source);
  ASSERT_NE(from, nullptr);
  const std::string target_db = Path("target-db");
  const std::string log = Path("armed.log");
  std::unique_ptr<ServerProcess> armed = StartArmed(target_db, log);
  ASSERT_NE(armed, nullptr);
  client::CopyRequest request;
  request.job = kJob;
  request.source_label = "source";
  request.target_label = "target";
  {
    std::unique_ptr<client::Client> to = Connect(*armed);
    ASSERT_NE(to, nullptr);
    EXPECT_FALSE(client::Client::Copy(*from, *to, request).ok());
  }
  std::unique_ptr<ServerProcess> restarted =
      FiredThenRestarted(std::move(armed), log, target_db);
  ASSERT_NE(restarted, nullptr);
  std::unique_ptr<client::Client> to = Connect(*restarted);
  ASSERT_NE(to, nullptr);
  // The first copied checkpoint (step 20) was being committed.
  std::vector<std::vector<int64_t>> allowed;
  if (c.after != After::kDone) allowed.push_back({});
  if (c.after != After::kUndone) allowed.push_back({20});
  CheckAfterRestart(*to, allowed);
  if (HasFatalFailure()) return;
  // Copying again completes the job, exactly.
  auto copied = client::Client::Copy(*from, *to, request);
  ASSERT_TRUE(copied.ok()) << copied.status();
  EXPECT_EQ(CommittedRestoringExactly(*to), (std::vector<int64_t>{20, 30}));
  to.reset();
  from.reset();
  for (ServerProcess* server : {restarted.get(), source->get()}) {
    absl::StatusOr<int> stopped = server->Stop();
    ASSERT_TRUE(stopped.ok()) << stopped.status();
    EXPECT_EQ(*stopped, 0);
  }
}

TEST_P(FailpointCrashTest, CrashLeavesAConsistentStore) {
  SCOPED_TRACE(absl::StrCat("CKPT_FAILPOINT=", GetParam().point));
  if (GetParam().drive == Drive::kCopy) {
    RunCopy();
  } else {
    RunOnOneServer();
  }
}

INSTANTIATE_TEST_SUITE_P(EveryPoint, FailpointCrashTest,
                         ::testing::ValuesIn(Cases()), CaseName);

TEST(FailpointCrashListTest, EveryPointHasACase) {
  std::vector<std::string> covered;
  for (const Case& c : Cases()) covered.push_back(c.point);
  std::vector<std::string> names(failpoint::kNames.begin(),
                                 failpoint::kNames.end());
  EXPECT_EQ(covered, names);
}

// `ckpt-server --list-failpoints` prints kNames one a line.
TEST(FailpointCrashListTest, ServerListsItsPoints) {
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
TEST(FailpointCrashListTest, CountedAndSeededArmingFireWhereTheySay) {
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
    auto server = ServerProcess::Start((*dir)->path() + "/db", ServerFlags(),
                                       log, run.env);
    ASSERT_TRUE(server.ok()) << server.status();
    {
      auto client = client::Client::Connect(
          (*server)->address(), {.connect_timeout = absl::Seconds(10)});
      ASSERT_TRUE(client.ok()) << client.status();
      EXPECT_FALSE(Save(**client, kNewStep).ok());
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
TEST(FailpointCrashListTest, ServerRefusesABadArming) {
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
