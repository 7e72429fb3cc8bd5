// Retention policy: which of a job's committed checkpoints to keep and which
// to delete, with the reason for every decision.
//
// Pure: no I/O and no clock reads (every time is an input), so the server's
// enforcement at commit, `ckpt prune --dry-run` and the real prune all call
// the same function and agree by construction.
//
// Rules, combined by union as Orbax's preservation policies are: a
// checkpoint is deleted only when no rule keeps it.
//  - max_to_keep / keep_every: tf.train.CheckpointManager's `max_to_keep`
//    and `keep_checkpoint_every_n_hours`, reproduced by replaying the saves
//    in step order exactly as a manager would have seen them one at a time
//    (CheckpointManager._sweep): after each save, while more than
//    max_to_keep checkpoints are in the active set, the oldest leaves it; it
//    is preserved if `time - keep_every >= last_preserved` (then
//    last_preserved = its time), otherwise deleted. last_preserved starts at
//    the clock start. A preserved checkpoint no longer counts toward
//    max_to_keep and is never deleted by this rule.
//  - keep_best: the K best checkpoints by a metric (min, max or auto, see
//    ResolveMetricMode). A checkpoint without the metric is kept and says
//    so; a NaN value is never among the best. When no checkpoint has a
//    (non-NaN) value for the metric the rule decides nothing: it keeps
//    nothing by itself, and RetentionWarnings says "no checkpoint has
//    metric M" (before, every checkpoint was kept as "no metric",
//    silently cancelling the other rules). A policy left without a rule
//    that decides keeps everything, as an empty one does.
//  - restic's `forget` rules (restic's ApplyPolicy, with UTC for the
//    snapshots' local time):
//    - keep_within D: every checkpoint whose time is after (newest - D),
//      where newest is the latest checkpoint time, not the clock; but
//      never later than `now` when the caller gives it, so that one
//      checkpoint dated in the future (a writer's clock, `put --time`)
//      cannot push every other one out of the window (restic would).
//    - keep_hourly/daily/weekly/monthly N: walking the checkpoints newest
//      first by time, one is kept when its hour (day, ISO 8601 week, month)
//      differs from the last one kept by that rule, N times at most: the
//      newest checkpoint of each of the N newest buckets that have one.
//      Equal times: the higher step counts as newer.
//    - keep_tags: a checkpoint carrying any of the tags (keys of its
//      metadata tags). Unlike restic, a comma is no list separator.
//  - pinned: always kept.
//  - newest: the checkpoint with the highest step is always kept, so a job
//    can resume (unlike Orbax issue 526, where best_fn may delete it).
//  - bases: a checkpoint kept for any reason (this one included) keeps the
//    checkpoints its row deltas are taken against (RetentionInput::
//    base_steps), transitively, so a kept consecutive delta chain keeps the
//    whole chain down to its full save; so do pending checkpoints whose
//    committed ranks already use a base. Without its base a delta cannot
//    be restored.
// Each rule is evaluated on the whole input independently (a checkpoint kept
// by a pin still occupies a slot in the max_to_keep active set), and the
// result is the union.
//
// Properties the tests check: with a fixed clock start, evaluating again on
// the kept set keeps all of it, and evaluating after every save on the
// surviving checkpoints ends with the same set as one evaluation over the
// whole history (for fixed pins), with delta bases too as long as each
// delta's bases were still committed when it committed, as the server
// requires.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/manifest.h"
#include "common/retention_policy.h"

namespace ckpt {

// "min", "max" or "auto".
absl::string_view MetricModeName(RetentionPolicy::KeepBest::Mode mode);

// The policy on one line, for people (`ckpt policy`, event details), e.g.
// "max_to_keep=3 keep_every=6h keep_best=2 by val_loss (min)"; "keep
// everything" for an empty policy.
std::string RetentionPolicyText(const RetentionPolicy& policy);

// The direction `mode` means for `metric`: kMin or kMax, never kAuto.
// kAuto follows Keras 2's ModelCheckpoint/EarlyStopping: a name containing
// "acc" or starting with "fmeasure" is maximised; beyond Keras, a name
// containing "loss" is minimised and anything else (Keras 2 would silently
// minimise it) is INVALID_ARGUMENT asking for an explicit mode, as Keras 3
// does for a metric whose direction it cannot tell. A name that is both
// acc-like and loss-like (e.g. "accumulated_loss") is ambiguous and also
// INVALID_ARGUMENT. Matching is case-sensitive, as in Keras.
absl::StatusOr<RetentionPolicy::KeepBest::Mode> ResolveMetricMode(
    absl::string_view metric, RetentionPolicy::KeepBest::Mode mode);

// OK, or INVALID_ARGUMENT naming the offending field: max_to_keep < 1,
// keep_every <= 0, infinite or without max_to_keep, k < 1, an empty metric
// name, an auto mode that ResolveMetricMode cannot resolve, keep_within
// <= 0 or past kMaxKeepWithin, a calendar count outside 1..kMaxKeepCount,
// more than kMaxKeepTags keep_tags, or one that is no valid tag name
// (common/tags.h: ValidateTagName) or is repeated.
absl::Status ValidateRetentionPolicy(const RetentionPolicy& policy);

// One committed checkpoint as the policy sees it. Pending and aborted
// checkpoints must not be passed: they are never counted or deleted.
struct RetentionInput {
  int64_t step = 0;
  absl::Time time = absl::UnixEpoch();  // CheckpointRecord::EffectiveTime()
  std::map<std::string, double> metrics;
  bool pinned = false;
  // Steps its row deltas are taken against (CheckpointRecord::base_steps),
  // each lower than `step`.
  std::vector<int64_t> base_steps;
  // The names of its tags (CheckpointMetadata::tags' keys), sorted.
  std::vector<std::string> tags;
};

// The policy's view of a committed record.
RetentionInput ToRetentionInput(const CheckpointRecord& record, bool pinned);

// The calendar counts by field name, hourly to monthly:
// {"keep_hourly", policy.keep_hourly}, ...
std::vector<std::pair<absl::string_view, std::optional<int>>> CalendarCounts(
    const RetentionPolicy& policy);

// What an operator must hear about evaluating `policy` on `checkpoints`
// (the same inputs as EvaluateRetention), beyond the decisions: "keep_best
// decides nothing: no checkpoint has metric M" when there are checkpoints
// and none has a value for keep_best's metric. Empty when all is well.
std::vector<std::string> RetentionWarnings(
    const RetentionPolicy& policy,
    const std::vector<RetentionInput>& checkpoints);

struct RetentionDecision {
  int64_t step = 0;
  bool keep = false;
  // When kept: every rule that keeps it ("among the 3 most recent",
  // "preserved: every 6h", "best 2 by val_loss (min)", "no metric val_loss",
  // "pinned", "newest", "no retention policy", "base of step 12", "base of
  // pending step 14"). When deleted: why each
  // configured rule did not keep it.
  std::vector<std::string> reasons;
};

// One decision per input, sorted by step ascending. `checkpoints` may come
// in any order; saves are replayed in step order (a training job saves in
// step order, and step is what the server orders a job's checkpoints by,
// whereas times may come from different writers' clocks).
// `every_n_hours_clock_start` is the initial last-preserved time (TF: the
// manager's creation time); nullopt means the time of the lowest-step
// checkpoint. To keep decisions stable as old checkpoints are deleted, the
// caller should pass the job's first checkpoint time once it has one.
// `pending_bases` maps each pending checkpoint's step to the bases its
// committed ranks already use (CheckpointRecord::base_steps); those are kept
// too. Base steps that are no input are ignored. `now` (the server's clock)
// caps keep_within's newest time; nullopt: no cap.
// An empty policy keeps everything. INVALID_ARGUMENT for an invalid policy
// or two inputs with the same step.
absl::StatusOr<std::vector<RetentionDecision>> EvaluateRetention(
    const RetentionPolicy& policy, std::vector<RetentionInput> checkpoints,
    std::optional<absl::Time> every_n_hours_clock_start,
    const std::map<int64_t, std::vector<int64_t>>& pending_bases = {},
    std::optional<absl::Time> now = std::nullopt);

}  // namespace ckpt
