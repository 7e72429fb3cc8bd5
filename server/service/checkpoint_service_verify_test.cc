// CheckpointService: Verify, UniqueBytes and the per-job and per-tenant
// rows of GetStats.
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/service/checkpoint_service.h"
#include "server/storage/memory_store.h"
#include "tests/testing/service_test_util.h"

namespace ckpt::server {
namespace {

using ::ckpt::server::testing::SaveShard;
using ::ckpt::server::testing::ShardBuilder;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

constexpr char kJob[] = "team/model";
// 8-byte chunks (ShardBuilder's default chunk size).
const std::string kA(8, 'a');
const std::string kB(8, 'b');
const std::string kC(8, 'c');

class VerifyTest : public ::testing::Test {
 protected:
  VerifyTest() : service_(&store_, &store_, &clock_) {}

  absl::StatusOr<CommitResult> Save(const ShardBuilder& builder, int64_t step,
                                    int32_t world_size,
                                    absl::string_view job = kJob) {
    return SaveShard(service_, builder, step, world_size, job);
  }

  // Replaces a stored chunk's bytes behind the service's back, as a flipped
  // bit on disk would.
  void Corrupt(absl::string_view tenant, const std::string& bytes) {
    const ChunkId id = Sha256(bytes);
    ASSERT_TRUE(store_.Delete(tenant, id).ok());
    std::string flipped = bytes;
    flipped[3] ^= 0x01;
    ASSERT_TRUE(store_.Put(tenant, id, flipped).ok());
  }

  absl::StatusOr<VerifyReport> Verify(const VerifyOptions& options,
                                      const VerifyProgressFn& progress = {}) {
    return service_.Verify(options, progress);
  }

  FakeClock clock_;
  MemoryStore store_;
  CheckpointService service_;
};

VerifyOptions ReadData() {
  VerifyOptions options;
  options.read_data = true;
  return options;
}

TEST_F(VerifyTest, IntactCheckpointsPass) {
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kA + kB}}}, 1, 1).ok());
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kA + kC}}}, 2, 1).ok());
  auto report = Verify(ReadData());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok());
  EXPECT_EQ(report->checkpoints_checked, 2);
  EXPECT_EQ(report->chunks_checked, 3u);  // kA once
  EXPECT_EQ(report->chunks_read, 3u);
  EXPECT_EQ(report->bytes_read, 24u);
  EXPECT_TRUE(report->read_data);
  EXPECT_FALSE(report->read_data_subset.has_value());
}

TEST_F(VerifyTest, MissingChunkIsNamedWithEveryCheckpointReferencingIt) {
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kA + kB}}}, 1, 1).ok());
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kA + kC}}}, 2, 1).ok());
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kC}}}, 3, 1).ok());
  ASSERT_TRUE(store_.Delete("team", Sha256(kA)).ok());

  auto report = Verify({});  // existence only
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_FALSE(report->ok());
  EXPECT_EQ(report->chunks_read, 0u);
  EXPECT_EQ(report->damaged_chunk_count, 1u);
  ASSERT_EQ(report->damaged_chunks.size(), 1u);
  const VerifyReport::DamagedChunk& chunk = report->damaged_chunks[0];
  EXPECT_EQ(chunk.tenant, "team");
  EXPECT_EQ(chunk.id, Sha256(kA));
  EXPECT_EQ(chunk.size, 8u);
  EXPECT_EQ(chunk.problem, ChunkProblem::kMissing);
  EXPECT_EQ(chunk.checkpoints,
            (std::vector<CheckpointKey>{{kJob, 1}, {kJob, 2}}));
  ASSERT_EQ(report->damaged_checkpoints.size(), 2u);
  EXPECT_EQ(report->damaged_checkpoints[0].checkpoint,
            (CheckpointKey{kJob, 1}));
  EXPECT_EQ(report->damaged_checkpoints[0].missing_chunks, 1u);
  EXPECT_EQ(report->damaged_checkpoints[1].checkpoint,
            (CheckpointKey{kJob, 2}));

  // Scoped to one step, only that checkpoint is checked and named.
  VerifyOptions one;
  one.job = kJob;
  one.step = 2;
  auto scoped = Verify(one);
  ASSERT_TRUE(scoped.ok()) << scoped.status();
  EXPECT_EQ(scoped->checkpoints_checked, 1);
  ASSERT_EQ(scoped->damaged_chunks.size(), 1u);
  EXPECT_EQ(scoped->damaged_chunks[0].checkpoints,
            (std::vector<CheckpointKey>{{kJob, 2}}));
  one.step = 3;
  auto intact = Verify(one);
  ASSERT_TRUE(intact.ok()) << intact.status();
  EXPECT_TRUE(intact->ok());
}

TEST_F(VerifyTest, CorruptChunkIsFoundOnlyByReadingData) {
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kA + kB}}}, 1, 1).ok());
  Corrupt("team", kB);

  auto existence = Verify({});
  ASSERT_TRUE(existence.ok()) << existence.status();
  EXPECT_TRUE(existence->ok());

  auto report = Verify(ReadData());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_FALSE(report->ok());
  ASSERT_EQ(report->damaged_chunks.size(), 1u);
  EXPECT_EQ(report->damaged_chunks[0].id, Sha256(kB));
  EXPECT_EQ(report->damaged_chunks[0].problem, ChunkProblem::kCorrupt);
  EXPECT_THAT(report->damaged_chunks[0].detail, HasSubstr("hash to"));
  EXPECT_EQ(report->damaged_chunks[0].checkpoints,
            (std::vector<CheckpointKey>{{kJob, 1}}));
  ASSERT_EQ(report->damaged_checkpoints.size(), 1u);
  EXPECT_EQ(report->damaged_checkpoints[0].corrupt_chunks, 1u);
  EXPECT_EQ(report->chunks_read, 2u);
  // And a restore's read of it is DATA_LOSS, never the wrong bytes.
  EXPECT_TRUE(absl::IsDataLoss(service_.ReadChunk(kJob, Sha256(kB)).status()));
}

TEST_F(VerifyTest, ReadDataSubsetsPartitionTheChunks) {
  std::string bytes;
  for (int i = 0; i < 60; ++i) bytes += absl::StrCat("chunk", 100 + i);
  ASSERT_EQ(bytes.size(), 60u * 8);
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", bytes}}}, 1, 1).ok());
  std::set<ChunkId> all;
  for (size_t i = 0; i < bytes.size(); i += 8) {
    const std::string chunk = bytes.substr(i, 8);
    all.insert(Sha256(chunk));
    Corrupt("team", chunk);  // so each read shows up in the report
  }

  constexpr uint32_t kParts = 3;
  std::set<ChunkId> union_of_parts;
  uint64_t chunks_read = 0;
  for (uint32_t n = 1; n <= kParts; ++n) {
    VerifyOptions options;
    options.read_data_subset = ReadDataSubset{n, kParts};  // implies reading
    auto report = Verify(options);
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_TRUE(report->read_data);
    EXPECT_EQ(report->read_data_subset, (ReadDataSubset{n, kParts}));
    EXPECT_EQ(report->chunks_checked, 60u);  // existence covers everything
    EXPECT_GT(report->chunks_read, 0u) << "part " << n << " is empty";
    EXPECT_EQ(report->damaged_chunks.size(), report->chunks_read);
    chunks_read += report->chunks_read;
    for (const VerifyReport::DamagedChunk& chunk : report->damaged_chunks) {
      EXPECT_TRUE(union_of_parts.insert(chunk.id).second)
          << chunk.id.ShortHex() << " is in two parts";
    }
  }
  EXPECT_EQ(chunks_read, all.size());
  EXPECT_EQ(union_of_parts, all);
}

TEST_F(VerifyTest, PendingCheckpointsAreSkippedAndCounted) {
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kA}}}, 1, 1).ok());
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kB}}}, 2, 2).ok());  // 1 of 2 ranks
  ASSERT_TRUE(store_.Delete("team", Sha256(kB)).ok());
  auto report = Verify({});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->checkpoints_checked, 1);
  EXPECT_EQ(report->pending_skipped, 1);
  EXPECT_TRUE(report->ok());  // the pending one's chunk is not checked

  VerifyOptions pending;
  pending.job = kJob;
  pending.step = 2;
  auto refused = Verify(pending);
  EXPECT_TRUE(absl::IsNotFound(refused.status())) << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr("pending"));
}

TEST_F(VerifyTest, CheckpointWithoutAllShardsIsDamaged) {
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kA}}}, 1, 1).ok());
  // A header that claims more ranks than have shards, as a lost write would
  // leave it.
  auto record = store_.GetCheckpoint(kJob, 1);
  ASSERT_TRUE(record.ok());
  record->world_size = 3;
  MetadataBatch batch;
  batch.PutCheckpoint(*record);
  ASSERT_TRUE(store_.Apply(batch).ok());
  auto report = Verify({});
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->damaged_checkpoints.size(), 1u);
  EXPECT_THAT(report->damaged_checkpoints[0].problems,
              ElementsAre(HasSubstr("no stored shard for rank(s) 1, 2")));
  EXPECT_EQ(report->damaged_chunk_count, 0u);
}

TEST_F(VerifyTest, RefusesUnknownScopeAndBadSubset) {
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kA}}}, 1, 1).ok());
  VerifyOptions options;
  options.job = "team/nope";
  EXPECT_TRUE(absl::IsNotFound(Verify(options).status()));
  options.job = kJob;
  options.step = 7;
  EXPECT_TRUE(absl::IsNotFound(Verify(options).status()));
  options.job = "";
  options.step = 1;
  EXPECT_TRUE(absl::IsInvalidArgument(Verify(options).status()));
  options.job = "bad name";
  options.step.reset();
  EXPECT_TRUE(absl::IsInvalidArgument(Verify(options).status()));
  options.job = kJob;
  for (ReadDataSubset bad :
       {ReadDataSubset{0, 3}, ReadDataSubset{4, 3}, ReadDataSubset{1, 0}}) {
    options.read_data_subset = bad;
    auto status = Verify(options).status();
    EXPECT_TRUE(absl::IsInvalidArgument(status)) << bad.ToString();
    EXPECT_THAT(status.message(), HasSubstr(bad.ToString()));
  }
}

TEST_F(VerifyTest, ReportsProgressToTheEndAndStopsWhenTheCallbackFails) {
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kA + kB + kC}}}, 1, 1).ok());
  std::vector<VerifyProgress> seen;
  auto report = Verify(ReadData(), [&](const VerifyProgress& progress) {
    seen.push_back(progress);
    return absl::OkStatus();
  });
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.front(), (VerifyProgress{VerifyStage::kExistence, 0, 3}));
  EXPECT_EQ(seen.back(),
            (VerifyProgress{VerifyStage::kReadData, 3, 3, 24, 24}));

  int calls = 0;
  auto stopped = Verify(ReadData(), [&](const VerifyProgress&) {
    return ++calls == 2 ? absl::CancelledError("client went away")
                        : absl::OkStatus();
  });
  EXPECT_TRUE(absl::IsCancelled(stopped.status())) << stopped.status();
  EXPECT_EQ(calls, 2);
}

TEST_F(VerifyTest, ChunksAreReadWithoutTheLifecycleLock) {
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kA}}}, 1, 1).ok());
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kB}}}, 2, 1).ok());
  ASSERT_TRUE(store_.Delete("team", Sha256(kA)).ok());
  // Deleting step 1 while the data is read takes the lifecycle lock (it
  // would deadlock if Verify held it), and a checkpoint deleted meanwhile
  // is not reported damaged: GC may rightly have taken its chunks.
  bool deleted = false;
  auto report = Verify(ReadData(), [&](const VerifyProgress& progress) {
    if (progress.stage == VerifyStage::kReadData && !deleted) {
      deleted = true;
      return service_.DeleteCheckpoint(kJob, 1);
    }
    return absl::OkStatus();
  });
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(deleted);
  EXPECT_EQ(report->checkpoints_checked, 2);
  EXPECT_TRUE(report->ok()) << report->damaged_chunk_count;
}

TEST_F(VerifyTest, EveryJobAndTenantIsCoveredWithoutAJob) {
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kA}}}, 1, 1, "alice/m").ok());
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kA}}}, 1, 1, "bob/m").ok());
  ASSERT_TRUE(store_.Delete("bob", Sha256(kA)).ok());
  auto report = Verify({});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->checkpoints_checked, 2);
  EXPECT_EQ(report->chunks_checked, 2u);  // one per tenant
  ASSERT_EQ(report->damaged_chunks.size(), 1u);
  EXPECT_EQ(report->damaged_chunks[0].tenant, "bob");
  EXPECT_EQ(report->damaged_chunks[0].checkpoints,
            (std::vector<CheckpointKey>{{"bob/m", 1}}));
}

// ------------------------------------------------------------ unique bytes

TEST_F(VerifyTest, UniqueBytesCountOnlyChunksNoOtherCheckpointHas) {
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kA + kB}}}, 1, 1).ok());
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kA + kC}}}, 2, 1).ok());
  // Replicated across ranks: one chunk, counted once for step 3.
  const std::string kD(8, 'd');
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kD}}}, 3, 2).ok());
  ASSERT_TRUE(Save(ShardBuilder{1, {{"w", kD}}}, 3, 2).ok());
  auto unique = service_.UniqueBytes(kJob);
  ASSERT_TRUE(unique.ok()) << unique.status();
  EXPECT_THAT(*unique, ElementsAre(Pair(1, 8u), Pair(2, 8u), Pair(3, 8u)));

  // Another job of the tenant sharing kC, and a pending checkpoint sharing
  // kB, take those bytes out of "unique"; another tenant changes nothing.
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kC}}}, 1, 1, "team/other").ok());
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kB}}}, 4, 2).ok());  // pending
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kD}}}, 1, 1, "else/m").ok());
  unique = service_.UniqueBytes(kJob);
  ASSERT_TRUE(unique.ok()) << unique.status();
  EXPECT_THAT(*unique,
              ElementsAre(Pair(1, 0u), Pair(2, 0u), Pair(3, 8u), Pair(4, 0u)));

  EXPECT_TRUE(absl::IsNotFound(service_.UniqueBytes("team/nope").status()));
}

// ------------------------------------------------------------------ stats

TEST_F(VerifyTest, StatsHaveARowPerJobAndPerTenant) {
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kA + kB}}}, 1, 1, "t1/a").ok());
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kA + kB}}}, 2, 1, "t1/a").ok());
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kA}}}, 1, 1, "t1/b").ok());
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kC}}}, 1, 1, "t2/c").ok());
  ASSERT_TRUE(
      Save(ShardBuilder{0, {{"w", kC}}}, 2, 2, "t2/c").ok());  // pending

  auto stats = service_.GetStats("");
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->job_count, 3);
  EXPECT_EQ(stats->checkpoint_count, 4);
  EXPECT_EQ(stats->logical_bytes, 48u);
  EXPECT_EQ(stats->stored_bytes, 24u);
  ASSERT_EQ(stats->jobs.size(), 3u);
  EXPECT_EQ(stats->jobs[0].job, "t1/a");
  EXPECT_EQ(stats->jobs[0].checkpoint_count, 2);
  EXPECT_EQ(stats->jobs[0].logical_bytes, 32u);
  EXPECT_EQ(stats->jobs[2].job, "t2/c");
  EXPECT_EQ(stats->jobs[2].logical_bytes, 8u);
  ASSERT_EQ(stats->tenants.size(), 2u);
  EXPECT_EQ(stats->tenants[0].tenant, "t1");
  EXPECT_EQ(stats->tenants[0].job_count, 2);
  EXPECT_EQ(stats->tenants[0].checkpoint_count, 3);
  EXPECT_EQ(stats->tenants[0].logical_bytes, 40u);
  EXPECT_EQ(stats->tenants[0].stored_bytes, 16u);
  EXPECT_EQ(stats->tenants[0].chunk_count, 2u);
  EXPECT_EQ(stats->tenants[1].tenant, "t2");
  EXPECT_EQ(stats->tenants[1].stored_bytes, 8u);

  // For one job: its row, and its tenant's row over all of the tenant's jobs.
  auto job = service_.GetStats("t1/b");
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_EQ(job->jobs.size(), 1u);
  EXPECT_EQ(job->jobs[0].job, "t1/b");
  EXPECT_EQ(job->logical_bytes, 8u);
  ASSERT_EQ(job->tenants.size(), 1u);
  EXPECT_EQ(job->tenants[0].logical_bytes, 40u);
  EXPECT_EQ(job->tenants[0].job_count, 2);
  EXPECT_FALSE(stats->job_stored.has_value()) << "computed without a job";
}

TEST_F(VerifyTest, AJobsStoredBytesAreWhatItReferencesWithSharedApart) {
  // t1/a references kA and kB (twice: dedup), t1/b kA; t2/x holds kA too,
  // but chunks are deduplicated per tenant, so it shares nothing with t1.
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kA + kB}}}, 1, 1, "t1/a").ok());
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kA + kB}}}, 2, 1, "t1/a").ok());
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kA}}}, 1, 1, "t1/b").ok());
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kA + kC}}}, 1, 1, "t2/x").ok());
  // A pending checkpoint of t2/x's own is not sharing.
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kC}}}, 2, 2, "t2/x").ok());

  const auto stored_of = [&](absl::string_view job) {
    auto stats = service_.GetStats(job);
    EXPECT_TRUE(stats.ok()) << stats.status();
    EXPECT_TRUE(stats.ok() && stats->job_stored.has_value()) << job;
    return stats.ok() ? stats->job_stored.value_or(JobStoredBytes{})
                      : JobStoredBytes{};
  };
  JobStoredBytes a = stored_of("t1/a");
  EXPECT_EQ(a.stored_bytes, 16u);
  EXPECT_EQ(a.chunk_count, 2u);
  EXPECT_EQ(a.shared_bytes, 8u);
  EXPECT_EQ(a.shared_chunk_count, 1u);
  JobStoredBytes b = stored_of("t1/b");
  EXPECT_EQ(b.stored_bytes, 8u);
  EXPECT_EQ(b.shared_bytes, 8u);
  JobStoredBytes x = stored_of("t2/x");
  EXPECT_EQ(x.stored_bytes, 16u);
  EXPECT_EQ(x.chunk_count, 2u);
  EXPECT_EQ(x.shared_bytes, 0u);
  EXPECT_EQ(x.shared_chunk_count, 0u);

  // Another job's pending checkpoint keeps kB as well: shared now.
  ASSERT_TRUE(Save(ShardBuilder{0, {{"w", kB}}}, 1, 2, "t1/e").ok());
  a = stored_of("t1/a");
  EXPECT_EQ(a.stored_bytes, 16u);
  EXPECT_EQ(a.shared_bytes, 16u);
  EXPECT_EQ(a.shared_chunk_count, 2u);
  // A job without a committed checkpoint stores nothing of its own.
  JobStoredBytes e = stored_of("t1/e");
  EXPECT_EQ(e.stored_bytes, 0u);
  EXPECT_EQ(e.shared_bytes, 0u);
}

}  // namespace
}  // namespace ckpt::server
