#include "client/region_plan.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "client/box_overlap.h"
#include "client/fetch_plan.h"
#include "client/region_sources.h"
#include "client/restore_buffer.h"
#include "common/quote.h"
#include "common/row_delta.h"
#include "common/status_macros.h"

namespace ckpt::client {
namespace {

// Bytes of all regions of one call together: what one buffer may hold.
constexpr uint64_t kMaxTotalBytes = uint64_t{1} << 62;

// Landing::area of a chunk fetched into the scratch area.
constexpr int64_t kScratch = -1;

// Where a fetched chunk lands, planned before the memory exists: at an
// offset into a request's region, or into the scratch area.
struct Landing {
  ChunkRef ref;
  int64_t area = kScratch;  // a request's index, or kScratch
  uint64_t offset = 0;
};

enum class SourceKind {
  kFull,       // chunks of the saved box, straight in or through scratch
  kRowWindow,  // a delta chain: a window of rows of its full entry
  kQuantized,  // dequantized whole
};

// How one source of one region is read and assembled.
struct SourcePlan {
  size_t request = 0;
  SourceKind kind = SourceKind::kFull;
  // The full (or quantized) entry first, then the deltas, oldest first.
  std::vector<TensorEntry> chain;
  std::optional<OverlapRuns> runs;
  // kFull: the saved box's bytes [begin, end) of a chunk fetched into
  // scratch at `scratch`, whose overlap bytes are copied out.
  struct ScratchPiece {
    uint64_t begin = 0;
    uint64_t end = 0;
    uint64_t scratch = 0;
  };
  std::vector<ScratchPiece> scratch_pieces;
  // kRowWindow: rows [first_row, end_row) of the box are needed; its bytes
  // [window_begin, window_end) (whole chunks) are fetched into scratch at
  // `window`.
  uint64_t first_row = 0;
  uint64_t end_row = 0;
  uint64_t window_begin = 0;
  uint64_t window_end = 0;
  uint64_t window = 0;
  // Scratch offsets of chain[1..] (kRowWindow) or of chain[0]'s encoded
  // matrix (kQuantized), fetched whole.
  std::vector<uint64_t> encoded;
  // kQuantized: the scratch offset of chain[0] dequantized whole, when it
  // is dequantized before any region is written (ReadRegions); else it is
  // dequantized in a buffer of its own after the fetch (RestoreRegions:
  // its regions are new memory, and only one dequantized copy at a time
  // is held).
  std::optional<uint64_t> dequantized;
};

struct RegionPlan {
  std::vector<uint64_t> region_bytes;
  std::vector<SourcePlan> sources;
  std::vector<Landing> landings;
  uint64_t scratch_bytes = 0;
};

class Planner {
 public:
  Planner(RegionPlan& plan, bool dequantize_in_scratch)
      : plan_(plan), dequantize_in_scratch_(dequantize_in_scratch) {}

  void PlanFull(SourcePlan& source) {
    const TensorEntry& entry = source.chain.front();
    uint64_t begin = 0;
    for (const ChunkRef& piece : entry.pieces) {
      const uint64_t end = begin + piece.size;
      if (!source.runs->Intersects(begin, end)) {
        begin = end;
        continue;
      }
      std::optional<uint64_t> direct =
          source.runs->DestOffsetIfContiguous(begin, end);
      if (direct.has_value()) {
        plan_.landings.push_back(
            Landing{piece, static_cast<int64_t>(source.request), *direct});
      } else {
        // One scratch copy per distinct chunk (and size: a second size is
        // refused when the sinks are made, before anything is fetched).
        auto [it, inserted] =
            scratch_of_.try_emplace({piece.id, piece.size}, 0);
        if (inserted) {
          it->second = AddScratch(piece.size);
          plan_.landings.push_back(Landing{piece, kScratch, it->second});
        }
        source.scratch_pieces.push_back({begin, end, it->second});
      }
      begin = end;
    }
  }

  void PlanRowWindow(SourcePlan& source, const Box& overlap) {
    const TensorEntry& full = source.chain.front();
    const uint64_t row_bytes = full.RowBytes();
    source.first_row =
        static_cast<uint64_t>(overlap.offsets[0] - full.box.offsets[0]);
    source.end_row =
        source.first_row + static_cast<uint64_t>(overlap.lengths[0]);
    const uint64_t need_begin = source.first_row * row_bytes;
    const uint64_t need_end = source.end_row * row_bytes;
    std::vector<std::pair<const ChunkRef*, uint64_t>> window_pieces;
    uint64_t begin = 0;
    for (const ChunkRef& piece : full.pieces) {
      const uint64_t end = begin + piece.size;
      if (begin < need_end && end > need_begin) {
        if (window_pieces.empty()) source.window_begin = begin;
        source.window_end = end;
        window_pieces.emplace_back(&piece, begin);
      }
      begin = end;
    }
    source.window = AddScratch(source.window_end - source.window_begin);
    for (const auto& [piece, piece_begin] : window_pieces) {
      plan_.landings.push_back(Landing{
          *piece, kScratch, source.window + piece_begin - source.window_begin});
    }
    for (size_t i = 1; i < source.chain.size(); ++i) {
      source.encoded.push_back(AddWhole(source.chain[i]));
    }
  }

  void PlanQuantized(SourcePlan& source) {
    source.encoded.push_back(AddWhole(source.chain.front()));
    if (dequantize_in_scratch_) {
      source.dequantized = AddScratch(source.chain.front().ByteSize());
    }
  }

 private:
  uint64_t AddScratch(uint64_t bytes) {
    const uint64_t offset = plan_.scratch_bytes;
    plan_.scratch_bytes += bytes;
    return offset;
  }

  // The whole entry into scratch; its offset.
  uint64_t AddWhole(const TensorEntry& entry) {
    const uint64_t start = AddScratch(entry.StoredBytes());
    uint64_t offset = start;
    for (const ChunkRef& piece : entry.pieces) {
      plan_.landings.push_back(Landing{piece, kScratch, offset});
      offset += piece.size;
    }
    return start;
  }

  RegionPlan& plan_;
  const bool dequantize_in_scratch_;
  std::map<std::pair<ChunkId, uint64_t>, uint64_t> scratch_of_;
};

// Whether two ranks' resolved delta chains hold the same bytes: the same
// links, base to top. Equal tops on different bases are different tensors.
bool SameChain(absl::Span<const TensorEntry> a,
               absl::Span<const TensorEntry> b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!SameSavedBytes(a[i], b[i])) return false;
  }
  return true;
}

// Checks every request, finds its sources and their delta chains, and
// plans where each chunk lands (and, with `dequantize_in_scratch`, where
// each quantized entry is dequantized). Fetches no chunk (only base
// manifests).
absl::StatusOr<RegionPlan> PlanRegions(Transport& transport,
                                       const Checkpoint& checkpoint,
                                       absl::Span<const RegionRequest> requests,
                                       bool dequantize_in_scratch) {
  RegionPlan plan;
  uint64_t total = 0;
  std::vector<std::vector<RegionSource>> sources_of;
  const EntriesByName index = IndexEntries(checkpoint);
  for (const RegionRequest& request : requests) {
    CKPT_ASSIGN_OR_RETURN(uint64_t bytes, RegionBytes(request));
    if (bytes > kMaxTotalBytes - total) {
      return absl::InvalidArgumentError(
          "the requested regions hold more than 2^62 bytes together");
    }
    total += bytes;
    plan.region_bytes.push_back(bytes);
    CKPT_ASSIGN_OR_RETURN(sources_of.emplace_back(),
                          FindRegionSources(checkpoint, request, index));
  }
  DeltaChains chains(transport, checkpoint.record.job);
  Planner planner(plan, dequantize_in_scratch);
  for (size_t r = 0; r < requests.size(); ++r) {
    const RegionRequest& request = requests[r];
    const uint64_t element_bytes = DTypeSize(request.dtype);
    for (const RegionSource& found : sources_of[r]) {
      SourcePlan& source = plan.sources.emplace_back();
      source.request = r;
      CKPT_ASSIGN_OR_RETURN(source.chain,
                            chains.Resolve(*found.entry, found.rank));
      for (size_t i = 0; i + 1 < source.chain.size(); ++i) {
        CKPT_RETURN_IF_ERROR(CheckChainEntry(
            source.chain[i], *source.chain[i + 1].delta_base_step));
      }
      for (const auto& [rank, entry] : found.same_box_deltas) {
        CKPT_ASSIGN_OR_RETURN(std::vector<TensorEntry> chain,
                              chains.Resolve(*entry, rank));
        if (!SameChain(source.chain, chain)) {
          return DifferentCopies(QuoteTruncated(request.name), found.rank, rank,
                                 found.entry->box);
        }
      }
      const TensorEntry& bottom = source.chain.front();
      source.runs.emplace(found.entry->box, request.region, found.overlap,
                          element_bytes);
      if (source.chain.size() > 1) {
        if (bottom.IsQuantized() || bottom.box.lengths.empty()) {
          return absl::DataLossError(absl::StrCat(
              "tensor ", QuoteTruncated(request.name), " of rank ", found.rank,
              ": a row delta on a quantized or scalar tensor"));
        }
        source.kind = SourceKind::kRowWindow;
        planner.PlanRowWindow(source, found.overlap);
      } else if (bottom.IsQuantized()) {
        source.kind = SourceKind::kQuantized;
        planner.PlanQuantized(source);
      } else {
        source.kind = SourceKind::kFull;
        planner.PlanFull(source);
      }
    }
  }
  return plan;
}

// Which landings MakeSinks takes.
enum class Landings { kAll, kInScratch, kInRegions };

// The sinks of the `which` landings, in memory that now exists.
absl::StatusOr<SinkSet> MakeSinks(const RegionPlan& plan,
                                  absl::Span<const absl::Span<char>> regions,
                                  char* scratch,
                                  Landings which = Landings::kAll) {
  SinkSet sinks;
  for (const Landing& landing : plan.landings) {
    if (which != Landings::kAll &&
        (landing.area == kScratch) != (which == Landings::kInScratch)) {
      continue;
    }
    char* base =
        landing.area == kScratch ? scratch : regions[landing.area].data();
    CKPT_RETURN_IF_ERROR(sinks.Add(landing.ref, base + landing.offset));
  }
  return sinks;
}

// Applies the rows of the deltas of `source` (kRowWindow) that fall in its
// window, oldest first.
absl::Status ApplyDeltasToWindow(const SourcePlan& source, const char* scratch,
                                 char* window) {
  const TensorEntry& full = source.chain.front();
  const uint64_t rows = static_cast<uint64_t>(full.box.lengths[0]);
  const uint64_t row_bytes = full.RowBytes();
  for (size_t i = 1; i < source.chain.size(); ++i) {
    const TensorEntry& delta_entry = source.chain[i];
    const absl::string_view encoded(scratch + source.encoded[i - 1],
                                    delta_entry.StoredBytes());
    auto damaged = [&](absl::string_view problem) {
      return absl::DataLossError(
          absl::StrCat("tensor ", QuoteTruncated(full.name),
                       ": its row delta based on step ",
                       *delta_entry.delta_base_step, ": ", problem));
    };
    absl::StatusOr<RowDeltaView> delta = DecodeRowDelta(encoded);
    if (!delta.ok()) return damaged(delta.status().message());
    if (delta->row_bytes() != row_bytes || delta->total_rows() != rows) {
      return damaged(absl::StrCat("it is of ", delta->total_rows(), " rows of ",
                                  delta->row_bytes(), " bytes, the tensor has ",
                                  rows, " of ", row_bytes));
    }
    // The first of the delta's rows at or after first_row.
    uint64_t low = 0, high = delta->row_count();
    while (low < high) {
      const uint64_t middle = low + (high - low) / 2;
      if (delta->RowIndex(middle) < source.first_row) {
        low = middle + 1;
      } else {
        high = middle;
      }
    }
    for (uint64_t k = low;
         k < delta->row_count() && delta->RowIndex(k) < source.end_row; ++k) {
      std::memcpy(window + delta->RowIndex(k) * row_bytes - source.window_begin,
                  delta->RowData(k).data(), row_bytes);
    }
  }
  return absl::OkStatus();
}

// Copies the overlap bytes of source bytes [begin, end), held at `from`,
// into `region`.
void CopyOverlap(const OverlapRuns& runs, uint64_t begin, uint64_t end,
                 const char* from, char* region) {
  runs.ForEachStretch(
      begin, end, [&](uint64_t source, uint64_t dest, uint64_t bytes) {
        std::memcpy(region + dest, from + (source - begin), bytes);
      });
}

// Whether some source decodes what was fetched (Prepare), which hostile
// bytes can make fail after the fetch.
bool Decodes(const RegionPlan& plan) {
  return std::any_of(plan.sources.begin(), plan.sources.end(),
                     [](const SourcePlan& source) {
                       return source.kind != SourceKind::kFull;
                     });
}

// Decodes what was fetched into scratch, touching no region: the deltas
// applied to their windows, quantized entries dequantized (those with
// scratch for it). Can fail (DATA_LOSS); CopyOut then cannot.
absl::Status Prepare(const RegionPlan& plan, char* scratch) {
  for (const SourcePlan& source : plan.sources) {
    if (source.kind == SourceKind::kRowWindow) {
      CKPT_RETURN_IF_ERROR(
          ApplyDeltasToWindow(source, scratch, scratch + source.window));
    } else if (source.kind == SourceKind::kQuantized &&
               source.dequantized.has_value()) {
      const TensorEntry& entry = source.chain.front();
      CKPT_RETURN_IF_ERROR(DequantizeEntry(
          entry,
          absl::string_view(scratch + source.encoded[0], entry.StoredBytes()),
          absl::MakeSpan(scratch + *source.dequantized, entry.ByteSize())));
    }
  }
  return absl::OkStatus();
}

// Dequantizes the quantized entries without scratch for it, one at a time
// in a buffer of its own (RESOURCE_EXHAUSTED, not an exception, when the
// memory cannot be had), and copies each one's overlap into its region.
absl::Status DequantizeOneByOne(const RegionPlan& plan,
                                absl::Span<const absl::Span<char>> regions,
                                const char* scratch) {
  for (const SourcePlan& source : plan.sources) {
    if (source.kind != SourceKind::kQuantized ||
        source.dequantized.has_value()) {
      continue;
    }
    const TensorEntry& entry = source.chain.front();
    CKPT_ASSIGN_OR_RETURN(
        std::shared_ptr<RestoreBuffer> values,
        RestoreBuffer::Create(entry.ByteSize(), /*shareable=*/false));
    CKPT_RETURN_IF_ERROR(DequantizeEntry(
        entry,
        absl::string_view(scratch + source.encoded[0], entry.StoredBytes()),
        absl::MakeSpan(values->payload(), entry.ByteSize())));
    CopyOverlap(*source.runs, 0, entry.ByteSize(), values->payload(),
                regions[source.request].data());
  }
  return absl::OkStatus();
}

// Copies every region's bytes that wait in scratch into it (after Prepare).
void CopyOut(const RegionPlan& plan, absl::Span<const absl::Span<char>> regions,
             const char* scratch) {
  for (const SourcePlan& source : plan.sources) {
    char* region = regions[source.request].data();
    const OverlapRuns& runs = *source.runs;
    switch (source.kind) {
      case SourceKind::kFull:
        for (const SourcePlan::ScratchPiece& piece : source.scratch_pieces) {
          CopyOverlap(runs, piece.begin, piece.end, scratch + piece.scratch,
                      region);
        }
        break;
      case SourceKind::kRowWindow:
        CopyOverlap(runs, source.window_begin, source.window_end,
                    scratch + source.window, region);
        break;
      case SourceKind::kQuantized:
        if (source.dequantized.has_value()) {
          CopyOverlap(runs, 0, source.chain.front().ByteSize(),
                      scratch + *source.dequantized, region);
        }
        break;
    }
  }
}

// Fetches the chunks of `plan`, decodes and assembles the regions; the
// chunks fetched are added to `stats`. When something is decoded
// (`regions` are the caller's memory, which a refusal must leave
// untouched), the chunks landing in scratch are fetched and decoded first,
// and the regions' own chunks only once that succeeded. A chunk landing in
// both is fetched twice: its scratch copy may be patched by then (a delta
// base whose bytes another tensor holds too, zeros, say).
absl::Status FetchAndAssemble(Transport& transport,
                              const Checkpoint& checkpoint,
                              const RegionPlan& plan, const SinkSet& all,
                              absl::Span<const absl::Span<char>> regions,
                              char* scratch, const RestoreProgressFn& progress,
                              RegionReadStats& stats) {
  const std::string& job = checkpoint.record.job;
  if (!Decodes(plan)) {
    CKPT_RETURN_IF_ERROR(
        FetchInParallel(transport, job, all.sinks(), nullptr, progress));
    CopyOut(plan, regions, scratch);
    stats.chunks_fetched += all.sinks().size();
    stats.bytes_fetched += all.chunk_bytes();
    return absl::OkStatus();
  }
  CKPT_ASSIGN_OR_RETURN(
      SinkSet early, MakeSinks(plan, regions, scratch, Landings::kInScratch));
  CKPT_ASSIGN_OR_RETURN(
      SinkSet late, MakeSinks(plan, regions, scratch, Landings::kInRegions));
  // Progress counts both fetches together.
  const uint64_t early_bytes = early.chunk_bytes();
  const uint64_t total_bytes = early_bytes + late.chunk_bytes();
  RestoreProgressFn early_progress, late_progress;
  if (progress) {
    early_progress = [&](uint64_t fetched, uint64_t) {
      progress(fetched, total_bytes);
    };
    late_progress = [&](uint64_t fetched, uint64_t) {
      progress(early_bytes + fetched, total_bytes);
    };
  }
  CKPT_RETURN_IF_ERROR(
      FetchInParallel(transport, job, early.sinks(), nullptr, early_progress));
  CKPT_RETURN_IF_ERROR(Prepare(plan, scratch));
  CKPT_RETURN_IF_ERROR(
      FetchInParallel(transport, job, late.sinks(), nullptr, late_progress));
  CopyOut(plan, regions, scratch);
  stats.chunks_fetched += early.sinks().size() + late.sinks().size();
  stats.bytes_fetched += total_bytes;
  return absl::OkStatus();
}

RegionReadStats ReadStats(const RegionPlan& plan, const SinkSet& sinks) {
  RegionReadStats stats;
  stats.chunks_fetched = sinks.sinks().size();
  stats.bytes_fetched = sinks.chunk_bytes();
  for (uint64_t bytes : plan.region_bytes) stats.bytes_used += bytes;
  return stats;
}

}  // namespace

absl::StatusOr<RegionReadStats> ReadRegions(
    Transport& transport, const Checkpoint& checkpoint,
    absl::Span<const RegionRequest> requests,
    absl::Span<const absl::Span<char>> outs,
    const RestoreProgressFn& progress) {
  if (outs.size() != requests.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(requests.size(), " regions to read but ", outs.size(),
                     " output buffers"));
  }
  for (size_t r = 0; r < requests.size(); ++r) {
    CKPT_ASSIGN_OR_RETURN(uint64_t bytes, RegionBytes(requests[r]));
    if (outs[r].size() != bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor ", QuoteTruncated(requests[r].name),
          ": the requested region ", BoxText(requests[r].region), " has ",
          bytes, " bytes but the output buffer has ", outs[r].size()));
    }
  }
  CKPT_ASSIGN_OR_RETURN(RegionPlan plan,
                        PlanRegions(transport, checkpoint, requests,
                                    /*dequantize_in_scratch=*/true));
  CKPT_ASSIGN_OR_RETURN(
      std::shared_ptr<RestoreBuffer> scratch,
      RestoreBuffer::Create(plan.scratch_bytes, /*shareable=*/false));
  CKPT_ASSIGN_OR_RETURN(SinkSet sinks,
                        MakeSinks(plan, outs, scratch->payload()));
  RegionReadStats stats;
  for (uint64_t bytes : plan.region_bytes) stats.bytes_used += bytes;
  CKPT_RETURN_IF_ERROR(FetchAndAssemble(transport, checkpoint, plan, sinks,
                                        outs, scratch->payload(), progress,
                                        stats));
  return stats;
}

absl::StatusOr<RestoredRegions> RestoreRegions(
    Transport& transport, const Checkpoint& checkpoint,
    absl::Span<const RegionRequest> requests, const RestoreProgressFn& progress,
    bool shared_memory) {
  CKPT_ASSIGN_OR_RETURN(RegionPlan plan,
                        PlanRegions(transport, checkpoint, requests,
                                    /*dequantize_in_scratch=*/false));
  // Each region on its own pages, so freeing one gives its memory back;
  // the scratch after them, in the same buffer (a server writing through
  // shared memory can reach nothing else), given back once assembled.
  std::vector<uint64_t> offsets(requests.size());
  uint64_t layout_bytes = 0;
  for (size_t r = 0; r < requests.size(); ++r) {
    offsets[r] = layout_bytes;
    layout_bytes += RestoreBuffer::RoundUpToPage(plan.region_bytes[r]);
  }
  const uint64_t scratch_offset = layout_bytes;
  layout_bytes += plan.scratch_bytes;
  CKPT_ASSIGN_OR_RETURN(std::shared_ptr<RestoreBuffer> buffer,
                        RestoreBuffer::Create(layout_bytes, shared_memory));
  RestoredRegions restored;
  std::vector<absl::Span<char>> regions;
  for (size_t r = 0; r < requests.size(); ++r) {
    const RegionRequest& request = requests[r];
    RestoredTensor& tensor = restored.tensors.emplace_back();
    tensor.entry.name = request.name;
    tensor.entry.dtype = request.dtype;
    tensor.entry.global_shape = request.global_shape;
    tensor.entry.box = request.region;
    char* data = buffer->payload() + offsets[r];
    const uint64_t size = plan.region_bytes[r];
    tensor.bytes = absl::MakeSpan(data, size);
    // The deleter keeps the buffer alive and frees this region's pages.
    tensor.storage = std::shared_ptr<void>(data, [buffer, size](void* p) {
      buffer->Release(static_cast<const char*>(p), size);
    });
    regions.push_back(tensor.bytes);
  }
  char* scratch = buffer->payload() + scratch_offset;
  CKPT_ASSIGN_OR_RETURN(SinkSet sinks, MakeSinks(plan, regions, scratch));
  CKPT_RETURN_IF_ERROR(FetchInParallel(transport, checkpoint.record.job,
                                       sinks.sinks(), buffer.get(), progress));
  CKPT_RETURN_IF_ERROR(Prepare(plan, scratch));
  CopyOut(plan, regions, scratch);
  CKPT_RETURN_IF_ERROR(DequantizeOneByOne(plan, regions, scratch));
  if (plan.scratch_bytes > 0) {
    buffer->Release(scratch, RestoreBuffer::RoundUpToPage(plan.scratch_bytes));
  }
  restored.stats = ReadStats(plan, sinks);
  return restored;
}

}  // namespace ckpt::client
