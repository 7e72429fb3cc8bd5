#include "client/region_sources.h"

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/box_overlap.h"
#include "client/fetch_plan.h"
#include "common/chunking.h"
#include "common/quote.h"
#include "common/status_macros.h"

namespace ckpt::client {
namespace {

// As ValidateShardManifest bounds them: every extent in kMaxDimension
// elements, and a box's bytes in 2^62, so that no product or sum here
// overflows.
constexpr uint64_t kMaxBoxBytes = uint64_t{1} << 62;

std::string ShapeText(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// The bytes of `box` of `dtype`, or nullopt when they pass kMaxBoxBytes.
std::optional<uint64_t> BoundedBytes(const Box& box, DType dtype) {
  uint64_t bytes = DTypeSize(dtype);
  for (int64_t length : box.lengths) {
    const uint64_t n = static_cast<uint64_t>(length);
    if (n != 0 && bytes > kMaxBoxBytes / n) return std::nullopt;
    bytes *= n;
  }
  return bytes;
}

// Why `box` is not a box of `shape` (empty when it is one): a rank
// mismatch, or an extent outside its dimension.
std::string BoxProblem(const Box& box, const std::vector<int64_t>& shape) {
  if (box.offsets.size() != shape.size() ||
      box.lengths.size() != shape.size()) {
    return absl::StrCat("has ", box.offsets.size(), " offsets and ",
                        box.lengths.size(), " lengths for a tensor of ",
                        shape.size(), " dimensions");
  }
  for (size_t d = 0; d < shape.size(); ++d) {
    const int64_t offset = box.offsets[d], length = box.lengths[d];
    if (offset < 0 || length < 0 || offset > shape[d] ||
        length > shape[d] - offset) {
      return absl::StrCat("[", offset, ", +", length, ") exceeds dimension ", d,
                          " of size ", shape[d]);
    }
  }
  return "";
}

// Pieces of 1 to kMaxChunkBytes bytes (which also keeps their sums from
// wrapping around), and not both a delta and quantized.
absl::Status CheckPieceSizes(const TensorEntry& entry,
                             absl::string_view where) {
  for (const ChunkRef& piece : entry.pieces) {
    if (piece.size == 0 || piece.size > kMaxChunkBytes) {
      return absl::DataLossError(absl::StrCat(
          "tensor ", QuoteTruncated(entry.name), " of ", where, ": a piece of ",
          piece.size, " bytes; pieces hold 1 to ", kMaxChunkBytes));
    }
  }
  if (entry.IsDelta() && entry.IsQuantized()) {
    return absl::DataLossError(
        absl::StrCat("tensor ", QuoteTruncated(entry.name), " of ", where,
                     " is both a row delta and quantized"));
  }
  return absl::OkStatus();
}

// A saved entry of the requested tensor: same dtype and global shape as
// asked (INVALID_ARGUMENT), a box inside that shape (DATA_LOSS).
absl::Status CheckSavedEntry(const RegionRequest& request, int32_t rank,
                             const TensorEntry& entry) {
  const std::string name = QuoteTruncated(request.name);
  if (entry.dtype != request.dtype) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor ", name, ": requested as ", DTypeName(request.dtype),
        " but rank ", rank, " saved it as ", DTypeName(entry.dtype),
        "; nothing is converted"));
  }
  if (entry.global_shape != request.global_shape) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor ", name, ": requested with global shape ",
        ShapeText(request.global_shape), " but rank ", rank,
        " saved it with global shape ", ShapeText(entry.global_shape)));
  }
  const std::string problem = BoxProblem(entry.box, entry.global_shape);
  if (!problem.empty()) {
    return absl::DataLossError(absl::StrCat("tensor ", name, " of rank ", rank,
                                            ": its saved box ", problem));
  }
  if (!BoundedBytes(entry.box, entry.dtype).has_value()) {
    return absl::DataLossError(
        absl::StrCat("tensor ", name, " of rank ", rank, ": its saved box ",
                     BoxText(entry.box), " holds more than 2^62 bytes"));
  }
  return CheckPieceSizes(entry, absl::StrCat("rank ", rank));
}

// The entries named `request.name`, by ascending rank (of source_rank
// only when set). INVALID_ARGUMENT when there are none, DATA_LOSS when a
// rank holds the name twice.
absl::StatusOr<std::vector<RegionSource>> Candidates(
    const Checkpoint& checkpoint, const RegionRequest& request,
    const EntriesByName& index) {
  const std::string name = QuoteTruncated(request.name);
  std::vector<RegionSource> found;
  bool rank_present = !request.source_rank.has_value();
  for (const ShardManifest& shard : checkpoint.shards) {
    rank_present |= !rank_present && shard.rank == *request.source_rank;
  }
  if (auto named = index.find(request.name); named != index.end()) {
    for (const auto& [rank, entry] : named->second) {
      if (request.source_rank.has_value() && rank != *request.source_rank) {
        continue;
      }
      found.push_back(RegionSource{rank, entry, {}, {}});
    }
  }
  std::stable_sort(found.begin(), found.end(),
                   [](const RegionSource& a, const RegionSource& b) {
                     return a.rank < b.rank;
                   });
  for (size_t i = 1; i < found.size(); ++i) {
    if (found[i].rank == found[i - 1].rank) {
      return absl::DataLossError(absl::StrCat(
          "tensor ", name, ": rank ", found[i].rank, " holds it twice"));
    }
  }
  if (!found.empty()) return found;
  const std::string where =
      absl::StrCat("checkpoint ", checkpoint.record.step, " of job ",
                   QuoteTruncated(checkpoint.record.job));
  if (!request.source_rank.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor ", name, ": no rank of ", where, " saved it"));
  }
  if (!rank_present) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor ", name, ": source rank ", *request.source_rank,
                     " has no shard in ", where, " (world size ",
                     checkpoint.record.world_size, ")"));
  }
  return absl::InvalidArgumentError(absl::StrCat("tensor ", name, ": rank ",
                                                 *request.source_rank, " of ",
                                                 where, " did not save it"));
}

}  // namespace

bool SameSavedBytes(const TensorEntry& a, const TensorEntry& b) {
  return a.pieces == b.pieces && a.delta_base_step == b.delta_base_step &&
         a.quantization == b.quantization;
}

absl::Status DifferentCopies(absl::string_view quoted_name, int32_t rank_a,
                             int32_t rank_b, const Box& box) {
  return absl::InvalidArgumentError(absl::StrCat(
      "tensor ", quoted_name, ": ranks ", rank_a, " and ", rank_b,
      " saved the same box ", BoxText(box),
      " with different contents (chunks, delta base or quantization); "
      "a box saved by several ranks must be replicated"));
}

absl::StatusOr<uint64_t> RegionBytes(const RegionRequest& request) {
  const std::string name = QuoteTruncated(request.name);
  if (DTypeSize(request.dtype) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor ", name, ": unknown dtype ", static_cast<int>(request.dtype)));
  }
  for (size_t d = 0; d < request.global_shape.size(); ++d) {
    if (request.global_shape[d] < 0 ||
        request.global_shape[d] > kMaxDimension) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", name,
                                                     ": dimension ", d,
                                                     " of its global "
                                                     "shape has size ",
                                                     request.global_shape[d]));
    }
  }
  const std::string problem = BoxProblem(request.region, request.global_shape);
  if (!problem.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor ", name, ": the requested region ", problem,
                     " of global shape ", ShapeText(request.global_shape)));
  }
  std::optional<uint64_t> bytes = BoundedBytes(request.region, request.dtype);
  if (!bytes.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor ", name, ": the requested region ",
                     BoxText(request.region), " holds more than 2^62 bytes"));
  }
  return *bytes;
}

EntriesByName IndexEntries(const Checkpoint& checkpoint) {
  EntriesByName index;
  for (const ShardManifest& shard : checkpoint.shards) {
    for (const TensorEntry& entry : shard.tensors) {
      index[entry.name].emplace_back(shard.rank, &entry);
    }
  }
  return index;
}

absl::StatusOr<std::vector<RegionSource>> FindRegionSources(
    const Checkpoint& checkpoint, const RegionRequest& request,
    const EntriesByName& index) {
  const std::string name = QuoteTruncated(request.name);
  CKPT_ASSIGN_OR_RETURN(std::vector<RegionSource> candidates,
                        Candidates(checkpoint, request, index));
  for (const RegionSource& candidate : candidates) {
    CKPT_RETURN_IF_ERROR(
        CheckSavedEntry(request, candidate.rank, *candidate.entry));
  }
  // The boxes that meet the region, each box once (its lowest rank).
  std::vector<RegionSource> sources;
  std::map<std::pair<std::vector<int64_t>, std::vector<int64_t>>, size_t>
      by_box;
  for (RegionSource& candidate : candidates) {
    candidate.overlap = IntersectBoxes(candidate.entry->box, request.region);
    if (BoxIsEmpty(candidate.overlap)) continue;
    const Box& box = candidate.entry->box;
    auto [it, inserted] =
        by_box.try_emplace({box.offsets, box.lengths}, sources.size());
    if (inserted) {
      sources.push_back(std::move(candidate));
      continue;
    }
    RegionSource& first = sources[it->second];
    if (!SameSavedBytes(*first.entry, *candidate.entry)) {
      return DifferentCopies(name, first.rank, candidate.rank, box);
    }
    if (candidate.entry->IsDelta()) {
      first.same_box_deltas.emplace_back(candidate.rank, candidate.entry);
    }
  }
  std::vector<Box> boxes;
  for (const RegionSource& source : sources) {
    boxes.push_back(source.entry->box);
  }
  if (auto pair = FindOverlappingBoxes(boxes); pair.has_value()) {
    const RegionSource& a = sources[pair->first];
    const RegionSource& b = sources[pair->second];
    return absl::DataLossError(
        absl::StrCat("tensor ", name, ": the boxes of rank ", a.rank, " (",
                     BoxText(a.entry->box), ") and rank ", b.rank, " (",
                     BoxText(b.entry->box),
                     ") overlap partly; the checkpoint is inconsistent"));
  }
  std::vector<Box> overlaps;
  for (const RegionSource& source : sources) {
    overlaps.push_back(source.overlap);
  }
  std::optional<std::vector<int64_t>> uncovered =
      FindUncoveredElement(request.region, overlaps);
  if (uncovered.has_value()) {
    if (request.source_rank.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", name, ": rank ", *request.source_rank,
                       "'s box ", BoxText(candidates.front().entry->box),
                       " does not hold element ", IndexText(*uncovered),
                       " of the requested region ", BoxText(request.region)));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor ", name, ": no saved box holds element ", IndexText(*uncovered),
        " of the requested region ", BoxText(request.region)));
  }
  for (const RegionSource& source : sources) {
    CKPT_RETURN_IF_ERROR(CheckPieces(*source.entry));
  }
  return sources;
}

absl::Status CheckChainEntry(const TensorEntry& entry, int64_t step) {
  const std::string where = absl::StrCat("checkpoint ", step);
  CKPT_RETURN_IF_ERROR(CheckPieceSizes(entry, where));
  return CheckPieces(entry);
}

}  // namespace ckpt::client
