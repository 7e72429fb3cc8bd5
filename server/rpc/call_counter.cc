#include "server/rpc/call_counter.h"

namespace ckpt::server {

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

}  // namespace ckpt::server
