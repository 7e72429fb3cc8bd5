#include "server/service/stored_bytes_quota.h"

#include <algorithm>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/quote.h"
#include "common/status_macros.h"

namespace ckpt::server {

absl::StatusOr<std::unique_ptr<StoredBytesQuota>> StoredBytesQuota::Open(
    ChunkStore* target, TenantQuotas quotas) {
  auto quota = std::make_unique<StoredBytesQuota>(target, std::move(quotas));
  absl::flat_hash_map<std::string, Usage> usage;
  CKPT_RETURN_IF_ERROR(target->ForEach(
      "", [&](absl::string_view tenant, const ChunkId&, uint64_t size) {
        usage[tenant].stored += size;
        return absl::OkStatus();
      }));
  absl::MutexLock lock(&quota->mu_);
  quota->usage_ = std::move(usage);
  return quota;
}

StoredBytesQuota::StoredBytesQuota(ChunkStore* target, TenantQuotas quotas)
    : ChunkStoreWrapper(target), quotas_(std::move(quotas)) {}

absl::StatusOr<bool> StoredBytesQuota::Put(absl::string_view tenant,
                                           const ChunkId& id,
                                           absl::string_view bytes) {
  const uint64_t limit = quotas_.For(tenant).max_stored_bytes;
  const uint64_t size = bytes.size();
  bool reserved = false;
  if (limit != 0) {
    Usage refused;
    {
      absl::MutexLock lock(&mu_);
      Usage& usage = usage_[tenant];
      // Compared without sums that could wrap: every term is below 2^64.
      if (size <= limit && usage.stored <= limit - size &&
          usage.reserved <= limit - size - usage.stored) {
        usage.reserved += size;
        reserved = true;
      } else {
        refused = usage;
      }
    }
    if (!reserved) {
      // Only past the quota is it worth a lookup: a chunk the tenant holds
      // already is not stored again, so it costs nothing.
      CKPT_ASSIGN_OR_RETURN(std::vector<bool> held,
                            target()->Contains(tenant, {id}));
      if (!held[0]) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "quota max_stored_bytes exceeded: tenant ", QuoteTruncated(tenant),
            " may store ", limit, " bytes and stores ", refused.stored,
            refused.reserved == 0
                ? std::string()
                : absl::StrCat(" (plus ", refused.reserved, " being uploaded)"),
            "; chunk ", id.ShortHex(), " would add ", size,
            " more. Nothing was committed; delete checkpoints (garbage "
            "collection then frees their chunks) or ask for a larger quota"));
      }
    }
  }
  absl::StatusOr<bool> stored = target()->Put(tenant, id, bytes);
  absl::MutexLock lock(&mu_);
  Usage& usage = usage_[tenant];
  if (reserved) usage.reserved -= size;
  if (stored.ok() && *stored) usage.stored += size;
  return stored;
}

absl::Status StoredBytesQuota::Delete(absl::string_view tenant,
                                      const ChunkId& id) {
  absl::MutexLock delete_lock(&delete_mu_);
  CKPT_ASSIGN_OR_RETURN(std::vector<std::optional<uint64_t>> sizes,
                        target()->Sizes(tenant, {id}));
  CKPT_RETURN_IF_ERROR(target()->Delete(tenant, id));
  if (sizes[0].has_value()) GiveBack(tenant, *sizes[0]);
  return absl::OkStatus();
}

absl::StatusOr<bool> StoredBytesQuota::DeleteIfUnusedSince(
    absl::string_view tenant, const ChunkId& id, absl::Time cutoff) {
  absl::MutexLock delete_lock(&delete_mu_);
  CKPT_ASSIGN_OR_RETURN(std::vector<std::optional<uint64_t>> sizes,
                        target()->Sizes(tenant, {id}));
  if (!sizes[0].has_value()) return false;
  CKPT_ASSIGN_OR_RETURN(const bool deleted,
                        target()->DeleteIfUnusedSince(tenant, id, cutoff));
  if (deleted) GiveBack(tenant, *sizes[0]);
  return deleted;
}

void StoredBytesQuota::GiveBack(absl::string_view tenant, uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  auto it = usage_.find(tenant);
  if (it != usage_.end()) {
    it->second.stored -= std::min(it->second.stored, bytes);
  }
}

uint64_t StoredBytesQuota::stored_bytes(absl::string_view tenant) const {
  absl::MutexLock lock(&mu_);
  auto it = usage_.find(tenant);
  return it == usage_.end() ? 0 : it->second.stored;
}

}  // namespace ckpt::server
