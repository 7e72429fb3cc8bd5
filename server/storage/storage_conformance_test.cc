// The conformance suite every ChunkStore + MetadataStore implementation must
// pass. Each case runs against every backend of ConformanceBackends(): the
// binary storage_conformance_test links the local stores
// (storage_conformance_local_backends.cc), storage_conformance_rados_test the
// RADOS ones against a Ceph cluster (storage_conformance_rados_backends.cc).
// Past 600 lines on purpose: one suite that every store must pass, so it
// lives in one file.
#include "server/storage/storage_conformance.h"

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/store_test_util.h"

namespace ckpt::server {
namespace {

using ::ckpt::server::conformance::Backend;
using ::ckpt::server::conformance::StoreUnderTest;
using ::ckpt::server::testing::IdOf;
using ::ckpt::server::testing::MakeEvent;
using ::ckpt::server::testing::MakeJob;
using ::ckpt::server::testing::MakeRecord;
using ::ckpt::server::testing::MakeShard;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class StorageConformanceTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    under_test_ = GetParam().make();
    ASSERT_NE(under_test_->chunks, nullptr);
    chunks_ = under_test_->chunks;
    metadata_ = under_test_->metadata;
  }

  // Puts `bytes` for `tenant`, expecting success; returns whether it was new.
  bool PutChunk(absl::string_view tenant, absl::string_view bytes) {
    auto put = chunks_->Put(tenant, IdOf(bytes), bytes);
    EXPECT_TRUE(put.ok()) << put.status();
    return put.ok() && *put;
  }

  std::vector<int64_t> Steps(absl::string_view job) {
    auto records = metadata_->ListCheckpoints(job);
    EXPECT_TRUE(records.ok()) << records.status();
    std::vector<int64_t> steps;
    if (records.ok()) {
      for (const CheckpointRecord& r : *records) steps.push_back(r.step);
    }
    return steps;
  }

  std::vector<int32_t> Ranks(absl::string_view job, int64_t step) {
    auto shards = metadata_->GetShards(job, step);
    EXPECT_TRUE(shards.ok()) << shards.status();
    std::vector<int32_t> ranks;
    if (shards.ok()) {
      for (const ShardManifest& s : *shards) ranks.push_back(s.rank);
    }
    return ranks;
  }

  void ApplyOk(const MetadataBatch& batch) {
    absl::Status status = metadata_->Apply(batch);
    ASSERT_TRUE(status.ok()) << status;
  }

  std::unique_ptr<StoreUnderTest> under_test_;
  ChunkStore* chunks_ = nullptr;
  MetadataStore* metadata_ = nullptr;
};

// ---- ChunkStore ----

TEST_P(StorageConformanceTest, PutGetContainsDeleteRoundTrip) {
  const std::string small = "small chunk";
  const std::string large(1 << 20, 'L');  // past min_blob_size: a blob
  EXPECT_TRUE(PutChunk("acme", small));
  EXPECT_TRUE(PutChunk("acme", large));
  ASSERT_TRUE(chunks_->Sync().ok());

  auto got = chunks_->Get("acme", IdOf(small));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, small);
  got = chunks_->Get("acme", IdOf(large));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, large);

  const std::vector<ChunkId> ids = {IdOf(small), IdOf("absent"), IdOf(large)};
  auto contains = chunks_->Contains("acme", ids);
  ASSERT_TRUE(contains.ok()) << contains.status();
  EXPECT_THAT(*contains, ElementsAre(true, false, true));

  ASSERT_TRUE(chunks_->Delete("acme", IdOf(small)).ok());
  ASSERT_TRUE(chunks_->Delete("acme", IdOf("never stored")).ok());
  EXPECT_EQ(chunks_->Get("acme", IdOf(small)).status().code(),
            absl::StatusCode::kNotFound);
  contains = chunks_->Contains("acme", ids);
  ASSERT_TRUE(contains.ok());
  EXPECT_THAT(*contains, ElementsAre(false, false, true));
  // Deleted chunks can be stored again.
  EXPECT_TRUE(PutChunk("acme", small));
}

TEST_P(StorageConformanceTest, ReadVerifiedHandsOverTheCheckedBytes) {
  const std::string small = "small chunk";
  const std::string large(1 << 20, 'L');
  EXPECT_TRUE(PutChunk("acme", small));
  EXPECT_TRUE(PutChunk("acme", large));
  for (const std::string* bytes : {&small, &large}) {
    std::string seen;
    absl::Status status =
        chunks_->ReadVerified("acme", IdOf(*bytes), [&](absl::string_view v) {
          seen.assign(v.data(), v.size());
          return absl::OkStatus();
        });
    ASSERT_TRUE(status.ok()) << status;
    EXPECT_TRUE(seen == *bytes);
  }
  // The consumer's status comes back as it is.
  absl::Status refused = chunks_->ReadVerified(
      "acme", IdOf(small),
      [](absl::string_view) { return absl::AbortedError("enough"); });
  EXPECT_EQ(refused.code(), absl::StatusCode::kAborted);
  bool called = false;
  absl::Status missing =
      chunks_->ReadVerified("acme", IdOf("absent"), [&](absl::string_view) {
        called = true;
        return absl::OkStatus();
      });
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(called);
  missing = chunks_->ReadVerified(
      "other", IdOf(small), [](absl::string_view) { return absl::OkStatus(); });
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
}

TEST_P(StorageConformanceTest, ReadVerifiedBytesReturnsTheCheckedBytes) {
  const std::string small = "small chunk";
  const std::string large(1 << 20, 'L');
  EXPECT_TRUE(PutChunk("acme", small));
  EXPECT_TRUE(PutChunk("acme", large));
  for (const std::string* bytes : {&small, &large}) {
    absl::StatusOr<std::string> read =
        chunks_->ReadVerifiedBytes("acme", IdOf(*bytes));
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_TRUE(*read == *bytes);
  }
  EXPECT_EQ(chunks_->ReadVerifiedBytes("acme", IdOf("absent")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(chunks_->ReadVerifiedBytes("other", IdOf(small)).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_P(StorageConformanceTest, GetOfMissingChunkIsNotFoundNamingIt) {
  const ChunkId id = IdOf("missing");
  auto got = chunks_->Get("acme", id);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(got.status().message()), HasSubstr(id.ShortHex()));
}

TEST_P(StorageConformanceTest, ContainsOfNoIdsIsEmpty) {
  auto contains = chunks_->Contains("acme", {});
  ASSERT_TRUE(contains.ok());
  EXPECT_TRUE(contains->empty());
}

TEST_P(StorageConformanceTest,
       SizesGivesEachStoredChunksSizeAndNulloptForAbsent) {
  const std::string small = "small chunk";
  const std::string large(1 << 20, 'L');  // a blob in RocksDB
  EXPECT_TRUE(PutChunk("acme", small));
  EXPECT_TRUE(PutChunk("acme", large));
  const std::vector<ChunkId> ids = {IdOf(large), IdOf("absent"), IdOf(small),
                                    IdOf(large)};
  // Before and after Sync: from the memtable and from the files.
  for (bool synced : {false, true}) {
    SCOPED_TRACE(synced);
    if (synced) {
      ASSERT_TRUE(chunks_->Sync().ok());
    }
    auto sizes = chunks_->Sizes("acme", ids);
    ASSERT_TRUE(sizes.ok()) << sizes.status();
    EXPECT_THAT(*sizes,
                ElementsAre(std::optional<uint64_t>(large.size()), std::nullopt,
                            std::optional<uint64_t>(small.size()),
                            std::optional<uint64_t>(large.size())));
  }
  // Another tenant, the empty tenant and no ids see nothing.
  for (absl::string_view other : {"bob", "", "acm"}) {
    auto sizes = chunks_->Sizes(other, ids);
    ASSERT_TRUE(sizes.ok()) << sizes.status();
    EXPECT_THAT(*sizes, ::testing::Each(std::nullopt));
  }
  auto none = chunks_->Sizes("acme", {});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  ASSERT_TRUE(chunks_->Delete("acme", IdOf(small)).ok());
  auto sizes = chunks_->Sizes("acme", {IdOf(small)});
  ASSERT_TRUE(sizes.ok());
  EXPECT_THAT(*sizes, ElementsAre(std::nullopt));
}

TEST_P(StorageConformanceTest, PutRejectsEmptyTenant) {
  EXPECT_EQ(chunks_->Put("", IdOf("x"), "x").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(StorageConformanceTest, ChunksOfOneTenantAreInvisibleToAnother) {
  const std::string bytes = "secret weights";
  EXPECT_TRUE(PutChunk("alice", bytes));
  // "alice.x" shares a string prefix with "alice": still another tenant.
  for (absl::string_view other : {"bob", "alice.x", "alic"}) {
    SCOPED_TRACE(other);
    EXPECT_EQ(chunks_->Get(other, IdOf(bytes)).status().code(),
              absl::StatusCode::kNotFound);
    auto contains = chunks_->Contains(other, {IdOf(bytes)});
    ASSERT_TRUE(contains.ok());
    EXPECT_THAT(*contains, ElementsAre(false));
    auto usage = chunks_->GetUsage(other);
    ASSERT_TRUE(usage.ok());
    EXPECT_EQ(usage->chunk_count, 0u);
    EXPECT_EQ(usage->bytes, 0u);
    int visited = 0;
    ASSERT_TRUE(chunks_
                    ->ForEach(other,
                              [&](absl::string_view, const ChunkId&, uint64_t) {
                                ++visited;
                                return absl::OkStatus();
                              })
                    .ok());
    EXPECT_EQ(visited, 0);
    // Deleting through another tenant leaves the chunk alone.
    ASSERT_TRUE(chunks_->Delete(other, IdOf(bytes)).ok());
  }
  // The same bytes stored by bob are a separate, new entry.
  EXPECT_TRUE(PutChunk("bob", bytes));
  auto got = chunks_->Get("alice", IdOf(bytes));
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, bytes);
}

TEST_P(StorageConformanceTest, PutIsIdempotentAndUsageCountsEachChunkOnce) {
  EXPECT_TRUE(PutChunk("acme", "aaaa"));
  EXPECT_FALSE(PutChunk("acme", "aaaa"));
  EXPECT_TRUE(PutChunk("acme", "bbbbbb"));
  EXPECT_TRUE(PutChunk("zeta", "aaaa"));
  ASSERT_TRUE(chunks_->Sync().ok());
  EXPECT_FALSE(PutChunk("acme", "aaaa"));  // still present after Sync

  auto acme = chunks_->GetUsage("acme");
  ASSERT_TRUE(acme.ok()) << acme.status();
  EXPECT_EQ(acme->chunk_count, 2u);
  EXPECT_EQ(acme->bytes, 10u);
  auto all = chunks_->GetUsage("");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->chunk_count, 3u);
  EXPECT_EQ(all->bytes, 14u);

  ASSERT_TRUE(chunks_->Delete("acme", IdOf("aaaa")).ok());
  acme = chunks_->GetUsage("acme");
  ASSERT_TRUE(acme.ok());
  EXPECT_EQ(acme->chunk_count, 1u);
  EXPECT_EQ(acme->bytes, 6u);
}

TEST_P(StorageConformanceTest, ConcurrentPutsOfOneChunkReportItNewOnce) {
  const std::string bytes(64 << 10, 'c');
  std::atomic<int> news{0};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  threads.reserve(8);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        auto put = chunks_->Put("acme", IdOf(bytes), bytes);
        if (!put.ok()) {
          ++errors;
        } else if (*put) {
          ++news;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(news.load(), 1);
  auto usage = chunks_->GetUsage("acme");
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->chunk_count, 1u);
  EXPECT_EQ(usage->bytes, bytes.size());
}

TEST_P(StorageConformanceTest, ForEachVisitsInTenantIdOrderAndStopsEarly) {
  std::vector<std::pair<std::string, ChunkId>> expected;
  for (absl::string_view tenant : {"b", "a", "a.b"}) {
    for (int i = 0; i < 5; ++i) {
      const std::string bytes = absl::StrCat(tenant, "-", i, "-payload");
      EXPECT_TRUE(PutChunk(tenant, bytes));
      expected.emplace_back(std::string(tenant), IdOf(bytes));
    }
  }
  std::sort(expected.begin(), expected.end());

  std::vector<std::pair<std::string, ChunkId>> seen;
  ASSERT_TRUE(chunks_
                  ->ForEach("",
                            [&](absl::string_view tenant, const ChunkId& id,
                                uint64_t size) {
                              EXPECT_GT(size, 0u);
                              seen.emplace_back(std::string(tenant), id);
                              return absl::OkStatus();
                            })
                  .ok());
  EXPECT_EQ(seen, expected);

  seen.clear();
  ASSERT_TRUE(
      chunks_
          ->ForEach(
              "a",
              [&](absl::string_view tenant, const ChunkId& id, uint64_t size) {
                EXPECT_EQ(size, absl::StrCat("a-0-payload").size());
                seen.emplace_back(std::string(tenant), id);
                return absl::OkStatus();
              })
          .ok());
  ASSERT_EQ(seen.size(), 5u);
  const std::vector<std::pair<std::string, ChunkId>> first_tenant(
      expected.begin(), expected.begin() + 5);
  EXPECT_EQ(seen, first_tenant);

  int calls = 0;
  absl::Status stopped =
      chunks_->ForEach("", [&](absl::string_view, const ChunkId&, uint64_t) {
        return ++calls == 3 ? absl::CancelledError("enough") : absl::OkStatus();
      });
  EXPECT_EQ(stopped.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(calls, 3);
}

TEST_P(StorageConformanceTest, ForEachCallbackMayDeleteChunks) {
  for (int i = 0; i < 4; ++i) PutChunk("acme", absl::StrCat("gc-", i));
  int visited = 0;
  ASSERT_TRUE(
      chunks_
          ->ForEach("acme",
                    [&](absl::string_view tenant, const ChunkId& id, uint64_t) {
                      ++visited;
                      return chunks_->Delete(tenant, id);
                    })
          .ok());
  EXPECT_EQ(visited, 4);
  auto usage = chunks_->GetUsage("acme");
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->chunk_count, 0u);
}

TEST_P(StorageConformanceTest, MarkUsedReportsWhichChunksArePresent) {
  EXPECT_TRUE(PutChunk("acme", "used"));
  EXPECT_TRUE(PutChunk("bob", "bobs"));
  auto marked =
      chunks_->MarkUsed("acme", {IdOf("used"), IdOf("absent"), IdOf("bobs")});
  ASSERT_TRUE(marked.ok()) << marked.status();
  EXPECT_THAT(*marked, ElementsAre(true, false, false));
  // A mark never creates a chunk.
  auto contains = chunks_->Contains("acme", {IdOf("absent"), IdOf("bobs")});
  ASSERT_TRUE(contains.ok());
  EXPECT_THAT(*contains, ElementsAre(false, false));
  auto none = chunks_->MarkUsed("acme", {});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  // A cutoff in the future: no use is at or after it, so the chunk goes.
  auto deleted = chunks_->DeleteIfUnusedSince("acme", IdOf("used"),
                                              absl::InfiniteFuture());
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_TRUE(*deleted);
  EXPECT_EQ(chunks_->Get("acme", IdOf("used")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(chunks_->Get("bob", IdOf("bobs")).ok());
}

// ---- MetadataStore ----

TEST_P(StorageConformanceTest, JobsAreListedInNameOrderAndReplaced) {
  auto missing = metadata_->GetJob("t/none");
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());

  MetadataBatch batch;
  batch.PutJob(MakeJob("t/b"));
  batch.PutJob(MakeJob("t/a"));
  batch.PutJob(MakeJob("s/z"));
  ApplyOk(batch);
  JobRecord replaced = MakeJob("t/a");
  replaced.create_time = absl::FromUnixSeconds(5);
  MetadataBatch replace;
  replace.PutJob(replaced);
  ApplyOk(replace);

  auto jobs = metadata_->ListJobs();
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  ASSERT_EQ(jobs->size(), 3u);
  EXPECT_EQ((*jobs)[0].name, "s/z");
  EXPECT_EQ((*jobs)[1], replaced);
  EXPECT_EQ((*jobs)[2].name, "t/b");
  auto got = metadata_->GetJob("t/a");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, replaced);
}

TEST_P(StorageConformanceTest, TenantsAreStoredApartFromJobsAndReplaced) {
  EXPECT_EQ(*metadata_->GetTenant("t"), std::nullopt);
  TenantRecord tenant{"t", RetentionPolicy{}, PolicyOrigin{}};
  tenant.default_policy->max_to_keep = 3;
  tenant.default_policy_origin->principal = "ops";
  tenant.default_policy_origin->time = absl::FromUnixSeconds(7);
  MetadataBatch batch;
  batch.PutTenant(tenant);
  batch.PutJob(MakeJob("t/j"));
  ApplyOk(batch);
  EXPECT_EQ(*metadata_->GetTenant("t"), tenant);
  EXPECT_EQ(*metadata_->GetTenant("s"), std::nullopt);
  EXPECT_EQ(metadata_->ListJobs()->size(), 1u);  // not listed as a job
  tenant.default_policy->max_to_keep = 5;
  MetadataBatch replace;
  replace.PutTenant(tenant);
  ApplyOk(replace);
  EXPECT_EQ(*metadata_->GetTenant("t"), tenant);
  MetadataBatch bad;
  bad.PutTenant(TenantRecord{std::string("t\0x", 3), std::nullopt, {}});
  EXPECT_FALSE(metadata_->Apply(bad).ok());
}

TEST_P(StorageConformanceTest, GetCheckpointOfMissingIsNotFound) {
  EXPECT_EQ(metadata_->GetCheckpoint("t/j", 7).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(metadata_->GetCheckpoint("t/j", -1).status().code(),
            absl::StatusCode::kNotFound);
  auto shards = metadata_->GetShards("t/j", 7);
  ASSERT_TRUE(shards.ok());
  EXPECT_TRUE(shards->empty());
}

TEST_P(StorageConformanceTest, CommitBatchMovesHeaderFromPendingToCommitted) {
  const CheckpointRecord pending =
      MakeRecord("t/j", 10, CheckpointState::kPending);
  MetadataBatch begin;
  begin.PutJob(MakeJob("t/j"));
  begin.PutCheckpoint(pending);
  begin.PutShard("t/j", 10, MakeShard(0, "rank0bytes"));
  ApplyOk(begin);

  auto got = metadata_->GetCheckpoint("t/j", 10);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, pending);
  auto listed = metadata_->ListPending();
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0], pending);

  const CheckpointRecord committed =
      MakeRecord("t/j", 10, CheckpointState::kCommitted);
  MetadataBatch commit;
  commit.PutShard("t/j", 10, MakeShard(1, "rank1bytes"));
  commit.PutCheckpoint(committed);
  ApplyOk(commit);

  got = metadata_->GetCheckpoint("t/j", 10);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, committed);
  auto all = metadata_->ListCheckpoints("t/j");
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 1u);  // one header, not one per state
  EXPECT_EQ((*all)[0], committed);
  listed = metadata_->ListPending();
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(listed->empty());
  auto shards = metadata_->GetShards("t/j", 10);
  ASSERT_TRUE(shards.ok());
  ASSERT_EQ(shards->size(), 2u);
  EXPECT_EQ((*shards)[1], MakeShard(1, "rank1bytes"));

  // And back: a header put as aborted leaves the committed family.
  CheckpointRecord aborted = MakeRecord("t/j", 10, CheckpointState::kAborted);
  aborted.abort_reason = "lease expired";
  MetadataBatch abort;
  abort.PutCheckpoint(aborted);
  ApplyOk(abort);
  all = metadata_->ListCheckpoints("t/j");
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0], aborted);
}

TEST_P(StorageConformanceTest, ReadersSeeACommitWhollyOrNotAtAll) {
  MetadataBatch begin;
  begin.PutCheckpoint(MakeRecord("t/j", 1, CheckpointState::kPending));
  ApplyOk(begin);
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < 100; ++i) {
      MetadataBatch batch;
      batch.PutCheckpoint(MakeRecord("t/j", 1,
                                     i % 2 == 0 ? CheckpointState::kCommitted
                                                : CheckpointState::kPending));
      EXPECT_TRUE(metadata_->Apply(batch).ok());
    }
    done = true;
  });
  int reads = 0;
  while (!done.load() || reads < 10) {
    // No ASSERT here: returning early would skip the join.
    auto all = metadata_->ListCheckpoints("t/j");
    if (!all.ok() || all->size() != 1 ||
        !metadata_->GetCheckpoint("t/j", 1).ok()) {
      ADD_FAILURE() << "saw a half-applied commit after " << reads << " reads";
      break;
    }
    ++reads;
  }
  writer.join();
}

TEST_P(StorageConformanceTest, FailedBatchAppliesNothing) {
  MetadataBatch batch;
  batch.PutJob(MakeJob("t/j"));
  batch.PutCheckpoint(MakeRecord("t/j", 1, CheckpointState::kCommitted));
  batch.DeleteCheckpoint("t/j", -5);  // unkeyable: fails the whole batch
  EXPECT_EQ(metadata_->Apply(batch).code(), absl::StatusCode::kInvalidArgument);
  auto job = metadata_->GetJob("t/j");
  ASSERT_TRUE(job.ok());
  EXPECT_FALSE(job->has_value());
  EXPECT_TRUE(Steps("t/j").empty());
}

TEST_P(StorageConformanceTest, DeleteCheckpointRemovesHeaderAndOnlyItsShards) {
  MetadataBatch batch;
  // 255 ends its key in 0xff: the shard range must not spill into 256.
  for (int64_t step : {255, 256}) {
    batch.PutCheckpoint(MakeRecord("t/j", step, CheckpointState::kCommitted));
    for (int32_t rank : {0, 1}) {
      batch.PutShard("t/j", step, MakeShard(rank, "bytes"));
    }
  }
  batch.PutCheckpoint(MakeRecord("t/j2", 255, CheckpointState::kPending));
  batch.PutShard("t/j2", 255, MakeShard(0, "bytes"));
  ApplyOk(batch);

  MetadataBatch del;
  del.DeleteCheckpoint("t/j", 255);
  del.DeleteCheckpoint("t/j", 999);  // absent: fine
  ApplyOk(del);

  EXPECT_EQ(metadata_->GetCheckpoint("t/j", 255).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(Ranks("t/j", 255).empty());
  EXPECT_THAT(Ranks("t/j", 256), ElementsAre(0, 1));
  EXPECT_THAT(Ranks("t/j2", 255), ElementsAre(0));
  EXPECT_THAT(Steps("t/j"), ElementsAre(256));

  // A pending checkpoint is deleted just the same.
  MetadataBatch del_pending;
  del_pending.DeleteCheckpoint("t/j2", 255);
  ApplyOk(del_pending);
  EXPECT_TRUE(Steps("t/j2").empty());
  EXPECT_TRUE(Ranks("t/j2", 255).empty());
  auto pending = metadata_->ListPending();
  ASSERT_TRUE(pending.ok());
  EXPECT_TRUE(pending->empty());
}

TEST_P(StorageConformanceTest, OpsInABatchApplyInOrder) {
  MetadataBatch batch;
  batch.PutShard("t/j", 1, MakeShard(0, "old"));
  batch.DeleteCheckpoint("t/j", 1);  // removes the shard just put
  batch.PutCheckpoint(MakeRecord("t/j", 1, CheckpointState::kPending));
  batch.PutShard("t/j", 1, MakeShard(1, "new"));  // survives the delete
  ApplyOk(batch);
  EXPECT_THAT(Ranks("t/j", 1), ElementsAre(1));
  EXPECT_THAT(Steps("t/j"), ElementsAre(1));
}

TEST_P(StorageConformanceTest, ListCheckpointsIsAscendingStepAcrossStates) {
  MetadataBatch batch;
  batch.PutCheckpoint(MakeRecord("t/j", 300, CheckpointState::kCommitted));
  batch.PutCheckpoint(MakeRecord("t/j", 2, CheckpointState::kPending));
  batch.PutCheckpoint(MakeRecord("t/j", 256, CheckpointState::kAborted));
  batch.PutCheckpoint(MakeRecord("t/j", 1, CheckpointState::kCommitted));
  batch.PutCheckpoint(MakeRecord("t/j", 0, CheckpointState::kPending));
  // Jobs whose names extend "t/j" are not its checkpoints.
  batch.PutCheckpoint(MakeRecord("t/jx", 5, CheckpointState::kCommitted));
  batch.PutCheckpoint(MakeRecord("t/j/sub", 6, CheckpointState::kPending));
  ApplyOk(batch);

  auto all = metadata_->ListCheckpoints("t/j");
  ASSERT_TRUE(all.ok()) << all.status();
  std::vector<std::pair<int64_t, CheckpointState>> got;
  for (const CheckpointRecord& r : *all) got.emplace_back(r.step, r.state);
  EXPECT_THAT(got, ElementsAre(std::pair(0, CheckpointState::kPending),
                               std::pair(1, CheckpointState::kCommitted),
                               std::pair(2, CheckpointState::kPending),
                               std::pair(256, CheckpointState::kAborted),
                               std::pair(300, CheckpointState::kCommitted)));
  EXPECT_EQ((*all)[3], MakeRecord("t/j", 256, CheckpointState::kAborted));
  EXPECT_TRUE(Steps("t/none").empty());

  auto pending = metadata_->ListPending();
  ASSERT_TRUE(pending.ok());
  std::vector<std::pair<std::string, int64_t>> pending_keys;
  for (const CheckpointRecord& r : *pending) {
    EXPECT_EQ(r.state, CheckpointState::kPending);
    pending_keys.emplace_back(r.job, r.step);
  }
  EXPECT_THAT(pending_keys, ::testing::UnorderedElementsAre(
                                std::pair("t/j", 0), std::pair("t/j", 2),
                                std::pair("t/j/sub", 6)));
}

TEST_P(StorageConformanceTest, GetShardsIsAscendingRank) {
  MetadataBatch batch;
  for (int32_t rank : {10, 2, 256, 0, 1}) {
    batch.PutShard("t/j", 4, MakeShard(rank, absl::StrCat("bytes", rank)));
  }
  batch.PutShard("t/j", 5, MakeShard(3, "other step"));
  ApplyOk(batch);
  EXPECT_THAT(Ranks("t/j", 4), ElementsAre(0, 1, 2, 10, 256));
  auto shards = metadata_->GetShards("t/j", 4);
  ASSERT_TRUE(shards.ok());
  EXPECT_EQ((*shards)[4], MakeShard(256, "bytes256"));
  // Replacing a rank's shard keeps one entry per rank.
  MetadataBatch replace;
  replace.PutShard("t/j", 4, MakeShard(2, "replaced"));
  ApplyOk(replace);
  shards = metadata_->GetShards("t/j", 4);
  ASSERT_TRUE(shards.ok());
  ASSERT_EQ(shards->size(), 5u);
  EXPECT_EQ((*shards)[2], MakeShard(2, "replaced"));
}

TEST_P(StorageConformanceTest, EmptyBatchIsOk) { ApplyOk(MetadataBatch()); }

TEST_P(StorageConformanceTest, ForEachShardVisitsEveryStoredShardInKeyOrder) {
  MetadataBatch batch;
  batch.PutShard("t/j", 256, MakeShard(1, "c"));
  batch.PutShard("t/j", 2, MakeShard(0, "a"));
  batch.PutShard("t/j", 256, MakeShard(0, "b"));
  batch.PutShard("u/k", 0, MakeShard(0, "d"));
  batch.PutShard("t/j/x", 1, MakeShard(3, "e"));
  ApplyOk(batch);
  MetadataBatch del;
  del.DeleteCheckpoint("t/j", 2);
  ApplyOk(del);

  std::vector<std::tuple<std::string, int64_t, int32_t>> seen;
  ASSERT_TRUE(metadata_
                  ->ForEachShard([&](absl::string_view job, int64_t step,
                                     const ShardManifest& shard) {
                    seen.emplace_back(std::string(job), step, shard.rank);
                    EXPECT_EQ(shard,
                              MakeShard(shard.rank, job == "u/k"      ? "d"
                                                    : job == "t/j/x"  ? "e"
                                                    : shard.rank == 0 ? "b"
                                                                      : "c"));
                    return absl::OkStatus();
                  })
                  .ok());
  EXPECT_THAT(seen,
              ElementsAre(std::tuple("t/j", 256, 0), std::tuple("t/j", 256, 1),
                          std::tuple("t/j/x", 1, 3), std::tuple("u/k", 0, 0)));

  int calls = 0;
  absl::Status stopped = metadata_->ForEachShard(
      [&](absl::string_view, int64_t, const ShardManifest&) {
        ++calls;
        return absl::CancelledError("enough");
      });
  EXPECT_EQ(stopped.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(calls, 1);
}

TEST_P(StorageConformanceTest, ReclaimSpaceKeepsLiveChunksAndReportsSize) {
  const std::string live(100000, 'l');
  const std::string dead(100000, 'd');
  ASSERT_TRUE(chunks_->Put("t", Sha256(live), live).ok());
  ASSERT_TRUE(chunks_->Put("t", Sha256(dead), dead).ok());
  ASSERT_TRUE(chunks_->Sync().ok());
  ASSERT_TRUE(chunks_->Delete("t", Sha256(dead)).ok());
  ASSERT_TRUE(chunks_->Sync().ok());
  auto usage = chunks_->ReclaimSpace();
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_GE(usage->bytes_after, live.size());
  EXPECT_LE(usage->bytes_after, usage->bytes_before);
  auto got = chunks_->Get("t", Sha256(live));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, live);
  EXPECT_EQ(chunks_->Get("t", Sha256(dead)).status().code(),
            absl::StatusCode::kNotFound);
}

// ---- Events ----

TEST_P(StorageConformanceTest, EventsAreNumberedInAppendOrderPerJob) {
  MetadataBatch first;
  first.AppendEvent(MakeEvent("t/j", 1, "a"));
  first.AppendEvent(MakeEvent("t/jx", 1, "other job"));
  first.AppendEvent(MakeEvent("t/j", 2, "b"));
  ApplyOk(first);
  MetadataBatch second;
  second.AppendEvent(MakeEvent("t/j/sub", 1, "nested job"));
  // A job-level event, and a sequence the store must ignore.
  JobEvent job_level =
      MakeEvent("t/j", std::nullopt, "policy", EventKind::kPolicySet);
  job_level.sequence = 999;
  second.AppendEvent(job_level);
  ApplyOk(second);

  auto events = metadata_->ListEvents("t/j", 100);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 3u);
  JobEvent expected = MakeEvent("t/j", 1, "a");
  expected.sequence = 1;
  EXPECT_EQ((*events)[0], expected);
  EXPECT_EQ((*events)[1].sequence, 2u);
  EXPECT_EQ((*events)[1].detail, "b");
  job_level.sequence = 3;
  EXPECT_EQ((*events)[2], job_level);

  // Jobs whose names extend "t/j" have their own histories and numbering.
  for (absl::string_view other : {"t/jx", "t/j/sub"}) {
    auto listed = metadata_->ListEvents(other, 100);
    ASSERT_TRUE(listed.ok());
    ASSERT_EQ(listed->size(), 1u) << other;
    EXPECT_EQ((*listed)[0].sequence, 1u);
  }
  auto none = metadata_->ListEvents("t/none", 100);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST_P(StorageConformanceTest, ListEventsReturnsTheNewestLimitOldestFirst) {
  for (int64_t step = 0; step < 5; ++step) {
    MetadataBatch batch;
    batch.AppendEvent(MakeEvent("t/j", step, absl::StrCat("e", step)));
    ApplyOk(batch);
  }
  auto last_two = metadata_->ListEvents("t/j", 2);
  ASSERT_TRUE(last_two.ok()) << last_two.status();
  ASSERT_EQ(last_two->size(), 2u);
  EXPECT_EQ((*last_two)[0].detail, "e3");
  EXPECT_EQ((*last_two)[0].sequence, 4u);
  EXPECT_EQ((*last_two)[1].detail, "e4");
  auto one = metadata_->ListEvents("t/j", 1);
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0].sequence, 5u);
}

TEST_P(StorageConformanceTest, EventsLandOnlyWithTheirWholeBatch) {
  MetadataBatch batch;
  batch.PutCheckpoint(MakeRecord("t/j", 1, CheckpointState::kCommitted));
  batch.AppendEvent(MakeEvent("t/j", 1, "committed"));
  batch.DeleteCheckpoint("t/j", -5);  // unkeyable: fails the whole batch
  EXPECT_EQ(metadata_->Apply(batch).code(), absl::StatusCode::kInvalidArgument);
  auto events = metadata_->ListEvents("t/j", 10);
  ASSERT_TRUE(events.ok());
  EXPECT_TRUE(events->empty());

  MetadataBatch unkeyable;
  unkeyable.AppendEvent(MakeEvent("", 1, "no job"));
  EXPECT_EQ(metadata_->Apply(unkeyable).code(),
            absl::StatusCode::kInvalidArgument);

  // The refused batches used no sequence numbers.
  MetadataBatch good;
  good.AppendEvent(MakeEvent("t/j", 1, "committed"));
  ApplyOk(good);
  events = metadata_->ListEvents("t/j", 10);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].sequence, 1u);
}

TEST_P(StorageConformanceTest, DeletingACheckpointKeepsItsEvents) {
  MetadataBatch save;
  save.PutCheckpoint(MakeRecord("t/j", 7, CheckpointState::kCommitted));
  save.PutShard("t/j", 7, MakeShard(0, "bytes"));
  save.AppendEvent(MakeEvent("t/j", 7, "committed"));
  ApplyOk(save);
  MetadataBatch del;
  del.DeleteCheckpoint("t/j", 7);
  del.AppendEvent(MakeEvent("t/j", 7, "deleted", EventKind::kDeleted));
  ApplyOk(del);
  EXPECT_TRUE(Steps("t/j").empty());
  auto events = metadata_->ListEvents("t/j", 10);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[0].kind, EventKind::kCommitted);
  EXPECT_EQ((*events)[1].kind, EventKind::kDeleted);
  EXPECT_EQ((*events)[1].step, std::optional<int64_t>(7));
}

TEST_P(StorageConformanceTest, HistoryKeepsTheNewestEventsPerJob) {
  // One batch past the bound: its own oldest events are dropped with it.
  MetadataBatch big;
  for (size_t i = 1; i <= kMaxEventsPerJob + 5; ++i) {
    big.AppendEvent(MakeEvent("t/j", static_cast<int64_t>(i), "e"));
  }
  big.AppendEvent(MakeEvent("t/other", 1, "untouched"));
  ApplyOk(big);
  auto events = metadata_->ListEvents("t/j", kMaxEventsPerJob + 100);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), kMaxEventsPerJob);
  EXPECT_EQ(events->front().sequence, 6u);
  EXPECT_EQ(events->back().sequence, kMaxEventsPerJob + 5);

  // Later batches push out exactly as many as they add; numbering goes on.
  MetadataBatch more;
  for (int i = 0; i < 3; ++i) more.AppendEvent(MakeEvent("t/j", 1, "new"));
  ApplyOk(more);
  events = metadata_->ListEvents("t/j", kMaxEventsPerJob + 100);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), kMaxEventsPerJob);
  EXPECT_EQ(events->front().sequence, 9u);
  EXPECT_EQ(events->back().sequence, kMaxEventsPerJob + 8);
  EXPECT_EQ(events->back().detail, "new");

  auto other = metadata_->ListEvents("t/other", 10);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->size(), 1u);
}

TEST_P(StorageConformanceTest, ConcurrentAppendsTakeDistinctSequences) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 25;
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        MetadataBatch batch;
        batch.AppendEvent(MakeEvent("t/j", t, absl::StrCat(t, "-", i)));
        EXPECT_TRUE(metadata_->Apply(batch).ok());
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  auto events = metadata_->ListEvents("t/j", 1000);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), static_cast<size_t>(kThreads * kPerThread));
  for (size_t i = 0; i < events->size(); ++i) {
    EXPECT_EQ((*events)[i].sequence, i + 1);
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllStores, StorageConformanceTest,
    ::testing::ValuesIn(conformance::ConformanceBackends()),
    [](const ::testing::TestParamInfo<Backend>& backend) {
      return backend.param.name;
    });

}  // namespace
}  // namespace ckpt::server
