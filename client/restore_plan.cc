#include "client/restore_plan.h"

#include <algorithm>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/restore_buffer.h"
#include "common/delta_base.h"
#include "common/quantize.h"
#include "common/row_delta.h"
#include "common/status_macros.h"

namespace ckpt::client {
namespace {

// Concurrent fetches (ReadChunks streams or ReadChunksIntoFile callers) of
// one restore: enough to keep both the server's reads and hashing busy.
constexpr size_t kRestoreStreams = 3;
// Chunk bytes per ReadChunksIntoFile request: small enough for progress
// reports, large enough that the per-call cost vanishes.
constexpr uint64_t kIntoFileRequestBytes = uint64_t{64} << 20;

// Collects sinks, merging repeated chunks.
class SinkSet {
 public:
  // DATA_LOSS when `ref` names a chunk already added with another size: a
  // chunk has one size, and a manifest claiming two (corrupt or hostile)
  // would have the larger copied into the smaller reference's place,
  // overrunning it.
  absl::Status Add(const ChunkRef& ref, char* destination) {
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
  std::vector<ChunkSink>& sinks() { return sinks_; }

 private:
  absl::flat_hash_map<ChunkId, size_t> index_;
  std::vector<ChunkSink> sinks_;
};

// Whether chain[i] (as DeltaChains::Resolve gives it) is fetched into
// scratch and decoded from there rather than fetched into the tensor: its
// deltas, and a quantized entry.
bool FetchedIntoScratch(absl::Span<const TensorEntry> chain, size_t i) {
  return i > 0 || chain[i].IsQuantized();
}

// Adds the sinks of every piece of `chain` (as DeltaChains::Resolve gives
// it): into `tensor` for an entry fetched there, else into a scratch area of
// the entry's StoredBytes() that `allocate` gives. Returns those scratch
// areas in chain order.
absl::StatusOr<std::vector<absl::string_view>> AddChainSinks(
    absl::Span<const TensorEntry> chain, char* tensor,
    absl::FunctionRef<char*(uint64_t bytes)> allocate, SinkSet* sinks) {
  std::vector<absl::string_view> scratch;
  for (size_t i = 0; i < chain.size(); ++i) {
    char* destination = tensor;
    if (FetchedIntoScratch(chain, i)) {
      destination = allocate(chain[i].StoredBytes());
      scratch.emplace_back(destination, chain[i].StoredBytes());
    }
    for (const ChunkRef& piece : chain[i].pieces) {
      CKPT_RETURN_IF_ERROR(sinks->Add(piece, destination));
      destination += piece.size;
    }
  }
  return scratch;
}

// Dequantizes a quantized entry's fetched bytes into `tensor`, checking
// that they encode the entry's matrix at its width.
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

// The sum of a full entry's piece sizes must be its box's bytes, or the
// entry cannot be laid out. (The size of a delta or of a quantized entry,
// fetched into scratch, is checked when it is decoded.)
absl::Status CheckPieces(const TensorEntry& entry) {
  if (entry.IsDelta() || entry.IsQuantized()) return absl::OkStatus();
  uint64_t total = 0;
  for (const ChunkRef& piece : entry.pieces) total += piece.size;
  if (total != entry.ByteSize()) {
    return absl::DataLossError(
        absl::StrCat("tensor '", entry.name, "': manifest pieces hold ", total,
                     " bytes but its box needs ", entry.ByteSize()));
  }
  return absl::OkStatus();
}

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
  // time.
  absl::StatusOr<std::vector<TensorEntry>> Resolve(const TensorEntry& entry) {
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
      CKPT_ASSIGN_OR_RETURN(TensorEntry found, FindBase(entry, *base));
      chain.push_back(std::move(found));
    }
    std::reverse(chain.begin(), chain.end());
    return chain;
  }

 private:
  absl::StatusOr<const Checkpoint*> Manifest(const TensorEntry& entry,
                                             int64_t step) {
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

  static absl::StatusOr<TensorEntry> FindBase(const TensorEntry& entry,
                                              const Checkpoint& base) {
    absl::StatusOr<const TensorEntry*> found =
        FindDeltaBase(base.shards, entry);
    if (!found.ok()) {
      return absl::DataLossError(absl::StrCat(
          "tensor '", entry.name, "': its row delta base, checkpoint ",
          base.record.step, ", cannot rebuild it: the checkpoint ",
          found.status().message()));
    }
    return **found;
  }

  Transport& transport_;
  const std::string job_;
  absl::flat_hash_map<int64_t, Checkpoint> manifests_;
};

// Every chain of `entries` (just the entry unless it is a row delta),
// with its full entry's pieces checked.
absl::StatusOr<std::vector<std::vector<TensorEntry>>> ResolveChains(
    Transport& transport, absl::string_view job,
    absl::Span<const TensorEntry> entries) {
  DeltaChains chains(transport, job);
  std::vector<std::vector<TensorEntry>> resolved;
  resolved.reserve(entries.size());
  for (const TensorEntry& entry : entries) {
    CKPT_ASSIGN_OR_RETURN(std::vector<TensorEntry> chain,
                          chains.Resolve(entry));
    CKPT_RETURN_IF_ERROR(CheckPieces(chain.front()));
    resolved.push_back(std::move(chain));
  }
  return resolved;
}

// Rebuilds `tensor` from the fetched entries of `chain` (as
// DeltaChains::Resolve gives it): `tensor` holds the full entry's bytes
// unless that entry is quantized, and `scratch` the bytes of the entries
// FetchedIntoScratch, in chain order. A quantized entry is dequantized into
// `tensor`, then the deltas are applied, oldest first.
absl::Status RebuildTensor(absl::Span<const TensorEntry> chain,
                           absl::Span<const absl::string_view> scratch,
                           absl::Span<char> tensor) {
  if (chain.front().IsQuantized()) {
    CKPT_RETURN_IF_ERROR(DequantizeEntry(chain.front(), scratch[0], tensor));
    scratch.remove_prefix(1);
  }
  const TensorEntry& entry = chain.back();
  const uint64_t rows = entry.box.lengths.empty() ? 0 : entry.box.lengths[0];
  for (size_t i = 0; i < scratch.size(); ++i) {
    absl::StatusOr<RowDeltaView> delta = DecodeRowDelta(scratch[i]);
    if (!delta.ok()) {
      return absl::DataLossError(absl::StrCat(
          "tensor '", entry.name, "': its row delta based on step ",
          *chain[i + 1].delta_base_step, ": ", delta.status().message()));
    }
    if (delta->row_bytes() != entry.RowBytes() || delta->total_rows() != rows) {
      return absl::DataLossError(absl::StrCat(
          "tensor '", entry.name, "': its row delta based on step ",
          *chain[i + 1].delta_base_step, " is of ", delta->total_rows(),
          " rows of ", delta->row_bytes(), " bytes, the tensor has ", rows,
          " of ", entry.RowBytes()));
    }
    CKPT_RETURN_IF_ERROR(ApplyRowDelta(*delta, tensor));
  }
  return absl::OkStatus();
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

// Fetches `sinks` (destinations inside `buffer`) over a few ranges in
// parallel, reporting to `progress` (when set) after every chunk, one call
// at a time.
absl::Status FetchInParallel(Transport& transport, absl::string_view job,
                             absl::Span<const ChunkSink> sinks,
                             const std::shared_ptr<RestoreBuffer>& buffer,
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
  if (buffer->shareable() && !sinks.empty()) {
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
  std::vector<absl::Status> statuses(ranges.size());
  {
    // Mapping the buffer's pages costs about a third of a shared-memory
    // restore; done now, on a core the server's reads leave idle at times,
    // it overlaps the fetch instead of following it.
    std::thread prefault;
    if (shared) prefault = std::thread([&buffer] { buffer->Populate(); });
    std::vector<std::thread> threads;
    for (size_t r = 1; r < ranges.size(); ++r) {
      threads.emplace_back([&, r] { statuses[r] = fetch_range(ranges[r]); });
    }
    if (!ranges.empty()) statuses[0] = fetch_range(ranges[0]);
    for (std::thread& thread : threads) thread.join();
    if (prefault.joinable()) prefault.join();
  }
  for (const absl::Status& status : statuses) CKPT_RETURN_IF_ERROR(status);
  return absl::OkStatus();
}

}  // namespace

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

absl::Status ReadTensors(Transport& transport, absl::string_view job,
                         absl::Span<const TensorEntry> entries,
                         absl::Span<const absl::Span<char>> outs) {
  if (outs.size() != entries.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(entries.size(), " tensors to read but ", outs.size(),
                     " output buffers"));
  }
  for (size_t t = 0; t < entries.size(); ++t) {
    if (outs[t].size() != entries[t].ByteSize()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", entries[t].name, "' has ", entries[t].ByteSize(),
          " bytes but the output buffer has ", outs[t].size()));
    }
  }
  CKPT_ASSIGN_OR_RETURN(std::vector<std::vector<TensorEntry>> chains,
                        ResolveChains(transport, job, entries));
  // The bytes of the chains' entries FetchedIntoScratch: per tensor, the
  // buffers and views of them in chain order.
  std::vector<std::deque<std::string>> scratch(entries.size());
  std::vector<std::vector<absl::string_view>> scratch_views(entries.size());
  SinkSet sinks;
  for (size_t t = 0; t < entries.size(); ++t) {
    CKPT_ASSIGN_OR_RETURN(
        scratch_views[t],
        AddChainSinks(
            chains[t], outs[t].data(),
            [&](uint64_t bytes) {
              return scratch[t].emplace_back(bytes, '\0').data();
            },
            &sinks));
  }
  CKPT_RETURN_IF_ERROR(transport.ReadChunks(job, sinks.sinks(), {}));
  for (size_t t = 0; t < entries.size(); ++t) {
    CKPT_RETURN_IF_ERROR(RebuildTensor(chains[t], scratch_views[t], outs[t]));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<RestoredTensor>> RestoreShard(
    Transport& transport, const Checkpoint& checkpoint, int32_t rank,
    const RestoreProgressFn& progress, bool shared_memory) {
  const CheckpointRecord& record = checkpoint.record;
  if (rank < 0 || rank >= record.world_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rank ", rank, " is outside world_size ", record.world_size,
        " of checkpoint ", record.step, " of job '", record.job, "'"));
  }
  auto shard =
      std::find_if(checkpoint.shards.begin(), checkpoint.shards.end(),
                   [rank](const ShardManifest& s) { return s.rank == rank; });
  if (shard == checkpoint.shards.end()) {
    return absl::NotFoundError(absl::StrCat("checkpoint ", record.step,
                                            " of job '", record.job,
                                            "' has no shard of rank ", rank));
  }
  CKPT_ASSIGN_OR_RETURN(std::vector<std::vector<TensorEntry>> chains,
                        ResolveChains(transport, record.job, shard->tensors));

  // Lay every tensor out in one buffer, each on its own pages so freeing
  // one gives its memory back; the sinks point into the buffer. The deltas
  // to apply (and quantized entries to decode) follow the tensors in the
  // same buffer (a server writing through shared memory can reach nothing
  // else), and are given back once applied.
  std::vector<RestoredTensor> tensors(shard->tensors.size());
  std::vector<uint64_t> offsets(tensors.size());
  uint64_t layout_bytes = 0;
  for (size_t t = 0; t < tensors.size(); ++t) {
    tensors[t].entry = shard->tensors[t];
    offsets[t] = layout_bytes;
    layout_bytes += RestoreBuffer::RoundUpToPage(tensors[t].entry.ByteSize());
  }
  const uint64_t scratch_offset = layout_bytes;
  for (const std::vector<TensorEntry>& chain : chains) {
    for (size_t i = 0; i < chain.size(); ++i) {
      if (FetchedIntoScratch(chain, i)) layout_bytes += chain[i].StoredBytes();
    }
  }
  const uint64_t scratch_bytes = layout_bytes - scratch_offset;
  layout_bytes = RestoreBuffer::RoundUpToPage(layout_bytes);
  CKPT_ASSIGN_OR_RETURN(std::shared_ptr<RestoreBuffer> buffer,
                        RestoreBuffer::Create(layout_bytes, shared_memory));
  for (size_t t = 0; t < tensors.size(); ++t) {
    char* data = buffer->payload() + offsets[t];
    const uint64_t size = tensors[t].entry.ByteSize();
    tensors[t].bytes = absl::MakeSpan(data, size);
    // The deleter keeps the buffer alive and frees this tensor's pages.
    tensors[t].storage = std::shared_ptr<void>(data, [buffer, size](void* p) {
      buffer->Release(static_cast<const char*>(p), size);
    });
  }
  SinkSet sinks;
  // Per tensor, the bytes of its chain's entries FetchedIntoScratch, in
  // chain order, in the scratch area.
  std::vector<std::vector<absl::string_view>> scratch_of(tensors.size());
  char* scratch = buffer->payload() + scratch_offset;
  for (size_t t = 0; t < tensors.size(); ++t) {
    CKPT_ASSIGN_OR_RETURN(scratch_of[t], AddChainSinks(
                                             chains[t], tensors[t].bytes.data(),
                                             [&](uint64_t bytes) {
                                               char* area = scratch;
                                               scratch += bytes;
                                               return area;
                                             },
                                             &sinks));
  }

  CKPT_RETURN_IF_ERROR(
      FetchInParallel(transport, record.job, sinks.sinks(), buffer, progress));
  for (size_t t = 0; t < tensors.size(); ++t) {
    CKPT_RETURN_IF_ERROR(
        RebuildTensor(chains[t], scratch_of[t], tensors[t].bytes));
  }
  if (scratch_bytes > 0) {
    buffer->Release(buffer->payload() + scratch_offset,
                    RestoreBuffer::RoundUpToPage(scratch_bytes));
  }
  return tensors;
}

}  // namespace ckpt::client
