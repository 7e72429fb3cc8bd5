// Work spread over a few threads whose results are taken in order:
// OrderedParallelFor, for jobs such as verify that read and hash many
// independent items but must report (progress, errors, findings) exactly
// as a one-thread loop would.
#pragma once

#include <cstddef>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"

namespace ckpt {

// Runs work(i) for every i in [0, count) on up to `threads` threads, and
// calls deliver(i) on the calling thread in ascending i, each once work(i)
// has returned; deliver(i) sees everything work(i) wrote. At most
// 2 × threads items are started and not yet delivered, so per-item results
// held for delivery stay bounded.
//
// A non-OK status from deliver stops the run: no further item starts, the
// ones in flight finish (their deliver is not called), every thread has
// ended when it returns, and that status is returned. The delivered prefix
// and the status are therefore the same whatever `threads` is.
//
// threads <= 1 (or count <= 1) runs work(i), deliver(i) alternately on the
// calling thread, starting no thread. When the system cannot create as many
// threads as asked, the run goes on with those it could (on the calling
// thread alone when none), with the same result.
//
// A callback that throws (std::bad_alloc, say) ends the run as it would a
// one-thread loop: the items before it are delivered, no further item
// starts, every thread is joined, and the exception reaches the caller.
//
// REQUIRES: work(i) touches only item i's own state (and thread-safe
// objects).
absl::Status OrderedParallelFor(
    size_t count, int threads, absl::FunctionRef<void(size_t)> work,
    absl::FunctionRef<absl::Status(size_t)> deliver);

// The machine's hardware threads (std::thread::hardware_concurrency), at
// least 1: the default of options that say "0: every core".
int HardwareThreads();

}  // namespace ckpt
