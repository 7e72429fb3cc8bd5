// CopyCheckpoints between two in-memory transports: the plan (bases
// first, what is already there, refusals before anything is sent), resume,
// dry run, and a source that lies. The same copy between real servers,
// restored byte for byte, is tests/integration/copy_test.cc.
#include "client/copy.h"

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "client/copy_transfer.h"
#include "client/save_pipeline.h"
#include "common/chunking.h"
#include "common/clock.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/client_tensors.h"
#include "tests/testing/fake_transport.h"

namespace ckpt::client {
namespace {

using ::ckpt::testing::FakeTransport;
using ::ckpt::testing::PatternBytes;
using ::ckpt::testing::Uint8Tensor;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kJob[] = "team/model";
constexpr size_t kChunk = 64;
constexpr int64_t kRows = 32;
constexpr int64_t kRowBytes = 16;

using Outcome = CopiedCheckpoint::Outcome;

// A job on `source`: step 10 full (two ranks), step 20 a row delta on 10,
// step 30 full and pinned, with metrics and tags.
class CopyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    table_ = PatternBytes(kRows * kRowBytes, 1);
    SaveFull(10, table_, 0, 2);
    SaveFull(10, PatternBytes(3 * kChunk, 2), 1, 2);
    changed_ = table_;
    changed_.replace(5 * kRowBytes, kRowBytes, PatternBytes(kRowBytes, 9));
    TensorData delta = Table(changed_);
    delta.delta_base_step = 10;
    delta.delta_rows = absl::MakeConstSpan(kDeltaRows);
    Save(20, {delta}, 0, 1);
    SaveFull(30, PatternBytes(kRows * kRowBytes, 3), 0, 1, /*pin=*/true);
  }

  static TensorData Table(const std::string& bytes) {
    TensorData tensor;
    tensor.name = "table";
    tensor.dtype = DType::kUint8;
    tensor.global_shape = {kRows, kRowBytes};
    tensor.box = Box{{0, 0}, {kRows, kRowBytes}};
    tensor.bytes = bytes;
    return tensor;
  }

  void Save(int64_t step, const std::vector<TensorData>& tensors, int32_t rank,
            int32_t world_size, bool pin = false) {
    SaveOptions options;
    options.chunk_bytes = kChunk;
    options.rank = rank;
    options.world_size = world_size;
    options.metadata.metrics["loss"] = 1.0 / static_cast<double>(step);
    options.metadata.tags["run"] = "a";
    if (pin) {
      // The fake has no PinCheckpoint: a pinned Begin first is its
      // equivalent (SaveShard then joins that pending checkpoint).
      BeginOptions begin;
      begin.world_size = world_size;
      begin.metadata = options.metadata;
      begin.pin = true;
      ASSERT_TRUE(source_.BeginCheckpoint(kJob, step, begin).ok());
    }
    absl::StatusOr<SaveResult> saved =
        SaveShard(source_, kJob, step, tensors, options);
    ASSERT_TRUE(saved.ok()) << saved.status();
  }

  void SaveFull(int64_t step, const std::string& bytes, int32_t rank,
                int32_t world_size, bool pin = false) {
    Save(step, {rank == 0 ? Table(bytes) : Uint8Tensor("extra", bytes)}, rank,
         world_size, pin);
  }

  CopyRequest Request() const {
    CopyRequest request;
    request.job = kJob;
    request.source_label = "source:1";
    request.target_label = "target:2";
    request.copy_policy = false;  // the fake has no policies
    return request;
  }

  std::vector<int64_t> Steps(const CopyReport& report) {
    std::vector<int64_t> steps;
    for (const CopiedCheckpoint& entry : report.checkpoints) {
      steps.push_back(entry.step);
    }
    return steps;
  }

  // The target's checkpoint equals the source's: manifests, metadata (with
  // the source's time as writer time), and every chunk stored.
  void ExpectSameOnTarget(int64_t step, const std::string& target_job = kJob) {
    absl::StatusOr<Checkpoint> from = source_.GetManifest(kJob, step, {});
    absl::StatusOr<Checkpoint> to = target_.GetManifest(target_job, step, {});
    ASSERT_TRUE(from.ok()) << from.status();
    ASSERT_TRUE(to.ok()) << to.status();
    EXPECT_EQ(to->record.state, CheckpointState::kCommitted);
    EXPECT_EQ(to->shards, from->shards);
    EXPECT_EQ(to->record.world_size, from->record.world_size);
    EXPECT_EQ(to->record.pinned, from->record.pinned);
    EXPECT_EQ(to->record.metadata.metrics, from->record.metadata.metrics);
    EXPECT_EQ(to->record.metadata.tags, from->record.metadata.tags);
    EXPECT_EQ(to->record.metadata.writer_time, from->record.commit_time);
    ASSERT_TRUE(to->record.copied_from.has_value());
    EXPECT_EQ(*to->record.copied_from, (CopyPeer{"source:1", kJob, step}));
    for (const ShardManifest& shard : to->shards) {
      for (const ChunkRef& ref : ReferencedChunks(shard)) {
        EXPECT_TRUE(target_.HasChunk(ref.id));
      }
    }
  }

  FakeTransport source_;
  FakeTransport target_;
  std::string table_;
  std::string changed_;
  const std::vector<uint64_t> kDeltaRows = {5};
};

TEST_F(CopyTest, CopiesEveryCheckpointInStepOrderWithItsRecord) {
  absl::StatusOr<CopyReport> report =
      CopyCheckpoints(source_, target_, Request(), {});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(Steps(*report), ElementsAre(10, 20, 30));
  for (const CopiedCheckpoint& entry : report->checkpoints) {
    EXPECT_EQ(entry.outcome, Outcome::kCopied);
    EXPECT_FALSE(entry.as_delta_base);
    ExpectSameOnTarget(entry.step);
  }
  EXPECT_EQ(report->chunks_sent, target_.chunks_uploaded());
  EXPECT_EQ(report->source_report_error, "");
  std::vector<FakeTransport::ReportedCopy> reported;
  for (int64_t step : {10, 20, 30}) {
    reported.push_back({kJob, step, CopyPeer{"target:2", kJob, step}});
  }
  EXPECT_EQ(source_.reported_copies(), reported);
  absl::StatusOr<Checkpoint> delta = target_.GetManifest(kJob, 20, {});
  ASSERT_TRUE(delta.ok());
  EXPECT_THAT(delta->record.base_steps, ElementsAre(10));
  EXPECT_TRUE(report->checkpoints[2].pinned);
  EXPECT_FALSE(report->checkpoints[1].pinned);
}

TEST_F(CopyTest, ASourceThatCannotRecordTheCopyDoesNotFailIt) {
  source_.FailCopyReports(absl::UnimplementedError("ReportCopy: too old"));
  absl::StatusOr<CopyReport> report =
      CopyCheckpoints(source_, target_, Request(), {});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->source_report_error,
              HasSubstr("recording the copy of step 10 on the source: "
                        "UNIMPLEMENTED: ReportCopy: too old"));
  ExpectSameOnTarget(30);
}

TEST_F(CopyTest, AStepAskedForBringsItsDeltaBaseFirst) {
  CopyRequest request = Request();
  request.steps = {20};
  absl::StatusOr<CopyReport> report =
      CopyCheckpoints(source_, target_, request, {});
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_THAT(Steps(*report), ElementsAre(10, 20));
  EXPECT_TRUE(report->checkpoints[0].as_delta_base);
  EXPECT_FALSE(report->checkpoints[1].as_delta_base);
  ExpectSameOnTarget(10);
  ExpectSameOnTarget(20);
  EXPECT_FALSE(target_.GetManifest(kJob, 30, {}).ok());
}

TEST_F(CopyTest, LatestCopiesOnlyTheNewest) {
  CopyRequest request = Request();
  request.latest = true;
  absl::StatusOr<CopyReport> report =
      CopyCheckpoints(source_, target_, request, {});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(Steps(*report), ElementsAre(30));
}

TEST_F(CopyTest, ASecondCopySendsNothingAndCommitsNothing) {
  ASSERT_TRUE(CopyCheckpoints(source_, target_, Request(), {}).ok());
  const uint64_t uploaded = target_.chunks_uploaded();
  const int commits = target_.commit_calls();
  const int begins = target_.begin_calls();
  absl::StatusOr<CopyReport> again =
      CopyCheckpoints(source_, target_, Request(), {});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->bytes_sent, 0u);
  for (const CopiedCheckpoint& entry : again->checkpoints) {
    EXPECT_EQ(entry.outcome, Outcome::kAlreadyThere) << entry.step;
  }
  EXPECT_EQ(target_.chunks_uploaded(), uploaded);
  EXPECT_EQ(target_.commit_calls(), commits);
  EXPECT_EQ(target_.begin_calls(), begins);
}

TEST_F(CopyTest, ToAnotherJobNameKeepsTheSteps) {
  CopyRequest request = Request();
  request.target_job = "team/renamed";
  absl::StatusOr<CopyReport> report =
      CopyCheckpoints(source_, target_, request, {});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->target_job, "team/renamed");
  ExpectSameOnTarget(20, "team/renamed");
}

TEST_F(CopyTest, ACommittedStepThatDiffersIsRefusedBeforeAnythingIsSent) {
  // The target holds its own step 20, with other bytes.
  SaveOptions options;
  options.chunk_bytes = kChunk;
  const std::string other = PatternBytes(kRows * kRowBytes, 7);
  ASSERT_TRUE(SaveShard(target_, kJob, 20, {Table(other)}, options).ok());
  const uint64_t uploaded = target_.chunks_uploaded();
  const int begins = target_.begin_calls();

  absl::StatusOr<CopyReport> report =
      CopyCheckpoints(source_, target_, Request(), {});
  ASSERT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(report.status().message(), HasSubstr("step 20 of team/model"));
  EXPECT_THAT(report.status().message(), HasSubstr("its tensors differ"));
  EXPECT_EQ(target_.chunks_uploaded(), uploaded);
  EXPECT_EQ(target_.begin_calls(), begins);
  EXPECT_FALSE(target_.GetManifest(kJob, 10, {}).ok());
}

TEST_F(CopyTest, APendingStepOfAnotherWorldSizeIsRefused) {
  BeginOptions begin;
  begin.world_size = 3;
  ASSERT_TRUE(target_.BeginCheckpoint(kJob, 30, begin).ok());
  absl::StatusOr<CopyReport> report =
      CopyCheckpoints(source_, target_, Request(), {});
  ASSERT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(report.status().message(),
              HasSubstr("step 30 of team/model is pending on the target"));
  EXPECT_THAT(report.status().message(), HasSubstr("world size 3"));
  EXPECT_EQ(target_.chunks_uploaded(), 0u);
}

TEST_F(CopyTest, APendingStepOfAnotherSaveIsNotJoined) {
  BeginOptions begin;
  begin.metadata.tags["run"] = "someone else";
  ASSERT_TRUE(target_.BeginCheckpoint(kJob, 30, begin).ok());
  absl::StatusOr<CopyReport> report =
      CopyCheckpoints(source_, target_, Request(), {});
  ASSERT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(report.status().message(), HasSubstr("as another save"));
}

TEST_F(CopyTest, AnInterruptedCopyResumesSendingOnlyWhatIsMissing) {
  // The last commit fails (the link dropped): steps 10 and 20 are copied,
  // 30 stays pending on the target with its chunks.
  target_.RefuseCommits(absl::UnavailableError("link down"), 1);
  CopyRequest request = Request();
  request.steps = {30};
  absl::StatusOr<CopyReport> first =
      CopyCheckpoints(source_, target_, request, {});
  ASSERT_EQ(first.status().code(), absl::StatusCode::kUnavailable);
  const uint64_t uploaded = target_.chunks_uploaded();
  EXPECT_GT(uploaded, 0u);
  absl::StatusOr<std::vector<CheckpointUsage>> listed =
      target_.ListCheckpoints(kJob, /*include_uncommitted=*/false, false);
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(listed->empty());  // never visible half-copied

  absl::StatusOr<CopyReport> rerun =
      CopyCheckpoints(source_, target_, request, {});
  ASSERT_TRUE(rerun.ok()) << rerun.status();
  EXPECT_EQ(rerun->bytes_sent, 0u);  // every chunk had arrived
  EXPECT_EQ(target_.chunks_uploaded(), uploaded);
  ExpectSameOnTarget(30);
}

TEST_F(CopyTest, ChunksLostBeforeTheCommitAreSentAgainOnce) {
  CopyRequest request = Request();
  request.steps = {30};
  target_.LoseChunksAtNextCommit();
  absl::StatusOr<CopyReport> report =
      CopyCheckpoints(source_, target_, request, {});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->bytes_sent, 2 * kRows * kRowBytes);
  ExpectSameOnTarget(30);
}

TEST_F(CopyTest, DryRunReportsWhatWouldBeSentAndChangesNothing) {
  // The target already holds step 10's table chunks under another job.
  SaveOptions options;
  options.chunk_bytes = kChunk;
  ASSERT_TRUE(
      SaveShard(target_, "team/other", 1, {Table(table_)}, options).ok());
  const uint64_t uploaded = target_.chunks_uploaded();
  const int begins = target_.begin_calls();
  CopyRequest request = Request();
  request.dry_run = true;
  absl::StatusOr<CopyReport> report =
      CopyCheckpoints(source_, target_, request, {});
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_THAT(Steps(*report), ElementsAre(10, 20, 30));
  for (const CopiedCheckpoint& entry : report->checkpoints) {
    EXPECT_EQ(entry.outcome, Outcome::kWouldCopy);
  }
  // Step 10: only rank 1's extra chunks; 20: its delta; 30: all of it.
  EXPECT_EQ(report->checkpoints[0].bytes_sent, 3 * kChunk);
  EXPECT_EQ(report->checkpoints[0].bytes_referenced,
            kRows * kRowBytes + 3 * kChunk);
  EXPECT_EQ(report->checkpoints[2].bytes_sent, kRows * kRowBytes);
  EXPECT_EQ(target_.chunks_uploaded(), uploaded);
  EXPECT_EQ(target_.begin_calls(), begins);
  EXPECT_FALSE(target_.GetManifest(kJob, 10, {}).ok());

  // The real copy sends what the dry run said.
  request.dry_run = false;
  absl::StatusOr<CopyReport> copied =
      CopyCheckpoints(source_, target_, request, {});
  ASSERT_TRUE(copied.ok()) << copied.status();
  EXPECT_EQ(copied->bytes_sent, report->bytes_sent);
}

TEST_F(CopyTest, CarelessRequestsAreRefusedNamingWhatIsWrong) {
  CopyRequest request = Request();
  request.steps = {20, 25};
  absl::StatusOr<CopyReport> report =
      CopyCheckpoints(source_, target_, request, {});
  ASSERT_EQ(report.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(report.status().message(),
              HasSubstr("step 25 is not a committed checkpoint of team/model "
                        "on the source (source:1); its committed steps: 10, "
                        "20, 30"));

  request = Request();
  request.job = "team/nope";
  EXPECT_EQ(CopyCheckpoints(source_, target_, request, {}).status().code(),
            absl::StatusCode::kNotFound);

  request = Request();
  request.target_label = request.source_label;
  report = CopyCheckpoints(source_, source_, request, {});
  ASSERT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(report.status().message(), HasSubstr("same job"));

  request = Request();
  request.job = "no-tenant";
  EXPECT_EQ(CopyCheckpoints(source_, target_, request, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(target_.begin_calls(), 0);
}

TEST_F(CopyTest, ProgressCountsEveryByteSent) {
  CopyRequest request = Request();
  request.batch_bytes = 3 * kChunk;
  std::vector<CopyProgress> calls;
  absl::StatusOr<CopyReport> report = CopyCheckpoints(
      source_, target_, request,
      [&](const CopyProgress& progress) { calls.push_back(progress); });
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_FALSE(calls.empty());
  EXPECT_EQ(calls.front().bytes_done, 0u);
  EXPECT_EQ(calls.front().bytes_total, report->bytes_sent);
  EXPECT_EQ(calls.front().checkpoint_count, 3u);
  EXPECT_EQ(calls.back().bytes_done, report->bytes_sent);
  // Reads come in batches of at least batch_bytes (the last may be short).
  for (size_t sinks : source_.read_calls()) EXPECT_LE(sinks, 3u);
}

// A source that answers other bytes under a chunk's id: DATA_LOSS, and the
// target gets none of them and no commit.
TEST_F(CopyTest, ASourceAnsweringOtherBytesIsDataLoss) {
  absl::StatusOr<Checkpoint> checkpoint = source_.GetManifest(kJob, 30, {});
  ASSERT_TRUE(checkpoint.ok());
  const ChunkRef victim = checkpoint->shards[0].tensors[0].pieces[2];
  source_.AnswerWith(victim.id, victim.id, std::string(victim.size, 'x'));
  CopyRequest request = Request();
  request.steps = {30};
  absl::StatusOr<CopyReport> report =
      CopyCheckpoints(source_, target_, request, {});
  ASSERT_EQ(report.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(report.status().message(),
              HasSubstr(absl::StrCat("answered chunk ", victim.id.ToHex())));
  EXPECT_EQ(target_.UploadsOf(victim.id), 0);
  EXPECT_EQ(target_.commit_calls(), 0);
}

// A source manifest naming a chunk far larger than any chunk: refused
// before anything is read (nothing is allocated from it).
TEST(CopyHostileSourceTest, AManifestLyingAboutSizesIsRefusedUnread) {
  FakeTransport source;
  FakeTransport target;
  const std::string bytes = PatternBytes(kChunk, 4);
  const ChunkId id = Sha256(bytes);
  BeginOptions begin;
  ASSERT_TRUE(source.BeginCheckpoint(kJob, 1, begin).ok());
  std::unique_ptr<ChunkUploadStream> upload = source.OpenUpload(kJob, 1);
  ASSERT_TRUE(upload->Add(id, bytes).ok());
  ASSERT_TRUE(upload->Close().ok());
  // The fake, unlike a server, takes a manifest whose sizes disagree with
  // its chunks: 2^40 bytes in one piece.
  constexpr int64_t kHuge = int64_t{1} << 40;
  ShardManifest shard;
  TensorEntry& entry = shard.tensors.emplace_back();
  entry.name = "huge";
  entry.dtype = DType::kUint8;
  entry.global_shape = {kHuge};
  entry.box = Box{{0}, {kHuge}};
  entry.pieces.push_back(ChunkRef{id, uint64_t{1} << 40});
  ASSERT_TRUE(source.CommitShard(kJob, 1, 1, shard).ok());

  CopyRequest request;
  request.job = kJob;
  request.source_label = "source:1";
  request.target_label = "target:2";
  request.copy_policy = false;
  absl::StatusOr<CopyReport> report =
      CopyCheckpoints(source, target, request, {});
  ASSERT_EQ(report.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(report.status().message()),
              HasSubstr("cannot be copied: tensor 'huge' of rank 0: piece of "
                        "1099511627776 bytes"));
  EXPECT_TRUE(source.read_calls().empty());
  EXPECT_EQ(target.begin_calls(), 0);
}

// A transfer slowed by its rate limit renews the target's lease while it
// waits, and ends at the first renewal that fails.
TEST(TransferChunksTest, KeepsTheTargetAliveWhileItWaits) {
  FakeTransport source;
  FakeTransport target;
  std::vector<ChunkToCopy> chunks;
  std::unique_ptr<ChunkUploadStream> seed = source.OpenUpload(kJob, 1);
  for (uint32_t i = 0; i < 4; ++i) {
    const std::string bytes = PatternBytes(kChunk, 40 + i);
    chunks.push_back(ChunkToCopy{Sha256(bytes), kChunk});
    ASSERT_TRUE(seed->Add(chunks.back().id, bytes).ok());
  }
  // 64-byte chunks at 1280 B/s: 50 ms each after the first.
  RatePacer pacer(20 * kChunk, RealClock::Get());
  int renewals = 0;
  TransferOptions options;
  options.batch_bytes = 2 * kChunk;
  options.pacer = &pacer;
  options.keep_alive_interval = absl::Milliseconds(10);
  options.keep_alive = [&renewals] {
    ++renewals;
    return absl::OkStatus();
  };
  std::unique_ptr<ChunkUploadStream> upload = target.OpenUpload(kJob, 1);
  ASSERT_TRUE(TransferChunks(source, kJob, chunks, *upload, options).ok());
  // 150 ms of waits with a renewal due every 10 ms: renewed during the
  // waits, not only between chunks (which would be 3).
  EXPECT_GE(renewals, 8);
  EXPECT_EQ(upload->chunks_sent(), 4u);

  RatePacer slow(20 * kChunk, RealClock::Get());
  options.pacer = &slow;
  options.keep_alive = [] { return absl::AbortedError("lease lost"); };
  std::unique_ptr<ChunkUploadStream> failed = target.OpenUpload(kJob, 2);
  absl::Status status = TransferChunks(source, kJob, chunks, *failed, options);
  EXPECT_EQ(status, absl::AbortedError("lease lost"));
  EXPECT_LT(failed->chunks_sent(), 4u);
}

// A source whose reads deliver nothing for `stall` (a transport without a
// stall bound of its own: its read ends only then, with this error).
class StalledSource : public FakeTransport {
 public:
  explicit StalledSource(absl::Duration stall) : stall_(stall) {}
  absl::Status ReadChunks(
      absl::string_view /*job*/, absl::Span<const ChunkSink> /*sinks*/,
      const std::function<void(uint64_t)>& /*on_chunk*/) override {
    absl::SleepFor(stall_);
    return absl::UnavailableError("the stalled read ended");
  }

 private:
  const absl::Duration stall_;
};

// A source that sends nothing: the transfer stops renewing the target's
// lease once the stall bound passes and fails with DEADLINE_EXCEEDED
// naming the source, instead of renewing the lease for as long as the
// read hangs.
TEST(TransferChunksTest, AStalledSourceStopsRenewingTheTargetsLease) {
  StalledSource source(absl::Seconds(2));
  FakeTransport target;
  const std::string bytes = PatternBytes(kChunk, 7);
  const std::vector<ChunkToCopy> chunks = {{Sha256(bytes), kChunk}};
  std::atomic<int> renewals{0};
  std::atomic<int64_t> last_renewal_ms{0};
  const absl::Time start = absl::Now();
  TransferOptions options;
  options.keep_alive_interval = absl::Milliseconds(10);
  options.source_stall_timeout = absl::Milliseconds(300);
  options.keep_alive = [&] {
    ++renewals;
    last_renewal_ms = absl::ToInt64Milliseconds(absl::Now() - start);
    return absl::OkStatus();
  };
  std::unique_ptr<ChunkUploadStream> upload = target.OpenUpload(kJob, 1);
  absl::Status status = TransferChunks(source, kJob, chunks, *upload, options);
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_THAT(status.message(),
              HasSubstr("the source server sent nothing for 300ms"));
  // Renewed while within the bound, never after it (the read went on for
  // 2 s more).
  EXPECT_GE(renewals.load(), 1);
  EXPECT_LT(last_renewal_ms.load(), 1000);
  EXPECT_EQ(upload->chunks_sent(), 0u);
}

TEST(RatePacerTest, SpacesSendsToTheRateWithoutEarningBursts) {
  FakeClock clock;
  RatePacer pacer(1000, &clock);  // 1000 bytes per second
  EXPECT_EQ(pacer.Reserve(500), absl::ZeroDuration());
  EXPECT_EQ(pacer.Reserve(500), absl::Milliseconds(500));
  clock.Advance(absl::Milliseconds(500));
  EXPECT_EQ(pacer.Reserve(1000), absl::Milliseconds(500));
  // A long pause earns nothing: the next send waits for itself only.
  clock.Advance(absl::Seconds(60));
  EXPECT_EQ(pacer.Reserve(2000), absl::ZeroDuration());
  EXPECT_EQ(pacer.Reserve(1), absl::Seconds(2));

  RatePacer unlimited(0, &clock);
  EXPECT_EQ(unlimited.Reserve(uint64_t{1} << 40), absl::ZeroDuration());
}

}  // namespace
}  // namespace ckpt::client
