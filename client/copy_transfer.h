// The byte-moving half of a copy between servers (client/copy.h): reads
// chunks from the source server in batches and adds them to an upload to
// the target server, reading the next batch while the current one is sent,
// so that the copy's memory stays at two batches. Each chunk read is
// checked against its id (SHA-256) before it is sent: a source answering
// other bytes is DATA_LOSS naming the source, where the target's refusal
// (it re-hashes too) would blame the copy. The plan (what to send, when to
// commit) is copy.cc's.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "client/transport.h"
#include "common/chunk_id.h"
#include "common/clock.h"

namespace ckpt::client {

// Spaces sends out to at most a byte rate (`ckpt copy --limit-rate`):
// Reserve(n) books n bytes and says how long to wait before sending them,
// so that the bytes booked since the first never run ahead of the rate by
// more than one send. A pause (a read, a commit) earns no burst. Not
// thread-safe.
class RatePacer {
 public:
  // bytes_per_second 0: no limit (Reserve always says zero).
  RatePacer(uint64_t bytes_per_second, Clock* clock);
  absl::Duration Reserve(uint64_t bytes);

 private:
  const uint64_t bytes_per_second_;
  Clock* const clock_;
  absl::Time next_free_ = absl::InfinitePast();
};

// One chunk to copy, with its size as the source's manifest gives it.
struct ChunkToCopy {
  ChunkId id;
  uint64_t size = 0;
};

struct TransferOptions {
  // Chunk bytes read per batch (a batch closes at the first chunk that
  // reaches it). REQUIRES: > 0.
  uint64_t batch_bytes = uint64_t{64} << 20;
  // Paces every chunk added; null: no limit.
  RatePacer* pacer = nullptr;
  // Called (on the calling thread) after each chunk is added to the
  // upload, with its size.
  std::function<void(uint64_t)> on_sent;
  // Called between chunks at most once per keep_alive_interval (e.g. to
  // renew the target checkpoint's lease); its error ends the transfer.
  std::function<absl::Status()> keep_alive;
  absl::Duration keep_alive_interval = absl::Minutes(1);
  // A source that delivers no chunk for this long ends the transfer with
  // DEADLINE_EXCEEDED, and keep_alive is not called meanwhile; the error
  // is returned once the read in flight ends (the transport bounds it).
  absl::Duration source_stall_timeout = absl::Minutes(2);
  // The source as the stall error names it (e.g. its address).
  std::string source_label = "the source server";
};

// Reads `chunks` of `source_job` from `source` (ReadChunks, one call per
// batch on a second thread) and adds each, in order, to `upload` (not
// closed here). DATA_LOSS naming the chunk when the source answers bytes
// that do not hash to its id or are not its size; otherwise the first
// error of either side. REQUIRES: every size is 1..kMaxChunkBytes (the
// caller checked the source's manifest: a batch is allocated from them).
absl::Status TransferChunks(Transport& source, absl::string_view source_job,
                            absl::Span<const ChunkToCopy> chunks,
                            ChunkUploadStream& upload,
                            const TransferOptions& options);

}  // namespace ckpt::client
