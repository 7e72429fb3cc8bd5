// The bound on unary calls waiting for a request thread
// (StreamLimits::max_queued_calls), filled for real on a server on
// 127.0.0.1:0 with one request thread and a bound of 2: a FindMissingChunks
// held inside the chunk store (BlockingChunkStore) occupies the thread, two
// more wait in the queue, and every unary call past them is refused at once
// with RESOURCE_EXHAUSTED. Once the held call is released the queued calls
// complete with their right answers, and the server goes on serving.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ckpt/v1/ckpt.grpc.pb.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/rpc/server.h"
#include "tests/testing/blocking_chunk_store.h"
#include "tests/testing/rpc_test_fixture.h"

namespace ckpt::server {
namespace {

using testing::BlockingChunkStore;
using testing::GrpcServiceTest;
using ::testing::HasSubstr;
using testing::kJob;
using testing::RandomBytes;
using testing::Tensor;
using Op = BlockingChunkStore::Op;

// What one raw unary call came back with.
struct Answer {
  grpc::StatusCode code = grpc::StatusCode::UNKNOWN;
  std::string message;
  std::vector<std::string> missing;  // FindMissingChunks' answer, raw hashes
  absl::Duration took;
};

class RequestQueueBoundTest : public GrpcServiceTest {
 protected:
  static constexpr size_t kBound = 2;

  void SetUp() override {
    ServerOptions options;
    options.request_threads = 1;
    options.limits.max_queued_calls = kBound;
    StartServer(options);
    ASSERT_TRUE(client_->SaveShard(kJob, 1, {Tensor("w", weights_)}, {}).ok());
    absl::StatusOr<Checkpoint> manifest = client_->GetManifest(kJob, 1);
    ASSERT_TRUE(manifest.ok()) << manifest.status();
    stored_ = std::string(manifest->shards[0].tensors[0].pieces[0].id.bytes());
  }
  void TearDown() override {
    blocking_.Release(Op::kContains);
    if (server_ != nullptr) server_->Shutdown(absl::Now());
    server_.reset();  // before blocking_ goes: the service uses it
  }
  ChunkStore* chunk_store() override { return &blocking_; }

  // A chunk id no one stored, different for each `i`.
  static std::string Absent(int i) {
    return std::string(Sha256(absl::StrCat("absent chunk ", i)).bytes());
  }

  // FindMissingChunks for the stored chunk and Absent(i), through the raw
  // stub (the client library would retry a refusal).
  Answer FindMissing(int i) {
    v1::FindMissingChunksRequest request;
    request.set_job(kJob);
    request.add_sha256(stored_);
    request.add_sha256(Absent(i));
    v1::FindMissingChunksResponse response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kDeadline));
    const absl::Time start = absl::Now();
    grpc::Status status =
        stub_->FindMissingChunks(&context, request, &response);
    Answer answer{
        status.error_code(),
        status.error_message(),
        {response.missing_sha256().begin(), response.missing_sha256().end()},
        absl::Now() - start};
    return answer;
  }

  Answer ListJobs() {
    v1::ListJobsRequest request;
    v1::ListJobsResponse response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kDeadline));
    const absl::Time start = absl::Now();
    grpc::Status status = stub_->ListJobs(&context, request, &response);
    return {
        status.error_code(), status.error_message(), {}, absl::Now() - start};
  }

  // Waits (polling the server's queue, up to 20 s) until `count` tasks wait
  // for the request thread; false if they never do.
  bool AwaitQueued(size_t count) {
    const absl::Time give_up = absl::Now() + absl::Seconds(20);
    while (server_->requests_queued() < count) {
      if (absl::Now() > give_up) return false;
      absl::SleepFor(absl::Milliseconds(1));
    }
    return true;
  }

  // A refused call is answered at once; a queued one (were the bound not
  // applied) would wait until this deadline.
  static constexpr absl::Duration kDeadline = absl::Seconds(3);

  const std::string weights_ = RandomBytes(4 << 10, 11);
  std::string stored_;
  BlockingChunkStore blocking_{&store_};
};

TEST_F(RequestQueueBoundTest, CallsPastTheBoundAreRefusedAndTheRestComplete) {
  // FindMissingChunks asks the store which chunks it holds (the kContains
  // door): the first call holds the only request thread there.
  blocking_.Block(Op::kContains);
  constexpr int kAdmitted = 1 + static_cast<int>(kBound);
  std::vector<Answer> admitted(kAdmitted);
  std::vector<std::thread> callers;
  callers.reserve(kAdmitted);
  callers.emplace_back([&] { admitted[0] = FindMissing(0); });
  blocking_.AwaitWaiting(Op::kContains, 1);
  for (int i = 1; i < kAdmitted; ++i) {
    callers.emplace_back([&, i] { admitted[i] = FindMissing(i); });
  }
  ASSERT_TRUE(AwaitQueued(kBound))
      << "the queued calls never reached the server's queue: "
      << server_->requests_queued() << " queued";

  // The queue is full: both kinds of unary call are refused, at once, and
  // not queued.
  constexpr int kRefused = 6;
  for (int i = 0; i < kRefused; ++i) {
    SCOPED_TRACE(absl::StrCat("call ", i, " past the bound"));
    const Answer refused = i % 2 == 0 ? ListJobs() : FindMissing(100 + i);
    EXPECT_EQ(refused.code, grpc::StatusCode::RESOURCE_EXHAUSTED)
        << refused.message;
    EXPECT_THAT(refused.message, HasSubstr("the server is overloaded"));
    EXPECT_THAT(refused.message,
                HasSubstr(absl::StrCat(kBound, " requests are waiting")));
    EXPECT_THAT(refused.message, HasSubstr("retry with backoff"));
    EXPECT_LT(refused.took, kDeadline);
  }
  EXPECT_EQ(server_->requests_queued(), kBound);

  // The held call and the queued ones complete, with their answers.
  blocking_.Release(Op::kContains);
  for (std::thread& caller : callers) caller.join();
  for (int i = 0; i < kAdmitted; ++i) {
    SCOPED_TRACE(absl::StrCat("admitted call ", i));
    EXPECT_EQ(admitted[i].code, grpc::StatusCode::OK) << admitted[i].message;
    EXPECT_THAT(admitted[i].missing, ::testing::ElementsAre(Absent(i)));
  }

  // And the server goes on serving, more calls than the bound one after
  // another, and through the client library.
  EXPECT_EQ(server_->requests_queued(), 0u);
  for (int i = 0; i < 3 * static_cast<int>(kBound); ++i) {
    const Answer answer = FindMissing(200 + i);
    EXPECT_EQ(answer.code, grpc::StatusCode::OK) << answer.message;
    EXPECT_THAT(answer.missing, ::testing::ElementsAre(Absent(200 + i)));
  }
  absl::StatusOr<std::vector<JobSummary>> jobs = client_->ListJobs();
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  ASSERT_EQ(jobs->size(), 1u);
  EXPECT_EQ((*jobs)[0].job.name, kJob);
}

TEST(RequestQueueBoundOptionTest, AZeroBoundIsRefusedAtStart) {
  MemoryStore store;
  FakeClock clock;
  CheckpointService service(&store, &store, &clock);
  ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.limits.max_queued_calls = 0;
  auto server = CheckpointServer::Start(options, &service);
  ASSERT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument)
      << server.status();
  EXPECT_THAT(std::string(server.status().message()),
              HasSubstr("max_queued_calls"));
}

}  // namespace
}  // namespace ckpt::server
