// The best checkpoint by a metric: `ckpt get JOB best --metric M`,
// `ckpt ls --sort M`, CheckpointManager.best_step() and save_best_only all
// rank checkpoints by these rules, which are keep-best retention's
// (common/retention.h): the mode resolved by ResolveMetricMode, a NaN value
// never best, a checkpoint without the metric not ranked, and ties going to
// the older checkpoint (Keras's save_best_only replaces its best only on a
// strict improvement).
#pragma once

#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/manifest.h"
#include "common/retention_policy.h"

namespace ckpt {

using MetricMode = RetentionPolicy::KeepBest::Mode;

// Whether `candidate` is strictly better than `best` under `resolved` (kMin
// or kMax); any non-NaN value improves on nullopt, NaN never improves.
bool ImprovesOn(double candidate, std::optional<double> best,
                MetricMode resolved);

// The best of the committed `records` by `metric`. INVALID_ARGUMENT when
// the mode cannot be resolved (ResolveMetricMode); NOT_FOUND when no
// committed record has a non-NaN value of the metric (the message says how
// many have it at all).
absl::StatusOr<CheckpointRecord> BestCheckpoint(
    absl::Span<const CheckpointRecord> records, absl::string_view metric,
    MetricMode mode);

// `records` ordered best first by `metric`: ranked ones (ties older first),
// then those whose value is NaN, then those without it, each group in step
// order. INVALID_ARGUMENT when the mode cannot be resolved.
absl::StatusOr<std::vector<CheckpointRecord>> SortByMetric(
    std::vector<CheckpointRecord> records, absl::string_view metric,
    MetricMode mode);

}  // namespace ckpt
