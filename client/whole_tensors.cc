#include "client/whole_tensors.h"

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "common/shard_layout.h"

namespace ckpt::client {

std::vector<WholeTensor> PlanWholeTensors(const Checkpoint& checkpoint) {
  std::vector<WholeTensor> tensors;
  absl::flat_hash_map<absl::string_view, size_t> index;
  for (const ShardManifest& shard : checkpoint.shards) {
    for (const TensorEntry& entry : shard.tensors) {
      auto [it, added] = index.emplace(entry.name, tensors.size());
      if (added) {
        tensors.emplace_back();
        tensors.back().name = entry.name;
      }
      tensors[it->second].saved.emplace_back(shard.rank, &entry);
    }
  }
  for (WholeTensor& tensor : tensors) {
    const TensorEntry* partial = nullptr;
    for (const auto& [rank, entry] : tensor.saved) {
      if (!IsWholeBox(*entry)) partial = entry;
    }
    if (partial != nullptr) {
      tensor.sharded = true;
      tensor.copies.push_back(RegionRequest{
          .name = tensor.name,
          .dtype = partial->dtype,
          .global_shape = partial->global_shape,
          .region = Box{std::vector<int64_t>(partial->global_shape.size(), 0),
                        partial->global_shape},
          .source_rank = std::nullopt});
      tensor.ranks.emplace_back();
      for (const auto& [rank, entry] : tensor.saved) {
        tensor.ranks.back().push_back(rank);
      }
      continue;
    }
    std::vector<const TensorEntry*> distinct;
    for (const auto& [rank, entry] : tensor.saved) {
      size_t d = 0;
      while (d < distinct.size() && !(*distinct[d] == *entry)) ++d;
      if (d == distinct.size()) {
        distinct.push_back(entry);
        tensor.copies.push_back(
            RegionRequest{.name = tensor.name,
                          .dtype = entry->dtype,
                          .global_shape = entry->global_shape,
                          .region = entry->box,
                          .source_rank = rank});
        tensor.ranks.emplace_back();
      }
      tensor.ranks[d].push_back(rank);
    }
  }
  return tensors;
}

}  // namespace ckpt::client
