#include "server/service/chunk_guard.h"

#include <algorithm>

namespace ckpt::server {

void ChunkGuard::Announce(absl::string_view tenant,
                          absl::Span<const ChunkId> ids, absl::Time now) {
  if (ids.empty()) return;
  absl::MutexLock lock(&mu_);
  // Collections expire holds; this bounds memory when none runs.
  if (held_count_ > kExpireInlineAbove) ExpireHoldsLocked(now);
  auto& held = announced_[tenant];
  for (const ChunkId& id : ids) {
    auto [it, inserted] = held.try_emplace(id, now);
    if (inserted) {
      ++held_count_;
    } else {
      it->second = std::max(it->second, now);
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

std::optional<ChunkGuard::Protection> ChunkGuard::Protects(
    absl::string_view tenant, const ChunkId& id, absl::Time now,
    absl::Duration hold) const {
  hold = std::min(hold, hold_);
  absl::MutexLock lock(&mu_);
  if (auto held = announced_.find(tenant); held != announced_.end()) {
    auto it = held->second.find(id);
    if (it != held->second.end() && it->second + hold > now) {
      return Protection{Protection::Kind::kAnnounced, it->second + hold};
    }
  }
  auto committed = committed_during_collection_.find(tenant);
  if (committed != committed_during_collection_.end() &&
      committed->second.contains(id)) {
    return Protection{Protection::Kind::kCommittedDuringCollection,
                      absl::InfinitePast()};
  }
  return std::nullopt;
}

void ChunkGuard::ExpireHolds(absl::Time now) {
  absl::MutexLock lock(&mu_);
  ExpireHoldsLocked(now);
}

void ChunkGuard::ExpireHoldsLocked(absl::Time now) {
  for (auto tenant = announced_.begin(); tenant != announced_.end();) {
    held_count_ -= absl::erase_if(tenant->second, [&](const auto& entry) {
      return entry.second + hold_ <= now;
    });
    if (tenant->second.empty()) {
      announced_.erase(tenant++);
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
