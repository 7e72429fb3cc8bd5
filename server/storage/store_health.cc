#include "server/storage/store_health.h"

#include "common/logging.h"

namespace ckpt::server {

void BackgroundErrorTracker::OnBackgroundError(
    rocksdb::BackgroundErrorReason reason, rocksdb::Status* error) {
  if (error->ok()) return;
  if (error->severity() < rocksdb::Status::Severity::kHardError) {
    *error = rocksdb::Status(*error, rocksdb::Status::Severity::kHardError);
  }
  CKPT_LOG(Error, "RocksDB stopped writing on a background error (reason ",
           static_cast<int>(reason), ", severity ",
           static_cast<int>(error->severity()), "): ", error->ToString());
  absl::MutexLock lock(&mu_);
  ++generation_;
  // The first error is the cause; later ones (e.g. of a failed recovery)
  // only replace it once it was cleared.
  if (!error_.has_value()) error_ = *error;
}

void BackgroundErrorTracker::OnErrorRecoveryBegin(
    rocksdb::BackgroundErrorReason, rocksdb::Status error,
    bool* auto_recovery) {
  error.PermitUncheckedError();
  *auto_recovery = false;
}

void BackgroundErrorTracker::OnErrorRecoveryEnd(
    const rocksdb::BackgroundErrorRecoveryInfo& info) {
  if (!info.new_bg_error.ok()) return;
  absl::MutexLock lock(&mu_);
  error_.reset();
}

std::optional<rocksdb::Status> BackgroundErrorTracker::error() const {
  absl::MutexLock lock(&mu_);
  return error_;
}

uint64_t BackgroundErrorTracker::generation() const {
  absl::MutexLock lock(&mu_);
  return generation_;
}

void BackgroundErrorTracker::ClearUnlessNewer(uint64_t generation) {
  absl::MutexLock lock(&mu_);
  if (generation_ == generation) error_.reset();
}

BoundedResume::~BoundedResume() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](bool* running) { return !*running; }, &running_));
  if (thread_.joinable()) thread_.join();
}

std::optional<rocksdb::Status> BoundedResume::Resume(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  if (!running_) {
    // The last one finished (it cleared running_ under mu_, which we now
    // hold), so this join returns at once.
    if (thread_.joinable()) thread_.join();
    running_ = true;
    thread_ = std::thread([this] {
      rocksdb::Status status = db_->Resume();
      absl::MutexLock done(&mu_);
      result_ = std::move(status);
      running_ = false;
    });
  }
  if (!mu_.AwaitWithTimeout(
          absl::Condition(
              +[](bool* running) { return !*running; }, &running_),
          timeout)) {
    return std::nullopt;
  }
  return result_;
}

}  // namespace ckpt::server
