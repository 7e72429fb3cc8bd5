// BlockingChunkStore (test code only): forwards every call to a ChunkStore
// (ChunkStoreWrapper), except that calls of an operation a test has blocked
// wait at the door until it releases them. A test holds a GC or a verify in the
// middle of its work this way, deterministically, with no sleeps. Unlike
// FaultInjectingStore (which fails calls), it delays them.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/storage/store_wrappers.h"

namespace ckpt::server::testing {

// Thread-safe. `base` must outlive it.
class BlockingChunkStore final : public ChunkStoreWrapper {
 public:
  enum class Op : size_t { kForEach, kContains, kGet, kReadVerified, kCount };

  explicit BlockingChunkStore(ChunkStore* base) : ChunkStoreWrapper(base) {}

  // From now on, calls of `op` wait until Release(op).
  void Block(Op op) {
    absl::MutexLock lock(&mu_);
    blocked_[Index(op)] = true;
  }
  // Lets the waiting calls of `op`, and later ones, through.
  void Release(Op op) {
    absl::MutexLock lock(&mu_);
    blocked_[Index(op)] = false;
  }
  // From now on, calls of `op` take `delay` longer: a slow disk, for tests
  // that need an operation to last (not for synchronization).
  void SetDelay(Op op, absl::Duration delay) {
    absl::MutexLock lock(&mu_);
    delays_[Index(op)] = delay;
  }

  // Waits until `count` calls of `op` wait at the door.
  void AwaitWaiting(Op op, int count) {
    auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return waiting_[Index(op)] >= count;
    };
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&reached));
  }

  absl::StatusOr<std::string> Get(absl::string_view tenant,
                                  const ChunkId& id) override {
    Door(Op::kGet);
    return ChunkStoreWrapper::Get(tenant, id);
  }
  absl::Status ReadVerified(
      absl::string_view tenant, const ChunkId& id,
      absl::FunctionRef<absl::Status(absl::string_view bytes)> consume)
      override {
    Door(Op::kReadVerified);
    return ChunkStoreWrapper::ReadVerified(tenant, id, consume);
  }
  // Sizes, Contains and MarkUsed (FindMissingChunks') share the kContains
  // door: all ask which chunks are stored.
  absl::StatusOr<std::vector<std::optional<uint64_t>>> Sizes(
      absl::string_view tenant, absl::Span<const ChunkId> ids) override {
    Door(Op::kContains);
    return ChunkStoreWrapper::Sizes(tenant, ids);
  }
  absl::StatusOr<std::vector<bool>> Contains(
      absl::string_view tenant, absl::Span<const ChunkId> ids) override {
    Door(Op::kContains);
    return ChunkStoreWrapper::Contains(tenant, ids);
  }
  absl::StatusOr<std::vector<bool>> MarkUsed(
      absl::string_view tenant, absl::Span<const ChunkId> ids) override {
    Door(Op::kContains);
    return ChunkStoreWrapper::MarkUsed(tenant, ids);
  }
  absl::Status ForEach(
      absl::string_view tenant,
      absl::FunctionRef<absl::Status(absl::string_view tenant,
                                     const ChunkId& id, uint64_t size)>
          fn) override {
    Door(Op::kForEach);
    return ChunkStoreWrapper::ForEach(tenant, fn);
  }

 private:
  static size_t Index(Op op) { return static_cast<size_t>(op); }

  // Returns at once unless `op` is blocked; else waits for Release.
  void Door(Op op) {
    const size_t i = Index(op);
    absl::Duration delay;
    {
      absl::MutexLock lock(&mu_);
      delay = delays_[i];
    }
    if (delay > absl::ZeroDuration()) absl::SleepFor(delay);
    auto open = [&]()
                    ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !blocked_[i]; };
    absl::MutexLock lock(&mu_);
    ++waiting_[i];
    mu_.Await(absl::Condition(&open));
    --waiting_[i];
  }

  absl::Mutex mu_;
  std::array<bool, static_cast<size_t>(Op::kCount)> blocked_
      ABSL_GUARDED_BY(mu_) = {};
  std::array<int, static_cast<size_t>(Op::kCount)> waiting_
      ABSL_GUARDED_BY(mu_) = {};
  std::array<absl::Duration, static_cast<size_t>(Op::kCount)> delays_
      ABSL_GUARDED_BY(mu_) = {};
};

}  // namespace ckpt::server::testing
