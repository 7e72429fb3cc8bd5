#include "server/rpc/grpc_service.h"

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/chunk_id.h"
#include "common/grpc_status.h"
#include "common/manifest.h"
#include "common/status_macros.h"
#include "common/tags.h"
#include "common/wire_format.h"
#include "server/rpc/call_auth.h"
#include "server/rpc/put_chunks_reactor.h"
#include "server/rpc/read_chunks_reactor.h"
#include "server/rpc/request_checks.h"
#include "server/rpc/shared_file_socket.h"
#include "server/rpc/verify_reactor.h"
#include "server/service/shared_file_reads.h"
#include "server/service/shared_file_registry.h"

namespace ckpt::server {

template <typename Body>
grpc::ServerUnaryReactor* GrpcCheckpointService::Unary(
    grpc::CallbackServerContext* context, Executor& lane, Body body) {
  // The context's default reactor is enough: the body computes the whole
  // answer, and Finish may be called from any thread.
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!calls_.Enter()) {
    calls_.Exit();
    reactor->Finish(
        ToGrpcStatus(absl::UnavailableError("the server is shutting down")));
    return reactor;
  }
  // A stream reset as soon as it was opened (the rapid-reset pattern,
  // CVE-2023-44487) does not count against the connection's concurrent
  // streams, so gRPC's limit does not bound these calls: without these two
  // checks every one of them waited in the lane's queue, holding its call,
  // and a flood of them grew the server by ~800 MB/s (T18 (c)).
  if (context->IsCancelled()) {
    reactor->Finish(ToGrpcStatus(
        absl::CancelledError("the call was cancelled before it ran")));
    calls_.Exit();
    return reactor;
  }
  if (const size_t waiting = lane.queued();
      waiting >= limits_.max_queued_calls) {
    reactor->Finish(ToGrpcStatus(absl::ResourceExhaustedError(absl::StrCat(
        "the server is overloaded: ", waiting,
        " requests are waiting for a thread; retry with backoff"))));
    calls_.Exit();
    return reactor;
  }
  const bool queued =
      lane.Submit([this, context, reactor, body = std::move(body)]() mutable {
        absl::Status status =
            context->IsCancelled()
                ? absl::CancelledError("the call was cancelled before it ran")
                : body();
        // The answer is complete; sending it is gRPC's. Counted out after
        // Finish, so that shutdown's drain covers the answer too.
        reactor->Finish(ToGrpcStatus(status));
        calls_.Exit();
      });
  if (!queued) {
    // Refused only once the server has shut down its executors.
    reactor->Finish(
        ToGrpcStatus(absl::UnavailableError("the server is shutting down")));
    calls_.Exit();
  }
  return reactor;
}

GrpcCheckpointService::GrpcCheckpointService(
    CheckpointService* service, const Authenticator* authenticator,
    StreamLimits limits, Executor* requests, Executor* maintenance,
    SharedFileSocket* shared_files, Metrics* metrics,
    const TenantQuotas& quotas)
    : service_(service),
      authenticator_(authenticator),
      limits_(limits),
      requests_(requests),
      maintenance_(maintenance),
      shared_files_(limits.shared_file_reads ? shared_files : nullptr),
      metrics_(metrics != nullptr ? metrics : NoMetrics()),
      upload_streams_(quotas),
      upload_budget_(limits.upload_buffer_bytes, metrics_),
      upload_watchdog_(limits.upload_idle_timeout),
      verify_heartbeats_(limits.verify_heartbeat_interval) {}

grpc::ServerUnaryReactor* GrpcCheckpointService::BeginCheckpoint(
    grpc::CallbackServerContext* context,
    const v1::BeginCheckpointRequest* request,
    v1::BeginCheckpointResponse* response) {
  return Unary(context, [this, context, request, response]() -> absl::Status {
    static constexpr absl::string_view kRpc = "BeginCheckpoint";
    CKPT_ASSIGN_OR_RETURN(Principal who, Admit(*authenticator_, *context, kRpc,
                                               Role::kWriter, request->job()));
    CKPT_RETURN_IF_ERROR(CheckJob(kRpc, request->job()));
    CKPT_RETURN_IF_ERROR(CheckStep(kRpc, request->step()));
    CKPT_RETURN_IF_ERROR(CheckWorldSize(kRpc, request->world_size()));
    if (request->lease_seconds() < 0) {
      return InvalidRequest(kRpc,
                            absl::StrCat("lease_seconds must be >= 0, got ",
                                         request->lease_seconds()));
    }
    std::optional<RetentionPolicy> policy;
    if (request->has_retention_policy()) {
      CKPT_ASSIGN_OR_RETURN(policy,
                            ParsePolicy(kRpc, request->retention_policy()));
    }
    CopyOrigin copy;
    copy.pin = request->pin();
    if (request->has_copied_from()) {
      CKPT_ASSIGN_OR_RETURN(
          copy.copied_from,
          ParseCopyPeer(kRpc, "copied_from", request->copied_from()));
    }
    CKPT_ASSIGN_OR_RETURN(
        BeginResult result,
        service_->BeginCheckpoint(request->job(), request->step(),
                                  request->world_size(),
                                  FromProto(request->metadata()),
                                  absl::Seconds(request->lease_seconds()),
                                  policy, ActorOf(who), copy));
    ToProto(result.record, response->mutable_checkpoint());
    response->set_created(result.created);
    response->set_retention_policy_ignored(result.retention_policy_ignored);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GrpcCheckpointService::FindMissingChunks(
    grpc::CallbackServerContext* context,
    const v1::FindMissingChunksRequest* request,
    v1::FindMissingChunksResponse* response) {
  return Unary(context, [this, context, request, response]() -> absl::Status {
    static constexpr absl::string_view kRpc = "FindMissingChunks";
    CKPT_RETURN_IF_ERROR(
        Admit(*authenticator_, *context, kRpc, Role::kWriter, request->job())
            .status());
    CKPT_RETURN_IF_ERROR(CheckJob(kRpc, request->job()));
    CKPT_ASSIGN_OR_RETURN(
        std::vector<ChunkId> ids,
        ParseHashes(kRpc, request->sha256(), limits_.max_request_hashes));
    CKPT_ASSIGN_OR_RETURN(std::vector<ChunkId> missing,
                          service_->FindMissingChunks(request->job(), ids));
    response->mutable_missing_sha256()->Reserve(
        static_cast<int>(missing.size()));
    for (const ChunkId& id : missing) {
      response->add_missing_sha256(std::string(id.bytes()));
    }
    return absl::OkStatus();
  });
}

grpc::ServerReadReactor<v1::PutChunksRequest>* GrpcCheckpointService::PutChunks(
    grpc::CallbackServerContext* context, v1::PutChunksResponse* response) {
  absl::StatusOr<Principal> caller =
      calls_.Enter()
          ? Admit(*authenticator_, *context, "PutChunks", Role::kWriter)
          : ShuttingDown("PutChunks");
  // Owned by gRPC until OnDone deletes it (callback API contract).
  return new PutChunksReactor(
      context, service_, limits_, requests_, &calls_, &upload_watchdog_,
      &upload_streams_, &upload_budget_, std::move(caller), response, metrics_);
}

grpc::ServerUnaryReactor* GrpcCheckpointService::CommitShard(
    grpc::CallbackServerContext* context, const v1::CommitShardRequest* request,
    v1::CommitShardResponse* response) {
  return Unary(context, [this, context, request, response]() -> absl::Status {
    static constexpr absl::string_view kRpc = "CommitShard";
    CKPT_ASSIGN_OR_RETURN(Principal who, Admit(*authenticator_, *context, kRpc,
                                               Role::kWriter, request->job()));
    CKPT_RETURN_IF_ERROR(CheckJob(kRpc, request->job()));
    CKPT_RETURN_IF_ERROR(CheckStep(kRpc, request->step()));
    CKPT_RETURN_IF_ERROR(CheckWorldSize(kRpc, request->world_size()));
    if (!request->has_shard()) return InvalidRequest(kRpc, "shard is missing");
    auto shard = FromProto(request->shard());
    if (!shard.ok()) return InvalidRequest(kRpc, shard.status().message());
    CKPT_ASSIGN_OR_RETURN(
        CommitResult result,
        service_->CommitShard(request->job(), request->step(),
                              request->world_size(), *shard, ActorOf(who)));
    if (result.checkpoint_committed) {
      // This rank completed the checkpoint: it was the slowest.
      metrics_->CheckpointCommitted(
          TenantOf(request->job()), shard->rank,
          result.record.commit_time - result.record.create_time);
    }
    ToProto(result.record, response->mutable_checkpoint());
    response->set_checkpoint_committed(result.checkpoint_committed);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GrpcCheckpointService::AbortCheckpoint(
    grpc::CallbackServerContext* context,
    const v1::AbortCheckpointRequest* request,
    v1::AbortCheckpointResponse* /*response*/) {
  return Unary(context, [this, context, request]() -> absl::Status {
    static constexpr absl::string_view kRpc = "AbortCheckpoint";
    CKPT_ASSIGN_OR_RETURN(Principal who, Admit(*authenticator_, *context, kRpc,
                                               Role::kWriter, request->job()));
    CKPT_RETURN_IF_ERROR(CheckJob(kRpc, request->job()));
    CKPT_RETURN_IF_ERROR(CheckStep(kRpc, request->step()));
    CKPT_RETURN_IF_ERROR(service_->AbortCheckpoint(
        request->job(), request->step(), request->reason(), ActorOf(who)));
    metrics_->CheckpointAborted(TenantOf(request->job()), AbortCause::kClient);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GrpcCheckpointService::ListJobs(
    grpc::CallbackServerContext* context,
    const v1::ListJobsRequest* /*request*/, v1::ListJobsResponse* response) {
  return Unary(context, [this, context, response]() -> absl::Status {
    CKPT_ASSIGN_OR_RETURN(Principal who, Admit(*authenticator_, *context,
                                               "ListJobs", Role::kReader));
    CKPT_ASSIGN_OR_RETURN(std::vector<JobSummary> jobs,
                          service_->ListJobs(who.scope));
    response->mutable_jobs()->Reserve(static_cast<int>(jobs.size()));
    for (const JobSummary& job : jobs) ToProto(job, response->add_jobs());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GrpcCheckpointService::ListCheckpoints(
    grpc::CallbackServerContext* context,
    const v1::ListCheckpointsRequest* request,
    v1::ListCheckpointsResponse* response) {
  return Unary(context, [this, context, request, response]() -> absl::Status {
    static constexpr absl::string_view kRpc = "ListCheckpoints";
    CKPT_RETURN_IF_ERROR(
        Admit(*authenticator_, *context, kRpc, Role::kReader, request->job())
            .status());
    CKPT_RETURN_IF_ERROR(CheckJob(kRpc, request->job()));
    CKPT_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> records,
                          service_->ListCheckpoints(
                              request->job(), request->include_uncommitted()));
    std::map<int64_t, uint64_t> unique_bytes;
    if (request->with_unique_bytes()) {
      CKPT_ASSIGN_OR_RETURN(unique_bytes,
                            service_->UniqueBytes(request->job()));
    }
    response->mutable_checkpoints()->Reserve(static_cast<int>(records.size()));
    for (const CheckpointRecord& record : records) {
      v1::CheckpointInfo* info = response->add_checkpoints();
      ToProto(record, info);
      // Absent for a checkpoint committed between the two reads.
      if (auto it = unique_bytes.find(record.step); it != unique_bytes.end()) {
        info->set_unique_bytes(it->second);
      }
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GrpcCheckpointService::GetManifest(
    grpc::CallbackServerContext* context, const v1::GetManifestRequest* request,
    v1::GetManifestResponse* response) {
  return Unary(context, [this, context, request, response]() -> absl::Status {
    static constexpr absl::string_view kRpc = "GetManifest";
    CKPT_ASSIGN_OR_RETURN(Principal who, Admit(*authenticator_, *context, kRpc,
                                               Role::kReader, request->job()));
    CKPT_RETURN_IF_ERROR(CheckJob(kRpc, request->job()));
    std::optional<int64_t> step;
    switch (request->which_case()) {
      case v1::GetManifestRequest::kStep:
        CKPT_RETURN_IF_ERROR(CheckStep(kRpc, request->step()));
        step = request->step();
        break;
      case v1::GetManifestRequest::kLatest:
        if (!request->latest()) {
          return InvalidRequest(kRpc, "latest must be true when set");
        }
        break;
      case v1::GetManifestRequest::WHICH_NOT_SET:
        return InvalidRequest(kRpc, "set either step or latest");
    }
    std::optional<int32_t> restoring_rank;
    if (request->has_restoring_rank()) {
      if (request->restoring_rank() < 0) {
        return InvalidRequest(kRpc,
                              absl::StrCat("restoring_rank must be >= 0, got ",
                                           request->restoring_rank()));
      }
      restoring_rank = request->restoring_rank();
    }
    CKPT_ASSIGN_OR_RETURN(Checkpoint checkpoint,
                          service_->GetManifest(request->job(), step,
                                                restoring_rank, ActorOf(who)));
    ToProto(checkpoint.record, response->mutable_checkpoint());
    response->mutable_shards()->Reserve(
        static_cast<int>(checkpoint.shards.size()));
    for (const ShardManifest& shard : checkpoint.shards) {
      ToProto(shard, response->add_shards());
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GrpcCheckpointService::ReportRestore(
    grpc::CallbackServerContext* context,
    const v1::ReportRestoreRequest* request,
    v1::ReportRestoreResponse* /*response*/) {
  return Unary(context, [this, context, request]() -> absl::Status {
    static constexpr absl::string_view kRpc = "ReportRestore";
    // A reader's: whoever may restore a checkpoint may say it did.
    CKPT_ASSIGN_OR_RETURN(Principal who, Admit(*authenticator_, *context, kRpc,
                                               Role::kReader, request->job()));
    CKPT_RETURN_IF_ERROR(CheckJob(kRpc, request->job()));
    CKPT_RETURN_IF_ERROR(CheckStep(kRpc, request->step()));
    if (request->rank() < 0) {
      return InvalidRequest(
          kRpc, absl::StrCat("rank must be >= 0, got ", request->rank()));
    }
    return service_->ReportRestore(request->job(), request->step(),
                                   request->rank(), ActorOf(who));
  });
}

grpc::ServerUnaryReactor* GrpcCheckpointService::ReportCopy(
    grpc::CallbackServerContext* context, const v1::ReportCopyRequest* request,
    v1::ReportCopyResponse* /*response*/) {
  return Unary(context, [this, context, request]() -> absl::Status {
    static constexpr absl::string_view kRpc = "ReportCopy";
    // A reader's, as ReportRestore: whoever may read a checkpoint may copy
    // it out, and say it did.
    CKPT_ASSIGN_OR_RETURN(Principal who, Admit(*authenticator_, *context, kRpc,
                                               Role::kReader, request->job()));
    CKPT_RETURN_IF_ERROR(CheckJob(kRpc, request->job()));
    CKPT_RETURN_IF_ERROR(CheckStep(kRpc, request->step()));
    if (!request->has_destination()) {
      return InvalidRequest(kRpc, "destination is required");
    }
    CKPT_ASSIGN_OR_RETURN(
        CopyPeer destination,
        ParseCopyPeer(kRpc, "destination", request->destination()));
    return service_->ReportCopy(request->job(), request->step(), destination,
                                ActorOf(who));
  });
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* GrpcCheckpointService::ReadChunks(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* raw_request) {
  static constexpr absl::string_view kRpc = "ReadChunks";
  const bool admitted = calls_.Enter();
  v1::ReadChunksRequest parsed;
  const v1::ReadChunksRequest* request = &parsed;
  absl::StatusOr<std::vector<ChunkId>> ids = [&] {
    if (!admitted) {
      return absl::StatusOr<std::vector<ChunkId>>(ShuttingDown(kRpc));
    }
    // gRPC's copy of the request is only borrowed: Deserialize would clear it.
    grpc::ByteBuffer copy = *raw_request;
    if (!grpc::SerializationTraits<v1::ReadChunksRequest>::Deserialize(&copy,
                                                                       &parsed)
             .ok()) {
      return absl::StatusOr<std::vector<ChunkId>>(absl::InvalidArgumentError(
          "ReadChunks: the request is not a ReadChunksRequest"));
    }
    absl::Status admit_status =
        Admit(*authenticator_, *context, kRpc, Role::kReader, request->job())
            .status();
    if (!admit_status.ok()) {
      return absl::StatusOr<std::vector<ChunkId>>(admit_status);
    }
    absl::Status job_status = CheckJob(kRpc, request->job());
    if (!job_status.ok()) {
      return absl::StatusOr<std::vector<ChunkId>>(job_status);
    }
    return ParseHashes(kRpc, request->sha256(), limits_.max_request_hashes);
  }();
  // Owned by gRPC until OnDone deletes it (callback API contract).
  auto* reactor =
      new ReadChunksReactor(context, service_, requests_, &calls_, metrics_,
                            request->job(), std::move(ids));
  reactor->Start();
  return reactor;
}

grpc::ServerUnaryReactor* GrpcCheckpointService::GetSharedFileEndpoint(
    grpc::CallbackServerContext* context,
    const v1::GetSharedFileEndpointRequest* /*request*/,
    v1::GetSharedFileEndpointResponse* response) {
  return Unary(context, [this, context, response]() -> absl::Status {
    static constexpr absl::string_view kRpc = "GetSharedFileEndpoint";
    // Any authenticated reader: the ticket only lets its holder pass a file
    // of its own; each ReadChunksIntoFile is authorized for its job.
    CKPT_RETURN_IF_ERROR(
        Admit(*authenticator_, *context, kRpc, Role::kReader).status());
    CKPT_RETURN_IF_ERROR(CheckSharedFileReads(kRpc, context->peer()));
    absl::StatusOr<SharedFileEndpoint> endpoint = shared_files_->NewEndpoint();
    if (!endpoint.ok()) {
      return absl::Status(
          endpoint.status().code(),
          absl::StrCat(kRpc, ": ", endpoint.status().message()));
    }
    ToProto(*endpoint, response);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GrpcCheckpointService::ReadChunksIntoFile(
    grpc::CallbackServerContext* context,
    const v1::ReadChunksIntoFileRequest* request,
    v1::ReadChunksIntoFileResponse* response) {
  return Unary(context, [this, context, request, response]() -> absl::Status {
    static constexpr absl::string_view kRpc = "ReadChunksIntoFile";
    CKPT_RETURN_IF_ERROR(
        Admit(*authenticator_, *context, kRpc, Role::kReader, request->job())
            .status());
    // The order of the checks is the order callers have always seen.
    CKPT_RETURN_IF_ERROR(CheckJob(kRpc, request->job()));
    CKPT_RETURN_IF_ERROR(CheckChunkCount(kRpc, request->chunks_size(),
                                         limits_.max_request_hashes));
    CKPT_RETURN_IF_ERROR(CheckSharedFileReads(kRpc, context->peer()));
    CKPT_ASSIGN_OR_RETURN(
        std::vector<ChunkPlacement> placements,
        ParsePlacements(kRpc, request->chunks(), limits_.max_request_hashes));
    // Only a file its owner registered; never one named by pid and fd.
    absl::StatusOr<std::shared_ptr<const SharedFileWriter>> file =
        shared_files_->registry().Find(request->file_handle());
    absl::StatusOr<uint64_t> written =
        !file.ok() ? absl::StatusOr<uint64_t>(file.status())
                   : ReadChunksIntoSharedFile(
                         *service_, request->job(), **file, placements,
                         [context] { return context->IsCancelled(); });
    if (!written.ok()) {
      return absl::Status(written.status().code(),
                          absl::StrCat(kRpc, ": ", written.status().message()));
    }
    metrics_->ChunkSent(TenantOf(request->job()), *written);
    response->set_bytes_written(*written);
    return absl::OkStatus();
  });
}

absl::Status GrpcCheckpointService::CheckSharedFileReads(
    absl::string_view rpc, const std::string& peer) const {
  if (shared_files_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(rpc, ": this server has shared-memory reads turned off"));
  }
  if (!IsLocalPeer(peer)) {
    return absl::FailedPreconditionError(absl::StrCat(
        rpc, ": the client (", peer, ") is not on the server's host"));
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* GrpcCheckpointService::DeleteCheckpoint(
    grpc::CallbackServerContext* context,
    const v1::DeleteCheckpointRequest* request,
    v1::DeleteCheckpointResponse* /*response*/) {
  return Unary(context, [this, context, request]() -> absl::Status {
    static constexpr absl::string_view kRpc = "DeleteCheckpoint";
    CKPT_ASSIGN_OR_RETURN(Principal who, Admit(*authenticator_, *context, kRpc,
                                               Role::kAdmin, request->job()));
    CKPT_RETURN_IF_ERROR(CheckJob(kRpc, request->job()));
    CKPT_RETURN_IF_ERROR(CheckStep(kRpc, request->step()));
    return service_->DeleteCheckpoint(request->job(), request->step(),
                                      ActorOf(who), request->force());
  });
}

grpc::ServerUnaryReactor* GrpcCheckpointService::GetStats(
    grpc::CallbackServerContext* context, const v1::GetStatsRequest* request,
    v1::GetStatsResponse* response) {
  return Unary(context, [this, context, request, response]() -> absl::Status {
    static constexpr absl::string_view kRpc = "GetStats";
    // Without a job: the caller's scope (the whole server for an operator).
    std::optional<absl::string_view> job;
    if (!request->job().empty()) job = request->job();
    CKPT_ASSIGN_OR_RETURN(Principal who, Admit(*authenticator_, *context, kRpc,
                                               Role::kReader, job));
    if (job.has_value()) CKPT_RETURN_IF_ERROR(CheckJob(kRpc, *job));
    CKPT_ASSIGN_OR_RETURN(Stats stats,
                          service_->GetStats(request->job(), who.scope));
    ToProto(stats, response);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GrpcCheckpointService::SetRetentionPolicy(
    grpc::CallbackServerContext* context,
    const v1::SetRetentionPolicyRequest* request,
    v1::SetRetentionPolicyResponse* response) {
  return Unary(context, [this, context, request, response]() -> absl::Status {
    static constexpr absl::string_view kRpc = "SetRetentionPolicy";
    if (!request->tenant().empty()) {
      // The tenant's default: an admin over the whole tenant.
      CKPT_ASSIGN_OR_RETURN(
          Principal who,
          AdmitTenant(*authenticator_, *context, kRpc, Role::kAdmin,
                      request->tenant(), TenantReach::kWhole));
      CKPT_RETURN_IF_ERROR(
          CheckTenantTarget(kRpc, request->job(), request->tenant()));
      CKPT_RETURN_IF_ERROR(
          CheckClear(kRpc, request->clear(), request->has_policy()));
      if (request->clear()) {
        return service_->ClearTenantDefaultPolicy(request->tenant(),
                                                  ActorOf(who));
      }
      CKPT_ASSIGN_OR_RETURN(RetentionPolicy policy,
                            ParsePolicy(kRpc, request->policy()));
      return service_->SetTenantDefaultPolicy(request->tenant(), policy,
                                              ActorOf(who));
    }
    CKPT_ASSIGN_OR_RETURN(Principal who, Admit(*authenticator_, *context, kRpc,
                                               Role::kAdmin, request->job()));
    CKPT_RETURN_IF_ERROR(CheckJob(kRpc, request->job()));
    CKPT_RETURN_IF_ERROR(
        CheckClear(kRpc, request->clear(), request->has_policy()));
    if (request->clear()) {
      return service_->ClearRetentionPolicy(request->job(), ActorOf(who));
    }
    CKPT_ASSIGN_OR_RETURN(RetentionPolicy policy,
                          ParsePolicy(kRpc, request->policy()));
    std::vector<std::string> warnings;
    CKPT_ASSIGN_OR_RETURN(std::vector<int64_t> deleted,
                          service_->SetRetentionPolicy(
                              request->job(), policy, ActorOf(who), &warnings));
    for (int64_t step : deleted) response->add_deleted_steps(step);
    for (std::string& warning : warnings) {
      response->add_warnings(std::move(warning));
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GrpcCheckpointService::GetRetentionPolicy(
    grpc::CallbackServerContext* context,
    const v1::GetRetentionPolicyRequest* request,
    v1::GetRetentionPolicyResponse* response) {
  return Unary(context, [this, context, request, response]() -> absl::Status {
    static constexpr absl::string_view kRpc = "GetRetentionPolicy";
    AppliedPolicy applied;
    if (!request->tenant().empty()) {
      CKPT_RETURN_IF_ERROR(AdmitTenant(*authenticator_, *context, kRpc,
                                       Role::kReader, request->tenant(),
                                       TenantReach::kRead)
                               .status());
      CKPT_RETURN_IF_ERROR(
          CheckTenantTarget(kRpc, request->job(), request->tenant()));
      CKPT_ASSIGN_OR_RETURN(
          applied, service_->GetTenantDefaultPolicy(request->tenant()));
    } else {
      CKPT_RETURN_IF_ERROR(
          Admit(*authenticator_, *context, kRpc, Role::kReader, request->job())
              .status());
      CKPT_RETURN_IF_ERROR(CheckJob(kRpc, request->job()));
      CKPT_ASSIGN_OR_RETURN(applied,
                            service_->GetRetentionPolicy(request->job()));
    }
    if (applied.policy.has_value()) {
      ToProto(*applied.policy, response->mutable_policy());
      if (applied.origin.has_value()) {
        ToProto(*applied.origin, response->mutable_origin());
      }
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GrpcCheckpointService::PinCheckpoint(
    grpc::CallbackServerContext* context,
    const v1::PinCheckpointRequest* request,
    v1::PinCheckpointResponse* response) {
  return Unary(context, [this, context, request, response]() -> absl::Status {
    static constexpr absl::string_view kRpc = "PinCheckpoint";
    CKPT_ASSIGN_OR_RETURN(Principal who,
                          Admit(*authenticator_, *context, kRpc,
                                RoleToPin(request->pinned()), request->job()));
    CKPT_RETURN_IF_ERROR(CheckJob(kRpc, request->job()));
    CKPT_RETURN_IF_ERROR(CheckStep(kRpc, request->step()));
    CKPT_ASSIGN_OR_RETURN(
        CheckpointRecord record,
        service_->PinCheckpoint(request->job(), request->step(),
                                request->pinned(), ActorOf(who)));
    ToProto(record, response->mutable_checkpoint());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GrpcCheckpointService::SetCheckpointTags(
    grpc::CallbackServerContext* context,
    const v1::SetCheckpointTagsRequest* request,
    v1::SetCheckpointTagsResponse* response) {
  return Unary(context, [this, context, request, response]() -> absl::Status {
    static constexpr absl::string_view kRpc = "SetCheckpointTags";
    CKPT_ASSIGN_OR_RETURN(
        Principal who,
        Admit(*authenticator_, *context, kRpc,
              RoleToTag(request->remove_size() > 0), request->job()));
    CKPT_RETURN_IF_ERROR(CheckJob(kRpc, request->job()));
    CKPT_RETURN_IF_ERROR(CheckStep(kRpc, request->step()));
    if (request->set_size() > static_cast<int>(kMaxTagsPerCheckpoint) ||
        request->remove_size() > static_cast<int>(kMaxTagsPerCheckpoint)) {
      return InvalidRequest(
          kRpc, absl::StrCat("at most ", kMaxTagsPerCheckpoint,
                             " tags may be set or removed at once"));
    }
    const Tags set(request->set().begin(), request->set().end());
    const std::vector<std::string> remove(request->remove().begin(),
                                          request->remove().end());
    CKPT_ASSIGN_OR_RETURN(
        CheckpointRecord record,
        service_->SetCheckpointTags(request->job(), request->step(), set,
                                    remove, ActorOf(who)));
    ToProto(record, response->mutable_checkpoint());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GrpcCheckpointService::PruneCheckpoints(
    grpc::CallbackServerContext* context,
    const v1::PruneCheckpointsRequest* request,
    v1::PruneCheckpointsResponse* response) {
  return Unary(context, [this, context, request, response]() -> absl::Status {
    static constexpr absl::string_view kRpc = "PruneCheckpoints";
    CKPT_ASSIGN_OR_RETURN(
        Principal who, Admit(*authenticator_, *context, kRpc,
                             RoleToPrune(request->dry_run()), request->job()));
    CKPT_RETURN_IF_ERROR(CheckJob(kRpc, request->job()));
    std::optional<RetentionPolicy> policy;
    if (request->has_policy()) {
      CKPT_ASSIGN_OR_RETURN(policy, ParsePolicy(kRpc, request->policy()));
    }
    std::vector<std::string> warnings;
    CKPT_ASSIGN_OR_RETURN(
        std::vector<RetentionDecision> decisions,
        service_->Prune(request->job(), policy, request->dry_run(),
                        ActorOf(who), &warnings));
    for (std::string& warning : warnings) {
      response->add_warnings(std::move(warning));
    }
    response->mutable_decisions()->Reserve(static_cast<int>(decisions.size()));
    for (const RetentionDecision& decision : decisions) {
      ToProto(decision, response->add_decisions());
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GrpcCheckpointService::CollectGarbage(
    grpc::CallbackServerContext* context,
    const v1::CollectGarbageRequest* request,
    v1::CollectGarbageResponse* response) {
  // A collection reads every manifest and chunk key: the maintenance lane.
  return Unary(context, *maintenance_,
               [this, context, request, response]() -> absl::Status {
                 CKPT_ASSIGN_OR_RETURN(
                     Principal who, Admit(*authenticator_, *context,
                                          "CollectGarbage", Role::kOperator));
                 GcOptions options;
                 options.dry_run = request->dry_run();
                 if (request->has_hold_seconds()) {
                   // Range checked by the service, against its hold.
                   options.hold = absl::Seconds(request->hold_seconds());
                 }
                 absl::StatusOr<GcReport> collected =
                     service_->CollectGarbage(options, ActorOf(who));
                 if (!options.dry_run) {
                   metrics_->GcFinished(
                       collected.ok(),
                       collected.ok() ? collected->chunks_deleted : 0,
                       collected.ok() ? collected->bytes_deleted : 0);
                 }
                 CKPT_ASSIGN_OR_RETURN(GcReport report, std::move(collected));
                 ToProto(report, response);
                 return absl::OkStatus();
               });
}

grpc::ServerWriteReactor<v1::VerifyResponse>*
GrpcCheckpointService::VerifyCheckpoints(grpc::CallbackServerContext* context,
                                         const v1::VerifyRequest* request) {
  static constexpr absl::string_view kRpc = "VerifyCheckpoints";
  const bool admitted = calls_.Enter();
  JobScope scope = JobScope::All();
  absl::Status refusal = [&]() -> absl::Status {
    if (!admitted) return ShuttingDown(kRpc);
    // Without a job: every job in the caller's scope.
    std::optional<absl::string_view> job;
    if (!request->job().empty()) job = request->job();
    CKPT_ASSIGN_OR_RETURN(Principal who, Admit(*authenticator_, *context, kRpc,
                                               Role::kAdmin, job));
    scope = who.scope;
    if (!request->job().empty()) {
      CKPT_RETURN_IF_ERROR(CheckJob(kRpc, request->job()));
    }
    if (request->has_step()) {
      CKPT_RETURN_IF_ERROR(CheckStep(kRpc, request->step()));
    }
    return absl::OkStatus();
  }();
  // Owned by gRPC until OnDone deletes it (callback API contract).
  auto* reactor = new VerifyReactor(context, service_, maintenance_,
                                    &verify_heartbeats_, &calls_, metrics_);
  reactor->Start(refusal, FromProto(*request), std::move(scope));
  return reactor;
}

grpc::ServerUnaryReactor* GrpcCheckpointService::ListEvents(
    grpc::CallbackServerContext* context, const v1::ListEventsRequest* request,
    v1::ListEventsResponse* response) {
  return Unary(context, [this, context, request, response]() -> absl::Status {
    static constexpr absl::string_view kRpc = "ListEvents";
    CKPT_RETURN_IF_ERROR(
        Admit(*authenticator_, *context, kRpc, Role::kReader, request->job())
            .status());
    CKPT_RETURN_IF_ERROR(CheckJob(kRpc, request->job()));
    if (request->limit() < 0) {
      return InvalidRequest(
          kRpc, absl::StrCat("limit must be >= 0 (0: every kept event), got ",
                             request->limit()));
    }
    CKPT_ASSIGN_OR_RETURN(
        std::vector<JobEvent> events,
        service_->ListEvents(request->job(), request->limit()));
    response->mutable_events()->Reserve(static_cast<int>(events.size()));
    for (const JobEvent& event : events) {
      ToProto(event, response->add_events());
    }
    return absl::OkStatus();
  });
}

}  // namespace ckpt::server
