#include "client/transport/grpc_transport.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ckpt/v1/ckpt.grpc.pb.h"
#include "client/stall_watchdog.h"
#include "client/transport/channel_security.h"
#include "client/transport/chunk_answer.h"
#include "client/transport/shared_file_registration.h"
#include "common/grpc_status.h"
#include "common/manifest.h"
#include "common/status_macros.h"
#include "common/wire_format.h"

namespace ckpt::client {
namespace {

using Stub = v1::CheckpointService::Stub;

// PutChunks messages carry chunks until they reach this size (one 4 MiB
// chunk per message by default; small chunks are packed).
constexpr size_t kTargetMessageBytes = size_t{4} << 20;
// Hashes per ReadChunks / FindMissingChunks request; well under the
// server's per-request limit (100000 by default).
constexpr size_t kMaxHashesPerRequest = 50000;
// A collection reads every manifest and compacts the chunk store.
constexpr absl::Duration kCollectGarbageTimeout = absl::Hours(6);
// The job a tenant default's probe for restic's rules names (under the
// tenant, so a whole-tenant admin may ask): the server refuses the probe's
// policy before it looks the job up, so no such job needs to exist.
constexpr absl::string_view kResticRulesProbeJob = "retention-rules-probe";
// A channel's first reconnect after a failed connection (gRPC's default is
// 1 s; each next one waits 1.6 times longer, up to 2 minutes). Soon, for
// CallSetup's wait.
constexpr absl::Duration kInitialReconnect = absl::Milliseconds(500);

// What every call gets before it leaves: the `authorization` metadata with
// the bearer token (or nothing), and, when the channel is not connected, a
// short wait for the connection. Every ClientContext the transport creates
// goes through Prepare, so no call (unary or stream) leaves without them.
//
// The wait: gRPC 1.51 can fail a connect() that succeeded (it reads errno
// after calls that may change it; fixed upstream in 2024), and fails the
// calls waiting on that connection with UNAVAILABLE "failed to connect to
// all addresses ... No such file or directory". With 32 connects at once,
// about one in 500 did so. Every rank of a job connects at its first save,
// and again at each save after the server closed the idle connections
// (--max-connection-idle-seconds) or restarted; a save must not fail on it.
// The channel reconnects after kInitialReconnect, which the wait rides out.
// A call to a server that is down fails after the wait rather than at once.
class CallSetup {
 public:
  CallSetup(absl::string_view token, std::shared_ptr<grpc::Channel> channel)
      : authorization_(token.empty() ? "" : absl::StrCat("Bearer ", token)),
        channel_(std::move(channel)) {}

  // `deadline`: the call's; the wait for the connection ends by it.
  void Prepare(grpc::ClientContext* context,
               absl::Time deadline = absl::InfiniteFuture()) const {
    if (channel_->GetState(/*try_to_connect=*/true) != GRPC_CHANNEL_READY) {
      channel_->WaitForConnected(absl::ToChronoTime(
          std::min(absl::Now() + kConnectionWait, deadline)));
    }
    if (!authorization_.empty()) {
      context->AddMetadata("authorization", authorization_);
    }
  }

  // Two reconnects: the first kInitialReconnect after a failed connect, the
  // next 1.6 times later (jittered by 20%), and their connects.
  static constexpr absl::Duration kConnectionWait = absl::Seconds(2);

 private:
  const std::string authorization_;
  const std::shared_ptr<grpc::Channel> channel_;
};

// One PutChunks stream, opened on the first chunk. Chunk bytes are copied
// once, into the message (protobuf owns its bytes fields).
//
// No deadline (a large save takes as long as it takes) but a progress
// bound: a stall watchdog counts the time spent waiting on the server (the
// stream's opening, a write blocked by flow control, the final status) and
// cancels the call after `stall_timeout` of it; the time the client spends
// between messages (hashing, reading its tensors) is paused. A server that
// stops reading the upload then fails the save with DEADLINE_EXCEEDED.
class GrpcUploadStream final : public ChunkUploadStream {
 public:
  // `step`: the pending checkpoint uploaded for (its bytes_added).
  // `address`: the server's, for the stall's message.
  GrpcUploadStream(Stub* stub, const CallSetup& call_setup,
                   absl::string_view address, absl::Duration stall_timeout,
                   absl::string_view job, int64_t step)
      : stub_(stub),
        address_(address),
        stall_timeout_(stall_timeout),
        job_(job),
        step_(step) {
    call_setup.Prepare(&context_);
  }

  ~GrpcUploadStream() override {
    if (writer_ != nullptr && !closed_) {
      // Abandoned after an error elsewhere: end the call rather than leave
      // the server waiting for more messages.
      context_.TryCancel();
      writer_->Finish().IgnoreError();
    }
  }

  absl::Status Add(const ChunkId& id, absl::string_view data) override {
    v1::ChunkData* chunk = pending_.add_chunks();
    chunk->set_sha256(id.bytes().data(), id.bytes().size());
    chunk->set_data(data.data(), data.size());
    pending_bytes_ += data.size();
    ++chunks_sent_;
    bytes_sent_ += data.size();
    if (pending_bytes_ >= kTargetMessageBytes) return Flush();
    return absl::OkStatus();
  }

  absl::Status Close() override {
    CKPT_RETURN_IF_ERROR(Flush());
    if (writer_ == nullptr) return absl::OkStatus();
    closed_ = true;
    watchdog_->Resume();
    writer_->WritesDone();
    return Stalled(FromGrpcStatus(writer_->Finish()));
  }

  uint64_t chunks_sent() const override { return chunks_sent_; }
  uint64_t bytes_sent() const override { return bytes_sent_; }

 private:
  absl::Status Flush() {
    if (pending_.chunks_size() == 0) return absl::OkStatus();
    if (writer_ == nullptr) {
      // Before the call starts: opening it may wait on the server too.
      watchdog_ = std::make_unique<StallWatchdog>(
          stall_timeout_, [this] { context_.TryCancel(); });
      writer_ = stub_->PutChunks(&context_, &response_);
      pending_.set_job(job_);  // the first message names the job
      pending_.set_step(step_);
    } else {
      watchdog_->Resume();
    }
    const bool written = writer_->Write(pending_);
    watchdog_->Pause();  // the next message is the client's work
    if (!written) {
      // The server ended the call; its status says why.
      closed_ = true;
      watchdog_->Resume();
      absl::Status status = FromGrpcStatus(writer_->Finish());
      if (status.ok()) {
        status = absl::UnavailableError("PutChunks stream closed early");
      }
      return Stalled(std::move(status));
    }
    pending_.Clear();  // keeps the allocations for the next message
    pending_bytes_ = 0;
    return absl::OkStatus();
  }

  // The ended call's status, or the stall that cancelled it.
  absl::Status Stalled(absl::Status status) {
    watchdog_->Pause();  // nothing more to wait for
    if (status.ok() || !watchdog_->fired()) return status;
    return absl::DeadlineExceededError(
        absl::StrCat("PutChunks: the server at ", address_,
                     " made no progress on the upload for ",
                     absl::FormatDuration(stall_timeout_),
                     " (it took no data, or did not "
                     "answer; ",
                     chunks_sent_,
                     " chunks handed to the stream): the server "
                     "is stalled; the upload was abandoned"));
  }

  Stub* const stub_;
  const std::string address_;
  const absl::Duration stall_timeout_;
  const std::string job_;
  const int64_t step_;
  grpc::ClientContext context_;
  v1::PutChunksResponse response_;
  std::unique_ptr<grpc::ClientWriter<v1::PutChunksRequest>> writer_;
  // Destroyed before the context it cancels.
  std::unique_ptr<StallWatchdog> watchdog_;
  v1::PutChunksRequest pending_;
  size_t pending_bytes_ = 0;
  bool closed_ = false;
  uint64_t chunks_sent_ = 0;
  uint64_t bytes_sent_ = 0;
};

class GrpcTransport final : public Transport {
 public:
  GrpcTransport(std::string address, std::shared_ptr<grpc::Channel> channel,
                const ConnectOptions& options)
      : address_(std::move(address)),
        channel_(std::move(channel)),
        stub_(v1::CheckpointService::NewStub(channel_)),
        read_chunks_path_(absl::StrCat(
            "/", v1::CheckpointService::service_full_name(), "/ReadChunks")),
        read_chunks_(read_chunks_path_.c_str(),
                     grpc::internal::RpcMethod::SERVER_STREAMING, channel_),
        call_setup_(options.token, channel_),
        rpc_timeout_(options.rpc_timeout),
        stream_stall_timeout_(options.stream_stall_timeout) {}

  absl::StatusOr<BeginReply> BeginCheckpoint(
      absl::string_view job, int64_t step,
      const BeginOptions& options) override {
    v1::BeginCheckpointRequest request;
    request.set_job(std::string(job));
    request.set_step(step);
    request.set_world_size(options.world_size);
    ToProto(options.metadata, request.mutable_metadata());
    // Rounded up: a sub-second lease must not turn into "server default".
    request.set_lease_seconds(
        absl::ToInt64Seconds(absl::Ceil(options.lease, absl::Seconds(1))));
    if (options.retention_policy.has_value()) {
      CKPT_RETURN_IF_ERROR(
          CheckServerKnowsResticRules(job, *options.retention_policy));
      ToProto(*options.retention_policy, request.mutable_retention_policy());
    }
    if (options.copied_from.has_value()) {
      ToProto(*options.copied_from, request.mutable_copied_from());
    }
    request.set_pin(options.pin);
    v1::BeginCheckpointResponse response;
    CKPT_RETURN_IF_ERROR(Call(&Stub::BeginCheckpoint, request, &response));
    // A server older than copies ignores both fields: a copy must not
    // commit there without its provenance or its pin.
    if (response.created() &&
        ((options.copied_from.has_value() &&
          !response.checkpoint().has_copied_from()) ||
         (options.pin && !response.checkpoint().pinned()))) {
      return absl::UnimplementedError(
          "BeginCheckpoint: the server ignored copied_from or pin (it is "
          "older than copies between servers); the pending checkpoint it "
          "created should be aborted");
    }
    return BeginReply{response.retention_policy_ignored()};
  }

  absl::StatusOr<absl::flat_hash_set<ChunkId>> FindMissingChunks(
      absl::string_view job, absl::Span<const ChunkId> ids) override {
    absl::flat_hash_set<ChunkId> missing;
    for (size_t begin = 0; begin < ids.size(); begin += kMaxHashesPerRequest) {
      const size_t end = std::min(ids.size(), begin + kMaxHashesPerRequest);
      v1::FindMissingChunksRequest request;
      request.set_job(std::string(job));
      for (size_t i = begin; i < end; ++i) {
        request.add_sha256(ids[i].bytes().data(), ids[i].bytes().size());
      }
      v1::FindMissingChunksResponse response;
      CKPT_RETURN_IF_ERROR(Call(&Stub::FindMissingChunks, request, &response));
      for (const std::string& raw : response.missing_sha256()) {
        auto id = ChunkId::FromBytes(raw);
        if (!id.ok()) {
          return absl::InternalError(
              absl::StrCat("FindMissingChunks answered a malformed hash: ",
                           id.status().message()));
        }
        missing.insert(*id);
      }
    }
    return missing;
  }

  std::unique_ptr<ChunkUploadStream> OpenUpload(absl::string_view job,
                                                int64_t step) override {
    return std::make_unique<GrpcUploadStream>(
        stub_.get(), call_setup_, address_, stream_stall_timeout_, job, step);
  }

  absl::StatusOr<CommitResult> CommitShard(
      absl::string_view job, int64_t step, int32_t world_size,
      const ShardManifest& shard) override {
    v1::CommitShardRequest request;
    request.set_job(std::string(job));
    request.set_step(step);
    request.set_world_size(world_size);
    ToProto(shard, request.mutable_shard());
    v1::CommitShardResponse response;
    CKPT_RETURN_IF_ERROR(Call(&Stub::CommitShard, request, &response));
    CommitResult result;
    result.checkpoint_committed = response.checkpoint_committed();
    CKPT_ASSIGN_OR_RETURN(result.checkpoint, FromProto(response.checkpoint()));
    return result;
  }

  absl::StatusOr<Checkpoint> GetManifest(
      absl::string_view job, std::optional<int64_t> step,
      std::optional<int32_t> restoring_rank) override {
    v1::GetManifestRequest request;
    request.set_job(std::string(job));
    if (step.has_value()) {
      request.set_step(*step);
    } else {
      request.set_latest(true);
    }
    if (restoring_rank.has_value()) {
      request.set_restoring_rank(*restoring_rank);
    }
    v1::GetManifestResponse response;
    CKPT_RETURN_IF_ERROR(Call(&Stub::GetManifest, request, &response));
    Checkpoint checkpoint;
    CKPT_ASSIGN_OR_RETURN(checkpoint.record, FromProto(response.checkpoint()));
    checkpoint.shards.reserve(response.shards_size());
    for (const v1::ShardManifest& proto : response.shards()) {
      CKPT_ASSIGN_OR_RETURN(ShardManifest shard, FromProto(proto));
      checkpoint.shards.push_back(std::move(shard));
    }
    return checkpoint;
  }

  absl::Status ReportRestore(absl::string_view job, int64_t step,
                             int32_t rank) override {
    v1::ReportRestoreRequest request;
    request.set_job(std::string(job));
    request.set_step(step);
    request.set_rank(rank);
    v1::ReportRestoreResponse response;
    return Call(&Stub::ReportRestore, request, &response);
  }

  absl::Status ReportCopy(absl::string_view job, int64_t step,
                          const CopyPeer& destination) override {
    v1::ReportCopyRequest request;
    request.set_job(std::string(job));
    request.set_step(step);
    ToProto(destination, request.mutable_destination());
    v1::ReportCopyResponse response;
    return Call(&Stub::ReportCopy, request, &response);
  }

  absl::StatusOr<std::vector<JobSummary>> ListJobs() override {
    v1::ListJobsResponse response;
    CKPT_RETURN_IF_ERROR(
        Call(&Stub::ListJobs, v1::ListJobsRequest(), &response));
    std::vector<JobSummary> jobs;
    jobs.reserve(response.jobs_size());
    for (const v1::JobInfo& info : response.jobs()) {
      jobs.push_back(FromProto(info));
    }
    return jobs;
  }

  absl::StatusOr<std::vector<CheckpointUsage>> ListCheckpoints(
      absl::string_view job, bool include_uncommitted,
      bool with_unique_bytes) override {
    v1::ListCheckpointsRequest request;
    request.set_job(std::string(job));
    request.set_include_uncommitted(include_uncommitted);
    request.set_with_unique_bytes(with_unique_bytes);
    v1::ListCheckpointsResponse response;
    CKPT_RETURN_IF_ERROR(Call(&Stub::ListCheckpoints, request, &response));
    std::vector<CheckpointUsage> listed;
    listed.reserve(response.checkpoints_size());
    for (const v1::CheckpointInfo& info : response.checkpoints()) {
      CheckpointUsage usage;
      CKPT_ASSIGN_OR_RETURN(usage.record, FromProto(info));
      if (info.has_unique_bytes()) usage.unique_bytes = info.unique_bytes();
      listed.push_back(std::move(usage));
    }
    return listed;
  }

  absl::Status ReadChunks(
      absl::string_view job, absl::Span<const ChunkSink> sinks,
      const std::function<void(uint64_t)>& on_chunk) override {
    for (size_t begin = 0; begin < sinks.size();
         begin += kMaxHashesPerRequest) {
      const size_t end = std::min(sinks.size(), begin + kMaxHashesPerRequest);
      CKPT_RETURN_IF_ERROR(
          ReadOneStream(job, sinks.subspan(begin, end - begin), on_chunk));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<SharedFileRegistration>> RegisterSharedFile(
      int memfd) override {
    v1::GetSharedFileEndpointRequest request;
    v1::GetSharedFileEndpointResponse response;
    CKPT_RETURN_IF_ERROR(
        Call(&Stub::GetSharedFileEndpoint, request, &response));
    return RegisterAtSocket(FromProto(response), memfd, rpc_timeout_);
  }

  absl::Status ReadChunksIntoFile(
      absl::string_view job, absl::string_view file_handle,
      absl::Span<const ChunkPlacement> chunks) override {
    v1::ReadChunksIntoFileRequest request;
    request.set_job(std::string(job));
    request.set_file_handle(std::string(file_handle));
    for (const ChunkPlacement& chunk : chunks) {
      ToProto(chunk, request.add_chunks());
    }
    v1::ReadChunksIntoFileResponse response;
    return Call(&Stub::ReadChunksIntoFile, request, &response);
  }

  absl::Status AbortCheckpoint(absl::string_view job, int64_t step,
                               absl::string_view reason) override {
    v1::AbortCheckpointRequest request;
    request.set_job(std::string(job));
    request.set_step(step);
    request.set_reason(std::string(reason));
    v1::AbortCheckpointResponse response;
    return Call(&Stub::AbortCheckpoint, request, &response);
  }

  absl::Status DeleteCheckpoint(absl::string_view job, int64_t step,
                                bool force) override {
    v1::DeleteCheckpointRequest request;
    request.set_job(std::string(job));
    request.set_step(step);
    request.set_force(force);
    v1::DeleteCheckpointResponse response;
    return Call(&Stub::DeleteCheckpoint, request, &response);
  }

  absl::StatusOr<Stats> GetStats(absl::string_view job) override {
    v1::GetStatsRequest request;
    request.set_job(std::string(job));
    v1::GetStatsResponse response;
    CKPT_RETURN_IF_ERROR(Call(&Stub::GetStats, request, &response));
    return FromProto(response);
  }

  absl::StatusOr<std::vector<int64_t>> SetRetentionPolicy(
      absl::string_view job, const RetentionPolicy& policy,
      std::vector<std::string>* warnings) override {
    CKPT_RETURN_IF_ERROR(CheckServerKnowsResticRules(job, policy));
    v1::SetRetentionPolicyRequest request;
    request.set_job(std::string(job));
    ToProto(policy, request.mutable_policy());
    v1::SetRetentionPolicyResponse response;
    CKPT_RETURN_IF_ERROR(Call(&Stub::SetRetentionPolicy, request, &response));
    if (warnings != nullptr) {
      warnings->assign(response.warnings().begin(), response.warnings().end());
    }
    return std::vector<int64_t>(response.deleted_steps().begin(),
                                response.deleted_steps().end());
  }

  absl::StatusOr<PolicyInfo> GetRetentionPolicy(
      absl::string_view job) override {
    v1::GetRetentionPolicyRequest request;
    request.set_job(std::string(job));
    return GetPolicy(request);
  }

  absl::Status SetTenantDefaultPolicy(absl::string_view tenant,
                                      const RetentionPolicy& policy) override {
    // An invalid tenant needs no probe: every server refuses it.
    if (ValidateTenantName(tenant).ok()) {
      CKPT_RETURN_IF_ERROR(CheckServerKnowsResticRules(
          absl::StrCat(tenant, "/", kResticRulesProbeJob), policy));
    }
    v1::SetRetentionPolicyRequest request;
    request.set_tenant(std::string(tenant));
    ToProto(policy, request.mutable_policy());
    v1::SetRetentionPolicyResponse response;
    return Call(&Stub::SetRetentionPolicy, request, &response);
  }

  absl::Status ClearRetentionPolicy(absl::string_view name,
                                    bool tenant_default) override {
    v1::SetRetentionPolicyRequest request;
    if (tenant_default) {
      request.set_tenant(std::string(name));
    } else {
      request.set_job(std::string(name));
    }
    request.set_clear(true);
    v1::SetRetentionPolicyResponse response;
    return Call(&Stub::SetRetentionPolicy, request, &response);
  }

  absl::StatusOr<PolicyInfo> GetTenantDefaultPolicy(
      absl::string_view tenant) override {
    v1::GetRetentionPolicyRequest request;
    request.set_tenant(std::string(tenant));
    return GetPolicy(request);
  }

  absl::StatusOr<PolicyInfo> GetPolicy(
      const v1::GetRetentionPolicyRequest& request) {
    v1::GetRetentionPolicyResponse response;
    CKPT_RETURN_IF_ERROR(Call(&Stub::GetRetentionPolicy, request, &response));
    PolicyInfo info;
    if (!response.has_policy()) return info;
    CKPT_ASSIGN_OR_RETURN(info.policy, FromProto(response.policy()));
    if (response.has_origin()) info.origin = FromProto(response.origin());
    return info;
  }

  absl::StatusOr<CheckpointRecord> PinCheckpoint(absl::string_view job,
                                                 int64_t step,
                                                 bool pinned) override {
    v1::PinCheckpointRequest request;
    request.set_job(std::string(job));
    request.set_step(step);
    request.set_pinned(pinned);
    v1::PinCheckpointResponse response;
    CKPT_RETURN_IF_ERROR(Call(&Stub::PinCheckpoint, request, &response));
    return FromProto(response.checkpoint());
  }

  absl::StatusOr<CheckpointRecord> SetCheckpointTags(
      absl::string_view job, int64_t step,
      const std::map<std::string, std::string>& set,
      const std::vector<std::string>& remove) override {
    v1::SetCheckpointTagsRequest request;
    request.set_job(std::string(job));
    request.set_step(step);
    request.mutable_set()->insert(set.begin(), set.end());
    for (const std::string& name : remove) request.add_remove(name);
    v1::SetCheckpointTagsResponse response;
    CKPT_RETURN_IF_ERROR(Call(&Stub::SetCheckpointTags, request, &response));
    return FromProto(response.checkpoint());
  }

  absl::StatusOr<std::vector<RetentionDecision>> PruneCheckpoints(
      absl::string_view job, const std::optional<RetentionPolicy>& policy,
      bool dry_run, std::vector<std::string>* warnings) override {
    if (policy.has_value()) {
      CKPT_RETURN_IF_ERROR(CheckServerKnowsResticRules(job, *policy));
    }
    v1::PruneCheckpointsRequest request;
    request.set_job(std::string(job));
    if (policy.has_value()) ToProto(*policy, request.mutable_policy());
    request.set_dry_run(dry_run);
    v1::PruneCheckpointsResponse response;
    CKPT_RETURN_IF_ERROR(Call(&Stub::PruneCheckpoints, request, &response));
    if (warnings != nullptr) {
      warnings->assign(response.warnings().begin(), response.warnings().end());
    }
    std::vector<RetentionDecision> decisions;
    decisions.reserve(response.decisions_size());
    for (const v1::RetentionDecision& in : response.decisions()) {
      decisions.push_back(FromProto(in));
    }
    return decisions;
  }

  absl::StatusOr<GcReport> CollectGarbage(const GcOptions& options) override {
    v1::CollectGarbageRequest request;
    request.set_dry_run(options.dry_run);
    if (options.hold.has_value()) {
      request.set_hold_seconds(absl::ToInt64Seconds(*options.hold));
    }
    v1::CollectGarbageResponse response;
    CKPT_RETURN_IF_ERROR(Call(&Stub::CollectGarbage, request, &response,
                              kCollectGarbageTimeout));
    return FromProto(response);
  }

  // No deadline (a verify may read every stored byte, or wait behind a long
  // collection on the server's maintenance lane) but a progress bound: the
  // server sends progress or a heartbeat at least every 10 s while the
  // verify is queued or working, and a stream silent for
  // stream_stall_timeout fails with DEADLINE_EXCEEDED.
  absl::StatusOr<VerifyReport> VerifyCheckpoints(
      const VerifyOptions& options, const VerifyProgressFn& progress) override {
    v1::VerifyRequest request;
    ToProto(options, &request);
    grpc::ClientContext context;
    call_setup_.Prepare(&context);
    // Destroyed before the context it cancels; runs until Finish returns.
    StallWatchdog watchdog(stream_stall_timeout_,
                           [&context] { context.TryCancel(); });
    std::unique_ptr<grpc::ClientReader<v1::VerifyResponse>> reader =
        stub_->VerifyCheckpoints(&context, request);
    v1::VerifyResponse response;
    std::optional<absl::StatusOr<VerifyReport>> report;
    while (reader->Read(&response)) {
      // Any message counts, a heartbeat (or a kind this build does not
      // know) included: the server is alive and the verify is in hand.
      watchdog.Progress();
      if (response.has_report()) {
        report = FromProto(response.report());
      } else if (response.has_progress() && progress) {
        // Progress of a stage this build does not know is not worth failing
        // the verify over.
        absl::StatusOr<VerifyProgress> now = FromProto(response.progress());
        if (now.ok()) progress(*now);
      }
    }
    absl::Status status = FromGrpcStatus(reader->Finish());
    if (!status.ok() && watchdog.fired()) {
      return absl::DeadlineExceededError(absl::StrCat(
          "VerifyCheckpoints: no message from the server at ", address_,
          " for ", absl::FormatDuration(stream_stall_timeout_),
          " (a server at work sends one at least every 10 s): the server is "
          "stalled; the verify was abandoned"));
    }
    CKPT_RETURN_IF_ERROR(status);
    if (!report.has_value()) {
      return absl::InternalError("VerifyCheckpoints ended without a report");
    }
    return *std::move(report);
  }

  absl::StatusOr<std::vector<JobEvent>> ListEvents(absl::string_view job,
                                                   int limit) override {
    v1::ListEventsRequest request;
    request.set_job(std::string(job));
    request.set_limit(limit);
    v1::ListEventsResponse response;
    CKPT_RETURN_IF_ERROR(Call(&Stub::ListEvents, request, &response));
    std::vector<JobEvent> events;
    events.reserve(response.events_size());
    for (const v1::JobEvent& proto : response.events()) {
      CKPT_ASSIGN_OR_RETURN(JobEvent event, FromProto(proto));
      events.push_back(std::move(event));
    }
    return events;
  }

 private:
  // OK when `policy` uses none of restic's rules (UsesResticRules) or the
  // server knows them; FAILED_PRECONDITION when it predates them, as it
  // would drop them silently and apply the rest of the policy (deleting
  // what they keep). Asked once per transport, before the first call that
  // would carry them: a dry-run PruneCheckpoints with a negative
  // keep_within, which a server that knows it refuses naming keep_within
  // before looking the job up; an older one reads an empty policy and
  // answers OK or NOT_FOUND. Other errors (no such server, a refused token,
  // a bad job name) are returned as they are.
  absl::Status CheckServerKnowsResticRules(absl::string_view job,
                                           const RetentionPolicy& policy) {
    if (!UsesResticRules(policy) || knows_restic_rules_.load()) {
      return absl::OkStatus();
    }
    v1::PruneCheckpointsRequest request;
    request.set_job(std::string(job));
    request.set_dry_run(true);
    request.mutable_policy()->set_keep_within_micros(-1);
    v1::PruneCheckpointsResponse response;
    absl::Status probe = Call(&Stub::PruneCheckpoints, request, &response);
    if (absl::IsInvalidArgument(probe) &&
        absl::StrContains(probe.message(), "keep_within")) {
      knows_restic_rules_.store(true);
      return absl::OkStatus();
    }
    if (!probe.ok() && !absl::IsNotFound(probe)) return probe;
    return absl::FailedPreconditionError(absl::StrCat(
        "the server at ", address_,
        " predates the retention rules keep_within, keep_hourly, keep_daily, "
        "keep_weekly, keep_monthly and keep_tags: it would drop them and "
        "apply the rest of the policy, deleting what they keep. Nothing was "
        "sent; upgrade ckpt-server or leave these rules out"));
  }

  // A unary call with a deadline of `timeout`, rpc_timeout by default.
  template <typename Request, typename Response>
  absl::Status Call(grpc::Status (Stub::*method)(grpc::ClientContext*,
                                                 const Request&, Response*),
                    const Request& request, Response* response,
                    std::optional<absl::Duration> timeout = std::nullopt) {
    grpc::ClientContext context;
    const absl::Time deadline = absl::Now() + timeout.value_or(rpc_timeout_);
    call_setup_.Prepare(&context, deadline);
    context.set_deadline(absl::ToChronoTime(deadline));
    return FromGrpcStatus((stub_.get()->*method)(&context, request, response));
  }

  // One ReadChunks stream for all of `sinks`. It has no deadline (a large
  // read over a slow link takes as long as it takes) but must make
  // progress: DEADLINE_EXCEEDED when no chunk arrives for
  // stream_stall_timeout.
  absl::Status ReadOneStream(absl::string_view job,
                             absl::Span<const ChunkSink> sinks,
                             const std::function<void(uint64_t)>& on_chunk) {
    v1::ReadChunksRequest request;
    request.set_job(std::string(job));
    for (const ChunkSink& sink : sinks) {
      request.add_sha256(sink.id.bytes().data(), sink.id.bytes().size());
    }
    grpc::ClientContext context;
    call_setup_.Prepare(&context);
    // Destroyed before the context it cancels. Until Finish returns: a
    // server that sends every chunk but never ends the stream stalls too.
    StallWatchdog watchdog(stream_stall_timeout_,
                           [&context] { context.TryCancel(); });
    std::unique_ptr<grpc::ClientReader<ChunkAnswer>> reader(
        grpc::internal::ClientReaderFactory<ChunkAnswer>::Create(
            channel_.get(), read_chunks_, &context, request));
    ChunkAnswer answer;
    size_t received = 0;
    absl::Status problem;
    while (received < sinks.size()) {
      // Decoded by Read straight into the sink's destinations.
      answer.sink = &sinks[received];
      answer.index = received;
      if (!reader->Read(&answer)) break;
      watchdog.Progress();
      problem = std::move(answer.status);
      if (!problem.ok()) break;
      ++received;
      if (on_chunk) on_chunk(answer.sink->size);
    }
    if (problem.ok() && received == sinks.size()) {
      // Reads the stream's end: Finish waits for every message to be read,
      // so an answer past those asked would hold it until the stall bound
      // (for ever without one). Such an answer is the server's error.
      const ChunkSink none;
      answer.sink = &none;
      answer.index = received;
      if (reader->Read(&answer)) {
        problem = absl::DataLossError(
            absl::StrCat("ReadChunks: the server sent more than the ",
                         sinks.size(), " chunks asked"));
      }
    }
    if (!problem.ok()) {
      // Stops a stream we no longer read. Only then: a stream that ended
      // early (Read returned false) carries the server's status, e.g.
      // DATA_LOSS for a corrupt chunk, which a cancel could replace with
      // CANCELLED before Finish reads it.
      context.TryCancel();
    }
    absl::Status status = FromGrpcStatus(reader->Finish());
    if (!problem.ok()) return problem;
    if (!status.ok() && watchdog.fired()) {
      return absl::DeadlineExceededError(
          absl::StrCat("ReadChunks: no chunk from the server at ", address_,
                       " for ", absl::FormatDuration(stream_stall_timeout_),
                       " (", received, " of ", sinks.size(),
                       " chunks received): the server is stalled; the read was "
                       "abandoned"));
    }
    CKPT_RETURN_IF_ERROR(status);
    if (received < sinks.size()) {
      return absl::DataLossError(absl::StrCat("ReadChunks: the server sent ",
                                              received, " of ", sinks.size(),
                                              " chunks"));
    }
    return absl::OkStatus();
  }

  const std::string address_;
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<Stub> stub_;
  // ReadChunks read with ChunkAnswer instead of the generated message
  // (client/transport/chunk_answer.h); the path outlives the method.
  const std::string read_chunks_path_;
  const grpc::internal::RpcMethod read_chunks_;
  const CallSetup call_setup_;
  const absl::Duration rpc_timeout_;
  const absl::Duration stream_stall_timeout_;
  // Set once the server proved it knows restic's retention rules.
  std::atomic<bool> knows_restic_rules_{false};
};

}  // namespace

absl::StatusOr<std::unique_ptr<Transport>> ConnectGrpcTransport(
    const std::string& address, const ConnectOptions& options) {
  if (address.empty()) {
    return absl::InvalidArgumentError("server address is empty");
  }
  if (options.stream_stall_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "ConnectOptions::stream_stall_timeout must be positive (infinite: no "
        "bound)");
  }
  CKPT_RETURN_IF_ERROR(CheckConnectSecurity(address, options));
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  // Each connection is its own, so ranks in one process (or a test) upload
  // in parallel instead of multiplexing one TCP stream.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(
      GRPC_ARG_KEEPALIVE_TIME_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_time)));
  args.SetInt(
      GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_timeout)));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  // A long upload sends data all along; a long read only receives: pings
  // must not stop for want of data frames of our own.
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // The first reconnect comes soon: see CallSetup.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(kInitialReconnect)));
  std::shared_ptr<grpc::ChannelCredentials> credentials =
      grpc::InsecureChannelCredentials();
  if (!options.tls_ca_pem.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.tls_ca_pem;
    ssl.pem_private_key = options.tls_key_pem;
    ssl.pem_cert_chain = options.tls_cert_pem;
    credentials = grpc::SslCredentials(ssl);
    if (!options.tls_server_name.empty()) {
      args.SetSslTargetNameOverride(options.tls_server_name);
    }
  }
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(address, credentials, args);
  if (options.connect_timeout > absl::ZeroDuration() &&
      !channel->WaitForConnected(
          absl::ToChronoTime(absl::Now() + options.connect_timeout))) {
    return absl::UnavailableError(absl::StrCat(
        "cannot connect to ckpt-server at ", address, " within ",
        absl::FormatDuration(options.connect_timeout),
        options.tls_ca_pem.empty()
            ? " (if the server uses TLS, pass its CA certificate)"
            : " over TLS (is the server using TLS, does its certificate "
              "come from the given CA and name the host dialled, and, for "
              "mutual TLS, is a client certificate given?)"));
  }
  return std::make_unique<GrpcTransport>(address, std::move(channel), options);
}

}  // namespace ckpt::client
