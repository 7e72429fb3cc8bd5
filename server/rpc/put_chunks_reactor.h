// PutChunksReactor: the server side of the PutChunks client stream. Each
// message's chunks are checked, hashed and stored by the service on the
// request executor, never on a gRPC callback thread.
//
// Internal to server/rpc (GrpcCheckpointService::PutChunks creates it).
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ckpt/v1/ckpt.grpc.pb.h"
#include "server/auth/principal.h"
#include "server/observability/metrics.h"
#include "server/rpc/call_counter.h"
#include "server/rpc/executor.h"
#include "server/rpc/stream_limits.h"
#include "server/rpc/upload_memory_budget.h"
#include "server/rpc/upload_watchdog.h"
#include "server/service/checkpoint_service.h"
#include "server/service/upload_stream_quota.h"

namespace ckpt::server {

// Two request buffers alternate: as soon as a message has arrived, the read
// of the next one is started into the other buffer and only then is the
// current one processed (on the executor), so network receive overlaps
// hashing. Only one read is ever outstanding. Before a read starts, room for
// its message is reserved in the server-wide UploadMemoryBudget (the
// stream's largest message so far, 4 MiB at least); while there is
// none the stream waits without reading, and is not idle meanwhile.
//
// Reactions may run concurrently on different threads (gRPC does not
// serialize them), so one task at a time "drives" (processes a message); a
// read that completes while a message is being processed is parked in
// `parked_`, and the driver submits a task for it when done. One message per
// task: a stream goes back in line after each, so a busy stream cannot hold
// a thread while other calls wait. mu_ is never held across a service call,
// a gRPC operation or Submit.
//
// Each message's buffer is freed as soon as it has been processed, so a
// stream waiting for its client holds no message memory (only the budget
// reserved for the read). The bytes of the
// messages held (arrived, not yet freed) are counted in
// Metrics::UploadBufferedBytesChanged, so a cancelled stream's release shows. A
// stream that waits longer than StreamLimits::upload_idle_timeout is ended by
// the UploadWatchdog (EndIdle) with DEADLINE_EXCEEDED. The first message's job
// takes a slot of its tenant's UploadStreamQuota, held until the stream
// ends.
//
// Lifetime (callback API): owned by gRPC from creation until OnDone, which
// deletes it. Finish is called exactly once, by the driver (or the
// constructor when refusing, or EndIdle once the watchdog claimed it);
// nothing touches `this` after it.
class PutChunksReactor final
    : public grpc::ServerReadReactor<v1::PutChunksRequest>,
      public IdleStream,
      public UploadMemoryBudget::Waiter {
 public:
  // `calls` has counted this call in. `caller` is the authenticated
  // principal, whose scope must cover the stream's job, or why the call is
  // refused (shutting down, bad credentials, role): it then finishes at once
  // with that status. All pointers outlive the call.
  PutChunksReactor(grpc::CallbackServerContext* context,
                   CheckpointService* service, const StreamLimits& limits,
                   Executor* executor, CallCounter* calls,
                   UploadWatchdog* watchdog, UploadStreamQuota* stream_quota,
                   UploadMemoryBudget* budget, absl::StatusOr<Principal> caller,
                   v1::PutChunksResponse* response, Metrics* metrics);

  // IdleStream: idle while no message is being processed and none has
  // arrived since `cutoff`.
  bool ClaimIfIdleSince(absl::Time cutoff) override;
  void EndIdle() override;

  // UploadMemoryBudget::Waiter: starts the read that waited for room.
  void BudgetGranted() override;

  void OnReadDone(bool ok) override;
  // Cancellation makes the outstanding read fail, which finishes the call
  // through the normal path; Process checks IsCancelled() to stop work on
  // the current message early. With no read outstanding (waiting for the
  // budget) and no message being processed, it finishes the call here.
  void OnCancel() override;
  void OnDone() override;

 private:
  struct Parked {
    int index;
    bool ok;
  };

  // Reserves room for the next message and reads it into buffers_[index],
  // now or once the budget grants the room.
  void ReadNext(int index);
  // Starts the read of a granted reservation, or gives it back when the
  // call has finished meanwhile.
  void StartReservedRead();
  // Hands the driver role to a task for buffers_[index] (or the end of the
  // stream when !ok). The caller holds the driver role.
  void SubmitDrive(int index, bool ok);
  // On the executor: processes one message (or the end), then passes the
  // driver role to a parked read or releases it, or finishes the call.
  void Drive(int index, bool ok);
  // Frees buffers_[index] and gives its bytes back to the buffered gauge
  // and the budget.
  // The caller holds the driver role (or the call is done).
  void Release(int index);
  // Once, at the end of the stream: records the upload's bytes_added.
  void CountBytesAdded();
  // The end of the stream: withdraws its budget reservation (waiting out a
  // BudgetGranted that is starting a read, so that no read starts after
  // Finish), gives back the tenant's stream slot, then finishes the call
  // (the last use of `this`).
  void End(const absl::Status& status);
  absl::Status Process(const v1::PutChunksRequest& request);

  grpc::CallbackServerContext* const context_;
  CheckpointService* const service_;
  const StreamLimits limits_;
  Metrics* const metrics_;
  Executor* const executor_;
  CallCounter* const calls_;
  UploadWatchdog* const watchdog_;
  UploadStreamQuota* const stream_quota_;
  UploadMemoryBudget* const budget_;
  v1::PutChunksResponse* const response_;

  // Touched only by the driver; the driver role is handed over under mu_
  // (or by Submit, which orders the accesses too).
  v1::PutChunksRequest buffers_[2];
  Principal caller_;
  std::string job_;
  std::optional<int64_t> step_;  // the pending checkpoint uploaded for
  uint64_t chunks_received_ = 0;
  uint64_t chunks_stored_ = 0;
  uint64_t bytes_received_ = 0;
  uint64_t bytes_stored_ = 0;
  UploadStreamQuota::Slot stream_slot_;  // once the first message named a job

  absl::Mutex mu_;
  int read_index_ ABSL_GUARDED_BY(mu_) = 0;  // buffer of the outstanding read
  bool driving_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<Parked> parked_ ABSL_GUARDED_BY(mu_);
  // Per buffer: the bytes of the message it holds, as counted in the
  // buffered gauge and the budget (0: none; the budget itself keeps a
  // read's reservation).
  uint64_t held_bytes_[2] ABSL_GUARDED_BY(mu_) = {0, 0};
  // The largest message of the stream so far (0: none yet).
  uint64_t largest_message_ ABSL_GUARDED_BY(mu_) = 0;
  // A read of buffers_[read_index_] waits for the budget to grant this.
  bool waiting_for_budget_ ABSL_GUARDED_BY(mu_) = false;
  // When the stream last started waiting for its client: its start, or the
  // end of the last message's processing.
  absl::Time waiting_since_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ckpt::server
