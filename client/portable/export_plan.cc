#include "client/portable/export_plan.h"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/quote.h"
#include "common/status_macros.h"

namespace ckpt::client::portable {
namespace {

// Whether any entry a region of `plan` reads (all of them, or only
// `rank`'s) is quantized.
bool ReadsQuantized(const WholeTensor& plan, std::optional<int32_t> rank) {
  for (const auto& [saved_rank, entry] : plan.saved) {
    if ((!rank.has_value() || *rank == saved_rank) && entry->IsQuantized()) {
      return true;
    }
  }
  return false;
}

ExportTensor Whole(const WholeTensor& plan, size_t copy, std::string name,
                   std::vector<int32_t> ranks) {
  ExportTensor tensor;
  tensor.name = std::move(name);
  tensor.source = plan.copies[copy];
  tensor.ranks = std::move(ranks);
  tensor.plan = &plan;
  tensor.quantized = ReadsQuantized(plan, tensor.source.source_rank);
  return tensor;
}

bool CopiesAlike(const WholeTensor& plan) {
  for (const RegionRequest& copy : plan.copies) {
    if (copy.dtype != plan.copies[0].dtype ||
        copy.region.lengths != plan.copies[0].region.lengths) {
      return false;
    }
  }
  return true;
}

absl::Status PlanFull(const WholeTensor& plan, const SameBytesFn& same_bytes,
                      std::vector<ExportTensor>* out) {
  if (plan.copies.size() == 1) {
    out->push_back(Whole(plan, 0, plan.name, plan.ranks[0]));
    return absl::OkStatus();
  }
  bool same = false;
  if (CopiesAlike(plan)) {
    CKPT_ASSIGN_OR_RETURN(same, same_bytes(plan));
  }
  if (same) {
    std::vector<int32_t> ranks;
    for (const auto& [rank, entry] : plan.saved) ranks.push_back(rank);
    out->push_back(Whole(plan, 0, plan.name, std::move(ranks)));
    return absl::OkStatus();
  }
  // One file entry per rank, in rank order.
  for (const auto& [rank, entry] : plan.saved) {
    for (size_t copy = 0; copy < plan.copies.size(); ++copy) {
      const std::vector<int32_t>& ranks = plan.ranks[copy];
      if (std::find(ranks.begin(), ranks.end(), rank) == ranks.end()) continue;
      ExportTensor tensor = Whole(
          plan, copy, absl::StrCat("rank-", rank, "/", plan.name), {rank});
      tensor.source.source_rank = rank;
      out->push_back(std::move(tensor));
    }
  }
  return absl::OkStatus();
}

// Rank `rank` of `world`'s rows of a sharded tensor, as torch.chunk cuts.
ExportTensor RankPart(const WholeTensor& plan, int32_t rank, int32_t world) {
  ExportTensor tensor = Whole(plan, 0, plan.name, plan.ranks[0]);
  Box& region = tensor.source.region;
  const int64_t rows = region.lengths[0];
  const int64_t chunk = (rows + world - 1) / world;
  const int64_t begin = std::min(rows, chunk * rank);
  region.offsets[0] = begin;
  region.lengths[0] = std::min(rows, begin + chunk) - begin;
  return tensor;
}

}  // namespace

uint64_t ExportTensor::ByteSize() const {
  uint64_t bytes = DTypeSize(source.dtype);
  for (int64_t length : shape()) bytes *= static_cast<uint64_t>(length);
  return bytes;
}

absl::StatusOr<std::vector<ExportTensor>> PlanExport(
    const Checkpoint& checkpoint, absl::Span<const WholeTensor> plans,
    const ExportOptions& options, const SameBytesFn& same_bytes) {
  const absl::flat_hash_set<std::string> excluded(
      options.exclude_tensors.begin(), options.exclude_tensors.end());
  const int32_t saved_world = checkpoint.record.world_size;
  std::vector<ExportTensor> tensors;
  std::vector<std::string> unmapped;
  for (const WholeTensor& plan : plans) {
    if (excluded.contains(plan.name)) continue;
    if (options.full) {
      CKPT_RETURN_IF_ERROR(PlanFull(plan, same_bytes, &tensors));
      continue;
    }
    if (plan.sharded) {
      tensors.push_back(RankPart(plan, options.rank, options.world_size));
      continue;
    }
    if (plan.copies.size() == 1 &&
        plan.ranks[0].size() == static_cast<size_t>(saved_world)) {
      tensors.push_back(Whole(plan, 0, plan.name, plan.ranks[0]));  // alike
      continue;
    }
    if (options.rank >= saved_world) {
      unmapped.push_back(QuoteTruncated(plan.name));
      continue;
    }
    for (size_t copy = 0; copy < plan.copies.size(); ++copy) {
      const std::vector<int32_t>& ranks = plan.ranks[copy];
      if (std::find(ranks.begin(), ranks.end(), options.rank) == ranks.end()) {
        continue;
      }
      ExportTensor tensor = Whole(plan, copy, plan.name, {options.rank});
      tensor.source.source_rank = options.rank;
      tensor.quantized = ReadsQuantized(plan, options.rank);
      tensors.push_back(std::move(tensor));
    }
  }
  if (!unmapped.empty()) {
    constexpr size_t kListed = 20;
    const size_t count = unmapped.size();
    if (count > kListed) unmapped.resize(kListed);
    return absl::InvalidArgumentError(absl::StrCat(
        "rank ", options.rank, " of ", options.world_size, ": checkpoint ",
        checkpoint.record.step, " was saved by ", saved_world,
        " rank(s), so it has no rank ", options.rank,
        " for the per-rank tensor(s) (saved whole, differently or not by "
        "every rank) ",
        absl::StrJoin(unmapped, ", "), count > kListed ? ", ..." : "", " (",
        count, " in all); export with --full, or as a rank below ",
        saved_world));
  }
  absl::flat_hash_set<absl::string_view> names;
  for (const ExportTensor& tensor : tensors) {
    if (!names.insert(tensor.name).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor ", QuoteTruncated(tensor.name),
          " would be exported twice: a per-rank copy named rank-N/NAME "
          "collides with a tensor of that name"));
    }
  }
  return tensors;
}

std::vector<ExportFile> AssignFiles(absl::Span<const ExportTensor> tensors,
                                    uint64_t max_file_bytes) {
  std::vector<ExportFile> files(1);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const uint64_t bytes = tensors[i].ByteSize();
    if (!files.back().tensors.empty() &&
        files.back().bytes + bytes > max_file_bytes) {
      files.emplace_back();
    }
    files.back().tensors.push_back(i);
    files.back().bytes += bytes;
  }
  if (files.size() == 1) {
    files[0].name = "model.safetensors";
  } else {
    for (size_t i = 0; i < files.size(); ++i) {
      char name[64];
      std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors",
                    i + 1, files.size());
      files[i].name = name;
    }
  }
  return files;
}

std::vector<Box> SplitRegion(const Box& region, uint64_t element_bytes,
                             uint64_t max_bytes) {
  const size_t dims = region.lengths.size();
  for (int64_t length : region.lengths) {
    if (length == 0) return {region};
  }
  // tail[d]: the bytes of one index of dimensions [0, d), i.e. of the
  // sub-box over dimensions [d, dims).
  std::vector<uint64_t> tail(dims + 1, element_bytes);
  for (size_t d = dims; d-- > 0;) {
    const uint64_t length = static_cast<uint64_t>(region.lengths[d]);
    tail[d] =
        tail[d + 1] > max_bytes / length ? max_bytes + 1 : tail[d + 1] * length;
  }
  if (tail[0] <= max_bytes) return {region};
  // The outermost dimension `split` whose slices (tail[split + 1]) fit:
  // runs of `step` of its indices, for every index of the dimensions
  // before it.
  size_t split = 0;
  while (tail[split + 1] > max_bytes) ++split;
  const int64_t step =
      static_cast<int64_t>(std::max<uint64_t>(1, max_bytes / tail[split + 1]));
  std::vector<Box> boxes;
  Box box = region;
  for (size_t d = 0; d < split; ++d) box.lengths[d] = 1;
  for (;;) {
    const int64_t end = region.offsets[split] + region.lengths[split];
    for (int64_t at = region.offsets[split]; at < end; at += step) {
      box.offsets[split] = at;
      box.lengths[split] = std::min(step, end - at);
      boxes.push_back(box);
    }
    // The next index of dimensions [0, split), row-major.
    size_t d = split;
    for (;;) {
      if (d == 0) return boxes;
      --d;
      if (++box.offsets[d] < region.offsets[d] + region.lengths[d]) break;
      box.offsets[d] = region.offsets[d];
    }
  }
}

}  // namespace ckpt::client::portable
