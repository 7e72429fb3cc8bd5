// Input hygiene end to end (issue 13), against the real ckpt-server over
// RocksDB through real gRPC, sending what a careless or hostile client
// would through the raw stub: a piece recording another size than its
// chunk's, an endless lease, a 10,000-byte job name, and a storage failure
// whose RocksDB text names the server's files.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ckpt/v1/ckpt.grpc.pb.h"
#include "common/manifest.h"
#include "common/sha256.h"
#include "common/wire_format.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/testing/real_server_test.h"

namespace ckpt::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kJob[] = "it/hygiene";

class InputHygieneTest : public RealServerTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(RealServerTest::SetUp());
    ASSERT_NO_FATAL_FAILURE(StartServer());
    stub_ = v1::CheckpointService::NewStub(grpc::CreateChannel(
        server_->address(), grpc::InsecureChannelCredentials()));
  }

  grpc::Status Begin(const std::string& job, int64_t step,
                     int64_t lease_seconds = 0) {
    v1::BeginCheckpointRequest request;
    request.set_job(job);
    request.set_step(step);
    request.set_world_size(1);
    request.set_lease_seconds(lease_seconds);
    v1::BeginCheckpointResponse response;
    grpc::ClientContext context;
    return stub_->BeginCheckpoint(&context, request, &response);
  }

  grpc::Status Put(const std::vector<std::string>& chunks) {
    v1::PutChunksRequest request;
    request.set_job(kJob);
    for (const std::string& bytes : chunks) {
      v1::ChunkData* chunk = request.add_chunks();
      chunk->set_sha256(std::string(Sha256(bytes).bytes()));
      chunk->set_data(bytes);
    }
    v1::PutChunksResponse response;
    grpc::ClientContext context;
    auto writer = stub_->PutChunks(&context, &response);
    writer->Write(request);
    writer->WritesDone();
    return writer->Finish();
  }

  grpc::Status Commit(int64_t step, const ShardManifest& shard) {
    v1::CommitShardRequest request;
    request.set_job(kJob);
    request.set_step(step);
    request.set_world_size(1);
    ToProto(shard, request.mutable_shard());
    v1::CommitShardResponse response;
    grpc::ClientContext context;
    return stub_->CommitShard(&context, request, &response);
  }

  std::unique_ptr<v1::CheckpointService::Stub> stub_;
};

const std::string kA(100, 'a');
const std::string kB(60, 'b');

// One uint8 tensor of kA + kB whose pieces record the sizes given.
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

TEST_F(InputHygieneTest, APieceWithAnotherSizeThanItsChunkNeverCommits) {
  ASSERT_TRUE(Begin(kJob, 1).ok());
  ASSERT_TRUE(Put({kA, kB}).ok());
  const grpc::Status refused = Commit(1, TwoPieces(60, 100));
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << refused.error_message();
  EXPECT_THAT(refused.error_message(),
              HasSubstr("tensor 'w' piece 0 records 60 bytes"));
  auto committed = client_->ListCheckpoints(kJob);
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_TRUE(committed->empty());
  // The true sizes commit, and the checkpoint restores.
  ASSERT_TRUE(Commit(1, TwoPieces(100, 60)).ok());
  std::vector<client::RestoredTensor> restored =
      RestoreRankZero(kJob, 1, /*shared_memory=*/false);
  ASSERT_EQ(restored.size(), 1u);
}

TEST_F(InputHygieneTest, AnEndlessLeaseIsRefusedNamingTheCap) {
  const grpc::Status refused = Begin(kJob, 1, int64_t{1} << 62);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << refused.error_message();
  EXPECT_THAT(refused.error_message(), HasSubstr("maximum of 1h"));
  auto all = client_->ListCheckpoints(kJob, /*include_uncommitted=*/true);
  EXPECT_FALSE(all.ok() && !all->empty());
  EXPECT_TRUE(Begin(kJob, 1, 3600).ok());
}

TEST_F(InputHygieneTest, AHugeJobNameIsInvalidArgumentQuotedTruncated) {
  const std::string job = "it/" + std::string(9997, 'j');
  const grpc::Status refused = Begin(job, 1);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << refused.error_message().substr(0, 200);
  EXPECT_LT(refused.error_message().size(), 400u);
  EXPECT_THAT(
      refused.error_message(),
      HasSubstr(absl::StrCat("'", job.substr(0, 64), "...' (10000 bytes)")));
}

TEST_F(InputHygieneTest, AStorageFailureReachesTheClientWithoutAPath) {
  ASSERT_TRUE(Begin(kJob, 1).ok());
  ASSERT_TRUE(Put({kA, kB}).ok());
  // The data directory gone under the running server: the commit's flush
  // cannot create its files, and RocksDB's error names them.
  const std::string moved = dir_->path() + "/moved";
  std::filesystem::rename(db_path(), moved);
  const grpc::Status failed = Commit(1, TwoPieces(100, 60));
  std::filesystem::rename(moved, db_path());
  ASSERT_FALSE(failed.ok());
  EXPECT_THAT(failed.error_message(), Not(HasSubstr(dir_->path())));
  EXPECT_THAT(failed.error_message(), Not(HasSubstr(".sst")));
  EXPECT_THAT(failed.error_message(),
              ::testing::ContainsRegex("incident [0-9a-f]{8}"));
}

TEST_F(InputHygieneTest, ADefaultLeaseBeyondTheCapIsAStartupError) {
  auto refused = ServerProcess::Start(
      dir_->path() + "/other",
      {"--max-lease-seconds", "60", "--default-lease-seconds", "120"});
  EXPECT_FALSE(refused.ok());
  auto started = ServerProcess::Start(
      dir_->path() + "/other",
      {"--max-lease-seconds", "60", "--default-lease-seconds", "60"});
  ASSERT_TRUE(started.ok()) << started.status();
  auto stopped = (*started)->Stop();
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(*stopped, 0);
}

}  // namespace
}  // namespace ckpt::testing
