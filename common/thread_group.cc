#include "common/thread_group.h"

#include <cerrno>
#include <new>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"

namespace ckpt {
namespace {

// Threads Spawn may still create on this thread (ScopedSpawnLimitForTesting);
// negative: no limit.
thread_local int spawn_allowance = -1;

}  // namespace

absl::Status ThreadGroup::Spawn(absl::AnyInvocable<void()> body) {
  try {
    if (spawn_allowance == 0) {
      throw std::system_error(EAGAIN, std::generic_category(),
                              "thread creation refused by a test");
    }
    threads_.emplace_back(std::move(body));
  } catch (const std::system_error& error) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot start a thread (", threads_.size(),
                     " started for this call): ", error.what()));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot start a thread (", threads_.size(),
                     " started for this call): out of memory"));
  }
  if (spawn_allowance > 0) --spawn_allowance;
  return absl::OkStatus();
}

void ThreadGroup::JoinAll() {
  for (std::thread& thread : threads_) thread.join();
  threads_.clear();
}

ScopedSpawnLimitForTesting::ScopedSpawnLimitForTesting(int allowed) {
  spawn_allowance = allowed < 0 ? 0 : allowed;
}

ScopedSpawnLimitForTesting::~ScopedSpawnLimitForTesting() {
  spawn_allowance = -1;
}

}  // namespace ckpt
