#include "client/copy_transfer.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace ckpt::client {
namespace {

// Chunks [begin, end) of a transfer, `bytes` in all.
struct Batch {
  size_t begin = 0;
  size_t end = 0;
  uint64_t bytes = 0;
};

std::vector<Batch> SplitIntoBatches(absl::Span<const ChunkToCopy> chunks,
                                    uint64_t batch_bytes) {
  std::vector<Batch> batches;
  Batch batch;
  for (size_t i = 0; i < chunks.size(); ++i) {
    batch.bytes += chunks[i].size;
    batch.end = i + 1;
    if (batch.bytes >= batch_bytes) {
      batches.push_back(batch);
      batch = Batch{i + 1, i + 1, 0};
    }
  }
  if (batch.end > batch.begin) batches.push_back(batch);
  return batches;
}

absl::Status WithPrefix(absl::string_view prefix, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(prefix, status.message()));
}

// One batch read from the source into one buffer, each chunk's bytes
// checked against its id.
// `on_chunk` runs as each chunk arrives.
absl::StatusOr<std::unique_ptr<char[]>> ReadBatch(
    Transport& source, absl::string_view job,
    absl::Span<const ChunkToCopy> chunks, uint64_t bytes,
    const std::function<void()>& on_chunk) {
  // Bounded: each size is at most kMaxChunkBytes (REQUIRES), and a batch
  // closes at the first chunk that reaches batch_bytes.
  auto buffer = std::make_unique_for_overwrite<char[]>(bytes);
  std::vector<ChunkSink> sinks;
  sinks.reserve(chunks.size());
  uint64_t offset = 0;
  for (const ChunkToCopy& chunk : chunks) {
    sinks.push_back(ChunkSink{chunk.id, chunk.size, {buffer.get() + offset}});
    offset += chunk.size;
  }
  // Each chunk is hashed as it arrives, while the source streams the next.
  size_t arrived = 0;
  offset = 0;
  absl::Status mismatch;
  absl::Status read = source.ReadChunks(job, sinks, [&](uint64_t /*size*/) {
    if (arrived == chunks.size()) return;  // a transport calling too often
    on_chunk();
    const ChunkToCopy& chunk = chunks[arrived++];
    const ChunkId actual =
        Sha256(absl::string_view(buffer.get() + offset, chunk.size));
    offset += chunk.size;
    if (actual != chunk.id && mismatch.ok()) {
      mismatch = absl::DataLossError(absl::StrCat(
          "the source server answered chunk ", chunk.id.ToHex(), " with ",
          chunk.size, " bytes that hash to ", actual.ToHex(),
          ": its data is damaged or it is not to be trusted; nothing of "
          "them was sent"));
    }
  });
  if (!read.ok()) {
    return WithPrefix("reading chunks from the source: ", read);
  }
  CKPT_RETURN_IF_ERROR(mismatch);
  if (arrived != chunks.size()) {
    return absl::InternalError(
        absl::StrCat("reading chunks from the source: ", arrived, " of ",
                     chunks.size(), " chunks were delivered"));
  }
  return buffer;
}

using BatchBytes = absl::StatusOr<std::unique_ptr<char[]>>;

// One batch read on a thread of its own, while the caller sends the one
// before. Destruction waits for the read to end.
class BatchRead {
 public:
  // `read` calls its argument as each chunk arrives.
  explicit BatchRead(
      std::function<BatchBytes(const std::function<void()>&)> read)
      : thread_([this, read = std::move(read)] {
          BatchBytes bytes = read([this] {
            absl::MutexLock lock(&mu_);
            last_progress_ = absl::Now();
          });
          absl::MutexLock lock(&mu_);
          bytes_ = std::move(bytes);
          done_ = true;
        }) {}
  ~BatchRead() { thread_.join(); }
  BatchRead(const BatchRead&) = delete;
  BatchRead& operator=(const BatchRead&) = delete;

  // Whether the read ended within `limit`.
  bool WaitFor(absl::Duration limit) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&done_), limit);
  }
  // When the read began or last received a chunk.
  absl::Time last_progress() {
    absl::MutexLock lock(&mu_);
    return last_progress_;
  }
  // The bytes read, or the read's error. REQUIRES: WaitFor returned true.
  BatchBytes Take() {
    absl::MutexLock lock(&mu_);
    return std::move(bytes_);
  }

 private:
  absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_progress_ ABSL_GUARDED_BY(mu_) = absl::Now();
  BatchBytes bytes_ ABSL_GUARDED_BY(mu_) = absl::UnknownError("not read");
  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace

RatePacer::RatePacer(uint64_t bytes_per_second, Clock* clock)
    : bytes_per_second_(bytes_per_second), clock_(clock) {}

absl::Duration RatePacer::Reserve(uint64_t bytes) {
  if (bytes_per_second_ == 0) return absl::ZeroDuration();
  const absl::Time now = clock_->Now();
  if (next_free_ < now) next_free_ = now;
  const absl::Duration wait = next_free_ - now;
  next_free_ += absl::Seconds(static_cast<double>(bytes) /
                              static_cast<double>(bytes_per_second_));
  return wait;
}

absl::Status TransferChunks(Transport& source, absl::string_view source_job,
                            absl::Span<const ChunkToCopy> chunks,
                            ChunkUploadStream& upload,
                            const TransferOptions& options) {
  const std::vector<Batch> batches =
      SplitIntoBatches(chunks, options.batch_bytes);
  if (batches.empty()) return absl::OkStatus();
  auto read = [&source, source_job, chunks, &batches](
                  size_t b, const std::function<void()>& on_chunk) {
    const Batch& batch = batches[b];
    return ReadBatch(source, source_job,
                     chunks.subspan(batch.begin, batch.end - batch.begin),
                     batch.bytes, on_chunk);
  };
  // Waits until `until` or until `ready` (given how long it may block, at
  // most a minute) says so, calling keep_alive whenever it is due
  // meanwhile: a slow source or a low rate limit must not let the target
  // checkpoint's lease run out.
  absl::Time last_keep_alive = absl::Now();
  auto wait_alive = [&](absl::Time until,
                        const std::function<bool(absl::Duration)>& ready) {
    for (;;) {
      const absl::Time due = last_keep_alive + options.keep_alive_interval;
      if (options.keep_alive && absl::Now() >= due) {
        CKPT_RETURN_IF_ERROR(options.keep_alive());
        last_keep_alive = absl::Now();
        continue;
      }
      const absl::Time wake = std::min({until, options.keep_alive ? due : until,
                                        absl::Now() + absl::Minutes(1)});
      if (ready(std::max(wake - absl::Now(), absl::ZeroDuration())) ||
          absl::Now() >= until) {
        return absl::OkStatus();
      }
    }
  };
  // Declared after what its thread uses: on an early return, its
  // destructor waits for the read in flight while those still exist.
  std::unique_ptr<BatchRead> next = std::make_unique<BatchRead>(
      [&read](const std::function<void()>& on_chunk) {
        return read(0, on_chunk);
      });
  for (size_t b = 0; b < batches.size(); ++b) {
    // Until the batch is read, renewing the lease only while the source
    // makes progress: a stalled source must not keep the target's pending
    // checkpoint alive forever (its lease then ends it).
    bool stalled = false;
    CKPT_RETURN_IF_ERROR(
        wait_alive(absl::InfiniteFuture(), [&](absl::Duration limit) {
          if (next->WaitFor(absl::ZeroDuration())) return true;
          const absl::Time stall_at =
              next->last_progress() + options.source_stall_timeout;
          if (absl::Now() >= stall_at) {
            stalled = true;
            return true;
          }
          return next->WaitFor(std::min(limit, stall_at - absl::Now()));
        }));
    if (stalled) {
      // The destructor still waits for the read, which the transport
      // bounds (ConnectOptions::stream_stall_timeout); the lease is no
      // longer renewed meanwhile.
      return absl::DeadlineExceededError(absl::StrCat(
          "reading chunks from the source: ", options.source_label,
          " sent nothing for ",
          absl::FormatDuration(options.source_stall_timeout),
          ": it is stalled; the copy stopped renewing the target's pending "
          "checkpoint (rerun the copy to resume once the source answers)"));
    }
    BatchBytes current = next->Take();
    CKPT_RETURN_IF_ERROR(current.status());
    next.reset();
    if (b + 1 < batches.size()) {
      next = std::make_unique<BatchRead>(
          [&read, b](const std::function<void()>& on_chunk) {
            return read(b + 1, on_chunk);
          });
    }
    const char* data = current->get();
    for (size_t i = batches[b].begin; i < batches[b].end; ++i) {
      const ChunkToCopy& chunk = chunks[i];
      if (options.pacer != nullptr) {
        CKPT_RETURN_IF_ERROR(
            wait_alive(absl::Now() + options.pacer->Reserve(chunk.size),
                       [](absl::Duration limit) {
                         absl::SleepFor(limit);
                         return false;
                       }));
      }
      absl::Status added =
          upload.Add(chunk.id, absl::string_view(data, chunk.size));
      if (!added.ok()) {
        return WithPrefix("sending chunks to the target: ", added);
      }
      data += chunk.size;
      if (options.on_sent) options.on_sent(chunk.size);
    }
  }
  return absl::OkStatus();
}

}  // namespace ckpt::client
