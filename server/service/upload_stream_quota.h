// UploadStreamQuota: counts each tenant's upload (PutChunks) streams open
// at once and refuses one past TenantQuotas' max_upload_streams, so that
// one tenant cannot take every stream and request thread of the server.
#pragma once

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "server/service/tenant_quotas.h"

namespace ckpt::server {

// Thread-safe.
class UploadStreamQuota {
 public:
  // One stream's place in its tenant's count, given back when destroyed.
  // Movable; a moved-from or default Slot holds nothing.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& other) noexcept { *this = std::move(other); }
    Slot& operator=(Slot&& other) noexcept;
    ~Slot() { Release(); }

   private:
    friend class UploadStreamQuota;
    Slot(UploadStreamQuota* quota, std::string tenant)
        : quota_(quota), tenant_(std::move(tenant)) {}
    void Release();

    UploadStreamQuota* quota_ = nullptr;
    std::string tenant_;
  };

  explicit UploadStreamQuota(TenantQuotas quotas)
      : quotas_(std::move(quotas)) {}

  // A slot for one more stream of `tenant`, or RESOURCE_EXHAUSTED naming
  // the limit, the tenant and the quota when it has max_upload_streams open
  // already. The quota must outlive the slot.
  absl::StatusOr<Slot> Acquire(absl::string_view tenant);

  // Streams of `tenant` holding a slot now.
  uint32_t open_streams(absl::string_view tenant) const;

 private:
  const TenantQuotas quotas_;
  mutable absl::Mutex mu_;
  // Tenants with at least one open stream.
  absl::flat_hash_map<std::string, uint32_t> open_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ckpt::server
