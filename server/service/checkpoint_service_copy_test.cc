// The server side of copies between servers (`ckpt copy`): a Begin's
// CopyOrigin (where the checkpoint comes from, and whether it commits
// pinned) is kept by the pending record and applied at the last commit, in
// its batch (the `copied` and `pinned` events, and the pin retention sees
// at that commit); ReportCopy records the `copied` event on the source.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/event.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/service/checkpoint_service.h"
#include "server/storage/fault_injecting_store.h"
#include "server/storage/rocksdb_store.h"
#include "tests/testing/event_lines.h"
#include "tests/testing/service_test_util.h"
#include "tests/testing/store_test_util.h"

namespace ckpt::server {
namespace {

using ::ckpt::server::testing::kJob;
using ::ckpt::server::testing::MaxToKeep;
using ::ckpt::server::testing::ShardBuilder;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using Op = FaultInjectingStore::Op;

const CopyPeer kSource{"a.example:7000", "old/model", 40};

// The history of `job` as "kind@step: detail", oldest first.
std::vector<std::string> History(CheckpointService& service,
                                 absl::string_view job = kJob) {
  auto events = service.ListEvents(job, 0);
  EXPECT_TRUE(events.ok()) << events.status();
  return events.ok() ? ::ckpt::testing::EventLines(*events)
                     : std::vector<std::string>();
}

class CheckpointServiceCopyTest
    : public ::ckpt::server::testing::CheckpointServiceTest {
 protected:
  // Saves `step` of kJob from one rank, begun with `copy`, as `actor`.
  absl::Status SaveCopy(const ShardBuilder& builder, int64_t step,
                        const CopyOrigin& copy, const Actor& actor = {}) {
    return ::ckpt::server::testing::SaveShard(service_, builder, step, 1, kJob,
                                              {}, actor, copy)
        .status();
  }
};

TEST_F(CheckpointServiceCopyTest, ACopyCommitsWithItsProvenanceAndItsPin) {
  const CopyOrigin copy{kSource, true};
  auto begun = service_.BeginCheckpoint(kJob, 40, 2, {}, absl::ZeroDuration(),
                                        std::nullopt, {}, copy);
  ASSERT_TRUE(begun.ok()) << begun.status();
  EXPECT_TRUE(begun->created);
  EXPECT_EQ(begun->record.copied_from, kSource);
  EXPECT_TRUE(begun->record.pinned);  // pending: it will commit pinned
  // A joining rank's values are ignored, as its metadata's would be.
  const CopyOrigin other{CopyPeer{"b:1", "x/y", 1}, false};
  auto joined = service_.BeginCheckpoint(kJob, 40, 2, {}, absl::ZeroDuration(),
                                         std::nullopt, {}, other);
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_FALSE(joined->created);
  EXPECT_EQ(joined->record.copied_from, kSource);
  EXPECT_TRUE(joined->record.pinned);

  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", "rank0"}}}, 40, 2).ok());
  EXPECT_THAT(History(service_), IsEmpty());  // nothing before the commit
  ASSERT_TRUE(Save(ShardBuilder{1, {{"w", "rank1"}}}, 40, 2).ok());

  EXPECT_THAT(History(service_),
              ElementsAre("committed@40: 2 ranks, 10 bytes",
                          "copied@40: from a.example:7000 old/model@40",
                          "pinned@40: at commit"));
  const CheckpointRecord record = Record(40);
  EXPECT_EQ(record.state, CheckpointState::kCommitted);
  EXPECT_EQ(record.copied_from, kSource);
  EXPECT_TRUE(record.pinned);
  auto manifest = service_.GetManifest(kJob, 40);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->record.copied_from, kSource);
}

TEST_F(CheckpointServiceCopyTest, ABeginWithoutCopyFieldsIsAsBefore) {
  ASSERT_TRUE(SaveStep(1).ok());
  const CheckpointRecord record = Record(1);
  EXPECT_FALSE(record.copied_from.has_value());
  EXPECT_FALSE(record.pinned);
  EXPECT_THAT(History(service_), ElementsAre("committed@1: 1 rank, 2 bytes"));
}

TEST_F(CheckpointServiceCopyTest, AnUnpinnedCopyRecordsNoPin) {
  ASSERT_TRUE(
      SaveCopy(ShardBuilder{0, {{"w", "x"}}}, 3, {kSource, false}).ok());
  EXPECT_FALSE(Record(3).pinned);
  EXPECT_THAT(History(service_),
              ElementsAre("committed@3: 1 rank, 1 bytes",
                          "copied@3: from a.example:7000 old/model@40"));
}

// The pin is in the commit's batch, so the retention that very commit
// applies (an admin's) keeps a copied old step that it would delete
// unpinned.
TEST_F(CheckpointServiceCopyTest, RetentionAtTheCommitKeepsAPinnedCopy) {
  ASSERT_TRUE(SaveStep(20).ok());
  ASSERT_TRUE(service_.SetRetentionPolicy(kJob, MaxToKeep(1)).ok());
  // Unpinned, an older step is deleted by its own commit...
  ASSERT_TRUE(
      SaveCopy(ShardBuilder{0, {{"w", "u"}}}, 5, {kSource, false}).ok());
  EXPECT_THAT(VisibleSteps(), ElementsAre(20));
  // ... pinned, it stays, and so does the newest.
  ASSERT_TRUE(SaveCopy(ShardBuilder{0, {{"w", "p"}}}, 6, {kSource, true}).ok());
  EXPECT_THAT(VisibleSteps(), ElementsAre(6, 20));
  const std::vector<std::string> history = History(service_);
  ASSERT_EQ(history.size(), 8u);
  EXPECT_THAT(history[4], HasSubstr("pruned@5: retention at commit of step 5"));
  EXPECT_THAT(std::vector<std::string>(history.begin() + 5, history.end()),
              ElementsAre("committed@6: 1 rank, 1 bytes",
                          "copied@6: from a.example:7000 old/model@40",
                          "pinned@6: at commit"));
  // A writer's commit applies no retention at all: nothing to keep there.
  ASSERT_TRUE(SaveCopy(ShardBuilder{0, {{"w", "q"}}}, 7, {kSource, true},
                       Actor{"trainer", false})
                  .ok());
  EXPECT_THAT(VisibleSteps(), ElementsAre(6, 7, 20));
}

TEST_F(CheckpointServiceCopyTest, AFailedCommitBatchRecordsNeitherEvent) {
  ASSERT_TRUE(service_
                  .BeginCheckpoint(kJob, 4, 1, {}, absl::ZeroDuration(),
                                   std::nullopt, {}, {kSource, true})
                  .ok());
  ASSERT_TRUE(service_.PutChunk(kJob, Sha256("x"), "x").ok());
  const ShardManifest shard = ShardBuilder{0, {{"w", "x"}}}.Manifest();
  faults_.FailNext(Op::kApply, absl::ResourceExhaustedError("disk full"));
  EXPECT_TRUE(absl::IsResourceExhausted(
      service_.CommitShard(kJob, 4, 1, shard).status()));
  EXPECT_THAT(History(service_), IsEmpty());
  EXPECT_EQ(Record(4).state, CheckpointState::kPending);
  ASSERT_TRUE(service_.CommitShard(kJob, 4, 1, shard).ok());
  EXPECT_THAT(History(service_),
              ElementsAre("committed@4: 1 rank, 1 bytes",
                          "copied@4: from a.example:7000 old/model@40",
                          "pinned@4: at commit"));
}

TEST_F(CheckpointServiceCopyTest, ARestartedAbortTakesTheNewBeginsValues) {
  auto begin = [&](const CopyOrigin& copy) {
    return service_.BeginCheckpoint(kJob, 9, 1, {}, absl::ZeroDuration(),
                                    std::nullopt, {}, copy);
  };
  ASSERT_TRUE(begin({kSource, true}).ok());
  ASSERT_TRUE(service_.AbortCheckpoint(kJob, 9, "interrupted").ok());
  // Its deletion does not call the aborted attempt pinned.
  ASSERT_TRUE(service_.DeleteCheckpoint(kJob, 9).ok());
  auto again = begin({});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->created);
  EXPECT_FALSE(again->record.copied_from.has_value());
  EXPECT_FALSE(again->record.pinned);
  ASSERT_TRUE(service_.AbortCheckpoint(kJob, 9, "again").ok());
  const CopyPeer elsewhere{"c:3", "other/job", 2};
  auto third = begin({elsewhere, false});
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->record.copied_from, elsewhere);
  ASSERT_TRUE(service_.PutChunk(kJob, Sha256("z"), "z").ok());
  ASSERT_TRUE(
      service_.CommitShard(kJob, 9, 1, ShardBuilder{0, {{"w", "z"}}}.Manifest())
          .ok());
  EXPECT_THAT(History(service_),
              ElementsAre("aborted@9: interrupted", "deleted@9: was aborted",
                          "aborted@9: again", "committed@9: 1 rank, 1 bytes",
                          "copied@9: from c:3 other/job@2"));
  EXPECT_FALSE(Record(9).pinned);
}

TEST_F(CheckpointServiceCopyTest, ABadSourceIsRefusedWithNothingBegun) {
  struct Case {
    CopyPeer peer;
    std::string message_part;
  };
  const std::vector<Case> cases = {
      {{"", "t/m", 1}, "copied_from.server must be 1-256 bytes"},
      {{std::string(257, 's'), "t/m", 1}, "copied_from.server"},
      {{"a\nforged", "t/m", 1}, "copied_from.server"},
      {{"a\x1b[2J", "t/m", 1}, "copied_from.server"},
      {{"a", "no-tenant", 1}, "copied_from.job: invalid job name"},
      {{"a", "t/m", -3}, "copied_from.step must be >= 0"},
  };
  for (const Case& c : cases) {
    auto begun = service_.BeginCheckpoint(kJob, 1, 1, {}, absl::ZeroDuration(),
                                          std::nullopt, {}, {c.peer, true});
    EXPECT_TRUE(absl::IsInvalidArgument(begun.status())) << begun.status();
    EXPECT_THAT(begun.status().message(), HasSubstr(c.message_part));
  }
  // Not even the job was created.
  EXPECT_TRUE(absl::IsNotFound(service_.ListCheckpoints(kJob, true).status()));
}

TEST_F(CheckpointServiceCopyTest, ReportCopyRecordsWhereACommittedOneWent) {
  const CopyPeer target{"b.example:7001", "new/model", 40};
  // Absent, then pending: nothing was copied.
  EXPECT_TRUE(absl::IsNotFound(service_.ReportCopy(kJob, 40, target)));
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", "a"}}}, 40, 2).ok());
  const absl::Status pending = service_.ReportCopy(kJob, 40, target);
  EXPECT_TRUE(absl::IsNotFound(pending)) << pending;
  EXPECT_THAT(pending.message(), HasSubstr("pending"));
  ASSERT_TRUE(Save(ShardBuilder{1, {{"w", "b"}}}, 40, 2).ok());

  ASSERT_TRUE(
      service_.ReportCopy(kJob, 40, target, Actor{"copier", false}).ok());
  auto events = service_.ListEvents(kJob, 0);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[1].kind, EventKind::kCopied);
  EXPECT_EQ((*events)[1].detail, "to b.example:7001 new/model@40");
  EXPECT_EQ((*events)[1].principal, "copier");

  // Refusals record nothing.
  EXPECT_THAT(service_.ReportCopy(kJob, 40, {"", "new/model", 1}).message(),
              HasSubstr("destination.server must be"));
  EXPECT_TRUE(absl::IsInvalidArgument(
      service_.ReportCopy(kJob, 40, {"b\r\n", "new/model", 1})));
  EXPECT_TRUE(
      absl::IsInvalidArgument(service_.ReportCopy(kJob, 40, {"b", "bad", 1})));
  EXPECT_TRUE(absl::IsInvalidArgument(
      service_.ReportCopy(kJob, 40, {"b", "new/model", -1})));
  EXPECT_TRUE(absl::IsInvalidArgument(service_.ReportCopy(kJob, -1, target)));
  EXPECT_TRUE(absl::IsNotFound(service_.ReportCopy("team/other", 40, target)));
  faults_.FailNext(Op::kApply, absl::ResourceExhaustedError("disk full"));
  EXPECT_TRUE(absl::IsResourceExhausted(service_.ReportCopy(kJob, 40, target)));
  EXPECT_EQ(service_.ListEvents(kJob, 0)->size(), 2u);
}

// Over RocksDB: the pending record keeps the Begin's values across a
// restart (the commit may come from a rerun after one), and the committed
// record and its events keep them for good.
TEST(CopyPersistenceTest, ProvenanceAndPinSurviveRestarts) {
  std::unique_ptr<::ckpt::testing::TempDir> dir =
      ::ckpt::server::testing::MakeTempDir();
  const std::string path = dir->path() + "/db";
  FakeClock clock;
  {
    auto store = RocksDbStore::Open(path);
    ASSERT_TRUE(store.ok()) << store.status();
    CheckpointService service(store->get(), store->get(), &clock);
    ASSERT_TRUE(service
                    .BeginCheckpoint(kJob, 40, 1, {}, absl::ZeroDuration(),
                                     std::nullopt, {}, {kSource, true})
                    .ok());
    ASSERT_TRUE(service.PutChunk(kJob, Sha256("bytes"), "bytes").ok());
  }
  {
    auto store = RocksDbStore::Open(path);
    ASSERT_TRUE(store.ok()) << store.status();
    CheckpointService service(store->get(), store->get(), &clock);
    ASSERT_TRUE(service
                    .CommitShard(kJob, 40, 1,
                                 ShardBuilder{0, {{"w", "bytes"}}}.Manifest())
                    .ok());
  }
  auto store = RocksDbStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  CheckpointService service(store->get(), store->get(), &clock);
  auto checkpoint = service.GetManifest(kJob, 40);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_EQ(checkpoint->record.copied_from, kSource);
  EXPECT_TRUE(checkpoint->record.pinned);
  EXPECT_THAT(History(service),
              ElementsAre("committed@40: 1 rank, 5 bytes",
                          "copied@40: from a.example:7000 old/model@40",
                          "pinned@40: at commit"));
}

}  // namespace
}  // namespace ckpt::server
