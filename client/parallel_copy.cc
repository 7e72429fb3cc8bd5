#include "client/parallel_copy.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "common/thread_group.h"

namespace ckpt::client {
namespace {

constexpr int kMaxDefaultThreads = 8;

}  // namespace

int CopyThreads(int threads) {
  if (threads > 0) return threads;
  const int hardware = static_cast<int>(std::thread::hardware_concurrency());
  return std::clamp(hardware, 1, kMaxDefaultThreads);
}

void ParallelCopy(absl::Span<const CopySpan> spans, int threads) {
  std::vector<CopySpan> pieces;
  for (const CopySpan& span : spans) {
    for (size_t offset = 0; offset < span.size; offset += kCopyPieceBytes) {
      pieces.push_back({span.dst + offset, span.src + offset,
                        std::min(kCopyPieceBytes, span.size - offset)});
    }
  }
  std::atomic<size_t> next{0};
  auto work = [&pieces, &next] {
    for (size_t i = next.fetch_add(1); i < pieces.size();
         i = next.fetch_add(1)) {
      std::memcpy(pieces[i].dst, pieces[i].src, pieces[i].size);
    }
  };
  const size_t helpers =
      std::min(pieces.size(), static_cast<size_t>(CopyThreads(threads))) -
      (pieces.empty() ? 0 : 1);
  // Joined on every way out. A helper the system cannot start is no error:
  // the threads that did start, the caller's among them, take its pieces.
  ThreadGroup pool;
  for (size_t i = 0; i < helpers; ++i) {
    if (!pool.Spawn(work).ok()) break;
  }
  work();
}

}  // namespace ckpt::client
