// What the two restore plans share (client/restore_plan.h, whole shards;
// client/region_plan.h, regions of global tensors): collecting where each
// distinct chunk lands (SinkSet), finding the chain of bases that rebuilds
// a row delta (DeltaChains), decoding a quantized entry, and fetching the
// sinks over a few ranges in parallel, through shared memory when the
// server can. Internal to ckpt_client_core: callers use client.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "client/restore_buffer.h"
#include "client/transport.h"
#include "client/types.h"
#include "common/manifest.h"

namespace ckpt::client {

// Collects sinks, merging repeated chunks.
class SinkSet {
 public:
  // DATA_LOSS when `ref` names a chunk already added with another size: a
  // chunk has one size, and a manifest claiming two (corrupt or hostile)
  // would have the larger copied into the smaller reference's place,
  // overrunning it.
  absl::Status Add(const ChunkRef& ref, char* destination);
  std::vector<ChunkSink>& sinks() { return sinks_; }
  const std::vector<ChunkSink>& sinks() const { return sinks_; }
  // Distinct chunks and their bytes (each chunk once).
  uint64_t chunk_bytes() const;

 private:
  absl::flat_hash_map<ChunkId, size_t> index_;
  std::vector<ChunkSink> sinks_;
};

// Finds the entries a delta entry is rebuilt from in the job's older
// checkpoints, fetching each base manifest once per restore.
class DeltaChains {
 public:
  DeltaChains(Transport& transport, absl::string_view job)
      : transport_(transport), job_(job) {}

  // The entries that rebuild `entry`: a full one first, then the deltas,
  // oldest first, ending with `entry` itself (just `entry` when it is
  // full). DATA_LOSS naming the tensor and the step when a base checkpoint
  // or its matching entry is missing, or the chain does not go back in
  // time. `rank`: the shard `entry` is of, whose own base entries are
  // preferred (FindDeltaBase); nullopt: the first that matches.
  absl::StatusOr<std::vector<TensorEntry>> Resolve(
      const TensorEntry& entry, std::optional<int32_t> rank = std::nullopt);

 private:
  absl::StatusOr<const Checkpoint*> Manifest(const TensorEntry& entry,
                                             int64_t step);

  Transport& transport_;
  const std::string job_;
  absl::flat_hash_map<int64_t, Checkpoint> manifests_;
};

// The sum of a full entry's piece sizes must be its box's bytes, or the
// entry cannot be laid out: DATA_LOSS naming the tensor otherwise. (The
// size of a delta, fetched into scratch, is checked when it is decoded; a
// quantized entry's here too, against its matrix.)
absl::Status CheckPieces(const TensorEntry& entry);

// Dequantizes a quantized entry's fetched bytes into `tensor` (its
// ByteSize()), checking that they encode the entry's matrix at its width.
// DATA_LOSS naming the tensor otherwise.
absl::Status DequantizeEntry(const TensorEntry& entry,
                             absl::string_view encoded,
                             absl::Span<char> tensor);

// Fetches `sinks` over a few ranges in parallel, reporting to `progress`
// (when set) after every chunk, one call at a time. With a `buffer` (every
// destination inside it) that is shareable, the server on this host writes
// the chunks into it (ReadChunksIntoFile) when it can; otherwise, and
// without a buffer, they are streamed (ReadChunks). Every fetch has ended
// when it returns, and the first range, in order, that failed decides: its
// status is returned, or what it threw (`progress` may throw) is rethrown.
absl::Status FetchInParallel(Transport& transport, absl::string_view job,
                             absl::Span<const ChunkSink> sinks,
                             const RestoreBuffer* buffer,
                             const RestoreProgressFn& progress);

// Splits `sinks` into at most about `streams` contiguous ranges of similar
// bytes to write (ChunkSink::WriteBytes), in order, covering every sink once;
// none when there are no sinks. FetchInParallel fetches one range per
// thread, so that the server reads and hashes on several threads.
// REQUIRES: streams >= 1.
std::vector<absl::Span<const ChunkSink>> SplitForParallelFetch(
    absl::Span<const ChunkSink> sinks, size_t streams);

}  // namespace ckpt::client
