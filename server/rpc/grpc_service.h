// GrpcCheckpointService: the gRPC edge of ckpt.v1.CheckpointService. It
// validates and translates requests (common/wire_format.h), calls the
// transport-agnostic ckpt::server::CheckpointService and converts the result
// status in one place (common/grpc_status.h). No lifecycle logic lives here.
//
// Callback API only. Handlers run on gRPC's callback threads; the streaming
// reactors (put_chunks_reactor.h, read_chunks_reactor.h, verify_reactor.h)
// never hold their own lock across service calls or gRPC operations, always
// Finish exactly once, and delete themselves in OnDone.
#pragma once

#include "ckpt/v1/ckpt.grpc.pb.h"
#include "server/rpc/call_counter.h"
#include "server/rpc/stream_limits.h"
#include "server/service/checkpoint_service.h"

namespace ckpt::server {

class GrpcCheckpointService final
    : public v1::CheckpointService::CallbackService {
 public:
  // `service` must outlive this object and the server it is registered with.
  explicit GrpcCheckpointService(CheckpointService* service,
                                 StreamLimits limits = {});

  grpc::ServerUnaryReactor* BeginCheckpoint(
      grpc::CallbackServerContext* context,
      const v1::BeginCheckpointRequest* request,
      v1::BeginCheckpointResponse* response) override;
  grpc::ServerUnaryReactor* FindMissingChunks(
      grpc::CallbackServerContext* context,
      const v1::FindMissingChunksRequest* request,
      v1::FindMissingChunksResponse* response) override;
  // Client streaming. The first message must name a valid job; later ones
  // may repeat it or leave it empty. Each chunk is verified against its
  // claimed SHA-256 by the service before it is stored; the first bad chunk
  // ends the call (INVALID_ARGUMENT) and is not stored.
  grpc::ServerReadReactor<v1::PutChunksRequest>* PutChunks(
      grpc::CallbackServerContext* context,
      v1::PutChunksResponse* response) override;
  grpc::ServerUnaryReactor* CommitShard(
      grpc::CallbackServerContext* context,
      const v1::CommitShardRequest* request,
      v1::CommitShardResponse* response) override;
  grpc::ServerUnaryReactor* AbortCheckpoint(
      grpc::CallbackServerContext* context,
      const v1::AbortCheckpointRequest* request,
      v1::AbortCheckpointResponse* response) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* context,
                                     const v1::ListJobsRequest* request,
                                     v1::ListJobsResponse* response) override;
  grpc::ServerUnaryReactor* ListCheckpoints(
      grpc::CallbackServerContext* context,
      const v1::ListCheckpointsRequest* request,
      v1::ListCheckpointsResponse* response) override;
  grpc::ServerUnaryReactor* GetManifest(
      grpc::CallbackServerContext* context,
      const v1::GetManifestRequest* request,
      v1::GetManifestResponse* response) override;
  // Server streaming: one response per requested hash, in request order,
  // each verified by the service. The first absent (NOT_FOUND) or corrupt
  // (DATA_LOSS) chunk ends the stream with that status.
  grpc::ServerWriteReactor<v1::ReadChunksResponse>* ReadChunks(
      grpc::CallbackServerContext* context,
      const v1::ReadChunksRequest* request) override;
  // See the proto. Chunks are verified (SHA-256) before they are written;
  // every placement is checked before the first write.
  grpc::ServerUnaryReactor* ReadChunksIntoFile(
      grpc::CallbackServerContext* context,
      const v1::ReadChunksIntoFileRequest* request,
      v1::ReadChunksIntoFileResponse* response) override;
  grpc::ServerUnaryReactor* DeleteCheckpoint(
      grpc::CallbackServerContext* context,
      const v1::DeleteCheckpointRequest* request,
      v1::DeleteCheckpointResponse* response) override;
  grpc::ServerUnaryReactor* GetStats(grpc::CallbackServerContext* context,
                                     const v1::GetStatsRequest* request,
                                     v1::GetStatsResponse* response) override;

  grpc::ServerUnaryReactor* SetRetentionPolicy(
      grpc::CallbackServerContext* context,
      const v1::SetRetentionPolicyRequest* request,
      v1::SetRetentionPolicyResponse* response) override;
  grpc::ServerUnaryReactor* GetRetentionPolicy(
      grpc::CallbackServerContext* context,
      const v1::GetRetentionPolicyRequest* request,
      v1::GetRetentionPolicyResponse* response) override;
  grpc::ServerUnaryReactor* PinCheckpoint(
      grpc::CallbackServerContext* context,
      const v1::PinCheckpointRequest* request,
      v1::PinCheckpointResponse* response) override;
  grpc::ServerUnaryReactor* PruneCheckpoints(
      grpc::CallbackServerContext* context,
      const v1::PruneCheckpointsRequest* request,
      v1::PruneCheckpointsResponse* response) override;
  // Runs the whole collection before answering (an operator's rare call).
  grpc::ServerUnaryReactor* CollectGarbage(
      grpc::CallbackServerContext* context,
      const v1::CollectGarbageRequest* request,
      v1::CollectGarbageResponse* response) override;
  // Server streaming: progress now and then, then the report. The verify
  // runs on a thread of its own (it may read every stored byte) and stops
  // when the client goes away or the server shuts down.
  grpc::ServerWriteReactor<v1::VerifyResponse>* VerifyCheckpoints(
      grpc::CallbackServerContext* context,
      const v1::VerifyRequest* request) override;
  grpc::ServerUnaryReactor* ListEvents(
      grpc::CallbackServerContext* context,
      const v1::ListEventsRequest* request,
      v1::ListEventsResponse* response) override;

  CallCounter& calls() { return calls_; }

 private:
  // Runs a unary handler body inside the call count; refuses it with
  // UNAVAILABLE while draining.
  template <typename Body>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* context,
                                  Body&& body);

  CheckpointService* const service_;
  const StreamLimits limits_;
  CallCounter calls_;
};

}  // namespace ckpt::server
