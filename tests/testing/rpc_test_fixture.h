// Test fixture of the gRPC edge (test code only): a CheckpointServer on
// 127.0.0.1:0 over a MemoryStore (or a chunk store wrapping it), with a
// connected client library and the raw generated stub, for the tests that
// need to send what the client never would.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "ckpt/v1/ckpt.grpc.pb.h"
#include "client/client.h"
#include "common/clock.h"
#include "common/sha256.h"
#include "gtest/gtest.h"
#include "server/rpc/server.h"
#include "server/service/checkpoint_service.h"
#include "server/storage/memory_store.h"

namespace ckpt::server::testing {

inline constexpr char kJob[] = "team/model";

inline std::string RandomBytes(size_t size, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(rng() & 0xff);
  return bytes;
}

// A uint8 tensor [size] held whole by one rank.
inline client::TensorData Tensor(std::string name, const std::string& bytes) {
  const auto size = static_cast<int64_t>(bytes.size());
  client::TensorData tensor;
  tensor.name = std::move(name);
  tensor.global_shape = {size};
  tensor.box = Box{{0}, {size}};
  tensor.bytes = bytes;
  return tensor;
}
// The tensor is a view: a temporary would dangle before SaveShard reads it.
client::TensorData Tensor(std::string name, std::string&& bytes) = delete;

// Replaces a stored chunk's bytes behind the service, as on-disk rot would.
inline void CorruptChunk(MemoryStore& store, absl::string_view tenant,
                         const std::string& bytes) {
  const ChunkId id = Sha256(bytes);
  ASSERT_TRUE(store.Delete(tenant, id).ok());
  std::string rotten = bytes;
  rotten[0] ^= 0x01;
  ASSERT_TRUE(store.Put(tenant, id, rotten).ok());
}

class GrpcServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(StreamLimits{}); }

  void StartServer(const StreamLimits& limits) {
    ServerOptions options;
    options.limits = limits;
    StartServer(options);
  }

  // Starts a server with `options` on 127.0.0.1:0, over chunk_store() (and
  // store_ for the metadata), and connects client_ and stub_ to it.
  void StartServer(ServerOptions options) {
    service_ =
        std::make_unique<CheckpointService>(chunk_store(), &store_, &clock_);
    options.listen_address = "127.0.0.1:0";
    auto server = CheckpointServer::Start(options, service_.get());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_GT(server_->port(), 0);
    address_ = absl::StrCat("127.0.0.1:", server_->port());
    client_ = NewClient();
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    args.SetMaxSendMessageSize(64 << 20);
    channel_ = grpc::CreateCustomChannel(
        address_, grpc::InsecureChannelCredentials(), args);
    stub_ = v1::CheckpointService::NewStub(channel_);
  }

  // The service's chunk store; a test may wrap store_.
  virtual ChunkStore* chunk_store() { return &store_; }

  std::unique_ptr<client::Client> NewClient() {
    auto client = client::Client::Connect(address_);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  // PutChunks through the raw stub with one message.
  grpc::Status RawPut(const v1::PutChunksRequest& request,
                      v1::PutChunksResponse* response) {
    grpc::ClientContext context;
    auto writer = stub_->PutChunks(&context, response);
    writer->Write(request);
    writer->WritesDone();
    return writer->Finish();
  }

  std::vector<ChunkId> RawFindMissing(const std::vector<ChunkId>& ids) {
    v1::FindMissingChunksRequest request;
    request.set_job(kJob);
    for (const ChunkId& id : ids) request.add_sha256(std::string(id.bytes()));
    v1::FindMissingChunksResponse response;
    grpc::ClientContext context;
    grpc::Status status =
        stub_->FindMissingChunks(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    std::vector<ChunkId> missing;
    for (const std::string& raw : response.missing_sha256()) {
      missing.push_back(*ChunkId::FromBytes(raw));
    }
    return missing;
  }

  MemoryStore store_;
  FakeClock clock_;
  std::unique_ptr<CheckpointService> service_;
  std::unique_ptr<CheckpointServer> server_;
  std::string address_;
  std::unique_ptr<client::Client> client_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::CheckpointService::Stub> stub_;
};

}  // namespace ckpt::server::testing
