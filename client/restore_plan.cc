#include "client/restore_plan.h"

#include <algorithm>
#include <deque>
#include <memory>
#include <string>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "client/fetch_plan.h"
#include "client/restore_buffer.h"
#include "common/row_delta.h"
#include "common/status_macros.h"

namespace ckpt::client {
namespace {

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

// Every chain of `entries` (just the entry unless it is a row delta),
// with its full entry's pieces checked; `rank`: the shard they are of
// (DeltaChains::Resolve).
absl::StatusOr<std::vector<std::vector<TensorEntry>>> ResolveChains(
    Transport& transport, absl::string_view job,
    absl::Span<const TensorEntry> entries, std::optional<int32_t> rank) {
  DeltaChains chains(transport, job);
  std::vector<std::vector<TensorEntry>> resolved;
  resolved.reserve(entries.size());
  for (const TensorEntry& entry : entries) {
    CKPT_ASSIGN_OR_RETURN(std::vector<TensorEntry> chain,
                          chains.Resolve(entry, rank));
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

}  // namespace

absl::Status ReadTensors(Transport& transport, absl::string_view job,
                         absl::Span<const TensorEntry> entries,
                         absl::Span<const absl::Span<char>> outs,
                         std::optional<int32_t> rank) {
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
                        ResolveChains(transport, job, entries, rank));
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
  CKPT_ASSIGN_OR_RETURN(
      std::vector<std::vector<TensorEntry>> chains,
      ResolveChains(transport, record.job, shard->tensors, shard->rank));

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

  CKPT_RETURN_IF_ERROR(FetchInParallel(transport, record.job, sinks.sinks(),
                                       buffer.get(), progress));
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
