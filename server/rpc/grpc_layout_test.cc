// CommitShard's layout check of sharded tensors (common/shard_layout.h)
// through a real server: as the client library meets it, and as a caller
// of the raw gRPC API sending boxes no library would.
#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ckpt/v1/ckpt.grpc.pb.h"
#include "client/client.h"
#include "common/event.h"
#include "common/sha256.h"
#include "common/wire_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/rpc_test_fixture.h"

namespace ckpt::server {
namespace {

using ::testing::AllOf;
using testing::GrpcServiceTest;
using ::testing::HasSubstr;
using testing::kJob;
using testing::RandomBytes;

constexpr int64_t kRows = 10, kCols = 4;

// Rows [first, first + rows) of a float32 [kRows, kCols] tensor "w".
client::TensorData Rows(int64_t first, int64_t rows, const std::string& bytes) {
  client::TensorData tensor;
  tensor.name = "w";
  tensor.dtype = DType::kFloat32;
  tensor.global_shape = {kRows, kCols};
  tensor.box = Box{{first, 0}, {rows, kCols}};
  tensor.bytes =
      absl::string_view(bytes).substr(static_cast<size_t>(first * kCols * 4),
                                      static_cast<size_t>(rows * kCols * 4));
  return tensor;
}

client::SaveOptions Rank(int32_t rank, int32_t world_size) {
  client::SaveOptions options;
  options.rank = rank;
  options.world_size = world_size;
  return options;
}

TEST_F(GrpcServiceTest, OverlappingShardIsRefusedAndACorrectedOneCommits) {
  const std::string bytes = RandomBytes(kRows * kCols * 4, 1);
  ASSERT_TRUE(
      client_->SaveShard(kJob, 1, {Rows(0, 6, bytes)}, Rank(0, 2)).ok());
  auto refused = client_->SaveShard(kJob, 1, {Rows(5, 5, bytes)}, Rank(1, 2));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(),
              AllOf(HasSubstr("tensor 'w' (float32 [10, 4])"),
                    HasSubstr("rank 1's box [5:10, 0:4]"),
                    HasSubstr("overlaps rank 0's box [0:6, 0:4]")));
  // No trace: still pending, with rank 0 only, and no event.
  auto listed = client_->ListCheckpoints(kJob, /*include_uncommitted=*/true);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].state, CheckpointState::kPending);
  EXPECT_EQ((*listed)[0].committed_ranks, std::vector<int32_t>{0});
  auto events = client_->ListEvents(kJob);
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_TRUE(events->empty());

  auto fixed = client_->SaveShard(kJob, 1, {Rows(6, 4, bytes)}, Rank(1, 2));
  ASSERT_TRUE(fixed.ok()) << fixed.status();
  EXPECT_TRUE(fixed->checkpoint_committed);
}

class RawLayoutTest : public GrpcServiceTest {
 protected:
  grpc::Status Begin(int64_t step, int32_t world_size) {
    v1::BeginCheckpointRequest request;
    request.set_job(kJob);
    request.set_step(step);
    request.set_world_size(world_size);
    v1::BeginCheckpointResponse response;
    grpc::ClientContext context;
    return stub_->BeginCheckpoint(&context, request, &response);
  }

  // Commits a shard of one uint8 tensor "t" of `shape`, holding `box`
  // (its bytes uploaded first, one chunk; none for an empty box).
  grpc::Status Commit(int64_t step, int32_t world_size, int32_t rank,
                      std::vector<int64_t> shape, Box box) {
    TensorEntry entry;
    entry.name = "t";
    entry.dtype = DType::kUint8;
    entry.global_shape = std::move(shape);
    entry.box = std::move(box);
    const std::string bytes(entry.ByteSize(), static_cast<char>('a' + rank));
    if (!bytes.empty()) {
      v1::PutChunksRequest put;
      put.set_job(kJob);
      v1::ChunkData* chunk = put.add_chunks();
      chunk->set_sha256(std::string(Sha256(bytes).bytes()));
      chunk->set_data(bytes);
      v1::PutChunksResponse put_response;
      grpc::Status status = RawPut(put, &put_response);
      if (!status.ok()) return status;
      entry.pieces.push_back(ChunkRef{Sha256(bytes), bytes.size()});
    }
    ShardManifest shard;
    shard.rank = rank;
    shard.tensors.push_back(std::move(entry));
    v1::CommitShardRequest request;
    request.set_job(kJob);
    request.set_step(step);
    request.set_world_size(world_size);
    ToProto(shard, request.mutable_shard());
    v1::CommitShardResponse response;
    grpc::ClientContext context;
    return stub_->CommitShard(&context, request, &response);
  }

  void ExpectNothingCommitted() {
    v1::ListEventsRequest request;
    request.set_job(kJob);
    v1::ListEventsResponse response;
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->ListEvents(&context, request, &response).ok());
    for (const v1::JobEvent& event : response.events()) {
      EXPECT_NE(event.kind(), v1::EVENT_KIND_COMMITTED);
    }
  }
};

TEST_F(RawLayoutTest, ASingleRankHoldingHalfATensorIsRefused) {
  ASSERT_TRUE(Begin(1, 1).ok());
  grpc::Status status = Commit(1, 1, 0, {8, 2}, Box{{0, 0}, {4, 2}});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(),
              AllOf(HasSubstr("tensor 't' (uint8 [8, 2])"),
                    HasSubstr("leave 8 of its 16 elements uncovered"),
                    HasSubstr("e.g. index [4, 0]")));
  ExpectNothingCommitted();
}

TEST_F(RawLayoutTest, HugeGlobalShapesAreCountedNotOverflowed) {
  // Extents of 2^48 pass the manifest's checks; 2^144 elements overflow
  // any 64-bit count (a wrap to 0 would pass as covered).
  constexpr int64_t kBig = int64_t{1} << 48;
  ASSERT_TRUE(Begin(1, 1).ok());
  grpc::Status status =
      Commit(1, 1, 0, {kBig, kBig, kBig}, Box{{0, 0, 0}, {1, 1, 16}});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(),
              AllOf(HasSubstr("more than 2^127"), HasSubstr("[0, 0, 16]")));
  // A 2^64-element shape (wraps to 0 in 64 bits) is no exception.
  ASSERT_TRUE(Begin(2, 1).ok());
  status = Commit(2, 1, 0, {int64_t{1} << 32, int64_t{1} << 32},
                  Box{{0, 0}, {1, 8}});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(),
              HasSubstr("leave 18446744073709551608 of its "
                        "18446744073709551616 elements"));
  ExpectNothingCommitted();
}

TEST_F(RawLayoutTest, OverlapsEmptyBoxesAndReplicasFromRawCommits) {
  ASSERT_TRUE(Begin(1, 4).ok());
  ASSERT_TRUE(Commit(1, 4, 0, {6}, Box{{0}, {3}}).ok());
  // An identical box with other bytes is a replica by layout; the restore
  // side refuses replicas whose chunks differ.
  ASSERT_TRUE(Commit(1, 4, 1, {6}, Box{{0}, {3}}).ok());
  // One element over rank 0's part.
  grpc::Status overlap = Commit(1, 4, 2, {6}, Box{{2}, {4}});
  EXPECT_EQ(overlap.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(overlap.error_message(), AllOf(HasSubstr("rank 2's box [2:6]"),
                                             HasSubstr("both hold [2]")));
  ASSERT_TRUE(Commit(1, 4, 2, {6}, Box{{3}, {3}}).ok());
  // An empty box at the end overlaps nothing and completes the checkpoint.
  grpc::Status last = Commit(1, 4, 3, {6}, Box{{6}, {0}});
  ASSERT_TRUE(last.ok()) << last.error_message();
}

}  // namespace
}  // namespace ckpt::server
