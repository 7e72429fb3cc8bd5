// T5 (tests/reliability/README.md): a multi-rank save against the real
// ckpt-server where one of 4-8 ranks fails: its upload stream is cancelled
// mid-stream (what the server sees of a killed rank: the connection ends),
// or it uploads everything and never commits. Each trial asserts that
// - every other rank's save returns within its deadline (no rank waits on
//   the missing one: a commit is per shard), and the checkpoint is never
//   committed, listed, or restorable without every rank;
// - a retry of the same step commits exactly once: either the failed rank
//   rejoins the pending checkpoint before its lease ends, or, once the lease
//   has expired and the server aborted it, every rank saves it again; one
//   rank's result says it committed, the history holds one `committed`
//   event, the manifest one shard per rank, a further retry is refused
//   ALREADY_EXISTS, and every rank restores its bytes;
// - the failed attempt's chunks are reclaimed: referenced by the pending
//   shards until the lease expires (a collection with no hold keeps them),
//   deleted by the first collection after it (and the cancelled upload's
//   own chunks by any collection, as nothing references them).
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ckpt/v1/ckpt.grpc.pb.h"
#include "client/client.h"
#include "common/chunking.h"
#include "common/event.h"
#include "common/sha256.h"
#include "gtest/gtest.h"
#include "tests/reliability/reliability_run.h"
#include "tests/testing/client_tensors.h"
#include "tests/testing/real_server_test.h"

namespace ckpt::testing {
namespace {

constexpr char kJob[] = "rel/ranks";
constexpr size_t kChunk = 32 << 10;
constexpr size_t kShardBytes = 512 << 10;
// The deadline every rank's calls run under, and the bound asserted on a
// surviving rank's whole save (the plan allows the deadline + 5 s).
constexpr absl::Duration kDeadline = absl::Seconds(20);
constexpr absl::Duration kNoHangBound = absl::Seconds(25);

enum class Failure { kCancelledMidStream, kNeverCommits };
enum class Retry { kRejoinBeforeExpiry, kAllRanksAfterExpiry };

struct Figures {
  int trials = 0;
  int cancelled = 0;
  int never_committed = 0;
  int rejoined = 0;
  int after_expiry = 0;
  double max_survivor_save_ms = 0;
  double max_abort_after_lease_ms = 0;  // from lease end to ABORTED seen
  uint64_t partial_chunks_reclaimed = 0;
};

std::vector<ChunkId> ChunkIds(const std::string& bytes) {
  std::vector<ChunkId> ids;
  for (absl::string_view chunk : SplitIntoChunks(bytes, kChunk)) {
    ids.push_back(Sha256(chunk));
  }
  return ids;
}

class MultiRankFailureTest : public RealServerTest {
 protected:
  void SetUp() override {
    RealServerTest::SetUp();
    ASSERT_NO_FATAL_FAILURE(
        StartServer({"--lease-check-interval", "0.2", "--gc-interval", "0"}));
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(64 << 20);
    stub_ = v1::CheckpointService::NewStub(grpc::CreateCustomChannel(
        server_->address(), grpc::InsecureChannelCredentials(), args));
  }
  void TearDown() override {
    stub_.reset();
    RealServerTest::TearDown();
  }

  std::unique_ptr<client::Client> RankClient() {
    auto client = client::Client::Connect(
        server_->address(),
        {.rpc_timeout = kDeadline, .connect_timeout = absl::Seconds(10)});
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  static std::chrono::system_clock::time_point Deadline() {
    return std::chrono::system_clock::now() +
           std::chrono::milliseconds(absl::ToInt64Milliseconds(kDeadline));
  }

  // The failed rank, through the raw API: begins the step, then streams its
  // chunks; cancels the stream after `cancel_after` of them, or sends all
  // and ends the stream normally. Never commits.
  void FailingRank(int64_t step, int world, int lease_seconds,
                   const std::string& bytes, int cancel_after) {
    v1::BeginCheckpointRequest begin;
    begin.set_job(kJob);
    begin.set_step(step);
    begin.set_world_size(world);
    begin.set_lease_seconds(lease_seconds);
    v1::BeginCheckpointResponse begun;
    grpc::ClientContext begin_context;
    begin_context.set_deadline(Deadline());
    ASSERT_TRUE(stub_->BeginCheckpoint(&begin_context, begin, &begun).ok());
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    v1::PutChunksResponse response;
    auto writer = stub_->PutChunks(&context, &response);
    int sent = 0;
    for (absl::string_view chunk : SplitIntoChunks(bytes, kChunk)) {
      if (sent == cancel_after) break;
      v1::PutChunksRequest request;
      if (sent == 0) {
        request.set_job(kJob);
        request.set_step(step);
      }
      v1::ChunkData* data = request.add_chunks();
      data->set_sha256(std::string(Sha256(chunk).bytes()));
      data->set_data(std::string(chunk));
      if (!writer->Write(request)) break;
      ++sent;
    }
    if (cancel_after >= 0) {
      context.TryCancel();
      EXPECT_FALSE(writer->Finish().ok());
    } else {
      writer->WritesDone();
      grpc::Status status = writer->Finish();
      EXPECT_TRUE(status.ok()) << status.error_message();
    }
  }

  // Which of `ids` the job's tenant holds.
  size_t StoredOf(const std::vector<ChunkId>& ids) {
    v1::FindMissingChunksRequest request;
    request.set_job(kJob);
    for (const ChunkId& id : ids) request.add_sha256(std::string(id.bytes()));
    v1::FindMissingChunksResponse response;
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    grpc::Status status =
        stub_->FindMissingChunks(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return ids.size() - static_cast<size_t>(response.missing_sha256_size());
  }

  uint64_t CollectWithoutHold() {
    GcOptions options;
    options.hold = absl::ZeroDuration();
    auto report = client_->CollectGarbage(options);
    EXPECT_TRUE(report.ok()) << report.status();
    return report.ok() ? report->chunks_deleted : 0;
  }

  std::optional<CheckpointState> StateOf(int64_t step) {
    auto listed = client_->ListCheckpoints(kJob, true);
    EXPECT_TRUE(listed.ok()) << listed.status();
    if (!listed.ok()) return std::nullopt;
    for (const CheckpointRecord& record : *listed) {
      if (record.step == step) return record.state;
    }
    return std::nullopt;
  }

  // Saves `ranks` of step `step` at once, each with its own client; their
  // results in rank order.
  std::vector<absl::StatusOr<client::SaveResult>> SaveRanks(
      int64_t step, int world, const std::vector<int>& ranks,
      const std::vector<std::string>& bytes, absl::Duration lease,
      std::vector<absl::Duration>* took = nullptr) {
    std::vector<absl::StatusOr<client::SaveResult>> results(
        ranks.size(), absl::UnknownError("not run"));
    std::vector<absl::Duration> durations(ranks.size());
    std::vector<std::thread> threads;
    for (size_t i = 0; i < ranks.size(); ++i) {
      threads.emplace_back([&, i] {
        const int rank = ranks[i];
        auto client = RankClient();
        if (client == nullptr) return;
        client::SaveOptions options;
        options.rank = rank;
        options.world_size = world;
        options.chunk_bytes = kChunk;
        options.lease = lease;
        std::vector<client::TensorData> tensors = {
            Uint8Tensor(absl::StrCat("r", rank), bytes[rank])};
        const absl::Time start = absl::Now();
        results[i] = client->SaveShard(kJob, step, tensors, options);
        durations[i] = absl::Now() - start;
      });
    }
    for (auto& thread : threads) thread.join();
    if (took != nullptr) *took = durations;
    return results;
  }

  void Trial(int64_t step, std::mt19937_64& rng, Figures* figures) {
    const int world = std::uniform_int_distribution<int>(4, 8)(rng);
    const int victim = std::uniform_int_distribution<int>(0, world - 1)(rng);
    const Failure failure =
        rng() % 2 == 0 ? Failure::kCancelledMidStream : Failure::kNeverCommits;
    const Retry retry = rng() % 2 == 0 ? Retry::kRejoinBeforeExpiry
                                       : Retry::kAllRanksAfterExpiry;
    // A short lease when the trial waits for its expiry, else a long one.
    const int lease_seconds = retry == Retry::kAllRanksAfterExpiry ? 2 : 30;
    SCOPED_TRACE(absl::StrCat(
        "step ", step, ": world ", world, ", rank ", victim,
        failure == Failure::kNeverCommits ? " never commits"
                                          : " cancelled mid-stream",
        retry == Retry::kRejoinBeforeExpiry ? ", rejoins"
                                            : ", all retry after expiry"));
    ++figures->trials;
    ++(failure == Failure::kNeverCommits ? figures->never_committed
                                         : figures->cancelled);
    ++(retry == Retry::kRejoinBeforeExpiry ? figures->rejoined
                                           : figures->after_expiry);
    std::vector<std::string> bytes(world);
    for (int r = 0; r < world; ++r) {
      bytes[r] = PatternBytes(kShardBytes, static_cast<uint32_t>(rng()));
    }
    // What the failed rank sent: other bytes than its retry will save.
    const std::string partial =
        PatternBytes(kShardBytes, static_cast<uint32_t>(rng()));
    const int chunks = static_cast<int>(kShardBytes / kChunk);
    const int cancel_after =
        failure == Failure::kNeverCommits
            ? -1
            : std::uniform_int_distribution<int>(1, chunks - 1)(rng);

    std::vector<int> survivors;
    for (int r = 0; r < world; ++r) {
      if (r != victim) survivors.push_back(r);
    }
    std::thread failing([&] {
      FailingRank(step, world, lease_seconds, partial, cancel_after);
    });
    std::vector<absl::Duration> took;
    auto results = SaveRanks(step, world, survivors, bytes,
                             absl::Seconds(lease_seconds), &took);
    failing.join();
    const absl::Time saved_at = absl::Now();
    for (size_t i = 0; i < survivors.size(); ++i) {
      SCOPED_TRACE(absl::StrCat("rank ", survivors[i]));
      EXPECT_LE(took[i], kNoHangBound);
      figures->max_survivor_save_ms = std::max(
          figures->max_survivor_save_ms, absl::ToDoubleMilliseconds(took[i]));
      ASSERT_TRUE(results[i].ok()) << results[i].status();
      EXPECT_FALSE(results[i]->checkpoint_committed);
    }
    // Never committed, listed or restorable without every rank.
    EXPECT_EQ(StateOf(step), CheckpointState::kPending);
    auto committed = client_->ListCheckpoints(kJob, false);
    ASSERT_TRUE(committed.ok()) << committed.status();
    for (const CheckpointRecord& record : *committed) {
      EXPECT_NE(record.step, step);
    }
    EXPECT_TRUE(absl::IsNotFound(
        client_->RestoreShard(kJob, step, survivors[0]).status()));

    const std::vector<ChunkId> partial_ids = ChunkIds(partial);
    const size_t partial_stored = StoredOf(partial_ids);
    if (failure == Failure::kNeverCommits) {
      EXPECT_EQ(partial_stored, partial_ids.size());
    }
    std::vector<ChunkId> survivor_ids;
    for (int r : survivors) {
      for (const ChunkId& id : ChunkIds(bytes[r])) survivor_ids.push_back(id);
    }

    if (retry == Retry::kRejoinBeforeExpiry) {
      // The failed rank comes back while the checkpoint is pending.
      auto rejoined =
          SaveRanks(step, world, {victim}, bytes, absl::Seconds(lease_seconds));
      ASSERT_TRUE(rejoined[0].ok()) << rejoined[0].status();
      EXPECT_TRUE(rejoined[0]->checkpoint_committed);
    } else {
      // Pending shards hold their chunks until the lease ends...
      CollectWithoutHold();
      EXPECT_EQ(StoredOf(survivor_ids), survivor_ids.size())
          << "chunks of a pending checkpoint were collected before its "
             "lease ended";
      // ...then the server aborts it, and a collection takes them.
      const absl::Time lease_end = saved_at + absl::Seconds(lease_seconds);
      const absl::Time give_up = lease_end + absl::Seconds(10);
      while (StateOf(step) != CheckpointState::kAborted &&
             absl::Now() < give_up) {
        absl::SleepFor(absl::Milliseconds(50));
      }
      ASSERT_EQ(StateOf(step), CheckpointState::kAborted)
          << "the lease expired but the checkpoint was not aborted";
      figures->max_abort_after_lease_ms =
          std::max(figures->max_abort_after_lease_ms,
                   absl::ToDoubleMilliseconds(absl::Now() - lease_end));
      CollectWithoutHold();
      EXPECT_EQ(StoredOf(survivor_ids), 0u)
          << "the aborted attempt's chunks were not reclaimed";
      EXPECT_EQ(StoredOf(partial_ids), 0u);
      figures->partial_chunks_reclaimed += partial_stored;
      // Every rank saves the step again.
      std::vector<int> all(world);
      for (int r = 0; r < world; ++r) all[r] = r;
      auto again = SaveRanks(step, world, all, bytes, absl::Seconds(30));
      int committing = 0;
      for (int r = 0; r < world; ++r) {
        ASSERT_TRUE(again[r].ok()) << "rank " << r << ": " << again[r].status();
        committing += again[r]->checkpoint_committed ? 1 : 0;
      }
      EXPECT_EQ(committing, 1);
    }

    // Exactly once: one commit event, one shard per rank, a late retry
    // refused, every rank's bytes restored.
    auto events = client_->ListEvents(kJob);
    ASSERT_TRUE(events.ok()) << events.status();
    const auto commits = std::count_if(
        events->begin(), events->end(), [step](const JobEvent& event) {
          return event.kind == EventKind::kCommitted && event.step == step;
        });
    EXPECT_EQ(commits, 1);
    auto checkpoint = client_->GetManifest(kJob, step);
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
    std::vector<int32_t> ranks;
    for (const ShardManifest& shard : checkpoint->shards) {
      ranks.push_back(shard.rank);
    }
    std::sort(ranks.begin(), ranks.end());
    std::vector<int32_t> want(world);
    for (int r = 0; r < world; ++r) want[r] = r;
    EXPECT_EQ(ranks, want);
    const int late = survivors[rng() % survivors.size()];
    auto late_retry =
        SaveRanks(step, world, {late}, bytes, absl::Seconds(lease_seconds));
    EXPECT_TRUE(absl::IsAlreadyExists(late_retry[0].status()))
        << late_retry[0].status();
    for (int r = 0; r < world; ++r) {
      auto restored = client_->RestoreShard(kJob, step, r);
      ASSERT_TRUE(restored.ok()) << "rank " << r << ": " << restored.status();
      ASSERT_EQ(restored->size(), 1u);
      EXPECT_TRUE((*restored)[0].bytes == bytes[r]) << "rank " << r;
    }
    if (retry == Retry::kRejoinBeforeExpiry) {
      // The cancelled or abandoned upload's chunks, never referenced, go
      // with the next collection.
      CollectWithoutHold();
      EXPECT_EQ(StoredOf(partial_ids), 0u);
      figures->partial_chunks_reclaimed += partial_stored;
    }
    events = client_->ListEvents(kJob);
    ASSERT_TRUE(events.ok()) << events.status();
    EXPECT_EQ(std::count_if(events->begin(), events->end(),
                            [step](const JobEvent& event) {
                              return event.kind == EventKind::kCommitted &&
                                     event.step == step;
                            }),
              1);
  }

  std::unique_ptr<v1::CheckpointService::Stub> stub_;
};

TEST_F(MultiRankFailureTest, ARankThatFailsNeverCommitsAndARetryCommitsOnce) {
  const uint64_t seed = RunSeed();
  const int trials = RunCount("CKPT_TRIALS", 8);
  SCOPED_TRACE(absl::StrCat("CKPT_SEED=", seed, " CKPT_TRIALS=", trials));
  std::mt19937_64 rng(seed);
  Figures figures;
  const absl::Time start = absl::Now();
  for (int trial = 1; trial <= trials; ++trial) {
    ASSERT_NO_FATAL_FAILURE(Trial(trial, rng, &figures));
  }
  PrintSummary(absl::StrCat(
      R"({"test":"T5 multi-rank failure","seed":)", seed, R"(,"trials":)",
      figures.trials, R"(,"cancelled_mid_stream":)", figures.cancelled,
      R"(,"never_committed":)", figures.never_committed, R"(,"rejoined":)",
      figures.rejoined, R"(,"retried_after_expiry":)", figures.after_expiry,
      R"(,"max_survivor_save_ms":)", figures.max_survivor_save_ms,
      R"(,"max_abort_after_lease_end_ms":)", figures.max_abort_after_lease_ms,
      R"(,"partial_chunks_reclaimed":)", figures.partial_chunks_reclaimed,
      R"(,"seconds":)", absl::ToDoubleSeconds(absl::Now() - start), "}"));
}

}  // namespace
}  // namespace ckpt::testing
