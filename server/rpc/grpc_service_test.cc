// End-to-end tests of the gRPC edge: a CheckpointServer on 127.0.0.1:0 over
// a MemoryStore, driven by the real client library (and by the raw
// generated stub where a test needs to send what the client never would).
// Retention, verify, usage and events are in grpc_admin_test.cc (the same
// binary), shared-memory reads in shared_file_read_test.cc, the executor
// lanes in maintenance_lane_test.cc.

#include "server/rpc/grpc_service.h"

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "ckpt/v1/ckpt.grpc.pb.h"
#include "client/client.h"
#include "common/clock.h"
#include "common/sha256.h"
#include "common/wire_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/rpc/health_probe.h"
#include "server/rpc/server.h"
#include "server/service/checkpoint_service.h"
#include "server/storage/memory_store.h"
#include "tests/testing/rpc_test_fixture.h"

namespace ckpt::server {
namespace {

using testing::CorruptChunk;
using testing::GrpcServiceTest;
using ::testing::HasSubstr;
using testing::kJob;
using testing::RandomBytes;
using testing::Tensor;

TEST_F(GrpcServiceTest, TwoRankSaveRestoresByteIdentical) {
  // Rank r holds rows [r*rows, (r+1)*rows) of a float32 [2*rows, cols]
  // tensor plus a small private one; chunks of 256 KiB give many chunks.
  constexpr int64_t kRows = 512, kCols = 1024;
  std::vector<std::string> weights, extras;
  for (int r = 0; r < 2; ++r) {
    weights.push_back(RandomBytes(kRows * kCols * 4, 10 + r));
    extras.push_back(RandomBytes(1000 + r, 20 + r));
  }
  std::vector<absl::StatusOr<client::SaveResult>> results(2);
  std::vector<std::thread> ranks;
  ranks.reserve(results.size());
  for (int r = 0; r < 2; ++r) {
    ranks.emplace_back([&, r] {
      std::unique_ptr<client::Client> client = NewClient();
      ASSERT_NE(client, nullptr);
      std::vector<client::TensorData> tensors = {
          client::TensorData{.name = "weight",
                             .dtype = DType::kFloat32,
                             .global_shape = {2 * kRows, kCols},
                             .box = Box{{r * kRows, 0}, {kRows, kCols}},
                             .bytes = weights[r],
                             .delta_base_step = std::nullopt,
                             .delta_rows = {},
                             .row_fingerprints = std::nullopt,
                             .quantize_bits = std::nullopt},
          Tensor(absl::StrCat("extra", r), extras[r])};
      client::SaveOptions options;
      options.rank = r;
      options.world_size = 2;
      options.chunk_bytes = 256 << 10;
      options.metadata.metrics["loss"] = 0.5;
      results[r] = client->SaveShard(kJob, 100, tensors, options);
    });
  }
  for (std::thread& rank : ranks) rank.join();
  ASSERT_TRUE(results[0].ok()) << results[0].status();
  ASSERT_TRUE(results[1].ok()) << results[1].status();
  EXPECT_NE(results[0]->checkpoint_committed, results[1]->checkpoint_committed)
      << "exactly one rank completes the checkpoint";
  EXPECT_EQ(results[0]->chunks_total, 8u + 1u);
  EXPECT_EQ(results[0]->logical_bytes, weights[0].size() + extras[0].size());

  for (int r = 0; r < 2; ++r) {
    auto restored = client_->RestoreShard(kJob, std::nullopt, r);
    ASSERT_TRUE(restored.ok()) << restored.status();
    ASSERT_EQ(restored->size(), 2u);
    EXPECT_EQ((*restored)[0].entry.name, "weight");
    EXPECT_EQ((*restored)[0].entry.box, (Box{{r * kRows, 0}, {kRows, kCols}}));
    EXPECT_TRUE((*restored)[0].bytes == weights[r]) << "rank " << r;
    EXPECT_TRUE((*restored)[1].bytes == extras[r]) << "rank " << r;
  }

  auto manifest = client_->GetManifest(kJob, 100);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->record.state, CheckpointState::kCommitted);
  EXPECT_EQ(manifest->record.metadata.metrics.at("loss"), 0.5);
  const TensorEntry& entry = manifest->shards[1].tensors[0];
  std::string out(entry.ByteSize(), '\0');
  ASSERT_TRUE(client_->ReadTensor(kJob, entry, absl::MakeSpan(out)).ok());
  EXPECT_TRUE(out == weights[1]);
  EXPECT_EQ(
      client_->ReadTensor(kJob, entry, absl::MakeSpan(out).subspan(1)).code(),
      absl::StatusCode::kInvalidArgument);
}

TEST_F(GrpcServiceTest, ResavingUnchangedStateSendsNoChunkBytes) {
  const std::string bytes = RandomBytes(3 << 20, 1);
  client::TensorData tensors[] = {Tensor("state", bytes)};
  client::SaveOptions options;
  options.chunk_bytes = 1 << 20;
  auto first = client_->SaveShard(kJob, 1, tensors, options);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->chunks_sent, 3u);
  EXPECT_EQ(first->bytes_sent, bytes.size());
  EXPECT_TRUE(first->checkpoint_committed);

  auto second = client_->SaveShard(kJob, 2, tensors, options);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->chunks_total, 3u);
  EXPECT_EQ(second->chunks_sent, 0u);
  EXPECT_EQ(second->bytes_sent, 0u);
  EXPECT_TRUE(second->checkpoint_committed);
}

TEST_F(GrpcServiceTest, RepeatedChunksWithinOneSaveAreSentOnce) {
  const std::string zeros(4 << 20, '\0');
  client::TensorData tensors[] = {Tensor("a", zeros), Tensor("b", zeros)};
  client::SaveOptions options;
  options.chunk_bytes = 1 << 20;
  auto saved = client_->SaveShard(kJob, 1, tensors, options);
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(saved->chunks_total, 8u);
  EXPECT_EQ(saved->chunks_sent, 1u);
  EXPECT_EQ(saved->bytes_sent, 1u << 20);
  auto restored = client_->RestoreShard(kJob, 1, 0);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_TRUE((*restored)[1].bytes == zeros);
}

TEST_F(GrpcServiceTest, ManySmallChunksStreamInOrder) {
  // Hundreds of chunks exercise the read and write pipelines of both
  // streaming reactors.
  const std::string bytes = RandomBytes(2 << 20, 7);
  client::TensorData tensors[] = {Tensor("t", bytes)};
  client::SaveOptions options;
  options.chunk_bytes = 4 << 10;
  options.hash_threads = 3;
  auto saved = client_->SaveShard(kJob, 5, tensors, options);
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(saved->chunks_sent, 512u);
  auto restored = client_->RestoreShard(kJob, 5, 0);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_TRUE((*restored)[0].bytes == bytes);
}

TEST_F(GrpcServiceTest,
       PutChunksWithWrongHashIsInvalidArgumentAndStoresNothing) {
  v1::PutChunksRequest request;
  request.set_job(kJob);
  v1::ChunkData* chunk = request.add_chunks();
  chunk->set_sha256(std::string(Sha256("other bytes").bytes()));
  chunk->set_data("hello");
  v1::PutChunksResponse response;
  grpc::Status status = RawPut(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << status.error_message();

  const ChunkId claimed = Sha256("other bytes");
  const ChunkId actual = Sha256("hello");
  EXPECT_EQ(RawFindMissing({claimed, actual}),
            (std::vector<ChunkId>{claimed, actual}));
}

TEST_F(GrpcServiceTest, PutChunksRejectsMalformedStreams) {
  v1::PutChunksResponse response;
  {
    v1::PutChunksRequest request;  // no job
    request.add_chunks()->set_data("x");
    grpc::Status status = RawPut(request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("must name the job"));
  }
  {
    v1::PutChunksRequest request;
    request.set_job(kJob);
    v1::ChunkData* chunk = request.add_chunks();
    chunk->set_sha256("short");
    chunk->set_data("x");
    grpc::Status status = RawPut(request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(),
                HasSubstr("sha256 must be 32 bytes, got 5"));
  }
  {
    grpc::ClientContext context;
    auto writer = stub_->PutChunks(&context, &response);
    v1::PutChunksRequest first;
    first.set_job(kJob);
    writer->Write(first);
    v1::PutChunksRequest second;
    second.set_job("team/other");
    writer->Write(second);
    writer->WritesDone();
    grpc::Status status = writer->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("team/other"));
  }
}

TEST_F(GrpcServiceTest, PutChunksCountsReceivedAndStored) {
  v1::PutChunksRequest request;
  request.set_job(kJob);
  for (const char* data : {"one", "two", "one"}) {
    v1::ChunkData* chunk = request.add_chunks();
    chunk->set_sha256(std::string(Sha256(data).bytes()));
    chunk->set_data(data);
  }
  v1::PutChunksResponse response;
  grpc::Status status = RawPut(request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.chunks_received(), 3u);
  EXPECT_EQ(response.chunks_stored(), 2u);
  EXPECT_EQ(response.bytes_received(), 9u);
  EXPECT_EQ(response.bytes_stored(), 6u);
}

TEST_F(GrpcServiceTest, PutChunksStreamOverItsByteLimitIsResourceExhausted) {
  server_.reset();
  StreamLimits limits;
  limits.max_upload_stream_bytes = 100;
  StartServer(limits);
  const std::string bytes = RandomBytes(1000, 3);
  client::TensorData tensors[] = {Tensor("t", bytes)};
  auto saved = client_->SaveShard(kJob, 1, tensors, client::SaveOptions{});
  EXPECT_EQ(saved.status().code(), absl::StatusCode::kResourceExhausted)
      << saved.status();
}

TEST_F(GrpcServiceTest,
       CommitReferencingNeverUploadedChunkIsFailedPrecondition) {
  grpc::ClientContext begin_context;
  v1::BeginCheckpointRequest begin;
  begin.set_job(kJob);
  begin.set_step(1);
  begin.set_world_size(1);
  v1::BeginCheckpointResponse begun;
  ASSERT_TRUE(stub_->BeginCheckpoint(&begin_context, begin, &begun).ok());

  v1::CommitShardRequest commit;
  commit.set_job(kJob);
  commit.set_step(1);
  commit.set_world_size(1);
  ShardManifest shard;
  TensorEntry entry;
  entry.name = "t";
  entry.global_shape = {5};
  entry.box = Box{{0}, {5}};
  entry.pieces = {ChunkRef{Sha256("never"), 5}};
  shard.tensors.push_back(entry);
  ToProto(shard, commit.mutable_shard());
  grpc::ClientContext context;
  v1::CommitShardResponse response;
  grpc::Status status = stub_->CommitShard(&context, commit, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << status.error_message();
}

TEST_F(GrpcServiceTest, RankOutsideWorldSizeIsInvalidArgument) {
  // The client refuses before sending anything...
  const std::string bytes = "abc";
  client::TensorData tensors[] = {Tensor("t", bytes)};
  client::SaveOptions options;
  options.rank = 2;
  options.world_size = 2;
  EXPECT_EQ(client_->SaveShard(kJob, 1, tensors, options).status().code(),
            absl::StatusCode::kInvalidArgument);

  // ...and so does the server.
  v1::CommitShardRequest commit;
  commit.set_job(kJob);
  commit.set_step(1);
  commit.set_world_size(2);
  commit.mutable_shard()->set_format_version(kFormatVersion);
  commit.mutable_shard()->set_rank(2);
  grpc::ClientContext context;
  v1::CommitShardResponse response;
  grpc::Status status = stub_->CommitShard(&context, commit, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << status.error_message();
}

TEST_F(GrpcServiceTest, UnknownJobOrStepIsNotFound) {
  EXPECT_EQ(client_->GetManifest("team/unknown", std::nullopt).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->ListCheckpoints("team/unknown").status().code(),
            absl::StatusCode::kNotFound);

  const std::string bytes = "abc";
  client::TensorData tensors[] = {Tensor("t", bytes)};
  ASSERT_TRUE(client_->SaveShard(kJob, 1, tensors, {}).ok());
  EXPECT_EQ(client_->GetManifest(kJob, 7).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->RestoreShard(kJob, 7, 0).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->DeleteCheckpoint(kJob, 7).code(),
            absl::StatusCode::kNotFound);

  grpc::ClientContext context;
  v1::ReadChunksRequest request;
  request.set_job(kJob);
  request.add_sha256(std::string(Sha256("absent").bytes()));
  auto reader = stub_->ReadChunks(&context, request);
  v1::ReadChunksResponse response;
  EXPECT_FALSE(reader->Read(&response));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(GrpcServiceTest, PendingCheckpointIsInvisibleUntilCommitted) {
  const std::string bytes = RandomBytes(100, 5);
  client::TensorData tensors[] = {Tensor("t", bytes)};
  client::SaveOptions options;
  options.world_size = 2;
  auto saved = client_->SaveShard(kJob, 3, tensors, options);
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_FALSE(saved->checkpoint_committed);
  EXPECT_EQ(saved->checkpoint.state, CheckpointState::kPending);

  auto committed = client_->ListCheckpoints(kJob);
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_TRUE(committed->empty());
  EXPECT_EQ(client_->GetManifest(kJob, std::nullopt).status().code(),
            absl::StatusCode::kNotFound);
  auto all = client_->ListCheckpoints(kJob, /*include_uncommitted=*/true);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].state, CheckpointState::kPending);

  options.rank = 1;
  saved = client_->SaveShard(kJob, 3, tensors, options);
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_TRUE(saved->checkpoint_committed);
  auto latest = client_->GetManifest(kJob, std::nullopt);
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->record.step, 3);
}

TEST_F(GrpcServiceTest, ValidationErrorsNameTheField) {
  v1::GetManifestRequest request;
  request.set_job(kJob);
  request.set_step(-3);
  grpc::ClientContext context;
  v1::GetManifestResponse response;
  grpc::Status status = stub_->GetManifest(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "GetManifest: step must be >= 0, got -3");

  grpc::ClientContext context2;
  request.set_job("no-tenant");
  status = stub_->GetManifest(&context2, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("GetManifest: invalid job"));
}

TEST_F(GrpcServiceTest, StatsAndDeleteReflectSavedCheckpoints) {
  const std::string bytes = RandomBytes(2 << 20, 9);
  client::TensorData tensors[] = {Tensor("t", bytes)};
  ASSERT_TRUE(client_->SaveShard(kJob, 1, tensors, {}).ok());
  ASSERT_TRUE(client_->SaveShard(kJob, 2, tensors, {}).ok());
  auto stats = client_->GetStats(kJob);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->logical_bytes, 2 * bytes.size());
  EXPECT_EQ(stats->stored_bytes, bytes.size());
  auto jobs = client_->ListJobs();
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  ASSERT_EQ(jobs->size(), 1u);
  EXPECT_EQ((*jobs)[0].job.name, kJob);
  EXPECT_EQ((*jobs)[0].checkpoint_count, 2);
  EXPECT_EQ((*jobs)[0].latest_step, 2);

  ASSERT_TRUE(client_->DeleteCheckpoint(kJob, 2).ok());
  auto listed = client_->ListCheckpoints(kJob);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].step, 1);
}

TEST_F(GrpcServiceTest, StartFailsWhenThePortIsTaken) {
  // Port reuse is off, so a second server cannot silently share the port.
  ServerOptions options;
  options.listen_address = address_;
  auto second = CheckpointServer::Start(options, service_.get());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(GrpcServiceTest, ShutdownDoesNotWaitForIdleClients) {
  // A connected client with no call in flight (a job between saves) must
  // not hold shutdown up to its grace deadline.
  const std::string bytes = "abc";
  client::TensorData tensors[] = {Tensor("t", bytes)};
  ASSERT_TRUE(client_->SaveShard(kJob, 1, tensors, {}).ok());
  const absl::Time start = absl::Now();
  server_->Shutdown(start + absl::Seconds(30));
  server_->Wait();
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ(client_->ListJobs().status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(GrpcServiceTest, HealthServiceAnswersServing) {
  // ProbeHealth (ckpt-server --health-probe) over the standard service:
  // the server as a whole and the checkpoint service by name.
  HealthProbeOptions probe;
  probe.address = address_;
  probe.service = "";
  EXPECT_TRUE(ProbeHealth(probe).ok()) << ProbeHealth(probe);
  probe.service = "ckpt.v1.CheckpointService";
  EXPECT_TRUE(ProbeHealth(probe).ok()) << ProbeHealth(probe);
  probe.service = "no.such.Service";
  EXPECT_EQ(ProbeHealth(probe).code(), absl::StatusCode::kUnavailable);
}

// ---------------------------------------- damaged restores, bytes added

TEST_F(GrpcServiceTest, RestoringACorruptChunkIsAlwaysDataLossNeverCancelled) {
  // Regression: the client cancelled a stream that had already ended with
  // the server's DATA_LOSS, and Finish then sometimes said CANCELLED.
  const std::string weights = RandomBytes(4 << 10, 7);
  ASSERT_TRUE(client_->SaveShard(kJob, 1, {Tensor("w", weights)}, {}).ok());
  CorruptChunk(store_, "team", weights);
  for (int i = 0; i < 20; ++i) {
    auto restored = client_->RestoreShard(kJob, 1, 0);
    ASSERT_TRUE(absl::IsDataLoss(restored.status())) << restored.status();
  }
}

TEST_F(GrpcServiceTest, BytesAddedCountsOnlyChunksNewToTheStore) {
  const std::string shared = RandomBytes(4 << 10, 6);
  const std::string own = RandomBytes(3 << 10, 7);
  client::SaveOptions options;
  options.chunk_bytes = 1 << 10;
  ASSERT_TRUE(client_->SaveShard(kJob, 1, {Tensor("s", shared)}, options).ok());
  // The same bytes again add nothing; new ones add their size.
  ASSERT_TRUE(client_->SaveShard(kJob, 2, {Tensor("s", shared)}, options).ok());
  ASSERT_TRUE(
      client_
          ->SaveShard(kJob, 3, {Tensor("s", shared), Tensor("o", own)}, options)
          .ok());
  auto listed = client_->ListCheckpoints(kJob);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 3u);
  EXPECT_EQ((*listed)[0].bytes_added, shared.size());
  EXPECT_EQ((*listed)[1].bytes_added, 0u);
  EXPECT_EQ((*listed)[2].bytes_added, own.size());
  auto manifest = client_->GetManifest(kJob, 3);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->record.bytes_added, own.size());

  // An upload naming a checkpoint that is not pending stores its chunks and
  // changes no record.
  v1::PutChunksRequest request;
  request.set_job(kJob);
  request.set_step(3);
  v1::ChunkData* chunk = request.add_chunks();
  chunk->set_sha256(std::string(Sha256("late").bytes()));
  chunk->set_data("late");
  v1::PutChunksResponse response;
  grpc::Status status = RawPut(request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.bytes_stored(), 4u);
  listed = client_->ListCheckpoints(kJob);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ((*listed)[2].bytes_added, own.size());
}

// Step 0 is a checkpoint like any other: its upload's new bytes count.
TEST_F(GrpcServiceTest, BytesAddedCountsTheUploadOfStepZero) {
  const std::string bytes = RandomBytes(4 << 10, 8);
  client::SaveOptions options;
  options.chunk_bytes = 1 << 10;
  ASSERT_TRUE(client_->SaveShard(kJob, 0, {Tensor("w", bytes)}, options).ok());
  auto listed = client_->ListCheckpoints(kJob);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].step, 0);
  EXPECT_EQ((*listed)[0].bytes_added, bytes.size());
}

}  // namespace
}  // namespace ckpt::server
