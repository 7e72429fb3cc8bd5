// The executors behind the gRPC edge, on a real server on 127.0.0.1:0: a
// collection and a verify held inside the chunk store (BlockingChunkStore)
// occupy the maintenance lane, and ListJobs, timed meanwhile, stays fast
// because it runs on the request lane. And shutdown waits for a call still
// running on an executor before it stops the executors.

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

}  // namespace
}  // namespace ckpt::server
