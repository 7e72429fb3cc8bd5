#include "server/rpc/read_chunks_reactor.h"

#include <utility>

#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "server/rpc/chunk_answer_encoding.h"
#include "server/rpc/request_checks.h"

namespace ckpt::server {

ReadChunksReactor::ReadChunksReactor(grpc::CallbackServerContext* context,
                                     CheckpointService* service,
                                     Executor* executor, CallCounter* calls,
                                     Metrics* metrics, std::string job,
                                     absl::StatusOr<std::vector<ChunkId>> ids)
    : context_(context),
      service_(service),
      executor_(executor),
      calls_(calls),
      metrics_(metrics),
      job_(std::move(job)) {
  if (!ids.ok()) {
    absl::MutexLock lock(&mu_);
    error_ = ids.status();
  } else {
    ids_ = *std::move(ids);
  }
}

void ReadChunksReactor::Start() {
  bool refused;
  {
    absl::MutexLock lock(&mu_);
    preparing_ = true;
    refused = !error_.ok();
  }
  // A refusal finishes at once, with no work for the executor.
  if (refused) {
    Pump();
  } else {
    SubmitPump();
  }
}

void ReadChunksReactor::OnWriteDone(bool ok) {
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
    SubmitPump();
  }
}

// The callback API hands ownership of the reactor to gRPC until OnDone;
// this is the idiomatic place to free it.
void ReadChunksReactor::OnDone() {
  calls_->Exit();
  delete this;
}

void ReadChunksReactor::SubmitPump() {
  if (executor_->Submit([this] { Pump(); })) return;
  // Refused only once the server has shut down its executors.
  std::optional<grpc::Status> finish;
  {
    absl::MutexLock lock(&mu_);
    if (error_.ok()) error_ = ShuttingDown("ReadChunks");
    preparing_ = false;
    finish = MaybeFinishLocked();  // else the write in flight finishes
  }
  if (finish.has_value()) Finish(*std::move(finish));  // last use of `this`
}

void ReadChunksReactor::Pump() {
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
    // Back in line after each chunk: a long stream then shares the request
    // executor with other calls instead of holding a thread to its end.
    SubmitPump();
    return;
  }
}

std::optional<grpc::Status> ReadChunksReactor::MaybeFinishLocked() {
  if (finished_ || preparing_ || write_in_flight_) return std::nullopt;
  if (error_.ok() && (ready_ >= 0 || next_ < ids_.size())) {
    return std::nullopt;
  }
  finished_ = true;
  return ToGrpcStatus(error_);
}

absl::Status ReadChunksReactor::Prepare(const ChunkId& id,
                                        grpc::ByteBuffer* answer) {
  CKPT_ASSIGN_OR_RETURN(std::string data, service_->ReadChunk(job_, id));
  metrics_->ChunkSent(TenantOf(job_), data.size());
  *answer = EncodeChunkAnswer(id, std::move(data));  // moved, not copied
  return absl::OkStatus();
}

}  // namespace ckpt::server
