// TenantQuotas: what each tenant may hold on the server (stored bytes) and
// run at once (upload streams), as the operator configures it. A plain
// value: the flags (--quota-bytes, --quota-upload-streams) set `defaults`,
// the config file's quotas.defaults / quotas.tenants fill the rest.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace ckpt::server {

// One tenant's limits; 0 means unlimited.
struct QuotaLimits {
  // Bytes of chunks the tenant may store (after deduplication: a chunk the
  // tenant already holds costs nothing). A PutChunks that would store more
  // is refused with RESOURCE_EXHAUSTED before anything is committed.
  // Default: 0 (unlimited).
  uint64_t max_stored_bytes = 0;
  // PutChunks streams of the tenant open at once; one more is refused with
  // RESOURCE_EXHAUSTED. Default: 0 (unlimited).
  uint32_t max_upload_streams = 0;

  friend bool operator==(const QuotaLimits&, const QuotaLimits&) = default;
};

// A tenant's exceptions to the defaults: each field that is set replaces
// the default's, the others keep it.
struct QuotaOverride {
  std::optional<uint64_t> max_stored_bytes;
  std::optional<uint32_t> max_upload_streams;

  friend bool operator==(const QuotaOverride&, const QuotaOverride&) = default;
};

struct TenantQuotas {
  // Every tenant's limits unless `tenants` says otherwise.
  // Default: unlimited.
  QuotaLimits defaults;
  // Per tenant name (the part of a job name before its first '/').
  // Default: none.
  absl::flat_hash_map<std::string, QuotaOverride> tenants;

  // The limits of `tenant`.
  QuotaLimits For(absl::string_view tenant) const {
    QuotaLimits limits = defaults;
    auto it = tenants.find(tenant);
    if (it == tenants.end()) return limits;
    if (it->second.max_stored_bytes.has_value()) {
      limits.max_stored_bytes = *it->second.max_stored_bytes;
    }
    if (it->second.max_upload_streams.has_value()) {
      limits.max_upload_streams = *it->second.max_upload_streams;
    }
    return limits;
  }

  // Whether some tenant has a limit on stored bytes (without one, usage
  // need not be tracked at all).
  bool LimitsStoredBytes() const {
    if (defaults.max_stored_bytes != 0) return true;
    for (const auto& [name, override] : tenants) {
      if (override.max_stored_bytes.value_or(0) != 0) return true;
    }
    return false;
  }
};

}  // namespace ckpt::server
