// The executors behind the gRPC edge, on a real server on 127.0.0.1:0: a
// collection and a verify held inside the chunk store (BlockingChunkStore)
// occupy the maintenance lane, and ListJobs, timed meanwhile, stays fast
// because it runs on the request lane. And shutdown waits for a call still
// running on an executor before it stops the executors. A verify queued
// behind a collection longer than the client's stall bound is kept alive
// by the server's heartbeats (VerifyHeartbeatTest).

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ckpt/v1/ckpt.grpc.pb.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/rpc/server.h"
#include "tests/testing/blocking_chunk_store.h"
#include "tests/testing/rpc_test_fixture.h"

namespace ckpt::server {
namespace {

using testing::BlockingChunkStore;
using testing::GrpcServiceTest;
using testing::kJob;
using testing::RandomBytes;
using testing::Tensor;
using Op = BlockingChunkStore::Op;

class MaintenanceLaneTest : public GrpcServiceTest {
 protected:
  // Two threads per lane. Were GC and verify run on the request lane (or on
  // gRPC's callback threads, as they once were), the two calls held below
  // would take both of its threads and ListJobs would wait for them: here,
  // until its deadline.
  void SetUp() override {
    ServerOptions options;
    options.request_threads = 2;
    options.maintenance_threads = 2;
    StartServer(options);
  }
  void TearDown() override {
    for (Op op : {Op::kForEach, Op::kContains}) blocking_.Release(op);
    if (server_ != nullptr) server_->Shutdown(absl::Now());
    server_.reset();  // before blocking_ goes: the service uses it
  }
  ChunkStore* chunk_store() override { return &blocking_; }

  // One ListJobs through the raw stub; its latency, or a failure.
  absl::StatusOr<absl::Duration> TimedListJobs() {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    v1::ListJobsRequest request;
    v1::ListJobsResponse response;
    const absl::Time start = absl::Now();
    grpc::Status status = stub_->ListJobs(&context, request, &response);
    const absl::Duration latency = absl::Now() - start;
    if (!status.ok()) {
      return absl::UnknownError(status.error_message() + " (code " +
                                std::to_string(status.error_code()) + ")");
    }
    if (response.jobs_size() != 1) {
      return absl::InternalError("ListJobs lists no job");
    }
    return latency;
  }

  BlockingChunkStore blocking_{&store_};
};

TEST_F(MaintenanceLaneTest, ListJobsStaysFastWhileGcAndVerifyAreHeld) {
  const std::string weights = RandomBytes(256 << 10, 1);
  ASSERT_TRUE(client_->SaveShard(kJob, 1, {Tensor("w", weights)}, {}).ok());
  // A collection's first store call is ForEach (under its gc_mu_); a
  // verify's first after its metadata snapshot is Contains (no lock held).
  // ListJobs touches neither, nor any lock they hold.
  blocking_.Block(Op::kForEach);
  blocking_.Block(Op::kContains);
  std::unique_ptr<client::Client> gc_client = NewClient();
  std::unique_ptr<client::Client> verify_client = NewClient();
  absl::StatusOr<GcReport> gc = absl::UnknownError("not run");
  absl::StatusOr<VerifyReport> verify = absl::UnknownError("not run");
  std::thread gc_thread([&] { gc = gc_client->CollectGarbage(false); });
  std::thread verify_thread([&] {
    VerifyOptions options;
    options.read_data = true;
    verify = verify_client->VerifyCheckpoints(options);
  });
  blocking_.AwaitWaiting(Op::kForEach, 1);
  blocking_.AwaitWaiting(Op::kContains, 1);

  // Both maintenance threads are held in the store for the whole loop.
  constexpr int kCalls = 40;
  std::vector<absl::Duration> latencies;
  std::string failure;
  for (int i = 0; i < kCalls && failure.empty(); ++i) {
    absl::StatusOr<absl::Duration> latency = TimedListJobs();
    if (latency.ok()) {
      latencies.push_back(*latency);
    } else {
      failure = latency.status().ToString();
    }
  }
  // Still held: every call above ran during both operations.
  blocking_.AwaitWaiting(Op::kForEach, 1);
  blocking_.AwaitWaiting(Op::kContains, 1);
  blocking_.Release(Op::kForEach);
  blocking_.Release(Op::kContains);
  gc_thread.join();
  verify_thread.join();
  ASSERT_TRUE(failure.empty()) << "ListJobs during GC and verify: " << failure;
  ASSERT_TRUE(gc.ok()) << gc.status();
  ASSERT_TRUE(verify.ok()) << verify.status();
  EXPECT_TRUE(verify->damaged_checkpoints.empty());

  std::sort(latencies.begin(), latencies.end());
  const absl::Duration median = latencies[latencies.size() / 2];
  const absl::Duration worst = latencies.back();
  std::cout << "ListJobs during a held GC and verify, " << latencies.size()
            << " calls: median " << median << ", p90 "
            << latencies[latencies.size() * 9 / 10] << ", max " << worst
            << std::endl;
  // Milliseconds on an idle machine; the bound leaves room for a shared
  // two-core one. A queue behind the held calls would wait for the release.
  EXPECT_LT(median, absl::Milliseconds(50));
  EXPECT_LT(worst, absl::Seconds(1));
}

// A ReadChunks stream goes back in line after every chunk, so long restores
// share the request lane with other calls instead of holding its threads to
// their ends. Two streams (as many as the lane's threads) read 60 chunks
// each, every read 10 ms long; a ListJobs issued meanwhile waits for a
// chunk or two, not for a stream's remaining half second.
TEST_F(MaintenanceLaneTest, ListJobsStaysFastWhileReadStreamsRun) {
  constexpr int kChunks = 60;
  const std::string weights = RandomBytes(size_t{kChunks} * 1024, 3);
  client::SaveOptions options;
  options.chunk_bytes = 1024;
  ASSERT_TRUE(
      client_->SaveShard(kJob, 1, {Tensor("w", weights)}, options).ok());
  absl::StatusOr<Checkpoint> manifest = client_->GetManifest(kJob, 1);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  v1::ReadChunksRequest request;
  request.set_job(kJob);
  for (const ChunkRef& piece : manifest->shards[0].tensors[0].pieces) {
    request.add_sha256(std::string(piece.id.bytes()));
  }
  ASSERT_EQ(request.sha256_size(), kChunks);
  blocking_.SetDelay(Op::kReadVerified, absl::Milliseconds(10));

  constexpr int kStreams = 2;
  absl::Mutex mu;
  int received[kStreams] = {};
  std::vector<std::thread> readers;
  readers.reserve(kStreams);
  for (int s = 0; s < kStreams; ++s) {
    readers.emplace_back([&, s] {
      grpc::ClientContext context;
      auto reader = stub_->ReadChunks(&context, request);
      v1::ReadChunksResponse response;
      while (reader->Read(&response)) {
        absl::MutexLock lock(&mu);
        ++received[s];
      }
      EXPECT_TRUE(reader->Finish().ok());
    });
  }
  auto all_started = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    for (int count : received) {
      if (count == 0) return false;
    }
    return true;
  };
  { absl::MutexLock lock(&mu, absl::Condition(&all_started)); }
  absl::StatusOr<absl::Duration> latency = TimedListJobs();
  int done_when_answered = 0;
  {
    absl::MutexLock lock(&mu);
    for (int count : received) done_when_answered += count;
  }
  for (std::thread& reader : readers) reader.join();
  ASSERT_TRUE(latency.ok()) << latency.status();
  std::cout << "ListJobs during " << kStreams << " read streams: " << *latency
            << " (" << done_when_answered << " of " << kStreams * kChunks
            << " chunks sent by then)" << std::endl;
  // Answered mid-stream, and well before a stream's remaining reads (about
  // half a second) would have let a thread go.
  EXPECT_LT(done_when_answered, kStreams * kChunks);
  EXPECT_LT(*latency, absl::Milliseconds(200));
  EXPECT_EQ(received[0], kChunks);
  EXPECT_EQ(received[1], kChunks);
}

TEST_F(MaintenanceLaneTest, ShutdownWaitsForACallRunningOnAnExecutor) {
  const std::string weights = RandomBytes(64 << 10, 2);
  ASSERT_TRUE(client_->SaveShard(kJob, 1, {Tensor("w", weights)}, {}).ok());
  blocking_.Block(Op::kForEach);
  std::unique_ptr<client::Client> gc_client = NewClient();
  absl::StatusOr<GcReport> gc = absl::UnknownError("not run");
  std::thread gc_thread([&] { gc = gc_client->CollectGarbage(false); });
  blocking_.AwaitWaiting(Op::kForEach, 1);

  absl::Notification shut_down;
  std::thread stopper([&] {
    server_->Shutdown(absl::Now() + absl::Milliseconds(100));
    shut_down.Notify();
  });
  // Past its deadline, Shutdown cancels the collection's call, which ends it
  // for the client; the collection itself is still held in the store.
  gc_thread.join();
  EXPECT_FALSE(gc.ok());
  // Shutdown waits for the call to finish from its executor thread.
  EXPECT_FALSE(shut_down.HasBeenNotified());
  blocking_.Release(Op::kForEach);
  stopper.join();
  EXPECT_TRUE(shut_down.HasBeenNotified());
  EXPECT_EQ(client_->ListJobs().status().code(),
            absl::StatusCode::kUnavailable);
}

// A verify legitimately waits behind a long collection on the maintenance
// lane (one thread here), or inside the store, for longer than the client's
// stall bound (1 s here): the server's heartbeats (every 200 ms here) tell
// the client it is alive, and the verify is not cut. Without heartbeats the
// same wait is cut at the bound, which shows that the heartbeats are what
// keeps it.
class VerifyHeartbeatTest : public MaintenanceLaneTest {
 protected:
  static constexpr absl::Duration kStallBound = absl::Seconds(1);
  // Well past the stall bound.
  static constexpr absl::Duration kHeld = absl::Seconds(3);

  void SetUp() override { Start(absl::Milliseconds(200)); }

  void Start(absl::Duration heartbeat_interval) {
    ServerOptions options;
    options.request_threads = 2;
    options.maintenance_threads = 1;
    options.limits.verify_heartbeat_interval = heartbeat_interval;
    StartServer(options);
    ASSERT_TRUE(client_->SaveShard(kJob, 1, {Tensor("w", weights_)}, {}).ok());
  }

  // Verifies with the short stall bound while `op` is held for kHeld (by a
  // collection occupying the lane's only thread, or by the verify itself);
  // the verify's result, and whether it ended while held.
  struct Outcome {
    absl::StatusOr<VerifyReport> report;
    bool ended_while_held = false;
    absl::Duration took;
  };
  Outcome VerifyWhileHeld(Op op, bool behind_a_collection) {
    client::ConnectOptions bounded;
    bounded.stream_stall_timeout = kStallBound;
    auto verify_client = client::Client::Connect(address_, bounded);
    EXPECT_TRUE(verify_client.ok()) << verify_client.status();
    std::unique_ptr<client::Client> gc_client = NewClient();
    absl::StatusOr<GcReport> gc = absl::UnknownError("not run");
    blocking_.Block(op);
    std::thread gc_thread;
    if (behind_a_collection) {
      gc_thread = std::thread([&] { gc = gc_client->CollectGarbage(false); });
      blocking_.AwaitWaiting(op, 1);
    }
    Outcome outcome;
    outcome.report = absl::UnknownError("not run");
    absl::Notification ended;
    const absl::Time start = absl::Now();
    std::thread verify_thread([&] {
      VerifyOptions options;
      options.read_data = true;
      outcome.report = (*verify_client)->VerifyCheckpoints(options);
      outcome.took = absl::Now() - start;
      ended.Notify();
    });
    // Not synchronization: the length of the wait the verify must survive.
    outcome.ended_while_held = ended.WaitForNotificationWithTimeout(kHeld);
    blocking_.Release(op);
    verify_thread.join();
    if (gc_thread.joinable()) {
      gc_thread.join();
      EXPECT_TRUE(gc.ok()) << gc.status();
    }
    return outcome;
  }

  const std::string weights_ = RandomBytes(256 << 10, 7);
};

TEST_F(VerifyHeartbeatTest, AVerifyQueuedBehindALongCollectionIsNotCut) {
  // A collection's first store call is ForEach: it holds the only thread.
  Outcome outcome = VerifyWhileHeld(Op::kForEach, /*behind_a_collection=*/true);
  EXPECT_FALSE(outcome.ended_while_held)
      << "the verify ran while the collection held the lane: "
      << outcome.report.status();
  ASSERT_TRUE(outcome.report.ok()) << outcome.report.status();
  EXPECT_EQ(outcome.report->checkpoints_checked, 1);
  EXPECT_TRUE(outcome.report->damaged_checkpoints.empty());
  EXPECT_GE(outcome.took, kHeld);
}

TEST_F(VerifyHeartbeatTest, AVerifyWorkingWithoutProgressIsNotCut) {
  // A verify's first store call after its snapshot is Contains.
  Outcome outcome =
      VerifyWhileHeld(Op::kContains, /*behind_a_collection=*/false);
  EXPECT_FALSE(outcome.ended_while_held) << outcome.report.status();
  ASSERT_TRUE(outcome.report.ok()) << outcome.report.status();
  EXPECT_EQ(outcome.report->checkpoints_checked, 1);
  EXPECT_GE(outcome.took, kHeld);
}

class NoVerifyHeartbeatTest : public VerifyHeartbeatTest {
 protected:
  void SetUp() override { Start(absl::InfiniteDuration()); }
};

TEST_F(NoVerifyHeartbeatTest, TheSameWaitIsCutAtTheStallBound) {
  Outcome outcome = VerifyWhileHeld(Op::kForEach, /*behind_a_collection=*/true);
  EXPECT_TRUE(outcome.ended_while_held);
  ASSERT_EQ(outcome.report.status().code(), absl::StatusCode::kDeadlineExceeded)
      << outcome.report.status();
  EXPECT_THAT(std::string(outcome.report.status().message()),
              ::testing::HasSubstr(absl::StrCat(
                  "VerifyCheckpoints: no message from the server at ", address_,
                  " for 1s")));
  EXPECT_GE(outcome.took, kStallBound);
  EXPECT_LT(outcome.took, kHeld);
  // The server is fine: a verify now passes.
  auto verify = client_->VerifyCheckpoints(VerifyOptions());
  EXPECT_TRUE(verify.ok()) << verify.status();
}

}  // namespace
}  // namespace ckpt::server
