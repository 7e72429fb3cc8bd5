// T2, named failpoints (tests/reliability/README.md): for every point of
// common/failpoint.h, a real ckpt-server armed with CKPT_FAILPOINT is driven
// through the client library to the step the point guards; it must die
// with SIGABRT after logging "ckpt failpoint fired: NAME". A server
// restarted on the same RocksDB directory must then show what a crash
// there may leave and nothing else: every acknowledged checkpoint restores
// byte-identical, the interrupted operation is absent or complete (and for
// points after a synced write, complete), verify finds nothing missing,
// and a garbage collection removes nothing a checkpoint references.
//
// Each point fires CKPT_FIRES times (5 in CI) on one data directory: every
// cycle prepares the operation on the restarted server of the cycle
// before (aborting what the crash left pending, then a GC that must sweep
// and leave every commit restoring), arms a fresh server, crashes it and
// checks the restart, so each restart checks again every commit of the
// earlier cycles. The fires are
// counted from the server's side (its SIGABRT and its fired line), and the
// run ends with a RELIABILITY_SUMMARY line of fires per point.
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "client/copy.h"
#include "common/failpoint.h"
#include "common/retention_policy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/reliability/failpoint_store_checks.h"
#include "tests/reliability/reliability_run.h"
#include "tests/testing/real_server_test.h"
#include "tests/testing/server_process.h"
#include "tests/testing/temp_dir.h"

namespace ckpt::testing {
namespace {

using ::testing::HasSubstr;

// The step cycle `i` works on is kFirstStep + 10 * i (the baseline has 10,
// 20 and 30).
constexpr int64_t kFirstStep = 40;

// Fires per point: CKPT_FIRES (soak.sh), else the issue's CI figure.
int FiresPerPoint() { return RunCount("CKPT_FIRES", 5); }

// The lease left to expire in the lease_expiry cases: long enough for rank
// 0's save of 160 KiB to finish inside it on a loaded CI machine (a lease
// that ends before its CommitShard aborts the checkpoint there, and the
// reaper then has nothing to expire), with more slack under sanitizers.
absl::Duration ExpiringLease() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return absl::Seconds(3);
#else
  return absl::Seconds(2);
#endif
}

// What the operation the point interrupts leaves after a restart.
enum class After {
  kUndone,  // as if it never ran
  kDone,    // complete (the point follows its synced write)
  kEither,  // either of the two
};

// The operation that reaches a point.
enum class Drive {
  kSave,         // SaveShard of the cycle's step, one rank
  kRankOfTwo,    // SaveShard of rank 0 of the cycle's step, of two ranks
  kPrune,        // PruneCheckpoints to max_to_keep 1 (after a new save)
  kGc,           // CollectGarbage (after the oldest step was deleted)
  kLeaseExpiry,  // rank 0 of two saved with ExpiringLease(), left to expire
  kCopy,         // Client::Copy of the cycle's step to the armed server
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

// Every point once; FailpointCrashListTest.EveryPointHasACase checks the
// list.
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

// The hit of the point cycle `cycle` arms: a save's chunk_put is hit once
// per new chunk, so its cycles crash after different numbers of chunks
// written; every other point is hit once by its operation.
uint64_t ArmedHit(const std::string& point, int cycle) {
  if (point.starts_with("chunk_put.")) return 1 + cycle % kOwnChunks;
  return 1;
}

// The armed server's reaper runs often (lease_expiry); an unarmed one's
// not at all within a test, so what the crash left pending stays so until
// the next cycle aborts it.
std::vector<std::string> ArmedFlags() {
  return {"--gc-interval", "0", "--lease-check-interval", "0.2"};
}
std::vector<std::string> UnarmedFlags() {
  return {"--gc-interval", "0", "--lease-check-interval", "3600"};
}

// Over the process's cases: fires per point, cycles, checks, points whose
// case failed.
struct Tally {
  std::map<std::string, int> fires;
  int cycles = 0;
  int restarts_checked = 0;
  int failed_points = 0;
};

Tally& RunTally() {
  static Tally tally;
  return tally;
}

class FailpointCrashTest : public ::testing::TestWithParam<Case> {
 protected:
  static void SetUpTestSuite() {
    // A crash is expected: no core files.
    const rlimit none{0, 0};
    ::setrlimit(RLIMIT_CORE, &none);
  }

  // The summary soak.sh collects: the fires per point of the cases this
  // process ran.
  static void TearDownTestSuite() {
    const Tally& tally = RunTally();
    std::vector<std::string> fires;
    for (const auto& [point, count] : tally.fires) {
      fires.push_back(absl::StrCat("\"", point, "\":", count));
    }
    const int least =
        tally.fires.empty()
            ? 0
            : std::min_element(tally.fires.begin(), tally.fires.end(),
                               [](const auto& a, const auto& b) {
                                 return a.second < b.second;
                               })
                  ->second;
    PrintSummary(absl::StrCat(
        "{\"test\":\"T2\",\"program\":\"failpoint_crash_test\",\"points\":",
        tally.fires.size(), ",\"fires_per_point\":", FiresPerPoint(),
        ",\"least_fires\":", least, ",\"cycles\":", tally.cycles,
        ",\"restarts_checked\":", tally.restarts_checked,
        ",\"checkpoints_restored\":", CheckpointsRestored(), ",\"violations\":",
        tally.failed_points, ",\"fires\":{", absl::StrJoin(fires, ","), "}}"));
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

  static std::unique_ptr<ServerProcess> StartUnarmed(const std::string& db) {
    auto server = ServerProcess::Start(db, UnarmedFlags());
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }

  // SIGTERM; it must exit 0.
  static void StopCleanly(std::unique_ptr<ServerProcess> server) {
    absl::StatusOr<int> stopped = server->Stop();
    ASSERT_TRUE(stopped.ok()) << stopped.status();
    EXPECT_EQ(*stopped, 0);
  }

  // Steps 10, 20 and 30 committed on `server`, then step 10 deleted (its
  // own chunks become garbage).
  void MakeBaseline(ServerProcess& server) {
    std::unique_ptr<client::Client> client = Connect(server);
    ASSERT_NE(client, nullptr);
    for (int64_t step : {10, 20, 30}) {
      auto saved = SaveStep(*client, step);
      ASSERT_TRUE(saved.ok()) << saved.status();
      ASSERT_TRUE(saved->checkpoint_committed);
    }
    ASSERT_TRUE(client->DeleteCheckpoint(kFailpointJob, 10).ok());
  }

  // Starts a server over `db` armed with the case's point at `hit`, its
  // log in `log`.
  std::unique_ptr<ServerProcess> StartArmed(const std::string& db,
                                            const std::string& log,
                                            uint64_t hit) {
    auto server = ServerProcess::Start(
        db, ArmedFlags(), log,
        {absl::StrCat("CKPT_FAILPOINT=", GetParam().point, "@", hit)});
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }

  // Whether the server died of the point: SIGABRT and the fired line of
  // that hit in its log (a test failure otherwise).
  bool Fired(ServerProcess& server, const std::string& log, uint64_t hit) {
    absl::StatusOr<int> exit = server.WaitForExit(absl::Seconds(20));
    EXPECT_TRUE(exit.ok()) << exit.status() << "; the point did not fire";
    if (!exit.ok()) return false;
    const std::string text = ReadWholeFile(log);
    const std::string line = absl::StrCat(
        "ckpt failpoint fired: ", GetParam().point, " (hit ", hit, ")");
    EXPECT_EQ(*exit, 128 + SIGABRT) << text;
    EXPECT_THAT(text, HasSubstr(line));
    return *exit == 128 + SIGABRT && text.find(line) != std::string::npos;
  }

  // The cycle's operation on `server`, armed: it must fail (the server
  // dies) or, for lease expiry, leave the step pending to expire.
  void DriveArmed(ServerProcess& server, int64_t step);

  // Runs the cycles of a one-server case / of the copy case; returns the
  // number of fires seen.
  int RunOnOneServer();
  int RunCopy();

  std::unique_ptr<TempDir> dir_;
};

void FailpointCrashTest::DriveArmed(ServerProcess& server, int64_t step) {
  std::unique_ptr<client::Client> client = Connect(server);
  ASSERT_NE(client, nullptr);
  switch (GetParam().drive) {
    case Drive::kSave:
      EXPECT_FALSE(SaveStep(*client, step).ok());
      break;
    case Drive::kRankOfTwo:
      EXPECT_FALSE(SaveStep(*client, step, 2).ok());
      break;
    case Drive::kPrune: {
      RetentionPolicy keep_one;
      keep_one.max_to_keep = 1;
      EXPECT_FALSE(
          client->PruneCheckpoints(kFailpointJob, keep_one, false).ok());
      break;
    }
    case Drive::kGc: {
      GcOptions gc;
      gc.hold = absl::ZeroDuration();
      EXPECT_FALSE(client->CollectGarbage(gc).ok());
      break;
    }
    case Drive::kLeaseExpiry: {
      auto saved = SaveStep(*client, step, 2, 0, ExpiringLease());
      ASSERT_TRUE(saved.ok()) << saved.status();
      EXPECT_FALSE(saved->checkpoint_committed);
      break;  // the reaper (every 0.2 s) finds it expired
    }
    case Drive::kCopy:
      FAIL() << "not a one-server case";
  }
}

int FailpointCrashTest::RunOnOneServer() {
  const Case& c = GetParam();
  const std::string db = Path("db");
  std::unique_ptr<ServerProcess> server = StartUnarmed(db);
  if (server == nullptr) return 0;
  MakeBaseline(*server);
  if (HasFatalFailure()) return 0;
  Steps committed = {20, 30};
  int fires = 0;
  for (int cycle = 0; cycle < FiresPerPoint() && !HasFailure(); ++cycle) {
    SCOPED_TRACE(absl::StrCat("cycle ", cycle + 1));
    ++RunTally().cycles;
    const int64_t step = kFirstStep + 10 * cycle;
    {
      // Prepare on the unarmed server (the restart of the cycle before).
      std::unique_ptr<client::Client> client = Connect(*server);
      if (client == nullptr) break;
      AbortPending(*client);
      CollectAndRecheck(*client, committed);
      if (c.drive == Drive::kPrune || c.drive == Drive::kGc) {
        // Something to prune; for GC, garbage: the oldest step's chunks.
        auto saved = SaveStep(*client, step);
        if (!saved.ok()) ADD_FAILURE() << saved.status();
        committed = With(committed, step);
        if (c.drive == Drive::kGc) {
          const absl::Status deleted =
              client->DeleteCheckpoint(kFailpointJob, committed.front());
          if (!deleted.ok()) ADD_FAILURE() << deleted;
          committed.erase(committed.begin());
        }
      }
      if (HasFailure()) break;
    }
    StopCleanly(std::move(server));
    const std::string log = Path(absl::StrCat("armed-", cycle + 1, ".log"));
    const uint64_t hit = ArmedHit(c.point, cycle);
    std::unique_ptr<ServerProcess> armed = StartArmed(db, log, hit);
    if (armed == nullptr) break;
    DriveArmed(*armed, step);
    if (HasFatalFailure()) break;
    if (Fired(*armed, log, hit)) ++fires;
    armed.reset();
    server = StartUnarmed(db);
    if (server == nullptr) break;
    std::unique_ptr<client::Client> client = Connect(*server);
    if (client == nullptr) break;
    // Read before anything else may change a pending one.
    const std::optional<CheckpointRecord> record = RecordOf(*client, step);
    std::vector<Steps> allowed;
    auto allow = [&](Steps undone, Steps done) {
      if (c.after != After::kDone) allowed.push_back(undone);
      if (c.after != After::kUndone) allowed.push_back(done);
    };
    switch (c.drive) {
      case Drive::kSave:
        allow(committed, With(committed, step));
        break;
      case Drive::kRankOfTwo:
        allowed = {committed};
        // Begin's batch is synced: the checkpoint is pending either way,
        // with rank 0's shard only once its batch was written.
        EXPECT_TRUE(record.has_value());
        if (record.has_value()) {
          EXPECT_EQ(record->state, CheckpointState::kPending);
          EXPECT_EQ(record->committed_ranks, c.after == After::kDone
                                                 ? std::vector<int32_t>{0}
                                                 : std::vector<int32_t>{});
        }
        break;
      case Drive::kPrune:
        allow(committed, {committed.back()});
        break;
      case Drive::kGc:
        allowed = {committed};
        break;
      case Drive::kLeaseExpiry:
        allowed = {committed};
        EXPECT_TRUE(record.has_value());
        if (record.has_value()) {
          EXPECT_EQ(record->state, c.after == After::kDone
                                       ? CheckpointState::kAborted
                                       : CheckpointState::kPending);
        }
        break;
      case Drive::kCopy:
        break;
    }
    ++RunTally().restarts_checked;
    committed = CheckAfterRestart(*client, allowed);
    if (HasFailure()) break;
    if (c.drive == Drive::kSave || c.drive == Drive::kRankOfTwo) {
      // The interrupted save can be done again (rank 1 too, for two ranks)
      // and then restores exactly; one the crash left committed is refused
      // as such.
      const int32_t world_size = c.drive == Drive::kSave ? 1 : 2;
      for (int32_t rank = 0; rank < world_size; ++rank) {
        auto saved = SaveStep(*client, step, world_size, rank);
        if (!saved.ok()) {
          EXPECT_EQ(saved.status().code(), absl::StatusCode::kAlreadyExists)
              << saved.status();
        }
      }
      committed = With(committed, step);
      EXPECT_EQ(CommittedRestoringExactly(*client), committed);
    }
  }
  if (server != nullptr && !HasFailure()) {
    // The last crash's aftermath swept too.
    std::unique_ptr<client::Client> client = Connect(*server);
    if (client != nullptr) {
      AbortPending(*client);
      CollectAndRecheck(*client, committed);
    }
  }
  if (HasFailure()) ++RunTally().failed_points;
  if (server != nullptr) StopCleanly(std::move(server));
  return fires;
}

int FailpointCrashTest::RunCopy() {
  const Case& c = GetParam();
  auto source = StartUnarmed(Path("source-db"));
  if (source == nullptr) return 0;
  MakeBaseline(*source);
  if (HasFatalFailure()) return 0;
  std::unique_ptr<client::Client> from = Connect(*source);
  if (from == nullptr) return 0;
  const std::string target_db = Path("target-db");
  std::unique_ptr<ServerProcess> target;  // unarmed, after the first cycle
  Steps copied;                           // committed on the target
  int fires = 0;
  for (int cycle = 0; cycle < FiresPerPoint() && !HasFailure(); ++cycle) {
    SCOPED_TRACE(absl::StrCat("cycle ", cycle + 1));
    ++RunTally().cycles;
    const int64_t step = kFirstStep + 10 * cycle;
    // A new step on the source; the copy of it is interrupted.
    auto saved = SaveStep(*from, step);
    if (!saved.ok()) ADD_FAILURE() << saved.status();
    if (target != nullptr) StopCleanly(std::move(target));
    if (HasFailure()) break;
    client::CopyRequest request;
    request.job = kFailpointJob;
    request.steps = {step};
    request.source_label = "source";
    request.target_label = "target";
    const std::string log = Path(absl::StrCat("armed-", cycle + 1, ".log"));
    std::unique_ptr<ServerProcess> armed = StartArmed(target_db, log, 1);
    if (armed == nullptr) break;
    {
      std::unique_ptr<client::Client> to = Connect(*armed);
      if (to == nullptr) break;
      EXPECT_FALSE(client::Client::Copy(*from, *to, request).ok());
    }
    if (Fired(*armed, log, 1)) ++fires;
    armed.reset();
    target = StartUnarmed(target_db);
    if (target == nullptr) break;
    std::unique_ptr<client::Client> to = Connect(*target);
    if (to == nullptr) break;
    std::vector<Steps> allowed;
    if (c.after != After::kDone) allowed.push_back(copied);
    if (c.after != After::kUndone) allowed.push_back(With(copied, step));
    ++RunTally().restarts_checked;
    copied = CheckAfterRestart(*to, allowed);
    if (HasFailure()) break;
    // Copying again completes it, exactly.
    auto again = client::Client::Copy(*from, *to, request);
    EXPECT_TRUE(again.ok()) << again.status();
    copied = With(copied, step);
    CollectAndRecheck(*to, copied);
  }
  if (HasFailure()) ++RunTally().failed_points;
  from.reset();
  if (target != nullptr) StopCleanly(std::move(target));
  StopCleanly(std::move(source));
  return fires;
}

TEST_P(FailpointCrashTest, CrashLeavesAConsistentStore) {
  SCOPED_TRACE(absl::StrCat("CKPT_FAILPOINT=", GetParam().point));
  const int fires =
      GetParam().drive == Drive::kCopy ? RunCopy() : RunOnOneServer();
  RunTally().fires[GetParam().point] += fires;
  EXPECT_GE(fires, FiresPerPoint())
      << GetParam().point << " fired " << fires << " times";
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

}  // namespace
}  // namespace ckpt::testing
