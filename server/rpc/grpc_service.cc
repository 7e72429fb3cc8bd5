#include "server/rpc/grpc_service.h"

#include <map>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/chunk_id.h"
#include "common/chunking.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/wire_format.h"
#include "server/rpc/request_checks.h"
#include "server/service/shared_file_reads.h"

namespace ckpt::server {
namespace {

// Unary handlers compute their whole answer synchronously, so the context's
// default reactor is enough.
grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* context,
                                      const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// ---------------------------------------------------------------------------
// PutChunks
//
// Two request buffers alternate: as soon as a message has arrived, the read
// of the next one is started into the other buffer and only then is the
// current one hashed and stored, so network receive overlaps hashing. Only
// one read is ever outstanding.
//
// Reactions may run concurrently on different threads (gRPC does not
// serialize them), so one thread at a time "drives" (processes messages);
// a read that completes while another thread drives is parked in
// `parked_` and picked up by the driver. mu_ is never held across a service
// call or a gRPC operation.
class PutChunksReactor final
    : public grpc::ServerReadReactor<v1::PutChunksRequest> {
 public:
  // `calls` has counted this call in; `admitted` is what Enter returned.
  PutChunksReactor(grpc::CallbackServerContext* context,
                   CheckpointService* service, const StreamLimits& limits,
                   CallCounter* calls, bool admitted,
                   v1::PutChunksResponse* response)
      : context_(context),
        service_(service),
        limits_(limits),
        calls_(calls),
        response_(response) {
    if (!admitted) {
      {
        absl::MutexLock lock(&mu_);
        finished_ = true;
      }
      Finish(ToGrpcStatus(ShuttingDown("PutChunks")));
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      read_index_ = 0;
    }
    StartRead(&buffers_[0]);
  }

  void OnReadDone(bool ok) override {
    int index;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;  // A read left outstanding by an early Finish.
      index = read_index_;
      if (driving_) {
        parked_ = Parked{index, ok};
        return;
      }
      driving_ = true;
    }
    Drive(index, ok);
  }

  // Cancellation makes the outstanding read fail, which finishes the call
  // through the normal path; Process checks IsCancelled() to stop work on
  // the current message early.
  void OnCancel() override {}

  // The callback API hands ownership of the reactor to gRPC until OnDone;
  // this is the idiomatic place to free it.
  void OnDone() override {
    calls_->Exit();
    delete this;
  }

 private:
  struct Parked {
    int index;
    bool ok;
  };

  // Processes the message in buffers_[index] (or the end of the stream when
  // !ok), then any read parked meanwhile. The caller holds the driver role.
  void Drive(int index, bool ok) {
    while (true) {
      absl::Status status;
      bool end = !ok;
      if (ok) {
        {
          absl::MutexLock lock(&mu_);
          read_index_ = 1 - index;
        }
        // The other buffer is free: its message was processed before this
        // one's read was issued.
        StartRead(&buffers_[1 - index]);
        status = Process(buffers_[index]);
        end = !status.ok();
      } else if (context_->IsCancelled()) {
        status = absl::CancelledError("PutChunks: cancelled by the client");
      }
      if (end) CountBytesAdded();
      {
        absl::MutexLock lock(&mu_);
        if (!end) {
          if (parked_.has_value()) {
            index = parked_->index;
            ok = parked_->ok;
            parked_.reset();
            continue;
          }
          driving_ = false;
          return;
        }
        finished_ = true;
        if (status.ok()) {
          response_->set_chunks_received(chunks_received_);
          response_->set_chunks_stored(chunks_stored_);
          response_->set_bytes_received(bytes_received_);
          response_->set_bytes_stored(bytes_stored_);
        }
      }
      // Last use of `this`: OnDone may run (and delete it) once Finish and
      // any still outstanding read have completed.
      Finish(ToGrpcStatus(status));
      return;
    }
  }

  // Once, at the end of the stream (failed ones too: what they stored new
  // stays stored): one metadata write for the whole upload. The figure is
  // informational, so failing to record it does not fail the upload.
  void CountBytesAdded() {
    if (!step_.has_value() || bytes_stored_ == 0) return;
    absl::Status status = service_->AddBytesAdded(job_, *step_, bytes_stored_);
    if (!status.ok()) {
      CKPT_LOG(Warning, "PutChunks: bytes added by the upload for ", job_, "@",
               *step_, " not recorded: ", status.ToString());
    }
  }

  absl::Status Process(const v1::PutChunksRequest& request) {
    static constexpr absl::string_view kRpc = "PutChunks";
    if (job_.empty()) {
      if (request.job().empty()) {
        return InvalidRequest(kRpc, "the first message must name the job");
      }
      CKPT_RETURN_IF_ERROR(CheckJob(kRpc, request.job()));
      if (request.has_step()) {
        CKPT_RETURN_IF_ERROR(CheckStep(kRpc, request.step()));
        step_ = request.step();
      }
      job_ = request.job();
    } else if (!request.job().empty() && request.job() != job_) {
      return InvalidRequest(
          kRpc, absl::StrCat("a message names job '", request.job(),
                             "' but the stream is for job '", job_, "'"));
    }
    for (const v1::ChunkData& chunk : request.chunks()) {
      if (context_->IsCancelled()) {
        return absl::CancelledError("PutChunks: cancelled by the client");
      }
      const uint64_t index = chunks_received_;
      auto id = ChunkId::FromBytes(chunk.sha256());
      if (!id.ok()) {
        return InvalidRequest(
            kRpc,
            absl::StrCat("chunk ", index, ": sha256 must be ", ChunkId::kSize,
                         " bytes, got ", chunk.sha256().size()));
      }
      const std::string& data = chunk.data();
      if (data.empty() || data.size() > kMaxChunkBytes) {
        return InvalidRequest(
            kRpc, absl::StrCat("chunk ", index, " (", id->ShortHex(),
                               "): size must be 1..", kMaxChunkBytes,
                               " bytes, got ", data.size()));
      }
      if (bytes_received_ + data.size() > limits_.max_put_stream_bytes) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "PutChunks: the stream exceeds its limit of ",
            limits_.max_put_stream_bytes, " bytes; split the upload"));
      }
      ++chunks_received_;
      bytes_received_ += data.size();
      CKPT_ASSIGN_OR_RETURN(bool is_new, service_->PutChunk(job_, *id, data));
      if (is_new) {
        ++chunks_stored_;
        bytes_stored_ += data.size();
      }
    }
    return absl::OkStatus();
  }

  grpc::CallbackServerContext* const context_;
  CheckpointService* const service_;
  const StreamLimits limits_;
  CallCounter* const calls_;
  v1::PutChunksResponse* const response_;

  // Touched only by the driving thread; the driver role is handed over
  // under mu_, which orders these accesses.
  v1::PutChunksRequest buffers_[2];
  std::string job_;
  std::optional<int64_t> step_;  // the pending checkpoint uploaded for
  uint64_t chunks_received_ = 0;
  uint64_t chunks_stored_ = 0;
  uint64_t bytes_received_ = 0;
  uint64_t bytes_stored_ = 0;

  absl::Mutex mu_;
  int read_index_ ABSL_GUARDED_BY(mu_) = 0;  // buffer of the outstanding read
  bool driving_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<Parked> parked_ ABSL_GUARDED_BY(mu_);
};

// ---------------------------------------------------------------------------
// ReadChunks
//
// Pipeline over two response buffers: while chunk i is being written, chunk
// i+1 is read and verified into the other buffer. One thread at a time holds
// the "preparing" role; a prepared chunk that finds a write in flight waits
// in `ready_` for OnWriteDone to start it. mu_ is never held across a
// service call or a gRPC operation.
class ReadChunksReactor final
    : public grpc::ServerWriteReactor<v1::ReadChunksResponse> {
 public:
  // `calls` has counted this call in; it is counted out in OnDone.
  ReadChunksReactor(grpc::CallbackServerContext* context,
                    CheckpointService* service, CallCounter* calls,
                    std::string job, absl::StatusOr<std::vector<ChunkId>> ids)
      : context_(context),
        service_(service),
        calls_(calls),
        job_(std::move(job)) {
    if (!ids.ok()) {
      absl::MutexLock lock(&mu_);
      error_ = ids.status();
    } else {
      ids_ = *std::move(ids);
    }
  }

  // Called once by the handler right after construction.
  void Start() {
    {
      absl::MutexLock lock(&mu_);
      preparing_ = true;
    }
    Pump();
  }

  void OnWriteDone(bool ok) override {
    int start_buffer = -1;
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      write_in_flight_ = false;
      if (!ok && error_.ok()) {
        error_ = absl::CancelledError("ReadChunks: the client went away");
      }
      if (error_.ok() && ready_ >= 0) {
        start_buffer = ready_;
        ready_ = -1;
        write_in_flight_ = true;
        preparing_ = true;  // resume preparing after starting this write
      } else {
        finish = MaybeFinishLocked();
      }
    }
    if (finish.has_value()) {
      Finish(*std::move(finish));  // last use of `this`
      return;
    }
    if (start_buffer >= 0) {
      StartWrite(&buffers_[start_buffer]);
      Pump();
    }
  }

  void OnCancel() override {}

  // The callback API hands ownership of the reactor to gRPC until OnDone;
  // this is the idiomatic place to free it.
  void OnDone() override {
    calls_->Exit();
    delete this;
  }

 private:
  // Runs with the preparing role: prepares chunks until one waits for the
  // write slot, all are prepared, or an error occurs.
  void Pump() {
    while (true) {
      size_t index = 0;
      std::optional<grpc::Status> finish;
      {
        absl::MutexLock lock(&mu_);
        if (error_.ok() && context_->IsCancelled()) {
          error_ = absl::CancelledError("ReadChunks: cancelled by the client");
        }
        if (!error_.ok() || next_ == ids_.size()) {
          preparing_ = false;
          finish = MaybeFinishLocked();
          if (!finish.has_value()) return;  // OnWriteDone finishes
        } else {
          index = next_++;
        }
      }
      if (finish.has_value()) {
        Finish(*std::move(finish));  // last use of `this`
        return;
      }
      const int buffer = static_cast<int>(index % 2);
      absl::Status status = Prepare(ids_[index], &buffers_[buffer]);
      {
        absl::MutexLock lock(&mu_);
        if (!status.ok()) error_ = std::move(status);
        // On error (ours, or the client leaving meanwhile) the loop head
        // finishes, or leaves that to the OnWriteDone in flight.
        if (!error_.ok()) continue;
        if (write_in_flight_) {
          ready_ = buffer;
          preparing_ = false;
          return;
        }
        write_in_flight_ = true;
      }
      StartWrite(&buffers_[buffer]);
    }
  }

  // Finishes when nothing is in flight and either an error occurred or every
  // chunk has been written. Sets finished_; the caller calls Finish.
  std::optional<grpc::Status> MaybeFinishLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || preparing_ || write_in_flight_) return std::nullopt;
    if (error_.ok() && (ready_ >= 0 || next_ < ids_.size())) {
      return std::nullopt;
    }
    finished_ = true;
    return ToGrpcStatus(error_);
  }

  absl::Status Prepare(const ChunkId& id, v1::ReadChunksResponse* response) {
    CKPT_ASSIGN_OR_RETURN(std::string data, service_->ReadChunk(job_, id));
    v1::ChunkData* chunk = response->mutable_chunk();
    chunk->set_sha256(std::string(id.bytes()));
    chunk->set_data(std::move(data));  // moved, not copied
    return absl::OkStatus();
  }

  grpc::CallbackServerContext* const context_;
  CheckpointService* const service_;
  CallCounter* const calls_;
  const std::string job_;
  std::vector<ChunkId> ids_;  // fixed after construction

  // buffers_[i % 2] holds chunk i; the protocol above keeps the preparer
  // and gRPC off the same buffer.
  v1::ReadChunksResponse buffers_[2];

  absl::Mutex mu_;
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;  // next chunk to prepare
  int ready_ ABSL_GUARDED_BY(mu_) = -1;   // prepared buffer awaiting a write
  bool preparing_ ABSL_GUARDED_BY(mu_) = false;
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
};

// ---------------------------------------------------------------------------
// VerifyCheckpoints
//
// A verify may read every stored byte, so it runs on a thread of its own,
// never on a gRPC callback thread. That thread sends progress when no write
// is in flight and at most every kVerifyProgressInterval (newer progress
// simply replaces what was not sent), then waits for the last progress
// write and writes the report together with Finish. A failed write or a
// cancelled call (the client left, or shutdown cancelled it) makes the next
// progress callback stop the verify.
constexpr absl::Duration kVerifyProgressInterval = absl::Milliseconds(200);

class VerifyReactor final
    : public grpc::ServerWriteReactor<v1::VerifyResponse> {
 public:
  // `calls` has counted this call in.
  VerifyReactor(grpc::CallbackServerContext* context,
                CheckpointService* service, CallCounter* calls)
      : context_(context), service_(service), calls_(calls) {}

  // Called once by the handler: finishes at once with a non-OK `refusal`,
  // else starts the verify thread.
  void Start(const absl::Status& refusal, VerifyOptions options) {
    if (!refusal.ok()) {
      Finish(ToGrpcStatus(refusal));  // last use of `this`
      return;
    }
    std::thread([this, options = std::move(options)] {
      Run(options);
    }).detach();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    write_in_flight_ = false;
    if (!ok) client_gone_ = true;
  }

  // The verify thread polls for it in each progress callback.
  void OnCancel() override {}

  // The callback API hands ownership of the reactor to gRPC until OnDone;
  // this is the idiomatic place to free it.
  void OnDone() override {
    calls_->Exit();
    delete this;
  }

 private:
  void Run(const VerifyOptions& options) {
    absl::StatusOr<VerifyReport> report = service_->Verify(
        options,
        [this](const VerifyProgress& progress) { return Send(progress); });
    {
      absl::MutexLock lock(&mu_);
      auto no_write_in_flight = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !write_in_flight_;
      };
      mu_.Await(absl::Condition(&no_write_in_flight));
    }
    if (!report.ok()) {
      Finish(ToGrpcStatus(report.status()));  // last use of `this`
      return;
    }
    ToProto(*report, last_.mutable_report());
    // Last use of `this`: OnDone may delete it once this completes.
    StartWriteAndFinish(&last_, grpc::WriteOptions(), grpc::Status::OK);
  }

  absl::Status Send(const VerifyProgress& progress) {
    const absl::Time now = absl::Now();
    {
      absl::MutexLock lock(&mu_);
      if (client_gone_ || context_->IsCancelled()) {
        return absl::CancelledError(
            "VerifyCheckpoints: the call was cancelled");
      }
      if (write_in_flight_ || now < next_progress_) return absl::OkStatus();
      write_in_flight_ = true;
      next_progress_ = now + kVerifyProgressInterval;
    }
    // No write uses progress_ now: the last one has completed.
    ToProto(progress, progress_.mutable_progress());
    StartWrite(&progress_);
    return absl::OkStatus();
  }

  grpc::CallbackServerContext* const context_;
  CheckpointService* const service_;
  CallCounter* const calls_;
  // Touched by the verify thread only, and by gRPC while a write of it is
  // in flight.
  v1::VerifyResponse progress_;
  v1::VerifyResponse last_;

  absl::Mutex mu_;
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool client_gone_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time next_progress_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace

bool CallCounter::Enter() {
  absl::MutexLock lock(&mu_);
  ++in_flight_;
  return !draining_;
}

void CallCounter::Exit() {
  absl::MutexLock lock(&mu_);
  --in_flight_;
}

void CallCounter::StartDraining() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
}

bool CallCounter::WaitUntilIdle(absl::Time deadline) {
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return in_flight_ == 0;
  };
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithDeadline(absl::Condition(&idle), deadline);
}

template <typename Body>
grpc::ServerUnaryReactor* GrpcCheckpointService::Unary(
    grpc::CallbackServerContext* context, Body&& body) {
  if (!calls_.Enter()) {
    calls_.Exit();
    return FinishUnary(context,
                       absl::UnavailableError("the server is shutting down"));
  }
  // The answer is complete once the body returns; sending it is gRPC's.
  grpc::ServerUnaryReactor* reactor = FinishUnary(context, body());
  calls_.Exit();
  return reactor;
}

GrpcCheckpointService::GrpcCheckpointService(CheckpointService* service,
                                             StreamLimits limits)
    : service_(service), limits_(limits) {}

grpc::ServerUnaryReactor* GrpcCheckpointService::BeginCheckpoint(
    grpc::CallbackServerContext* context,
    const v1::BeginCheckpointRequest* request,
    v1::BeginCheckpointResponse* response) {
  return Unary(context, [&]() -> absl::Status {
    static constexpr absl::string_view kRpc = "BeginCheckpoint";
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
    CKPT_ASSIGN_OR_RETURN(
        BeginResult result,
        service_->BeginCheckpoint(
            request->job(), request->step(), request->world_size(),
            FromProto(request->metadata()),
            absl::Seconds(request->lease_seconds()), policy));
    ToProto(result.record, response->mutable_checkpoint());
    response->set_created(result.created);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GrpcCheckpointService::FindMissingChunks(
    grpc::CallbackServerContext* context,
    const v1::FindMissingChunksRequest* request,
    v1::FindMissingChunksResponse* response) {
  return Unary(context, [&]() -> absl::Status {
    static constexpr absl::string_view kRpc = "FindMissingChunks";
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
  const bool admitted = calls_.Enter();
  // Owned by gRPC until OnDone deletes it (callback API contract).
  return new PutChunksReactor(context, service_, limits_, &calls_, admitted,
                              response);
}

grpc::ServerUnaryReactor* GrpcCheckpointService::CommitShard(
    grpc::CallbackServerContext* context, const v1::CommitShardRequest* request,
    v1::CommitShardResponse* response) {
  return Unary(context, [&]() -> absl::Status {
    static constexpr absl::string_view kRpc = "CommitShard";
    CKPT_RETURN_IF_ERROR(CheckJob(kRpc, request->job()));
    CKPT_RETURN_IF_ERROR(CheckStep(kRpc, request->step()));
    CKPT_RETURN_IF_ERROR(CheckWorldSize(kRpc, request->world_size()));
    if (!request->has_shard()) return InvalidRequest(kRpc, "shard is missing");
    auto shard = FromProto(request->shard());
    if (!shard.ok()) return InvalidRequest(kRpc, shard.status().message());
    CKPT_ASSIGN_OR_RETURN(CommitResult result,
                          service_->CommitShard(request->job(), request->step(),
                                                request->world_size(), *shard));
    ToProto(result.record, response->mutable_checkpoint());
    response->set_checkpoint_committed(result.checkpoint_committed);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GrpcCheckpointService::AbortCheckpoint(
    grpc::CallbackServerContext* context,
    const v1::AbortCheckpointRequest* request,
    v1::AbortCheckpointResponse* /*response*/) {
  return Unary(context, [&]() -> absl::Status {
    static constexpr absl::string_view kRpc = "AbortCheckpoint";
    CKPT_RETURN_IF_ERROR(CheckJob(kRpc, request->job()));
    CKPT_RETURN_IF_ERROR(CheckStep(kRpc, request->step()));
    return service_->AbortCheckpoint(request->job(), request->step(),
                                     request->reason());
  });
}

grpc::ServerUnaryReactor* GrpcCheckpointService::ListJobs(
    grpc::CallbackServerContext* context,
    const v1::ListJobsRequest* /*request*/, v1::ListJobsResponse* response) {
  return Unary(context, [&]() -> absl::Status {
    CKPT_ASSIGN_OR_RETURN(std::vector<JobSummary> jobs, service_->ListJobs());
    response->mutable_jobs()->Reserve(static_cast<int>(jobs.size()));
    for (const JobSummary& job : jobs) ToProto(job, response->add_jobs());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GrpcCheckpointService::ListCheckpoints(
    grpc::CallbackServerContext* context,
    const v1::ListCheckpointsRequest* request,
    v1::ListCheckpointsResponse* response) {
  return Unary(context, [&]() -> absl::Status {
    CKPT_RETURN_IF_ERROR(CheckJob("ListCheckpoints", request->job()));
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
  return Unary(context, [&]() -> absl::Status {
    static constexpr absl::string_view kRpc = "GetManifest";
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
    CKPT_ASSIGN_OR_RETURN(
        Checkpoint checkpoint,
        service_->GetManifest(request->job(), step, restoring_rank));
    ToProto(checkpoint.record, response->mutable_checkpoint());
    response->mutable_shards()->Reserve(
        static_cast<int>(checkpoint.shards.size()));
    for (const ShardManifest& shard : checkpoint.shards) {
      ToProto(shard, response->add_shards());
    }
    return absl::OkStatus();
  });
}

grpc::ServerWriteReactor<v1::ReadChunksResponse>*
GrpcCheckpointService::ReadChunks(grpc::CallbackServerContext* context,
                                  const v1::ReadChunksRequest* request) {
  static constexpr absl::string_view kRpc = "ReadChunks";
  const bool admitted = calls_.Enter();
  absl::StatusOr<std::vector<ChunkId>> ids = [&] {
    if (!admitted) {
      return absl::StatusOr<std::vector<ChunkId>>(ShuttingDown(kRpc));
    }
    absl::Status job_status = CheckJob(kRpc, request->job());
    if (!job_status.ok()) {
      return absl::StatusOr<std::vector<ChunkId>>(job_status);
    }
    return ParseHashes(kRpc, request->sha256(), limits_.max_request_hashes);
  }();
  // Owned by gRPC until OnDone deletes it (callback API contract).
  auto* reactor = new ReadChunksReactor(context, service_, &calls_,
                                        request->job(), std::move(ids));
  reactor->Start();
  return reactor;
}

grpc::ServerUnaryReactor* GrpcCheckpointService::ReadChunksIntoFile(
    grpc::CallbackServerContext* context,
    const v1::ReadChunksIntoFileRequest* request,
    v1::ReadChunksIntoFileResponse* response) {
  return Unary(context, [&]() -> absl::Status {
    static constexpr absl::string_view kRpc = "ReadChunksIntoFile";
    CKPT_RETURN_IF_ERROR(CheckJob(kRpc, request->job()));
    CKPT_ASSIGN_OR_RETURN(
        std::vector<ChunkPlacement> placements,
        ParsePlacements(kRpc, request->chunks(), limits_.max_request_hashes));
    if (!limits_.shared_file_reads) {
      return absl::FailedPreconditionError(absl::StrCat(
          kRpc, ": this server has shared-memory reads turned off"));
    }
    if (!IsLocalPeer(context->peer())) {
      return absl::FailedPreconditionError(
          absl::StrCat(kRpc, ": the client (", context->peer(),
                       ") is not on the server's host"));
    }
    absl::StatusOr<uint64_t> written = ReadChunksIntoSharedFile(
        *service_, request->job(), ParseSharedFile(request->file()), placements,
        [context] { return context->IsCancelled(); });
    if (!written.ok()) {
      return absl::Status(written.status().code(),
                          absl::StrCat(kRpc, ": ", written.status().message()));
    }
    response->set_bytes_written(*written);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GrpcCheckpointService::DeleteCheckpoint(
    grpc::CallbackServerContext* context,
    const v1::DeleteCheckpointRequest* request,
    v1::DeleteCheckpointResponse* /*response*/) {
  return Unary(context, [&]() -> absl::Status {
    static constexpr absl::string_view kRpc = "DeleteCheckpoint";
    CKPT_RETURN_IF_ERROR(CheckJob(kRpc, request->job()));
    CKPT_RETURN_IF_ERROR(CheckStep(kRpc, request->step()));
    return service_->DeleteCheckpoint(request->job(), request->step());
  });
}

grpc::ServerUnaryReactor* GrpcCheckpointService::GetStats(
    grpc::CallbackServerContext* context, const v1::GetStatsRequest* request,
    v1::GetStatsResponse* response) {
  return Unary(context, [&]() -> absl::Status {
    if (!request->job().empty()) {
      CKPT_RETURN_IF_ERROR(CheckJob("GetStats", request->job()));
    }
    CKPT_ASSIGN_OR_RETURN(Stats stats, service_->GetStats(request->job()));
    ToProto(stats, response);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GrpcCheckpointService::SetRetentionPolicy(
    grpc::CallbackServerContext* context,
    const v1::SetRetentionPolicyRequest* request,
    v1::SetRetentionPolicyResponse* response) {
  return Unary(context, [&]() -> absl::Status {
    static constexpr absl::string_view kRpc = "SetRetentionPolicy";
    CKPT_RETURN_IF_ERROR(CheckJob(kRpc, request->job()));
    CKPT_ASSIGN_OR_RETURN(RetentionPolicy policy,
                          ParsePolicy(kRpc, request->policy()));
    CKPT_ASSIGN_OR_RETURN(std::vector<int64_t> deleted,
                          service_->SetRetentionPolicy(request->job(), policy));
    for (int64_t step : deleted) response->add_deleted_steps(step);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GrpcCheckpointService::GetRetentionPolicy(
    grpc::CallbackServerContext* context,
    const v1::GetRetentionPolicyRequest* request,
    v1::GetRetentionPolicyResponse* response) {
  return Unary(context, [&]() -> absl::Status {
    CKPT_RETURN_IF_ERROR(CheckJob("GetRetentionPolicy", request->job()));
    CKPT_ASSIGN_OR_RETURN(std::optional<RetentionPolicy> policy,
                          service_->GetRetentionPolicy(request->job()));
    if (policy.has_value()) ToProto(*policy, response->mutable_policy());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GrpcCheckpointService::PinCheckpoint(
    grpc::CallbackServerContext* context,
    const v1::PinCheckpointRequest* request,
    v1::PinCheckpointResponse* response) {
  return Unary(context, [&]() -> absl::Status {
    static constexpr absl::string_view kRpc = "PinCheckpoint";
    CKPT_RETURN_IF_ERROR(CheckJob(kRpc, request->job()));
    CKPT_RETURN_IF_ERROR(CheckStep(kRpc, request->step()));
    CKPT_ASSIGN_OR_RETURN(
        CheckpointRecord record,
        service_->PinCheckpoint(request->job(), request->step(),
                                request->pinned()));
    ToProto(record, response->mutable_checkpoint());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GrpcCheckpointService::PruneCheckpoints(
    grpc::CallbackServerContext* context,
    const v1::PruneCheckpointsRequest* request,
    v1::PruneCheckpointsResponse* response) {
  return Unary(context, [&]() -> absl::Status {
    static constexpr absl::string_view kRpc = "PruneCheckpoints";
    CKPT_RETURN_IF_ERROR(CheckJob(kRpc, request->job()));
    std::optional<RetentionPolicy> policy;
    if (request->has_policy()) {
      CKPT_ASSIGN_OR_RETURN(policy, ParsePolicy(kRpc, request->policy()));
    }
    CKPT_ASSIGN_OR_RETURN(
        std::vector<RetentionDecision> decisions,
        service_->Prune(request->job(), policy, request->dry_run()));
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
  return Unary(context, [&]() -> absl::Status {
    GcOptions options;
    options.dry_run = request->dry_run();
    CKPT_ASSIGN_OR_RETURN(GcReport report, service_->CollectGarbage(options));
    ToProto(report, response);
    return absl::OkStatus();
  });
}

grpc::ServerWriteReactor<v1::VerifyResponse>*
GrpcCheckpointService::VerifyCheckpoints(grpc::CallbackServerContext* context,
                                         const v1::VerifyRequest* request) {
  static constexpr absl::string_view kRpc = "VerifyCheckpoints";
  const bool admitted = calls_.Enter();
  absl::Status refusal = [&]() -> absl::Status {
    if (!admitted) return ShuttingDown(kRpc);
    if (!request->job().empty()) {
      CKPT_RETURN_IF_ERROR(CheckJob(kRpc, request->job()));
    }
    if (request->has_step()) {
      CKPT_RETURN_IF_ERROR(CheckStep(kRpc, request->step()));
    }
    return absl::OkStatus();
  }();
  // Owned by gRPC until OnDone deletes it (callback API contract).
  auto* reactor = new VerifyReactor(context, service_, &calls_);
  reactor->Start(refusal, FromProto(*request));
  return reactor;
}

grpc::ServerUnaryReactor* GrpcCheckpointService::ListEvents(
    grpc::CallbackServerContext* context, const v1::ListEventsRequest* request,
    v1::ListEventsResponse* response) {
  return Unary(context, [&]() -> absl::Status {
    static constexpr absl::string_view kRpc = "ListEvents";
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
