// VerifyReactor: the server side of the VerifyCheckpoints server stream. A
// verify may read every stored byte, so it runs on the maintenance executor
// (never on a gRPC callback thread, nor on the request executor, whose
// threads ordinary calls need).
//
// Internal to server/rpc (GrpcCheckpointService::VerifyCheckpoints creates
// it).
#pragma once

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ckpt/v1/ckpt.grpc.pb.h"
#include "common/job_scope.h"
#include "common/verify.h"
#include "server/observability/metrics.h"
#include "server/rpc/call_counter.h"
#include "server/rpc/executor.h"
#include "server/rpc/verify_heartbeats.h"
#include "server/service/checkpoint_service.h"

namespace ckpt::server {

// The verify task sends progress when no write is in flight and at most
// every kVerifyProgressInterval (newer progress simply replaces what was not
// sent), then waits for the last progress write and writes the report
// together with Finish. From Start until then, `heartbeats` makes it send a
// heartbeat every interval when no write is in flight, while the verify
// waits for a maintenance thread or works without progress to report. A failed
// write or a cancelled call (the client left, or shutdown cancelled it) makes
// the next progress callback stop the verify; a call cancelled while it waited
// for a thread does not start.
//
// Lifetime (callback API): owned by gRPC from creation until OnDone, which
// deletes it. Finish is called exactly once: by Start when refusing, else by
// the verify task as its last use of `this`.
class VerifyReactor final
    : public grpc::ServerWriteReactor<v1::VerifyResponse> {
 public:
  static constexpr absl::Duration kProgressInterval = absl::Milliseconds(200);

  // `calls` has counted this call in. All pointers outlive the call.
  VerifyReactor(grpc::CallbackServerContext* context,
                CheckpointService* service, Executor* executor,
                VerifyHeartbeats* heartbeats, CallCounter* calls,
                Metrics* metrics)
      : context_(context),
        service_(service),
        metrics_(metrics),
        executor_(executor),
        heartbeats_(heartbeats),
        calls_(calls) {
    heartbeat_.mutable_heartbeat();
  }

  // Called once by the handler: finishes at once with a non-OK `refusal`,
  // else queues the verify on the executor; without a job it covers the
  // jobs in `scope` (the caller's).
  void Start(const absl::Status& refusal, VerifyOptions options,
             JobScope scope);

  void OnWriteDone(bool ok) override;
  // The verify task polls for it in each progress callback.
  void OnCancel() override {}
  void OnDone() override;

 private:
  void Run(const VerifyOptions& options, const JobScope& scope);
  absl::Status Send(const VerifyProgress& progress);
  // On the heartbeats' thread; never blocks.
  void Beat();
  // Before Finish: no heartbeat starts any more, and no write is in flight.
  void StopWrites();

  grpc::CallbackServerContext* const context_;
  CheckpointService* const service_;
  Metrics* const metrics_;
  Executor* const executor_;
  VerifyHeartbeats* const heartbeats_;
  CallCounter* const calls_;
  uint64_t heartbeat_id_ = 0;     // set in Start, before the task is queued
  v1::VerifyResponse heartbeat_;  // never changed once built
  // Touched by the verify task only, and by gRPC while a write of it is in
  // flight.
  v1::VerifyResponse progress_;
  v1::VerifyResponse last_;

  absl::Mutex mu_;
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool client_gone_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time next_progress_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace ckpt::server
