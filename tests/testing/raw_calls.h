// Raw gRPC calls with a bearer token (test code only, header-only): what a
// client without the library sends, for the authentication and tenant
// isolation tests, plus token files for the servers they start.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "ckpt/v1/ckpt.grpc.pb.h"
#include "common/chunk_id.h"
#include "common/manifest.h"
#include "common/sha256.h"
#include "common/wire_format.h"

namespace ckpt::testing {

// One line of a token file, with the token it is the hash of.
struct TestToken {
  std::string token;
  std::string principal;
  std::string role;
  std::string scope;
};

inline std::string TokenFileText(const std::vector<TestToken>& tokens) {
  std::string text = "# test tokens: SHA256_HEX PRINCIPAL ROLE SCOPE\n";
  for (const TestToken& t : tokens) {
    absl::StrAppend(&text, Sha256(t.token).ToHex(), " ", t.principal, " ",
                    t.role, " ", t.scope, "\n");
  }
  return text;
}

inline void WriteTokenFile(const std::string& path,
                           const std::vector<TestToken>& tokens) {
  std::ofstream(path, std::ios::trunc) << TokenFileText(tokens);
}

// A one-tensor uint8 shard of rank 0 naming `chunks` as its pieces.
inline ShardManifest ShardOf(const std::vector<ChunkRef>& chunks) {
  TensorEntry tensor;
  tensor.name = "w";
  tensor.dtype = DType::kUint8;
  int64_t size = 0;
  for (const ChunkRef& ref : chunks) size += static_cast<int64_t>(ref.size);
  tensor.global_shape = {size};
  tensor.box = Box{{0}, {size}};
  tensor.pieces = chunks;
  ShardManifest shard;
  shard.tensors.push_back(std::move(tensor));
  return shard;
}

// A stub whose calls carry `authorization: Bearer <token>` (none when the
// token is empty; `header` replaces the whole value when set).
class RawCaller {
 public:
  using Stub = v1::CheckpointService::Stub;

  RawCaller(Stub* stub, std::string token) : stub_(stub) {
    if (!token.empty()) header_ = absl::StrCat("Bearer ", token);
  }
  static RawCaller WithHeader(Stub* stub, std::string header) {
    RawCaller caller(stub, "");
    caller.header_ = std::move(header);
    return caller;
  }

  template <typename Request, typename Response>
  grpc::Status Call(grpc::Status (Stub::*method)(grpc::ClientContext*,
                                                 const Request&, Response*),
                    const Request& request, Response* response) const {
    grpc::ClientContext context;
    Authorize(&context);
    return (stub_->*method)(&context, request, response);
  }
  // The same, for calls whose answer the test does not need.
  template <typename Request, typename Response>
  grpc::Status Call(grpc::Status (Stub::*method)(grpc::ClientContext*,
                                                 const Request&, Response*),
                    const Request& request) const {
    Response response;
    return Call(method, request, &response);
  }

  // One PutChunks stream of one message.
  grpc::Status Put(absl::string_view job,
                   const std::vector<std::string>& chunks,
                   v1::PutChunksResponse* response = nullptr) const {
    v1::PutChunksRequest request;
    request.set_job(std::string(job));
    for (const std::string& bytes : chunks) {
      v1::ChunkData* chunk = request.add_chunks();
      chunk->set_sha256(std::string(Sha256(bytes).bytes()));
      chunk->set_data(bytes);
    }
    v1::PutChunksResponse ignored;
    grpc::ClientContext context;
    Authorize(&context);
    auto writer =
        stub_->PutChunks(&context, response != nullptr ? response : &ignored);
    writer->Write(request);
    writer->WritesDone();
    return writer->Finish();
  }

  // ReadChunks of `ids`; the chunks received go to `chunks`.
  grpc::Status Read(absl::string_view job, const std::vector<ChunkId>& ids,
                    std::vector<v1::ReadChunksResponse>* chunks) const {
    v1::ReadChunksRequest request;
    request.set_job(std::string(job));
    for (const ChunkId& id : ids) request.add_sha256(std::string(id.bytes()));
    grpc::ClientContext context;
    Authorize(&context);
    auto reader = stub_->ReadChunks(&context, request);
    v1::ReadChunksResponse response;
    while (reader->Read(&response)) chunks->push_back(response);
    return reader->Finish();
  }

  // VerifyCheckpoints; the last message (the report, when OK) goes to
  // `last`.
  grpc::Status Verify(const v1::VerifyRequest& request,
                      v1::VerifyResponse* last) const {
    grpc::ClientContext context;
    Authorize(&context);
    auto reader = stub_->VerifyCheckpoints(&context, request);
    v1::VerifyResponse response;
    while (reader->Read(&response)) *last = response;
    return reader->Finish();
  }

  // Begin, upload `bytes` as one chunk and commit it as the one rank's
  // shard: the first failure.
  grpc::Status Save(absl::string_view job, int64_t step,
                    const std::string& bytes) const {
    v1::BeginCheckpointRequest begin;
    begin.set_job(std::string(job));
    begin.set_step(step);
    begin.set_world_size(1);
    grpc::Status status = Call(&Stub::BeginCheckpoint, begin);
    if (!status.ok()) return status;
    status = Put(job, {bytes});
    if (!status.ok()) return status;
    return Commit(job, step, {ChunkRef{Sha256(bytes), bytes.size()}});
  }

  grpc::Status Commit(absl::string_view job, int64_t step,
                      const std::vector<ChunkRef>& chunks,
                      v1::CommitShardResponse* response = nullptr) const {
    v1::CommitShardRequest commit;
    commit.set_job(std::string(job));
    commit.set_step(step);
    commit.set_world_size(1);
    ToProto(ShardOf(chunks), commit.mutable_shard());
    v1::CommitShardResponse ignored;
    return Call(&Stub::CommitShard, commit,
                response != nullptr ? response : &ignored);
  }

 private:
  void Authorize(grpc::ClientContext* context) const {
    if (!header_.empty()) context->AddMetadata("authorization", header_);
  }

  Stub* stub_;
  std::string header_;
};

}  // namespace ckpt::testing
