// T23: every RPC of ckpt.v1.CheckpointService on hostile request bytes. The
// first input byte picks the RPC (modulo their number), the rest is parsed
// as its request message (ParseFromArray; bytes that are no such message
// are skipped) and sent through gRPC's in-process channel to the real
// GrpcCheckpointService, so the request checks, authorization and the
// service run exactly as for a remote client, without a network, over a
// real RocksDB store (fuzz_store.h) holding one committed checkpoint
// ("seed/job" step 1) for the reads to find.
//
// One binary for all 23 RPCs rather than one each: each would link the
// whole server with ASan and libFuzzer (tens of seconds and ~100 MiB per
// binary on a 2-core machine), and one corpus lets an input that reaches a
// state help the others; the first byte still keeps each RPC's inputs
// apart.
//
// Oracle: every call answers (no DEADLINE_EXCEEDED: nothing hangs), and no
// request, however hostile, gets UNKNOWN, INTERNAL or DATA_LOSS from an
// intact store; the sanitizers catch the rest. State carries over from
// input to input (one store per process), as on a real server.

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "ckpt/v1/ckpt.grpc.pb.h"
#include "common/sha256.h"
#include "server/auth/authenticator.h"
#include "server/rpc/executor.h"
#include "server/rpc/grpc_service.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/fuzz_store.h"

namespace ckpt::fuzz {
namespace {

namespace v1 = ckpt::v1;

enum Rpc : uint8_t {
  kBeginCheckpoint,
  kFindMissingChunks,
  kPutChunks,
  kCommitShard,
  kAbortCheckpoint,
  kListJobs,
  kListCheckpoints,
  kGetManifest,
  kReportRestore,
  kReportCopy,
  kReadChunks,
  kGetSharedFileEndpoint,
  kReadChunksIntoFile,
  kDeleteCheckpoint,
  kGetStats,
  kSetRetentionPolicy,
  kGetRetentionPolicy,
  kPinCheckpoint,
  kSetCheckpointTags,
  kPruneCheckpoints,
  kCollectGarbage,
  kVerifyCheckpoints,
  kListEvents,
  kRpcCount,
};

// The seeded checkpoint's chunk contents.
constexpr absl::string_view kSeedChunks[] = {"seed chunk zero",
                                             "seed chunk one"};

class RpcHarness {
 public:
  RpcHarness()
      : authenticator_(server::Authenticator::WithoutTokens(true)),
        requests_("fuzz-request", 2),
        maintenance_("fuzz-maint", 1) {
    Start();
  }

  ~RpcHarness() { Stop(); }

  void Run(const uint8_t* data, size_t size) {
    if (size == 0) return;
    if (fuzz_.Grown()) {
      Stop();
      fuzz_.Recreate();
      Start();
    }
    const absl::string_view body(reinterpret_cast<const char*>(data) + 1,
                                 size - 1);
    const grpc::Status status =
        Call(static_cast<Rpc>(data[0] % kRpcCount), body);
    const grpc::StatusCode code = status.error_code();
    if (code == grpc::StatusCode::DEADLINE_EXCEEDED ||
        code == grpc::StatusCode::UNKNOWN ||
        code == grpc::StatusCode::INTERNAL ||
        code == grpc::StatusCode::DATA_LOSS) {
      std::fprintf(stderr, "rpc %d answered %d: %s\n", data[0] % kRpcCount,
                   static_cast<int>(code), status.error_message().c_str());
      FUZZ_CHECK(false, "a hostile request gets a refusal, not a failure");
    }
  }

 private:
  void Start() {
    SeedCheckpoint();
    grpc_service_ = std::make_unique<server::GrpcCheckpointService>(
        &fuzz_.service(), authenticator_.get(), server::StreamLimits{},
        &requests_, &maintenance_);
    grpc::ServerBuilder builder;
    builder.SetMaxReceiveMessageSize(64 << 20);
    builder.RegisterService(grpc_service_.get());
    server_ = builder.BuildAndStart();
    FUZZ_CHECK(server_ != nullptr, "the in-process server starts");
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    stub_ = v1::CheckpointService::NewStub(server_->InProcessChannel(args));
  }

  // Calls finish from executor tasks, so the executors outlive the server.
  void Stop() {
    stub_.reset();
    if (server_ != nullptr) server_->Shutdown();
    server_.reset();
    grpc_service_.reset();
  }

  void SeedCheckpoint() {
    server::CheckpointService& service = fuzz_.service();
    ShardManifest shard;
    TensorEntry entry;
    entry.name = "seed";
    for (absl::string_view chunk : kSeedChunks) {
      FUZZ_CHECK(service.PutChunk("seed/job", Sha256(chunk), chunk).ok(),
                 "seeding stores its chunks");
      entry.pieces.push_back({Sha256(chunk), chunk.size()});
    }
    const auto size = static_cast<int64_t>(entry.StoredBytes());
    entry.global_shape = {size};
    entry.box = Box{{0}, {size}};
    shard.tensors.push_back(entry);
    // A restart of the harness over a store that has it already: fine.
    (void)service.BeginCheckpoint("seed/job", 1, 1, {}, absl::ZeroDuration());
    (void)service.CommitShard("seed/job", 1, 1, shard);
  }

  static void SetDeadline(grpc::ClientContext* context) {
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::seconds(30));
  }

  template <typename Request, typename Response, typename Method>
  grpc::Status Unary(absl::string_view body, Method method) {
    Request request;
    if (!request.ParseFromArray(body.data(), static_cast<int>(body.size()))) {
      return grpc::Status::OK;
    }
    Response response;
    grpc::ClientContext context;
    SetDeadline(&context);
    return (stub_.get()->*method)(&context, request, &response);
  }

  template <typename Request, typename Response, typename Method>
  grpc::Status ServerStreaming(absl::string_view body, Method method) {
    Request request;
    if (!request.ParseFromArray(body.data(), static_cast<int>(body.size()))) {
      return grpc::Status::OK;
    }
    grpc::ClientContext context;
    SetDeadline(&context);
    std::unique_ptr<grpc::ClientReader<Response>> reader =
        (stub_.get()->*method)(&context, request);
    Response response;
    while (reader->Read(&response)) {
    }
    return reader->Finish();
  }

  // PutChunks: the body is one request message, sent once, then the stream
  // is closed.
  grpc::Status PutChunks(absl::string_view body) {
    v1::PutChunksRequest request;
    if (!request.ParseFromArray(body.data(), static_cast<int>(body.size()))) {
      return grpc::Status::OK;
    }
    v1::PutChunksResponse response;
    grpc::ClientContext context;
    SetDeadline(&context);
    std::unique_ptr<grpc::ClientWriter<v1::PutChunksRequest>> writer =
        stub_->PutChunks(&context, &response);
    writer->Write(request);
    writer->WritesDone();
    return writer->Finish();
  }

  grpc::Status Call(Rpc rpc, absl::string_view body) {
    using Stub = v1::CheckpointService::Stub;
#define CKPT_FUZZ_UNARY(Name, Request, Response) \
  case k##Name:                                  \
    return Unary<v1::Request, v1::Response>(body, &Stub::Name)
    switch (rpc) {
      CKPT_FUZZ_UNARY(BeginCheckpoint, BeginCheckpointRequest,
                      BeginCheckpointResponse);
      CKPT_FUZZ_UNARY(FindMissingChunks, FindMissingChunksRequest,
                      FindMissingChunksResponse);
      CKPT_FUZZ_UNARY(CommitShard, CommitShardRequest, CommitShardResponse);
      CKPT_FUZZ_UNARY(AbortCheckpoint, AbortCheckpointRequest,
                      AbortCheckpointResponse);
      CKPT_FUZZ_UNARY(ListJobs, ListJobsRequest, ListJobsResponse);
      CKPT_FUZZ_UNARY(ListCheckpoints, ListCheckpointsRequest,
                      ListCheckpointsResponse);
      CKPT_FUZZ_UNARY(GetManifest, GetManifestRequest, GetManifestResponse);
      CKPT_FUZZ_UNARY(ReportRestore, ReportRestoreRequest,
                      ReportRestoreResponse);
      CKPT_FUZZ_UNARY(ReportCopy, ReportCopyRequest, ReportCopyResponse);
      CKPT_FUZZ_UNARY(GetSharedFileEndpoint, GetSharedFileEndpointRequest,
                      GetSharedFileEndpointResponse);
      CKPT_FUZZ_UNARY(ReadChunksIntoFile, ReadChunksIntoFileRequest,
                      ReadChunksIntoFileResponse);
      CKPT_FUZZ_UNARY(DeleteCheckpoint, DeleteCheckpointRequest,
                      DeleteCheckpointResponse);
      CKPT_FUZZ_UNARY(GetStats, GetStatsRequest, GetStatsResponse);
      CKPT_FUZZ_UNARY(SetRetentionPolicy, SetRetentionPolicyRequest,
                      SetRetentionPolicyResponse);
      CKPT_FUZZ_UNARY(GetRetentionPolicy, GetRetentionPolicyRequest,
                      GetRetentionPolicyResponse);
      CKPT_FUZZ_UNARY(PinCheckpoint, PinCheckpointRequest,
                      PinCheckpointResponse);
      CKPT_FUZZ_UNARY(SetCheckpointTags, SetCheckpointTagsRequest,
                      SetCheckpointTagsResponse);
      CKPT_FUZZ_UNARY(PruneCheckpoints, PruneCheckpointsRequest,
                      PruneCheckpointsResponse);
      CKPT_FUZZ_UNARY(CollectGarbage, CollectGarbageRequest,
                      CollectGarbageResponse);
      CKPT_FUZZ_UNARY(ListEvents, ListEventsRequest, ListEventsResponse);
      case kPutChunks:
        return PutChunks(body);
      case kReadChunks:
        return ServerStreaming<v1::ReadChunksRequest, v1::ReadChunksResponse>(
            body, &Stub::ReadChunks);
      case kVerifyCheckpoints:
        return ServerStreaming<v1::VerifyRequest, v1::VerifyResponse>(
            body, &Stub::VerifyCheckpoints);
      case kRpcCount:
        break;
    }
#undef CKPT_FUZZ_UNARY
    return grpc::Status::OK;
  }

  FuzzStore fuzz_;
  std::unique_ptr<server::Authenticator> authenticator_;
  // Declared before the service and server, which use them; they run until
  // the harness goes, after every server has shut down.
  server::Executor requests_;
  server::Executor maintenance_;
  std::unique_ptr<server::GrpcCheckpointService> grpc_service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::CheckpointService::Stub> stub_;
};

}  // namespace
}  // namespace ckpt::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static ckpt::fuzz::RpcHarness harness;
  harness.Run(data, size);
  return 0;
}
