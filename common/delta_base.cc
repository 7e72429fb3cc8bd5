#include "common/delta_base.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/quote.h"

namespace ckpt {

bool SameTensorLayout(const TensorEntry& a, const TensorEntry& b) {
  return a.name == b.name && a.dtype == b.dtype &&
         a.global_shape == b.global_shape && a.box == b.box;
}

std::string TensorLayoutText(const TensorEntry& tensor) {
  return absl::StrCat(DTypeName(tensor.dtype), " shape [",
                      absl::StrJoin(tensor.global_shape, ", "), "] box [",
                      absl::StrJoin(tensor.box.offsets, ", "), "]+[",
                      absl::StrJoin(tensor.box.lengths, ", "), "]");
}

absl::StatusOr<const TensorEntry*> FindDeltaBase(
    absl::Span<const ShardManifest> base_shards, const TensorEntry& tensor,
    std::optional<int32_t> rank) {
  const TensorEntry* same_name = nullptr;
  const TensorEntry* matched = nullptr;
  for (const ShardManifest& shard : base_shards) {
    for (const TensorEntry& candidate : shard.tensors) {
      if (candidate.name != tensor.name) continue;
      if (same_name == nullptr) same_name = &candidate;
      if ((matched == nullptr || shard.rank == rank) &&
          SameTensorLayout(candidate, tensor)) {
        matched = &candidate;
      }
    }
  }
  if (matched != nullptr && matched->IsQuantized()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "which holds it quantized to ", matched->quantization->bits, " bits"));
  }
  if (matched != nullptr) return matched;
  if (same_name == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("which has no tensor ", QuoteTruncated(tensor.name)));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("which holds it as ", TensorLayoutText(*same_name),
                   ", not as this delta's ", TensorLayoutText(tensor)));
}

}  // namespace ckpt
