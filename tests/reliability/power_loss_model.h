// The model the power-loss test (T3) checks a recovered store against:
// which checkpoints of one job were acknowledged committed, with each
// rank's SHA-256, and the one operation (a commit, a delete or a prune)
// whose outcome the crash left unknown.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ckpt::testing {

class CommittedModel {
 public:
  // Per rank, the SHA-256 (hex) of the rank's tensors' bytes concatenated
  // in manifest order.
  using Shards = std::vector<std::string>;

  // A commit returned OK: the checkpoint must survive every crash.
  void Acked(int64_t step, Shards shards) { acked_[step] = std::move(shards); }
  // The last rank's commit was sent and did not return OK.
  void CommitUnknown(int64_t step, Shards shards) {
    unknown_commit_ = std::make_pair(step, std::move(shards));
  }
  // A delete or prune of these acked steps returned OK.
  void Deleted(const std::vector<int64_t>& steps) {
    for (int64_t step : steps) acked_.erase(step);
  }
  // A delete or prune of these acked steps did not return OK: after the
  // crash they are all gone or all there (one batch).
  void DeleteUnknown(std::vector<int64_t> steps) {
    unknown_delete_ = std::move(steps);
  }

  const std::map<int64_t, Shards>& acked() const { return acked_; }

  // What a recovery found, against the model.
  struct Check {
    std::vector<int64_t> lost;        // acked, not visible
    std::vector<int64_t> unexpected;  // visible, never acked nor in flight
    bool torn_delete = false;         // part of one delete batch applied
    std::optional<bool> unknown_commit_visible;
    std::optional<bool> unknown_delete_applied;

    bool ok() const {
      return lost.empty() && unexpected.empty() && !torn_delete;
    }
    std::string ToString() const {
      return absl::StrCat("lost [", absl::StrJoin(lost, ","), "] unexpected [",
                          absl::StrJoin(unexpected, ","), "] torn delete ",
                          torn_delete);
    }
  };

  // Compares the committed steps a recovered store lists with the model,
  // then settles the unknown operation by what was found: the visible set
  // must be the acked checkpoints (a prefix of commit order, minus
  // acknowledged deletes) plus possibly the one commit in flight, with the
  // delete in flight wholly applied or not at all.
  Check Recover(const std::set<int64_t>& visible) {
    Check check;
    if (!unknown_delete_.empty()) {
      size_t present = 0;
      for (int64_t step : unknown_delete_) present += visible.count(step);
      check.torn_delete = present != 0 && present != unknown_delete_.size();
      check.unknown_delete_applied = present == 0;
      if (present == 0) Deleted(unknown_delete_);
      unknown_delete_.clear();
    }
    for (const auto& [step, shards] : acked_) {
      if (visible.count(step) == 0) check.lost.push_back(step);
    }
    for (int64_t step : visible) {
      if (acked_.count(step) != 0) continue;
      if (unknown_commit_.has_value() && unknown_commit_->first == step) {
        continue;
      }
      check.unexpected.push_back(step);
    }
    if (unknown_commit_.has_value()) {
      const bool seen = visible.count(unknown_commit_->first) != 0;
      check.unknown_commit_visible = seen;
      if (seen) acked_[unknown_commit_->first] = unknown_commit_->second;
      unknown_commit_.reset();
    }
    // What was lost stays expected (and fails every later check too).
    return check;
  }

 private:
  std::map<int64_t, Shards> acked_;
  std::optional<std::pair<int64_t, Shards>> unknown_commit_;
  std::vector<int64_t> unknown_delete_;
};

}  // namespace ckpt::testing
