#include "client/fetch_plan.h"

#include <algorithm>
#include <exception>
#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/delta_base.h"
#include "common/quantize.h"
#include "common/status_macros.h"
#include "common/thread_group.h"

namespace ckpt::client {
namespace {

// Concurrent fetches (ReadChunks streams or ReadChunksIntoFile callers) of
// one restore: enough to keep both the server's reads and hashing busy.
constexpr size_t kRestoreStreams = 3;
// Chunk bytes per ReadChunksIntoFile request: small enough for progress
// reports, large enough that the per-call cost vanishes.
constexpr uint64_t kIntoFileRequestBytes = uint64_t{64} << 20;

absl::StatusOr<TensorEntry> FindBase(const TensorEntry& entry,
                                     const Checkpoint& base,
                                     std::optional<int32_t> rank) {
  absl::StatusOr<const TensorEntry*> found =
      FindDeltaBase(base.shards, entry, rank);
  if (!found.ok()) {
    return absl::DataLossError(absl::StrCat(
        "tensor '", entry.name, "': its row delta base, checkpoint ",
        base.record.step, ", cannot rebuild it: the checkpoint ",
        found.status().message()));
  }
  return **found;
}

// Has the server on this host write `sinks` (destinations inside
// `buffer`) into the buffer's memfd, registered under `file_handle`, a few
// chunks per request so `fetched` reports progress. FAILED_PRECONDITION or
// UNIMPLEMENTED when the server cannot; the caller then streams.
absl::Status FetchIntoFile(Transport& transport, absl::string_view job,
                           absl::Span<const ChunkSink> sinks,
                           const RestoreBuffer& buffer,
                           absl::string_view file_handle,
                           const std::function<void(uint64_t)>& fetched) {
  size_t begin = 0;
  while (begin < sinks.size()) {
    std::vector<ChunkPlacement> placements;
    uint64_t request_bytes = 0;
    size_t end = begin;
    while (end < sinks.size() && request_bytes < kIntoFileRequestBytes) {
      const ChunkSink& sink = sinks[end];
      ChunkPlacement& placement = placements.emplace_back();
      placement.id = sink.id;
      placement.size = sink.size;
      for (char* destination : sink.destinations) {
        placement.offsets.push_back(buffer.FileOffset(destination));
      }
      request_bytes += sink.WriteBytes();
      ++end;
    }
    CKPT_RETURN_IF_ERROR(
        transport.ReadChunksIntoFile(job, file_handle, placements));
    if (fetched) {
      for (size_t i = begin; i < end; ++i) fetched(sinks[i].size);
    }
    begin = end;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SinkSet::Add(const ChunkRef& ref, char* destination) {
  auto [it, inserted] = index_.try_emplace(ref.id, sinks_.size());
  if (inserted) sinks_.push_back(ChunkSink{ref.id, ref.size, {}});
  ChunkSink& sink = sinks_[it->second];
  if (sink.size != ref.size) {
    return absl::DataLossError(absl::StrCat(
        "the manifests name chunk ", ref.id.ShortHex(), " with two sizes, ",
        sink.size, " and ", ref.size, " bytes; refusing to restore"));
  }
  sink.destinations.push_back(destination);
  return absl::OkStatus();
}

uint64_t SinkSet::chunk_bytes() const {
  uint64_t total = 0;
  for (const ChunkSink& sink : sinks_) total += sink.size;
  return total;
}

absl::StatusOr<std::vector<TensorEntry>> DeltaChains::Resolve(
    const TensorEntry& entry, std::optional<int32_t> rank) {
  std::vector<TensorEntry> chain = {entry};
  while (chain.back().IsDelta()) {
    const int64_t base_step = *chain.back().delta_base_step;
    if (chain.size() > 1 &&
        base_step >= *chain[chain.size() - 2].delta_base_step) {
      return absl::DataLossError(
          absl::StrCat("tensor '", entry.name, "': the delta stored at step ",
                       *chain[chain.size() - 2].delta_base_step,
                       " names a base step that is not older: ", base_step));
    }
    CKPT_ASSIGN_OR_RETURN(const Checkpoint* base, Manifest(entry, base_step));
    CKPT_ASSIGN_OR_RETURN(TensorEntry found, FindBase(entry, *base, rank));
    chain.push_back(std::move(found));
  }
  std::reverse(chain.begin(), chain.end());
  return chain;
}

absl::StatusOr<const Checkpoint*> DeltaChains::Manifest(
    const TensorEntry& entry, int64_t step) {
  auto it = manifests_.find(step);
  if (it == manifests_.end()) {
    absl::StatusOr<Checkpoint> fetched =
        transport_.GetManifest(job_, step, std::nullopt);
    if (absl::IsNotFound(fetched.status())) {
      return absl::DataLossError(absl::StrCat(
          "tensor '", entry.name, "' is a row delta on checkpoint ", step,
          ", which is gone: ", fetched.status().message()));
    }
    CKPT_RETURN_IF_ERROR(fetched.status());
    it = manifests_.emplace(step, *std::move(fetched)).first;
  }
  return &it->second;
}

absl::Status CheckPieces(const TensorEntry& entry) {
  if (entry.IsDelta()) return absl::OkStatus();
  uint64_t total = 0;
  for (const ChunkRef& piece : entry.pieces) total += piece.size;
  if (entry.IsQuantized()) {
    const uint64_t expected = QuantizedBytes(
        entry.QuantizedRows(), entry.QuantizedCols(), entry.quantization->bits);
    if (total != expected) {
      return absl::DataLossError(absl::StrCat(
          "tensor '", entry.name, "': manifest pieces hold ", total,
          " bytes but its quantized matrix takes ", expected));
    }
    return absl::OkStatus();
  }
  if (total != entry.ByteSize()) {
    return absl::DataLossError(
        absl::StrCat("tensor '", entry.name, "': manifest pieces hold ", total,
                     " bytes but its box needs ", entry.ByteSize()));
  }
  return absl::OkStatus();
}

absl::Status DequantizeEntry(const TensorEntry& entry,
                             absl::string_view encoded,
                             absl::Span<char> tensor) {
  auto damaged = [&](absl::string_view problem) {
    return absl::DataLossError(absl::StrCat(
        "tensor '", entry.name, "': its quantized bytes ", problem));
  };
  absl::StatusOr<QuantizedHeader> header = ReadQuantizedHeader(encoded);
  if (!header.ok()) return damaged(header.status().message());
  if (header->rows != entry.QuantizedRows() ||
      header->cols != entry.QuantizedCols() ||
      header->bits != entry.quantization->bits) {
    return damaged(absl::StrCat(
        "encode a ", header->rows, " x ", header->cols, " matrix at ",
        header->bits, " bits, the manifest says ", entry.QuantizedRows(), " x ",
        entry.QuantizedCols(), " at ", entry.quantization->bits));
  }
  absl::Status status = DequantizeInto(encoded, tensor);
  if (!status.ok()) return damaged(status.message());
  return absl::OkStatus();
}

absl::Status FetchInParallel(Transport& transport, absl::string_view job,
                             absl::Span<const ChunkSink> sinks,
                             const RestoreBuffer* buffer,
                             const RestoreProgressFn& progress) {
  uint64_t total = 0;  // distinct chunk bytes, as progress counts them
  for (const ChunkSink& sink : sinks) total += sink.size;
  const std::vector<absl::Span<const ChunkSink>> ranges =
      SplitForParallelFetch(sinks, kRestoreStreams);
  // The ranges report to `progress` one at a time.
  absl::Mutex progress_mu;
  uint64_t fetched_bytes = 0;
  std::function<void(uint64_t)> fetched;
  if (progress) {
    fetched = [&](uint64_t chunk_bytes) {
      absl::MutexLock lock(&progress_mu);
      fetched_bytes += chunk_bytes;
      progress(fetched_bytes, total);
    };
  }
  // One registration of the buffer for every range; it ends (the server
  // closes its descriptor) as soon as the fetch is done.
  std::unique_ptr<SharedFileRegistration> registration;
  if (buffer != nullptr && buffer->shareable() && !sinks.empty()) {
    absl::StatusOr<std::unique_ptr<SharedFileRegistration>> registered =
        transport.RegisterSharedFile(buffer->fd());
    if (registered.ok()) {
      registration = *std::move(registered);
    } else if (!absl::IsFailedPrecondition(registered.status()) &&
               !absl::IsUnimplemented(registered.status())) {
      return registered.status();
    }  // else a server elsewhere, an older one, or one that refuses: stream
  }
  const bool shared = registration != nullptr;
  auto fetch_range = [&](absl::Span<const ChunkSink> range) {
    if (shared) {
      absl::Status status = FetchIntoFile(transport, job, range, *buffer,
                                          registration->handle(), fetched);
      // A server elsewhere, an older server, or one that refuses: stream.
      // Requests before the refusal wrote nothing (it comes first), so the
      // whole range is fetched again.
      if (!absl::IsFailedPrecondition(status) &&
          !absl::IsUnimplemented(status)) {
        return status;
      }
    }
    return transport.ReadChunks(job, range, fetched);
  };
  // Each range's result, or what its fetch threw (a progress callback, say).
  // Declared before the pool, so they outlive every fetch.
  std::vector<absl::Status> statuses(ranges.size());
  std::vector<std::exception_ptr> thrown(ranges.size());
  auto run = [&](size_t r) {
    try {
      statuses[r] = fetch_range(ranges[r]);
    } catch (...) {
      thrown[r] = std::current_exception();
    }
  };
  {
    // Joined on every way out, so no thread outlives the buffer, the
    // registration or the results.
    ThreadGroup pool;
    // Mapping the buffer's pages costs about a third of a shared-memory
    // restore; done now, on a core the server's reads leave idle at times,
    // it overlaps the fetch instead of following it. Best effort: without a
    // thread for it the server's writes fault the pages in.
    if (shared) pool.Spawn([buffer] { buffer->Populate(); }).IgnoreError();
    // Range 0 on this thread, the others on their own. A range whose thread
    // the system cannot start is no error: this thread fetches it after
    // range 0.
    std::vector<size_t> here;
    if (!ranges.empty()) here.push_back(0);
    for (size_t r = 1; r < ranges.size(); ++r) {
      if (!pool.Spawn([&run, r] { run(r); }).ok()) here.push_back(r);
    }
    for (size_t r : here) run(r);
    pool.JoinAll();
  }
  // The first range that failed decides, as in a one-thread loop over them:
  // its exception is rethrown here, once every fetch has ended.
  for (size_t r = 0; r < ranges.size(); ++r) {
    if (thrown[r] != nullptr) std::rethrow_exception(thrown[r]);
    CKPT_RETURN_IF_ERROR(statuses[r]);
  }
  return absl::OkStatus();
}

std::vector<absl::Span<const ChunkSink>> SplitForParallelFetch(
    absl::Span<const ChunkSink> sinks, size_t streams) {
  uint64_t write_total = 0;
  for (const ChunkSink& sink : sinks) write_total += sink.WriteBytes();
  std::vector<absl::Span<const ChunkSink>> ranges;
  const uint64_t per_stream = write_total / streams + 1;
  size_t begin = 0;
  uint64_t bytes = 0;
  for (size_t i = 0; i < sinks.size(); ++i) {
    bytes += sinks[i].WriteBytes();
    if (bytes >= per_stream || i + 1 == sinks.size()) {
      ranges.push_back(sinks.subspan(begin, i + 1 - begin));
      begin = i + 1;
      bytes = 0;
    }
  }
  return ranges;
}

}  // namespace ckpt::client
