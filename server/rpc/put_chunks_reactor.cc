#include "server/rpc/put_chunks_reactor.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/chunk_id.h"
#include "common/chunking.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/manifest.h"
#include "common/quote.h"
#include "common/status_macros.h"
#include "server/auth/authorize.h"
#include "server/rpc/call_log.h"
#include "server/rpc/request_checks.h"

namespace ckpt::server {
namespace {
constexpr absl::string_view kRpc = "PutChunks";
// Reserved for a stream's first message, before its size is known, and the
// least reserved for any: the client library's message size
// (client/transport/grpc_transport.cc).
constexpr uint64_t kFirstMessageReservation = uint64_t{4} << 20;
}  // namespace

PutChunksReactor::PutChunksReactor(
    grpc::CallbackServerContext* context, CheckpointService* service,
    const StreamLimits& limits, Executor* executor, CallCounter* calls,
    UploadWatchdog* watchdog, UploadStreamQuota* stream_quota,
    UploadMemoryBudget* budget, absl::StatusOr<Principal> caller,
    v1::PutChunksResponse* response, Metrics* metrics)
    : context_(context),
      service_(service),
      limits_(limits),
      metrics_(metrics),
      executor_(executor),
      calls_(calls),
      watchdog_(watchdog),
      stream_quota_(stream_quota),
      budget_(budget),
      response_(response) {
  if (!caller.ok()) {
    {
      absl::MutexLock lock(&mu_);
      finished_ = true;
    }
    Finish(ToGrpcStatus(caller.status()));
    return;
  }
  caller_ = *std::move(caller);
  {
    absl::MutexLock lock(&mu_);
    waiting_since_ = absl::Now();
  }
  // Reactions (the watchdog's Finish included, and a StartRead from
  // BudgetGranted on another thread) wait until gRPC has bound the reactor,
  // after this constructor returns.
  watchdog_->Add(this);
  ReadNext(0);
}

void PutChunksReactor::ReadNext(int index) {
  uint64_t bytes;
  {
    absl::MutexLock lock(&mu_);
    read_index_ = index;
    // Never less than the first message's: a stream whose messages grow
    // (a small one, then 64 MiB ones) would otherwise reserve next to
    // nothing, have its read granted at once, and hold its large message
    // outside the budget; at 4 MiB at least, the reads granted at once
    // stay within upload_buffer_bytes / 4 MiB.
    bytes = std::max(largest_message_, kFirstMessageReservation);
    waiting_for_budget_ = true;
  }
  // Outside mu_: the budget may call other streams' BudgetGranted.
  if (budget_->Reserve(this, bytes)) StartReservedRead();
}

void PutChunksReactor::BudgetGranted() { StartReservedRead(); }

void PutChunksReactor::StartReservedRead() {
  int index = -1;
  {
    absl::MutexLock lock(&mu_);
    waiting_for_budget_ = false;
    if (!finished_) {
      index = read_index_;
      waiting_since_ = std::max(waiting_since_, absl::Now());
    }
  }
  if (index < 0) {
    budget_->ReadDone(this, 0);  // the call ended while this waited
    return;
  }
  StartRead(&buffers_[index]);
}

void PutChunksReactor::OnReadDone(bool ok) {
  int index;
  {
    absl::MutexLock lock(&mu_);
    index = read_index_;  // no other read starts before this one is handed on
  }
  // The buffer is this call's until it is handed to a driver below.
  const uint64_t charged = ok ? buffers_[index].ByteSizeLong() : 0;
  // The message's real size replaces the read's reservation (a larger one
  // was read all the same: it was in the transport already). Before the
  // hand-off: once a driver has it, it may reserve this stream's next read,
  // which this must not take for the one that just ended.
  budget_->ReadDone(this, charged);
  bool drive = false;
  {
    absl::MutexLock lock(&mu_);
    if (ok) {
      // Counted even for a read left outstanding by an early Finish: its
      // message is held until OnDone.
      held_bytes_[index] = charged;
      metrics_->UploadBufferedBytesChanged(static_cast<int64_t>(charged));
      largest_message_ = std::max(largest_message_, charged);
    }
    if (finished_) {
      // A read left outstanding by an early Finish.
    } else if (driving_) {
      parked_ = Parked{index, ok};
    } else {
      driving_ = true;
      drive = true;
    }
  }
  if (drive) SubmitDrive(index, ok);
}

void PutChunksReactor::OnCancel() {
  {
    absl::MutexLock lock(&mu_);
    // A read outstanding fails, and a driver checks for cancellation before
    // it lets go: only a stream waiting for the budget is ended here.
    if (finished_ || driving_ || !waiting_for_budget_) return;
    finished_ = true;
  }
  // Nothing drives: the driver's state is this thread's.
  CountBytesAdded();
  End(absl::CancelledError("PutChunks: cancelled by the client"));
}

// The callback API hands ownership of the reactor to gRPC until OnDone;
// this is the idiomatic place to free it.
void PutChunksReactor::OnDone() {
  // Registered unless the constructor refused the call; removing an
  // unregistered stream does nothing.
  watchdog_->Remove(this);
  // Waits out a BudgetGranted running on another thread for this stream.
  budget_->Cancel(this);
  Release(0);
  Release(1);
  calls_->Exit();
  // Pairs with End's section: gRPC's hand-off from Finish to OnDone runs in
  // its own core, where ThreadSanitizer cannot see it.
  { absl::MutexLock lock(&mu_); }
  delete this;
}

void PutChunksReactor::Release(int index) {
  // Clear() would keep every string's capacity: swap with an empty message.
  v1::PutChunksRequest().Swap(&buffers_[index]);
  uint64_t freed;
  {
    absl::MutexLock lock(&mu_);
    freed = held_bytes_[index];
    held_bytes_[index] = 0;
  }
  if (freed == 0) return;
  metrics_->UploadBufferedBytesChanged(-static_cast<int64_t>(freed));
  budget_->Release(freed);
}

void PutChunksReactor::SubmitDrive(int index, bool ok) {
  if (ok) {
    // The other buffer is free: its message was processed before the driver
    // role came here. Reading it now overlaps the wait for a thread too.
    ReadNext(1 - index);
  }
  if (executor_->Submit([this, index, ok] { Drive(index, ok); })) return;
  // Refused only once the server has shut down its executors.
  {
    absl::MutexLock lock(&mu_);
    finished_ = true;
  }
  End(ShuttingDown(kRpc));
}

bool PutChunksReactor::ClaimIfIdleSince(absl::Time cutoff) {
  absl::MutexLock lock(&mu_);
  // Waiting for the budget is the server's doing, not the client's.
  if (finished_ || driving_ || waiting_for_budget_ ||
      waiting_since_ >= cutoff) {
    return false;
  }
  finished_ = true;
  return true;
}

void PutChunksReactor::EndIdle() {
  // The driver role is free (the claim saw driving_ false and no driver can
  // start after it), so the task may touch the driver's state.
  auto end = [this] {
    CountBytesAdded();
    End(absl::DeadlineExceededError(absl::StrCat(
        "PutChunks: the client sent nothing for ",
        absl::FormatDuration(watchdog_->timeout()),
        " (the server's upload_idle_timeout_seconds, flag "
        "--upload-idle-timeout-seconds), so the stream was ended and its "
        "buffers freed; chunks stored before stay stored: upload the rest on "
        "a new stream")));
  };
  if (executor_->Submit(end)) return;
  End(ShuttingDown(kRpc));
}

void PutChunksReactor::End(const absl::Status& status) {
  // finished_ is set, so no later grant starts a read; one delivered before
  // may be starting it on another thread now (BudgetGranted saw finished_
  // false). Waiting it out keeps its StartRead before Finish: after, it
  // could come once OnDone has begun and the read complete on a deleted
  // reactor. Also withdraws a reservation still queued.
  budget_->Cancel(this);
  {
    // Given back before Finish, so a client that retries as soon as it has
    // the status finds the slot free; under mu_, which OnDone takes before
    // deleting the reactor on another thread.
    absl::MutexLock lock(&mu_);
    stream_slot_ = UploadStreamQuota::Slot();
  }
  Finish(ToGrpcStatus(status));  // last use of `this`
}

void PutChunksReactor::Drive(int index, bool ok) {
  absl::Status status;
  bool end = !ok;
  if (ok) {
    status = Process(buffers_[index]);
    end = !status.ok();
    // Free the message (its chunks may be tens of MiB) rather than keep it
    // for the next read into this buffer: a stalled client would pin it.
    Release(index);
  } else if (context_->IsCancelled()) {
    status = absl::CancelledError("PutChunks: cancelled by the client");
  }
  if (end) CountBytesAdded();
  std::optional<Parked> next;
  bool cancelled_while_waiting = false;
  {
    absl::MutexLock lock(&mu_);
    if (!end) {
      if (!parked_.has_value()) {
        // No read is outstanding to fail, and OnCancel may have found this
        // driver busy: end the stream here.
        if (waiting_for_budget_ && context_->IsCancelled()) {
          finished_ = true;
          cancelled_while_waiting = true;
        } else {
          driving_ = false;
          waiting_since_ = absl::Now();
          return;
        }
      } else {
        next = parked_;
        parked_.reset();
      }
    } else {
      finished_ = true;
      if (status.ok()) {
        response_->set_chunks_received(chunks_received_);
        response_->set_chunks_stored(chunks_stored_);
        response_->set_bytes_received(bytes_received_);
        response_->set_bytes_stored(bytes_stored_);
      }
    }
  }
  if (next.has_value()) {
    SubmitDrive(next->index, next->ok);
    return;
  }
  if (cancelled_while_waiting) {
    CountBytesAdded();
    status = absl::CancelledError("PutChunks: cancelled by the client");
  }
  // Last use of `this`: OnDone may run (and delete it) once Finish and any
  // still outstanding read have completed.
  End(status);
}

// Once, at the end of the stream (failed ones too: what they stored new
// stays stored): one metadata write for the whole upload. The figure is
// informational, so failing to record it does not fail the upload.
void PutChunksReactor::CountBytesAdded() {
  if (!step_.has_value() || bytes_stored_ == 0) return;
  absl::Status status = service_->AddBytesAdded(job_, *step_, bytes_stored_);
  if (!status.ok()) {
    CKPT_LOG(Warning, "PutChunks: bytes added by the upload for ", job_, "@",
             *step_, " not recorded: ", status.ToString());
  }
}

absl::Status PutChunksReactor::Process(const v1::PutChunksRequest& request) {
  if (job_.empty()) {
    if (request.job().empty()) {
      return InvalidRequest(kRpc, "the first message must name the job");
    }
    NoteJob(*context_, request.job());
    CKPT_RETURN_IF_ERROR(
        AuthorizeJob(caller_, kRpc, Role::kWriter, request.job()));
    CKPT_RETURN_IF_ERROR(CheckJob(kRpc, request.job()));
    if (request.has_step()) {
      CKPT_RETURN_IF_ERROR(CheckStep(kRpc, request.step()));
    }
    CKPT_ASSIGN_OR_RETURN(stream_slot_,
                          stream_quota_->Acquire(TenantOf(request.job())));
    if (request.has_step()) step_ = request.step();
    job_ = request.job();
  } else if (!request.job().empty() && request.job() != job_) {
    return InvalidRequest(
        kRpc,
        absl::StrCat("a message names job ", QuoteTruncated(request.job()),
                     " but the stream is for job '", job_, "'"));
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
      return InvalidRequest(kRpc,
                            absl::StrCat("chunk ", index, " (", id->ShortHex(),
                                         "): size must be 1..", kMaxChunkBytes,
                                         " bytes, got ", data.size()));
    }
    if (data.size() > limits_.max_upload_stream_bytes - bytes_received_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "PutChunks: chunk ", index,
          " would take the stream past the "
          "server's max_upload_stream_bytes (flag --max-upload-stream-bytes) "
          "of ",
          limits_.max_upload_stream_bytes, " bytes, after ", bytes_received_,
          " bytes; split the upload over several streams"));
    }
    ++chunks_received_;
    bytes_received_ += data.size();
    CKPT_ASSIGN_OR_RETURN(bool is_new, service_->PutChunk(job_, *id, data));
    metrics_->ChunkReceived(TenantOf(job_), data.size(), is_new);
    if (is_new) {
      ++chunks_stored_;
      bytes_stored_ += data.size();
    }
  }
  return absl::OkStatus();
}

}  // namespace ckpt::server
