// CheckpointService input hygiene (issue 13): piece sizes held against the
// stored chunks at commit, verify's size check, the lease cap (requests,
// renewals and leases stored before the cap), and client text quoted
// truncated and escaped in errors and stored reasons.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/service/checkpoint_service.h"
#include "tests/testing/service_test_util.h"

namespace ckpt::server {
namespace {

using ::ckpt::server::testing::CheckpointServiceTest;
using ::ckpt::server::testing::kJob;
using ::ckpt::server::testing::ShardBuilder;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

const std::string kA(100, 'a');
const std::string kB(60, 'b');

// A uint8 tensor of kA + kB whose two pieces name kA and kB with the sizes
// given: 100 and 60 are right, 60 and 100 add up the same yet are wrong.
ShardManifest TwoPieces(uint64_t a_size, uint64_t b_size) {
  TensorEntry tensor;
  tensor.name = "w";
  tensor.dtype = DType::kUint8;
  tensor.global_shape = {160};
  tensor.box = Box{{0}, {160}};
  tensor.pieces = {ChunkRef{Sha256(kA), a_size}, ChunkRef{Sha256(kB), b_size}};
  ShardManifest shard;
  shard.tensors.push_back(tensor);
  return shard;
}

class HygieneTest : public CheckpointServiceTest {
 protected:
  void BeginAndUpload(int64_t step) {
    ASSERT_TRUE(
        service_.BeginCheckpoint(kJob, step, 1, {}, absl::ZeroDuration()).ok());
    ASSERT_TRUE(service_.PutChunk(kJob, Sha256(kA), kA).ok());
    ASSERT_TRUE(service_.PutChunk(kJob, Sha256(kB), kB).ok());
  }

  std::vector<std::string> EventKinds() {
    std::vector<std::string> kinds;
    auto events = service_.ListEvents(kJob, 0);
    EXPECT_TRUE(events.ok()) << events.status();
    if (events.ok()) {
      for (const JobEvent& event : *events) {
        kinds.emplace_back(EventKindName(event.kind));
      }
    }
    return kinds;
  }
};

TEST_F(HygieneTest, CommitRefusesAPieceWhoseSizeIsNotItsChunks) {
  BeginAndUpload(1);
  auto commit = service_.CommitShard(kJob, 1, 1, TwoPieces(60, 100));
  EXPECT_TRUE(absl::IsInvalidArgument(commit.status())) << commit.status();
  const std::string message(commit.status().message());
  EXPECT_THAT(message, HasSubstr("tensor 'w' piece 0 records 60 bytes"));
  EXPECT_THAT(message, HasSubstr(Sha256(kA).ShortHex()));
  EXPECT_THAT(message, HasSubstr("holds 100"));
  // Nothing committed, no event; the checkpoint is still pending.
  EXPECT_THAT(VisibleSteps(), IsEmpty());
  EXPECT_THAT(EventKinds(), Not(::testing::Contains("committed")));
  auto record = store_.GetCheckpoint(kJob, 1);
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->state, CheckpointState::kPending);
  EXPECT_TRUE(record->committed_ranks.empty());
  // The right sizes commit.
  auto good = service_.CommitShard(kJob, 1, 1, TwoPieces(100, 60));
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_TRUE(good->checkpoint_committed);
}

TEST_F(HygieneTest, CommitChecksEveryPieceNotOnlyEachChunksFirstUse) {
  BeginAndUpload(1);
  // kA twice: right the first time, wrong the second; the box is 200 bytes.
  ShardManifest shard = TwoPieces(100, 100);
  shard.tensors[0].global_shape = {200};
  shard.tensors[0].box = Box{{0}, {200}};
  shard.tensors[0].pieces = {ChunkRef{Sha256(kA), 100},
                             ChunkRef{Sha256(kA), 40},
                             ChunkRef{Sha256(kB), 60}};
  auto commit = service_.CommitShard(kJob, 1, 1, shard);
  EXPECT_TRUE(absl::IsInvalidArgument(commit.status())) << commit.status();
  EXPECT_THAT(commit.status().message(), HasSubstr("piece 1 records 40"));
  EXPECT_THAT(VisibleSteps(), IsEmpty());
}

// Stored row fingerprints' pieces too: sizes that add up to the record the
// entry needs (32 + 16 a row) but misstate each chunk are refused.
TEST_F(HygieneTest, CommitRefusesAFingerprintPieceWhoseSizeIsNotItsChunks) {
  BeginAndUpload(1);
  const std::string record_tail(92, 'c');
  ASSERT_TRUE(service_.PutChunk(kJob, Sha256(record_tail), record_tail).ok());
  ShardManifest shard = TwoPieces(100, 60);
  TensorEntry& table = shard.tensors[0];
  table.global_shape = {10, 16};
  table.box = Box{{0, 0}, {10, 16}};
  table.fingerprint_pieces = {ChunkRef{Sha256(kA), 92},
                              ChunkRef{Sha256(record_tail), 100}};
  auto commit = service_.CommitShard(kJob, 1, 1, shard);
  EXPECT_TRUE(absl::IsInvalidArgument(commit.status())) << commit.status();
  EXPECT_THAT(commit.status().message(),
              HasSubstr("tensor 'w' fingerprint piece 0 records 92 bytes"));
  EXPECT_THAT(VisibleSteps(), IsEmpty());
  EXPECT_THAT(EventKinds(), Not(::testing::Contains("committed")));
  table.fingerprint_pieces = {ChunkRef{Sha256(kA), 100},
                              ChunkRef{Sha256(record_tail), 92}};
  auto good = service_.CommitShard(kJob, 1, 1, shard);
  ASSERT_TRUE(good.ok()) << good.status();
}

TEST_F(HygieneTest, AMissingChunkIsStillFailedPrecondition) {
  ASSERT_TRUE(
      service_.BeginCheckpoint(kJob, 1, 1, {}, absl::ZeroDuration()).ok());
  ASSERT_TRUE(service_.PutChunk(kJob, Sha256(kA), kA).ok());
  auto commit = service_.CommitShard(kJob, 1, 1, TwoPieces(100, 60));
  EXPECT_TRUE(absl::IsFailedPrecondition(commit.status())) << commit.status();
}

// What a server before the commit-time check let through: a committed
// checkpoint whose manifest names a chunk with another size.
void PlantCommitted(MetadataStore& store, int64_t step,
                    const ShardManifest& shard, absl::Time now) {
  CheckpointRecord record;
  record.job = kJob;
  record.step = step;
  record.state = CheckpointState::kCommitted;
  record.world_size = 1;
  record.create_time = now;
  record.commit_time = now;
  record.committed_ranks = {0};
  record.logical_bytes = shard.ByteSize();
  MetadataBatch batch;
  batch.PutCheckpoint(record);
  batch.PutShard(kJob, step, shard);
  ASSERT_TRUE(store.Apply(batch).ok());
}

TEST_F(HygieneTest, VerifyReportsASizeMismatchWithoutReadingData) {
  BeginAndUpload(1);
  ASSERT_TRUE(service_.CommitShard(kJob, 1, 1, TwoPieces(100, 60)).ok());
  PlantCommitted(store_, 2, TwoPieces(60, 100), clock_.Now());

  for (bool read_data : {false, true}) {
    SCOPED_TRACE(read_data);
    VerifyOptions options;
    options.read_data = read_data;
    auto report = service_.Verify(options, {});
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_FALSE(report->ok());
    EXPECT_EQ(report->damaged_chunk_count, 2u);
    ASSERT_EQ(report->damaged_chunks.size(), 2u);
    for (const auto& chunk : report->damaged_chunks) {
      EXPECT_EQ(chunk.problem, ChunkProblem::kSizeMismatch);
      // Only step 2 records the wrong size.
      EXPECT_EQ(chunk.checkpoints, (std::vector<CheckpointKey>{{kJob, 2}}));
      const bool is_a = chunk.id == Sha256(kA);
      EXPECT_EQ(chunk.size, is_a ? 60u : 100u);
      EXPECT_THAT(chunk.detail,
                  HasSubstr(is_a ? "record 60 bytes but the store holds 100"
                                 : "record 100 bytes but the store holds 60"));
    }
    ASSERT_EQ(report->damaged_checkpoints.size(), 1u);
    EXPECT_EQ(report->damaged_checkpoints[0].checkpoint,
              (CheckpointKey{kJob, 2}));
    EXPECT_EQ(report->damaged_checkpoints[0].corrupt_chunks, 2u);
    EXPECT_EQ(report->damaged_checkpoints[0].missing_chunks, 0u);
  }
}

// ---- Leases ----

TEST_F(HygieneTest, BeginRefusesALeaseBeyondTheCapAndCreatesNothing) {
  auto begun =
      service_.BeginCheckpoint(kJob, 1, 1, {}, absl::Seconds(int64_t{1} << 62));
  EXPECT_TRUE(absl::IsInvalidArgument(begun.status())) << begun.status();
  EXPECT_THAT(begun.status().message(), HasSubstr("maximum of 1h"));
  EXPECT_THAT(begun.status().message(), HasSubstr("--max-lease-seconds"));
  EXPECT_TRUE(absl::IsNotFound(service_.ListCheckpoints(kJob, true).status()));
  // The cap itself is fine.
  auto capped = service_.BeginCheckpoint(kJob, 1, 1, {}, absl::Hours(1));
  ASSERT_TRUE(capped.ok()) << capped.status();
  EXPECT_EQ(capped->record.lease_expiry, clock_.Now() + absl::Hours(1));
}

TEST_F(HygieneTest, ServiceOptionsNeedTheDefaultLeaseWithinTheCap) {
  ServiceOptions options;
  EXPECT_TRUE(ValidateServiceOptions(options).ok());
  options.default_lease = absl::Hours(2);
  const absl::Status status = ValidateServiceOptions(options);
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("at most the maximum lease (1h)"));
  options.default_lease = absl::Minutes(1);
  options.max_lease = absl::ZeroDuration();
  EXPECT_FALSE(ValidateServiceOptions(options).ok());
}

// Step 7 of kJob, pending for 2 ranks since `created`, with the lease of
// 2^62 seconds a server without the cap accepted.
void PlantEndlessLease(MetadataStore& store, absl::Time created) {
  CheckpointRecord record;
  record.job = kJob;
  record.step = 7;
  record.state = CheckpointState::kPending;
  record.world_size = 2;
  record.create_time = created;
  record.lease_duration = absl::Seconds(int64_t{1} << 62);
  record.lease_expiry = record.create_time + record.lease_duration;
  MetadataBatch batch;
  batch.PutJob(MakeJobRecord(kJob, record.create_time));
  batch.PutCheckpoint(record);
  ASSERT_TRUE(store.Apply(batch).ok());
}

// A pending checkpoint written by a server without the cap, with a lease of
// 2^62 seconds, begun before this service started: GC skips its tenant while
// it is pending, so it must end.
TEST_F(HygieneTest, AStoredEndlessLeaseIsCutToTheCapAndExpires) {
  PlantEndlessLease(store_, clock_.Now() - absl::Hours(5));

  auto gc = service_.CollectGarbage({});
  ASSERT_TRUE(gc.ok()) << gc.status();
  EXPECT_EQ(gc->skipped_tenants.size(), 1u);

  auto expired = service_.ExpireLeases();
  ASSERT_TRUE(expired.ok()) << expired.status();
  EXPECT_EQ(*expired, 0);
  auto cut = store_.GetCheckpoint(kJob, 7);
  ASSERT_TRUE(cut.ok());
  EXPECT_EQ(cut->lease_expiry, clock_.Now() + absl::Hours(1));
  EXPECT_EQ(cut->lease_duration, absl::Hours(1));

  clock_.Advance(absl::Minutes(61));
  expired = service_.ExpireLeases();
  ASSERT_TRUE(expired.ok()) << expired.status();
  EXPECT_EQ(*expired, 1);
  gc = service_.CollectGarbage({});
  ASSERT_TRUE(gc.ok()) << gc.status();
  EXPECT_THAT(gc->skipped_tenants, IsEmpty());
}

TEST_F(HygieneTest, RenewalsOfAStoredEndlessLeaseStayWithinTheCap) {
  PlantEndlessLease(store_, clock_.Now());

  auto joined = service_.BeginCheckpoint(kJob, 7, 2, {}, absl::Minutes(5));
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_EQ(joined->record.lease_expiry, clock_.Now() + absl::Hours(1));
  // Rank 0 commits: the renewal uses the stored (now 5 min) duration.
  ASSERT_TRUE(service_.PutChunk(kJob, Sha256(kA), kA).ok());
  clock_.Advance(absl::Minutes(59));
  auto commit = service_.CommitShard(
      kJob, 7, 2, ShardBuilder{0, {{"w", kA}}, 100}.Manifest());
  ASSERT_TRUE(commit.ok()) << commit.status();
  EXPECT_LE(commit->record.lease_expiry, clock_.Now() + absl::Hours(1));
  clock_.Advance(absl::Minutes(61));
  auto expired = service_.ExpireLeases();
  ASSERT_TRUE(expired.ok());
  EXPECT_EQ(*expired, 1);
}

// ---- Client text in errors and stored reasons ----

TEST_F(HygieneTest, AHugeJobNameIsQuotedTruncatedWithItsLength) {
  const std::string job = "team/" + std::string(9995, 'x');
  auto begun = service_.BeginCheckpoint(job, 1, 1, {}, absl::ZeroDuration());
  EXPECT_TRUE(absl::IsInvalidArgument(begun.status())) << begun.status();
  const std::string message(begun.status().message());
  EXPECT_LT(message.size(), 300u);
  EXPECT_THAT(message, HasSubstr(absl::StrCat("'", job.substr(0, 64),
                                              "...' (10000 bytes)")));
  EXPECT_THAT(message, HasSubstr("longer than the 256-byte limit"));
}

TEST_F(HygieneTest, ControlBytesInAJobNameAreEscaped) {
  auto begun = service_.BeginCheckpoint("team/a\nE0000 forged log line", 1, 1,
                                        {}, absl::ZeroDuration());
  EXPECT_TRUE(absl::IsInvalidArgument(begun.status()));
  EXPECT_THAT(begun.status().message(), Not(HasSubstr("\n")));
  EXPECT_THAT(begun.status().message(), HasSubstr("a\\nE0000"));
}

TEST_F(HygieneTest, AHugeTensorNameIsQuotedTruncated) {
  BeginAndUpload(1);
  ShardManifest shard = TwoPieces(100, 60);
  shard.tensors[0].name = std::string(1 << 20, 'n');
  auto commit = service_.CommitShard(kJob, 1, 1, shard);
  EXPECT_TRUE(absl::IsInvalidArgument(commit.status())) << commit.status();
  EXPECT_LT(commit.status().message().size(), 300u);
  EXPECT_THAT(commit.status().message(), HasSubstr("(1048576 bytes)"));
  EXPECT_THAT(commit.status().message(), HasSubstr("1024-byte limit"));
}

TEST_F(HygieneTest, MetricNamesAreBoundedAndQuotedTruncated) {
  CheckpointMetadata meta;
  meta.metrics[std::string(5000, 'm')] = 1.0;
  auto begun = service_.BeginCheckpoint(kJob, 1, 1, meta, absl::ZeroDuration());
  EXPECT_TRUE(absl::IsInvalidArgument(begun.status()));
  EXPECT_LT(begun.status().message().size(), 300u);
  EXPECT_THAT(begun.status().message(), HasSubstr("(5000 bytes)"));

  RetentionPolicy policy;
  policy.keep_best =
      RetentionPolicy::KeepBest{.k = 1, .metric = std::string(5000, 'l')};
  const absl::Status set =
      service_.BeginCheckpoint(kJob, 1, 1, {}, absl::ZeroDuration(), policy)
          .status();
  EXPECT_TRUE(absl::IsInvalidArgument(set)) << set;
  EXPECT_LT(set.message().size(), 300u);
  EXPECT_THAT(set.message(), HasSubstr("(5000 bytes)"));
}

TEST_F(HygieneTest, AnAbortReasonIsStoredBoundedAndEscaped) {
  ASSERT_TRUE(
      service_.BeginCheckpoint(kJob, 1, 1, {}, absl::ZeroDuration()).ok());
  const std::string reason = "rank 3 died\n" + std::string(100000, 'r');
  ASSERT_TRUE(service_.AbortCheckpoint(kJob, 1, reason).ok());
  auto record = store_.GetCheckpoint(kJob, 1);
  ASSERT_TRUE(record.ok());
  EXPECT_LE(record->abort_reason.size(), 1024u);
  EXPECT_THAT(record->abort_reason, ::testing::StartsWith("rank 3 died\\nrrr"));
  EXPECT_THAT(record->abort_reason, ::testing::EndsWith("r..."));
  auto events = service_.ListEvents(kJob, 0);
  ASSERT_TRUE(events.ok());
  ASSERT_FALSE(events->empty());
  EXPECT_LE(events->back().detail.size(), 1024u);
  EXPECT_THAT(events->back().detail, Not(HasSubstr("\n")));
}

}  // namespace
}  // namespace ckpt::server
