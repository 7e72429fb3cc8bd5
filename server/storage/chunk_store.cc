#include "server/storage/chunk_store.h"

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace ckpt::server {

absl::Status ChunkStore::ReadVerified(
    absl::string_view tenant, const ChunkId& id,
    absl::FunctionRef<absl::Status(absl::string_view bytes)> consume) {
  CKPT_ASSIGN_OR_RETURN(std::string bytes, Get(tenant, id));
  const ChunkId actual = Sha256(bytes);
  if (actual != id) {
    return absl::DataLossError(
        absl::StrCat("chunk ", id.ToHex(),
                     " is corrupt: its stored bytes hash to ", actual.ToHex()));
  }
  return consume(bytes);
}

absl::StatusOr<std::string> ChunkStore::ReadVerifiedBytes(
    absl::string_view tenant, const ChunkId& id) {
  std::string copy;
  CKPT_RETURN_IF_ERROR(ReadVerified(tenant, id, [&](absl::string_view bytes) {
    copy.assign(bytes.data(), bytes.size());
    return absl::OkStatus();
  }));
  return copy;
}

absl::StatusOr<std::vector<bool>> ChunkStore::Contains(
    absl::string_view tenant, absl::Span<const ChunkId> ids) {
  CKPT_ASSIGN_OR_RETURN(std::vector<std::optional<uint64_t>> sizes,
                        Sizes(tenant, ids));
  std::vector<bool> found(sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) found[i] = sizes[i].has_value();
  return found;
}

absl::StatusOr<std::vector<bool>> ChunkStore::MarkUsed(
    absl::string_view tenant, absl::Span<const ChunkId> ids) {
  return Contains(tenant, ids);
}

absl::StatusOr<bool> ChunkStore::DeleteIfUnusedSince(absl::string_view tenant,
                                                     const ChunkId& id,
                                                     absl::Time /*cutoff*/) {
  CKPT_RETURN_IF_ERROR(Delete(tenant, id));
  return true;
}

}  // namespace ckpt::server
