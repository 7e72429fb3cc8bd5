#include "server/service/upload_stream_quota.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/quote.h"

namespace ckpt::server {

UploadStreamQuota::Slot& UploadStreamQuota::Slot::operator=(
    Slot&& other) noexcept {
  if (this != &other) {
    Release();
    quota_ = std::exchange(other.quota_, nullptr);
    tenant_ = std::move(other.tenant_);
  }
  return *this;
}

void UploadStreamQuota::Slot::Release() {
  if (quota_ == nullptr) return;
  absl::MutexLock lock(&quota_->mu_);
  auto it = quota_->open_.find(tenant_);
  if (it != quota_->open_.end() && --it->second == 0) quota_->open_.erase(it);
  quota_ = nullptr;
}

absl::StatusOr<UploadStreamQuota::Slot> UploadStreamQuota::Acquire(
    absl::string_view tenant) {
  const uint32_t limit = quotas_.For(tenant).max_upload_streams;
  absl::MutexLock lock(&mu_);
  uint32_t& open = open_[tenant];
  if (limit != 0 && open >= limit) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "quota max_upload_streams exceeded: tenant ", QuoteTruncated(tenant),
        " may upload over ", limit, " stream(s) at once and has ", open,
        " open; retry once one has ended"));
  }
  ++open;
  return Slot(this, std::string(tenant));
}

uint32_t UploadStreamQuota::open_streams(absl::string_view tenant) const {
  absl::MutexLock lock(&mu_);
  auto it = open_.find(tenant);
  return it == open_.end() ? 0 : it->second;
}

}  // namespace ckpt::server
