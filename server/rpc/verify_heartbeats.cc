#include "server/rpc/verify_heartbeats.h"

#include <algorithm>
#include <utility>

#include "absl/time/clock.h"

namespace ckpt::server {

VerifyHeartbeats::VerifyHeartbeats(absl::Duration interval)
    : interval_(interval) {
  if (interval_ != absl::InfiniteDuration()) {
    thread_ = std::thread([this] { Run(); });
  }
}

VerifyHeartbeats::~VerifyHeartbeats() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

uint64_t VerifyHeartbeats::Add(std::function<void()> beat) {
  absl::MutexLock lock(&mu_);
  const uint64_t id = next_id_++;
  beats_.emplace(id, std::move(beat));
  return id;
}

void VerifyHeartbeats::Remove(uint64_t id) {
  absl::MutexLock lock(&mu_);
  beats_.erase(id);
}

void VerifyHeartbeats::Run() {
  absl::MutexLock lock(&mu_);
  absl::Time next = absl::Now() + interval_;
  while (!mu_.AwaitWithDeadline(absl::Condition(&stopping_), next)) {
    // Every registration beats at least every interval (one registered just
    // before a tick beats sooner, which is harmless).
    for (auto& [id, beat] : beats_) beat();
    next = std::max(next + interval_, absl::Now());
  }
}

}  // namespace ckpt::server
