// GrpcCheckpointService: the gRPC edge of ckpt.v1.CheckpointService. It
// checks and translates requests (request_checks.h, common/wire_format.h),
// calls the transport-agnostic ckpt::server::CheckpointService and converts
// the result status in one place (common/grpc_status.h). No lifecycle logic
// lives here.
//
// Every call is authenticated, then authorized (call_auth.h), before
// anything else: UNAUTHENTICATED without valid credentials, PERMISSION_DENIED
// outside the principal's role or scope, decided from the request alone so
// that another tenant's job gets the same answer whether it exists or not.
// Listings, stats and verify without a job cover the principal's scope.
//
// Callback API only, and no blocking work on gRPC's callback threads: every
// unary body runs on the request executor and finishes its call from there;
// the streaming reactors (put_chunks_reactor.h, read_chunks_reactor.h,
// verify_reactor.h) do their service calls on an executor too. GC and
// verify, which may take minutes, run on the maintenance executor, so they
// never hold a thread ordinary calls need. Reactors never hold their own
// lock across service calls or gRPC operations, always Finish exactly once,
// and delete themselves in OnDone.
#pragma once

#include <cstddef>
#include <utility>

#include "ckpt/v1/ckpt.grpc.pb.h"
#include "server/auth/authenticator.h"
#include "server/observability/metrics.h"
#include "server/rpc/call_counter.h"
#include "server/rpc/executor.h"
#include "server/rpc/shared_file_socket.h"
#include "server/rpc/stream_limits.h"
#include "server/rpc/upload_memory_budget.h"
#include "server/rpc/upload_watchdog.h"
#include "server/rpc/verify_heartbeats.h"
#include "server/service/checkpoint_service.h"
#include "server/service/tenant_quotas.h"
#include "server/service/upload_stream_quota.h"

namespace ckpt::server {

// ReadChunks is served raw (its answers are encoded by hand, without a
// copy of the chunk bytes: chunk_answer_encoding.h); every other method
// through the generated messages.
class GrpcCheckpointService final
    : public v1::CheckpointService::WithRawCallbackMethod_ReadChunks<
          v1::CheckpointService::CallbackService> {
 public:
  // `service`, `authenticator` and the executors must outlive this object
  // and the server it is registered with, and the executors must keep
  // running until that server has shut down (calls finish from their
  // tasks). `requests` runs every call's work but GC's and verify's, which
  // run on `maintenance`. `shared_files` (which must outlive this object
  // too) serves same-host restores; null, or limits.shared_file_reads
  // false, turns them off. `quotas` gives each tenant's max_upload_streams
  // (its max_stored_bytes is the ChunkStore's business: StoredBytesQuota).
  GrpcCheckpointService(CheckpointService* service,
                        const Authenticator* authenticator, StreamLimits limits,
                        Executor* requests, Executor* maintenance,
                        SharedFileSocket* shared_files = nullptr,
                        Metrics* metrics = nullptr,
                        const TenantQuotas& quotas = {});

  grpc::ServerUnaryReactor* BeginCheckpoint(
      grpc::CallbackServerContext* context,
      const v1::BeginCheckpointRequest* request,
      v1::BeginCheckpointResponse* response) override;
  grpc::ServerUnaryReactor* FindMissingChunks(
      grpc::CallbackServerContext* context,
      const v1::FindMissingChunksRequest* request,
      v1::FindMissingChunksResponse* response) override;
  // Client streaming. The first message must name a valid job; later ones
  // may repeat it or leave it empty. RESOURCE_EXHAUSTED past the tenant's
  // max_upload_streams or the stream's max_upload_stream_bytes;
  // DEADLINE_EXCEEDED when the client sends nothing for
  // upload_idle_timeout. Each chunk is verified against its
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
  grpc::ServerUnaryReactor* ReportRestore(
      grpc::CallbackServerContext* context,
      const v1::ReportRestoreRequest* request,
      v1::ReportRestoreResponse* response) override;
  grpc::ServerUnaryReactor* ReportCopy(
      grpc::CallbackServerContext* context,
      const v1::ReportCopyRequest* request,
      v1::ReportCopyResponse* response) override;
  // Server streaming: one response per requested hash, in request order,
  // each verified by the service. The first absent (NOT_FOUND) or corrupt
  // (DATA_LOSS) chunk ends the stream with that status. The request is a
  // serialized ReadChunksRequest (INVALID_ARGUMENT when it does not parse).
  grpc::ServerWriteReactor<grpc::ByteBuffer>* ReadChunks(
      grpc::CallbackServerContext* context,
      const grpc::ByteBuffer* raw_request) override;
  // See the proto. Answered to local peers only.
  grpc::ServerUnaryReactor* GetSharedFileEndpoint(
      grpc::CallbackServerContext* context,
      const v1::GetSharedFileEndpointRequest* request,
      v1::GetSharedFileEndpointResponse* response) override;
  // See the proto. Writes only into a file registered at the shared-memory
  // socket under request.file_handle. Chunks are verified (SHA-256) before
  // they are written; every placement is checked before the first write.
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
  grpc::ServerUnaryReactor* SetCheckpointTags(
      grpc::CallbackServerContext* context,
      const v1::SetCheckpointTagsRequest* request,
      v1::SetCheckpointTagsResponse* response) override;
  grpc::ServerUnaryReactor* PruneCheckpoints(
      grpc::CallbackServerContext* context,
      const v1::PruneCheckpointsRequest* request,
      v1::PruneCheckpointsResponse* response) override;
  // Runs the whole collection before answering (an operator's rare call),
  // on the maintenance executor.
  grpc::ServerUnaryReactor* CollectGarbage(
      grpc::CallbackServerContext* context,
      const v1::CollectGarbageRequest* request,
      v1::CollectGarbageResponse* response) override;
  // Server streaming: progress now and then, then the report. The verify
  // runs on the maintenance executor (it may read every stored byte) and
  // stops when the client goes away or the server shuts down.
  grpc::ServerWriteReactor<v1::VerifyResponse>* VerifyCheckpoints(
      grpc::CallbackServerContext* context,
      const v1::VerifyRequest* request) override;
  grpc::ServerUnaryReactor* ListEvents(
      grpc::CallbackServerContext* context,
      const v1::ListEventsRequest* request,
      v1::ListEventsResponse* response) override;

  CallCounter& calls() { return calls_; }

 private:
  // Queues a unary handler body (absl::Status(), capturing what it uses by
  // value: it runs after the handler has returned) on `lane`, which finishes
  // the call with its status, inside the call count. Refuses it with
  // UNAVAILABLE while draining, and with CANCELLED, without running it, when
  // the call was cancelled while it waited for a thread.
  template <typename Body>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* context,
                                  Executor& lane, Body body);
  // On the request executor.
  template <typename Body>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* context,
                                  Body body) {
    return Unary(context, *requests_, std::move(body));
  }

  // FAILED_PRECONDITION naming `rpc` unless same-host restores are on and
  // `peer` is on this host.
  absl::Status CheckSharedFileReads(absl::string_view rpc,
                                    const std::string& peer) const;

  CheckpointService* const service_;
  const Authenticator* const authenticator_;
  const StreamLimits limits_;
  Executor* const requests_;
  Executor* const maintenance_;
  SharedFileSocket* const shared_files_;  // null: same-host restores off
  Metrics* const metrics_;                // never null (NoMetrics())
  CallCounter calls_;
  UploadStreamQuota upload_streams_;
  UploadMemoryBudget upload_budget_;
  // After the quota and the service: destroyed before them, once every
  // stream has ended and removed itself.
  UploadWatchdog upload_watchdog_;
  // Every verify has ended (the server has shut down) before this goes.
  VerifyHeartbeats verify_heartbeats_;
};

}  // namespace ckpt::server
