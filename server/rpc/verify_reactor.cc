#include "server/rpc/verify_reactor.h"

#include <utility>

#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "common/wire_format.h"
#include "server/rpc/request_checks.h"

namespace ckpt::server {

void VerifyReactor::Start(const absl::Status& refusal, VerifyOptions options,
                          JobScope scope) {
  if (!refusal.ok()) {
    Finish(ToGrpcStatus(refusal));  // last use of `this`
    return;
  }
  heartbeat_id_ = heartbeats_->Add([this] { Beat(); });
  if (executor_->Submit([this, options = std::move(options),
                         scope = std::move(scope)] { Run(options, scope); })) {
    return;
  }
  // Refused only once the server has shut down its executors.
  StopWrites();
  Finish(ToGrpcStatus(ShuttingDown("VerifyCheckpoints")));
}

void VerifyReactor::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  write_in_flight_ = false;
  if (!ok) client_gone_ = true;
}

// The callback API hands ownership of the reactor to gRPC until OnDone;
// this is the idiomatic place to free it.
void VerifyReactor::OnDone() {
  calls_->Exit();
  delete this;
}

void VerifyReactor::Run(const VerifyOptions& options, const JobScope& scope) {
  // A call that gave up while it waited in line costs nothing more.
  if (context_->IsCancelled()) {
    StopWrites();
    Finish(ToGrpcStatus(
        absl::CancelledError("VerifyCheckpoints: the call was cancelled")));
    return;  // last use of `this`
  }
  absl::StatusOr<VerifyReport> report = service_->Verify(
      options,
      [this](const VerifyProgress& progress) { return Send(progress); }, scope);
  StopWrites();
  if (!report.ok()) {
    Finish(ToGrpcStatus(report.status()));  // last use of `this`
    return;
  }
  ToProto(*report, last_.mutable_report());
  // Last use of `this`: OnDone may delete it once this completes.
  StartWriteAndFinish(&last_, grpc::WriteOptions(), grpc::Status::OK);
}

void VerifyReactor::StopWrites() {
  heartbeats_->Remove(heartbeat_id_);
  absl::MutexLock lock(&mu_);
  auto no_write_in_flight = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !write_in_flight_;
  };
  mu_.Await(absl::Condition(&no_write_in_flight));
}

void VerifyReactor::Beat() {
  {
    absl::MutexLock lock(&mu_);
    // A write in flight tells the client enough; a gone client needs none.
    if (write_in_flight_ || client_gone_) return;
    write_in_flight_ = true;
  }
  StartWrite(&heartbeat_);
}

absl::Status VerifyReactor::Send(const VerifyProgress& progress) {
  metrics_->VerifyProgressed(progress.chunks_done, progress.chunks_total,
                             progress.bytes_done, progress.bytes_total);
  const absl::Time now = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    if (client_gone_ || context_->IsCancelled()) {
      return absl::CancelledError("VerifyCheckpoints: the call was cancelled");
    }
    if (write_in_flight_ || now < next_progress_) return absl::OkStatus();
    write_in_flight_ = true;
    next_progress_ = now + kProgressInterval;
  }
  // No write uses progress_ now: the last one has completed.
  ToProto(progress, progress_.mutable_progress());
  StartWrite(&progress_);
  return absl::OkStatus();
}

}  // namespace ckpt::server
