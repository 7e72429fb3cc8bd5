// Helpers of the retention tests (common/retention_test.cc, the TF rules,
// and common/retention_restic_test.cc, restic's): inputs at given times,
// the kept steps of a decision list, and TF's CheckpointManager replayed
// save by save as the reference for max_to_keep and keep_every.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/retention.h"
#include "gtest/gtest.h"

namespace ckpt::retention_testing {

// Seconds since an arbitrary base, as TF's mocked time.time() returns.
inline absl::Time At(double seconds) {
  return absl::FromUnixSeconds(1'700'000'000) + absl::Seconds(seconds);
}
inline absl::Time AtHours(double hours) { return At(hours * 3600); }

inline RetentionInput Ckpt(int64_t step, absl::Time time,
                           std::map<std::string, double> metrics = {},
                           bool pinned = false) {
  return RetentionInput{.step = step,
                        .time = time,
                        .metrics = std::move(metrics),
                        .pinned = pinned,
                        .base_steps = {},
                        .tags = {}};
}

inline std::vector<int64_t> KeptSteps(
    const std::vector<RetentionDecision>& ds) {
  std::vector<int64_t> out;
  for (const RetentionDecision& d : ds) {
    if (d.keep) out.push_back(d.step);
  }
  return out;
}

inline std::set<int64_t> KeptSet(const std::vector<RetentionDecision>& ds) {
  std::vector<int64_t> kept = KeptSteps(ds);
  return {kept.begin(), kept.end()};
}

inline std::vector<int64_t> Kept(const RetentionPolicy& policy,
                                 std::vector<RetentionInput> in,
                                 std::optional<absl::Time> clock_start = {}) {
  absl::StatusOr<std::vector<RetentionDecision>> ds =
      EvaluateRetention(policy, std::move(in), clock_start);
  EXPECT_TRUE(ds.ok()) << ds.status();
  return ds.ok() ? KeptSteps(*ds) : std::vector<int64_t>{};
}

inline const RetentionDecision& DecisionFor(
    const std::vector<RetentionDecision>& ds, int64_t step) {
  auto it = std::find_if(ds.begin(), ds.end(), [&](const RetentionDecision& d) {
    return d.step == step;
  });
  EXPECT_NE(it, ds.end()) << "no decision for step " << step;
  return *it;
}

inline std::vector<RetentionInput> SortedByStep(
    std::vector<RetentionInput> saves) {
  std::sort(saves.begin(), saves.end(),
            [](const RetentionInput& a, const RetentionInput& b) {
              return a.step < b.step;
            });
  return saves;
}

// TF's CheckpointManager, save by save: the _maybe_delete queue and
// _last_preserved_timestamp, as straightforwardly as possible.
inline std::set<int64_t> ReferenceManager(const RetentionPolicy& policy,
                                          std::vector<RetentionInput> saves,
                                          absl::Time last_preserved) {
  std::sort(saves.begin(), saves.end(),
            [](const RetentionInput& a, const RetentionInput& b) {
              return a.step < b.step;
            });
  std::set<int64_t> on_disk;
  std::deque<RetentionInput> maybe_delete;
  for (const RetentionInput& save : saves) {
    on_disk.insert(save.step);
    maybe_delete.push_back(save);
    if (!policy.max_to_keep.has_value()) continue;  // TF: `if not max_to_keep`
    while (maybe_delete.size() > static_cast<size_t>(*policy.max_to_keep)) {
      const RetentionInput oldest = maybe_delete.front();
      maybe_delete.pop_front();
      if (policy.keep_every.has_value() &&
          oldest.time - *policy.keep_every >= last_preserved) {
        last_preserved = oldest.time;
        continue;
      }
      on_disk.erase(oldest.step);
    }
  }
  return on_disk;
}

}  // namespace ckpt::retention_testing
