#include "server/service/chunk_guard.h"

#include <algorithm>

namespace ckpt::server {

void ChunkGuard::Announce(absl::string_view tenant,
                          absl::Span<const ChunkId> ids, absl::Time now) {
  if (ids.empty()) return;
  const absl::Time until = now + hold_;
  absl::MutexLock lock(&mu_);
  // Collections expire holds; this bounds memory when none runs.
  if (held_count_ > kExpireInlineAbove) ExpireHoldsLocked(now);
  auto& held = held_until_[tenant];
  for (const ChunkId& id : ids) {
    auto [it, inserted] = held.try_emplace(id, until);
    if (inserted) {
      ++held_count_;
    } else {
      it->second = std::max(it->second, until);
    }
  }
}

void ChunkGuard::BeginCollection() {
  absl::MutexLock lock(&mu_);
  collecting_ = true;
  committed_during_collection_.clear();
}

void ChunkGuard::EndCollection() {
  absl::MutexLock lock(&mu_);
  collecting_ = false;
  committed_during_collection_.clear();
}

void ChunkGuard::Committed(absl::string_view tenant,
                           absl::Span<const ChunkId> ids) {
  absl::MutexLock lock(&mu_);
  if (!collecting_) return;
  auto& committed = committed_during_collection_[tenant];
  committed.insert(ids.begin(), ids.end());
}

bool ChunkGuard::IsProtected(absl::string_view tenant, const ChunkId& id,
                             absl::Time now) const {
  absl::MutexLock lock(&mu_);
  if (auto held = held_until_.find(tenant); held != held_until_.end()) {
    auto it = held->second.find(id);
    if (it != held->second.end() && it->second > now) return true;
  }
  auto committed = committed_during_collection_.find(tenant);
  return committed != committed_during_collection_.end() &&
         committed->second.contains(id);
}

void ChunkGuard::ExpireHolds(absl::Time now) {
  absl::MutexLock lock(&mu_);
  ExpireHoldsLocked(now);
}

void ChunkGuard::ExpireHoldsLocked(absl::Time now) {
  for (auto tenant = held_until_.begin(); tenant != held_until_.end();) {
    held_count_ -= absl::erase_if(
        tenant->second, [&](const auto& entry) { return entry.second <= now; });
    if (tenant->second.empty()) {
      held_until_.erase(tenant++);
    } else {
      ++tenant;
    }
  }
}

size_t ChunkGuard::held_count() const {
  absl::MutexLock lock(&mu_);
  return held_count_;
}

}  // namespace ckpt::server
