// The model checker against hand-made histories: a clean one passes, and
// each kind of violation (a lost acknowledged commit, a partial checkpoint
// listed, wrong bytes restored, ...) is reported; the JSON lines form reads
// back to the same verdicts.
#include "tests/reliability/model_checker.h"

#include <cstdio>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/reliability/history.h"

namespace ckpt::reliability {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::IsEmpty;

// Builds histories the way the crash test records them.
class HistoryBuilder {
 public:
  uint64_t InvokeSave(const std::string& job, int64_t step, int32_t rank,
                      int32_t world_size, const std::string& hash) {
    Record invoke;
    invoke.op = OpKind::kSave;
    invoke.job = job;
    invoke.step = step;
    invoke.rank = rank;
    invoke.world_size = world_size;
    invoke.sent = {{"w", hash}};
    return Invoke(invoke);
  }
  uint64_t InvokeRemoval(OpKind op, const std::string& job, int64_t step = 0) {
    Record invoke;
    invoke.op = op;
    invoke.job = job;
    invoke.step = step;
    invoke.max_to_keep = 1;
    return Invoke(invoke);
  }
  void End(uint64_t op_id, RecordType type, bool committed = false,
           std::vector<int64_t> removed = {}) {
    Record end;
    end.type = type;
    end.op_id = op_id;
    end.checkpoint_committed = committed;
    end.removed_steps = std::move(removed);
    records_.push_back(end);
  }
  // Saves every rank of (job, step) with acknowledgements: rank r sends
  // hash + r; the last rank completes the checkpoint.
  void SaveAcked(const std::string& job, int64_t step, int32_t world_size,
                 const std::string& hash) {
    for (int32_t rank = 0; rank < world_size; ++rank) {
      End(InvokeSave(job, step, rank, world_size, Hash(hash, rank)),
          RecordType::kOk, rank == world_size - 1);
    }
  }
  void Observe(Observation observation) {
    Record record;
    record.type = RecordType::kObserve;
    record.observation = std::move(observation);
    records_.push_back(record);
  }
  const std::vector<Record>& records() const { return records_; }

  static std::string Hash(const std::string& hash, int32_t rank) {
    return hash + std::to_string(rank);
  }

 private:
  uint64_t Invoke(Record invoke) {
    invoke.type = RecordType::kInvoke;
    invoke.op_id = next_id_++;
    records_.push_back(invoke);
    return invoke.op_id;
  }
  uint64_t next_id_ = 1;
  std::vector<Record> records_;
};

// (job, step) listed as committed by every rank, restoring `hash` + rank.
void List(Observation& observation, const std::string& job, int64_t step,
          int32_t world_size, const std::string& hash) {
  ObservedCheckpoint& checkpoint = observation.jobs[job].committed[step];
  checkpoint.world_size = world_size;
  for (int32_t rank = 0; rank < world_size; ++rank) {
    checkpoint.committed_ranks.push_back(rank);
    checkpoint.restored[rank] = {{"w", HistoryBuilder::Hash(hash, rank)}};
  }
}

std::vector<std::string> Kinds(const CheckResult& result) {
  std::vector<std::string> kinds;
  for (const Violation& violation : result.violations) {
    kinds.push_back(violation.kind);
  }
  return kinds;
}

TEST(ModelCheckerTest, CleanHistoryHasNoViolations) {
  HistoryBuilder history;
  history.SaveAcked("a", 1, 2, "x");
  history.SaveAcked("a", 2, 2, "y");
  Observation observation;
  List(observation, "a", 1, 2, "x");
  List(observation, "a", 2, 2, "y");
  history.Observe(observation);
  CheckResult result = CheckHistory(history.records());
  EXPECT_THAT(result.violations, IsEmpty());
  EXPECT_EQ(result.commits_acked, 2);
  EXPECT_EQ(result.checkpoints_checked, 2);
}

TEST(ModelCheckerTest, ReportsLostAcknowledgedCommit) {
  HistoryBuilder history;
  history.SaveAcked("a", 1, 2, "x");
  history.SaveAcked("a", 2, 2, "y");
  Observation observation;
  List(observation, "a", 1, 2, "x");
  history.Observe(observation);
  CheckResult result = CheckHistory(history.records());
  ASSERT_THAT(Kinds(result), ElementsAre("lost_ack"));
  EXPECT_EQ(result.violations[0].job, "a");
  EXPECT_EQ(result.violations[0].step, 2);
}

TEST(ModelCheckerTest, AllRanksOkIsAnAcknowledgementWithoutTheFlag) {
  HistoryBuilder history;
  history.End(history.InvokeSave("a", 1, 0, 2, "x0"), RecordType::kOk);
  history.End(history.InvokeSave("a", 1, 1, 2, "x1"), RecordType::kOk);
  history.Observe(Observation{});
  EXPECT_THAT(Kinds(CheckHistory(history.records())), ElementsAre("lost_ack"));
}

TEST(ModelCheckerTest, ReportsPartialCheckpointListed) {
  HistoryBuilder history;
  // Rank 1 died with the server: the checkpoint is unknown, and may be
  // listed only whole.
  history.End(history.InvokeSave("a", 1, 0, 2, "x0"), RecordType::kOk);
  history.End(history.InvokeSave("a", 1, 1, 2, "x1"), RecordType::kUnknown);
  Observation observation;
  ObservedCheckpoint& listed = observation.jobs["a"].committed[1];
  listed.world_size = 2;
  listed.committed_ranks = {0};
  listed.restored[0] = {{"w", "x0"}};
  listed.restore_errors[1] = "NOT_FOUND: no shard of rank 1";
  history.Observe(observation);
  EXPECT_THAT(Kinds(CheckHistory(history.records())),
              ElementsAre("partial_visible", "restore_failed"));
}

TEST(ModelCheckerTest, ReportsCheckpointListedWhoseRankNeverSaved) {
  HistoryBuilder history;
  history.End(history.InvokeSave("a", 1, 0, 2, "x0"), RecordType::kUnknown);
  Observation observation;
  List(observation, "a", 1, 2, "x");
  history.Observe(observation);
  EXPECT_THAT(Kinds(CheckHistory(history.records())),
              ElementsAre("partial_visible"));
}

TEST(ModelCheckerTest, ReportsCheckpointListedAfterARankCertainlyFailed) {
  HistoryBuilder history;
  history.End(history.InvokeSave("a", 1, 0, 2, "x0"), RecordType::kOk);
  history.End(history.InvokeSave("a", 1, 1, 2, "x1"), RecordType::kFail);
  Observation observation;
  List(observation, "a", 1, 2, "x");
  history.Observe(observation);
  EXPECT_THAT(Kinds(CheckHistory(history.records())),
              ElementsAre("failed_visible"));
}

TEST(ModelCheckerTest, ReportsWrongBytes) {
  HistoryBuilder history;
  history.SaveAcked("a", 1, 2, "x");
  Observation observation;
  List(observation, "a", 1, 2, "x");
  observation.jobs["a"].committed[1].restored[1]["w"] = "other";
  history.Observe(observation);
  CheckResult result = CheckHistory(history.records());
  ASSERT_THAT(Kinds(result), ElementsAre("wrong_bytes"));
  EXPECT_THAT(result.violations[0].detail, ::testing::HasSubstr("rank 1"));
}

TEST(ModelCheckerTest, UnknownCommitMayBeAbsentOrPresentButExact) {
  HistoryBuilder history;
  history.End(history.InvokeSave("a", 1, 0, 1, "x0"), RecordType::kUnknown);
  history.End(history.InvokeSave("a", 2, 0, 1, "y0"), RecordType::kUnknown);
  history.End(history.InvokeSave("a", 3, 0, 1, "z0"), RecordType::kUnknown);
  Observation observation;
  List(observation, "a", 2, 1, "y");  // present and exact: fine
  List(observation, "a", 3, 1, "y");  // present with other bytes
  history.Observe(observation);       // step 1 absent: fine
  CheckResult result = CheckHistory(history.records());
  ASSERT_THAT(Kinds(result), ElementsAre("wrong_bytes"));
  EXPECT_EQ(result.violations[0].step, 3);
  EXPECT_EQ(result.commits_unknown, 3);
  EXPECT_EQ(result.unknown_seen_committed, 2);
}

TEST(ModelCheckerTest, ReportsCheckpointThatWasNeverSaved) {
  HistoryBuilder history;
  Observation observation;
  List(observation, "a", 7, 1, "x");
  history.Observe(observation);
  EXPECT_THAT(Kinds(CheckHistory(history.records())), ElementsAre("phantom"));
}

TEST(ModelCheckerTest, AcknowledgedPruneRemovesOnlyWhatItNamed) {
  HistoryBuilder history;
  history.SaveAcked("a", 1, 1, "x");
  history.SaveAcked("a", 2, 1, "y");
  history.SaveAcked("a", 3, 1, "z");
  history.End(history.InvokeRemoval(OpKind::kPrune, "a"), RecordType::kOk,
              false, {1});
  Observation observation;
  List(observation, "a", 3, 1, "z");  // step 2 gone unlogged
  history.Observe(observation);
  CheckResult result = CheckHistory(history.records());
  ASSERT_THAT(Kinds(result), ElementsAre("lost_ack"));
  EXPECT_EQ(result.violations[0].step, 2);
}

TEST(ModelCheckerTest, ReportsCheckpointListedAfterItsDeleteWasAcknowledged) {
  HistoryBuilder history;
  history.SaveAcked("a", 1, 1, "x");
  history.End(history.InvokeRemoval(OpKind::kDelete, "a", 1), RecordType::kOk,
              false, {1});
  Observation observation;
  List(observation, "a", 1, 1, "x");
  history.Observe(observation);
  EXPECT_THAT(Kinds(CheckHistory(history.records())),
              ElementsAre("removed_visible"));
}

TEST(ModelCheckerTest, UnknownPruneExcusesOnlyStepsTheServerLogged) {
  HistoryBuilder history;
  history.SaveAcked("a", 1, 1, "x");
  history.SaveAcked("a", 2, 1, "y");
  history.SaveAcked("a", 3, 1, "z");
  history.End(history.InvokeRemoval(OpKind::kPrune, "a"), RecordType::kUnknown);
  Observation observation;
  List(observation, "a", 3, 1, "z");
  observation.jobs["a"].removed_by_events = {1};
  history.Observe(observation);
  CheckResult result = CheckHistory(history.records());
  ASSERT_THAT(Kinds(result), ElementsAre("lost_ack"));
  EXPECT_EQ(result.violations[0].step, 2);
}

// The server keeps only a job's newest events: a removal an observation
// once saw in them stays excused after its event is dropped.
TEST(ModelCheckerTest, LoggedRemovalStaysExcusedAfterItsEventIsDropped) {
  HistoryBuilder history;
  history.SaveAcked("a", 1, 1, "x");
  history.SaveAcked("a", 2, 1, "y");
  history.End(history.InvokeRemoval(OpKind::kPrune, "a"), RecordType::kUnknown);
  Observation seen;
  List(seen, "a", 2, 1, "y");
  seen.jobs["a"].removed_by_events = {1};
  history.Observe(seen);
  Observation dropped;
  List(dropped, "a", 2, 1, "y");
  history.Observe(dropped);
  EXPECT_THAT(Kinds(CheckHistory(history.records())), ElementsAre());
}

TEST(ModelCheckerTest, ReportsUnknownCommitThatVanishesLater) {
  HistoryBuilder history;
  history.End(history.InvokeSave("a", 1, 0, 1, "x0"), RecordType::kUnknown);
  Observation first;
  first.cycle = 1;
  List(first, "a", 1, 1, "x");
  history.Observe(first);
  Observation second;
  second.cycle = 2;
  second.jobs["a"];
  history.Observe(second);
  CheckResult result = CheckHistory(history.records());
  ASSERT_THAT(Kinds(result), ElementsAre("vanished"));
  EXPECT_EQ(result.violations[0].cycle, 2);
}

TEST(ModelCheckerTest, ReportsMissingChunksFromGcAndVerify) {
  HistoryBuilder history;
  history.End(history.InvokeRemoval(OpKind::kGc, ""), RecordType::kOk);
  std::vector<Record> records = history.records();
  records.back().gc_missing_chunks = 2;
  Observation observation;
  observation.verify_damaged_chunks = 1;
  observation.errors.push_back("ListJobs: UNAVAILABLE");
  Record observe;
  observe.type = RecordType::kObserve;
  observe.observation = observation;
  records.push_back(observe);
  EXPECT_THAT(
      Kinds(CheckHistory(records)),
      ElementsAre("missing_chunks", "observation_error", "missing_chunks"));
}

TEST(ModelCheckerTest, OperationInFlightAtAnObservationIsUnknown) {
  HistoryBuilder history;
  history.InvokeSave("a", 1, 0, 1, "x0");  // never ended
  history.Observe(Observation{});
  CheckResult result = CheckHistory(history.records());
  EXPECT_THAT(result.violations, IsEmpty());
  EXPECT_EQ(result.commits_unknown, 1);
}

TEST(ModelCheckerTest, JsonLinesReadBackToTheSameVerdicts) {
  const std::string path =
      ::testing::TempDir() + "/model_checker_test_history.jsonl";
  {
    auto recorder = HistoryRecorder::Create(path);
    ASSERT_TRUE(recorder.ok()) << recorder.status();
    Record save;
    save.op = OpKind::kSave;
    save.job = "a";
    save.step = 4;
    save.world_size = 1;
    save.sent = {{"w", "x0"}, {"b", "q0"}};
    Record ok;
    ok.type = RecordType::kOk;
    ok.checkpoint_committed = true;
    (*recorder)->End((*recorder)->Invoke(save), ok);
    save.step = 5;
    Record unknown;
    unknown.type = RecordType::kUnknown;
    unknown.status = "UNAVAILABLE: \"killed\"";
    (*recorder)->End((*recorder)->Invoke(save), unknown);
    Observation observation;
    observation.cycle = 3;
    observation.jobs["a"].committed[5].world_size = 1;
    observation.jobs["a"].committed[5].committed_ranks = {0};
    observation.jobs["a"].committed[5].restored[0] = {{"w", "x0"},
                                                      {"b", "bad"}};
    observation.jobs["a"].removed_by_events = {2};
    (*recorder)->Observe(observation);
  }
  auto records = ReadHistory(path);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 5u);
  EXPECT_EQ((*records)[3].status, "UNAVAILABLE: \"killed\"");
  CheckResult result = CheckHistory(*records);
  EXPECT_THAT(result.violations,
              ElementsAre(Field(&Violation::kind, "wrong_bytes"),
                          Field(&Violation::kind, "lost_ack")));
  EXPECT_EQ(result.violations[0].cycle, 3);
  std::remove(path.c_str());
}

TEST(ModelCheckerTest, RefusesAMalformedHistoryLine) {
  EXPECT_FALSE(RecordFromJson("{").ok());
  EXPECT_FALSE(RecordFromJson(R"({"type":"ok","t_us":1})").ok());
  EXPECT_FALSE(RecordFromJson(R"({"type":"bogus","t_us":1})").ok());
  EXPECT_FALSE(
      RecordFromJson(
          R"({"type":"observe","t_us":1,"observation":{"cycle":1,"jobs":{"a":{"committed":{"x":{}}}}}})")
          .ok());
}

}  // namespace
}  // namespace ckpt::reliability
