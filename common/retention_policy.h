// RetentionPolicy: a job's retention rules as plain data, stored with the
// job (JobRecord) and evaluated by common/retention.h. Split from it so the
// data model can hold a policy without depending on the evaluator.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace ckpt {

inline constexpr absl::Duration kMaxKeepWithin = absl::Hours(24 * 366 * 100);
inline constexpr int kMaxKeepCount = 1'000'000;
inline constexpr size_t kMaxKeepTags = 64;

struct RetentionPolicy {
  // The size of the active set of most recent checkpoints (TF's
  // `max_to_keep`). Must be >= 1, as TF raises ValueError for <= 0.
  // Default: nullopt: this rule keeps nothing by itself (TF's None keeps
  // everything, which an empty policy here does too).
  std::optional<int> max_to_keep;
  // TF's `keep_checkpoint_every_n_hours`: a checkpoint leaving the active set
  // is preserved when at least this long after the last preserved one. Must
  // be positive and finite, and needs max_to_keep: without an active set
  // nothing ever leaves it, so TF would never preserve anything either.
  // Default: nullopt (nothing preserved by time).
  std::optional<absl::Duration> keep_every;

  struct KeepBest {
    enum class Mode { kMin, kMax, kAuto };
    int k = 1;           // >= 1
    std::string metric;  // a key of CheckpointMetadata::metrics; non-empty
    Mode mode = Mode::kAuto;
    friend bool operator==(const KeepBest&, const KeepBest&) = default;
  };
  // Default: nullopt (no metric rule).
  std::optional<KeepBest> keep_best;

  // restic's --keep-within: every checkpoint less than this before the
  // newest checkpoint's time (not the clock's) is kept. Positive, at most
  // kMaxKeepWithin. Default: nullopt (no such rule).
  std::optional<absl::Duration> keep_within;
  // restic's --keep-hourly/-daily/-weekly/-monthly N: the newest checkpoint
  // of each of the N newest hours, days, ISO weeks or months (UTC) that
  // have a checkpoint. Each 1..kMaxKeepCount. Default: nullopt (no rule).
  std::optional<int> keep_hourly;
  std::optional<int> keep_daily;
  std::optional<int> keep_weekly;
  std::optional<int> keep_monthly;
  // restic's --keep-tag: a checkpoint carrying any of these tags (a key of
  // CheckpointMetadata::tags) is kept. Each a valid tag name
  // (common/tags.h: ValidateTagName), no repeats, at most kMaxKeepTags.
  // Default: none.
  std::vector<std::string> keep_tags;

  friend bool operator==(const RetentionPolicy&,
                         const RetentionPolicy&) = default;
};

// Whether `policy` uses a rule that servers before restic's rules drop
// silently (wire fields 4-9): keep_within, a calendar count or keep_tags.
inline bool UsesResticRules(const RetentionPolicy& policy) {
  return policy.keep_within.has_value() || policy.keep_hourly.has_value() ||
         policy.keep_daily.has_value() || policy.keep_weekly.has_value() ||
         policy.keep_monthly.has_value() || !policy.keep_tags.empty();
}

}  // namespace ckpt
