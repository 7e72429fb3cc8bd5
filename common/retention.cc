#include "common/retention.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/duration_text.h"
#include "common/manifest.h"
#include "common/quote.h"
#include "common/status_macros.h"
#include "common/tags.h"

namespace ckpt {
namespace {

using Mode = RetentionPolicy::KeepBest::Mode;

// Each rule appends to keep[i] when it keeps checkpoint i (inputs sorted by
// step) and to drop[i] why not otherwise.

// max_to_keep / keep_every.
void ApplyCheckpointManagerRule(const RetentionPolicy& policy,
                                const std::vector<RetentionInput>& sorted,
                                absl::Time clock_start,
                                std::vector<std::vector<std::string>>& keep,
                                std::vector<std::vector<std::string>>& drop) {
  const size_t n = sorted.size();
  const size_t max_to_keep = static_cast<size_t>(*policy.max_to_keep);
  // A manager's queue after the last save holds the max_to_keep newest; the
  // older ones left it oldest first, each tested against last_preserved as
  // it stood at that moment, which is this loop's order.
  const size_t first_active = n > max_to_keep ? n - max_to_keep : 0;
  const std::string active_reason =
      absl::StrCat("among the ", max_to_keep, " most recent");
  absl::Time last_preserved = clock_start;
  for (size_t i = 0; i < first_active; ++i) {
    if (policy.keep_every.has_value()) {
      const std::string every = absl::FormatDuration(*policy.keep_every);
      if (sorted[i].time - *policy.keep_every >= last_preserved) {
        last_preserved = sorted[i].time;
        keep[i].push_back(absl::StrCat("preserved: every ", every));
        continue;
      }
      drop[i].push_back(absl::StrCat("not ", active_reason,
                                     " and not preserved: less than ", every,
                                     " after the last preserved checkpoint"));
      continue;
    }
    drop[i].push_back(absl::StrCat("not ", active_reason));
  }
  for (size_t i = first_active; i < n; ++i) keep[i].push_back(active_reason);
}

absl::Status ApplyKeepBestRule(const RetentionPolicy::KeepBest& best,
                               const std::vector<RetentionInput>& sorted,
                               std::vector<std::vector<std::string>>& keep,
                               std::vector<std::vector<std::string>>& drop) {
  CKPT_ASSIGN_OR_RETURN(const Mode mode,
                        ResolveMetricMode(best.metric, best.mode));
  const std::string best_reason = absl::StrCat(
      "best ", best.k, " by ", best.metric, " (", MetricModeName(mode), ")");
  std::vector<size_t> ranked;
  for (size_t i = 0; i < sorted.size(); ++i) {
    auto it = sorted[i].metrics.find(best.metric);
    if (it == sorted[i].metrics.end()) {
      keep[i].push_back(absl::StrCat("no metric ", best.metric));
    } else if (std::isnan(it->second)) {
      drop[i].push_back(
          absl::StrCat(best.metric, " is NaN, never among the best"));
    } else {
      ranked.push_back(i);
    }
  }
  // Ties go to the older checkpoint, as Keras's save_best_only only replaces
  // its best on a strict improvement. `ranked` is in step order, so a stable
  // sort breaks ties by step.
  std::stable_sort(ranked.begin(), ranked.end(), [&](size_t a, size_t b) {
    const double va = sorted[a].metrics.at(best.metric);
    const double vb = sorted[b].metrics.at(best.metric);
    return mode == Mode::kMin ? va < vb : va > vb;
  });
  for (size_t r = 0; r < ranked.size(); ++r) {
    if (r < static_cast<size_t>(best.k)) {
      keep[ranked[r]].push_back(best_reason);
    } else {
      drop[ranked[r]].push_back(absl::StrCat("not ", best_reason));
    }
  }
  return absl::OkStatus();
}

// Whether keep_best can rank anything: some checkpoint has a (non-NaN)
// value for its metric. Without one the rule decides nothing, instead of
// keeping every checkpoint as "no metric" and so cancelling the other rules.
bool AnyHasMetricValue(const std::vector<RetentionInput>& checkpoints,
                       const std::string& metric) {
  return std::any_of(checkpoints.begin(), checkpoints.end(),
                     [&](const RetentionInput& in) {
                       auto it = in.metrics.find(metric);
                       return it != in.metrics.end() && !std::isnan(it->second);
                     });
}

std::string NoMetricText(const std::string& metric) {
  return absl::StrCat("keep_best decides nothing: no checkpoint has metric ",
                      metric);
}

// restic: measured from the newest checkpoint's time (the latest of all,
// whatever its step), strictly after `newest - within`.
void ApplyKeepWithinRule(absl::Duration within,
                         const std::vector<RetentionInput>& sorted,
                         std::optional<absl::Time> now,
                         std::vector<std::vector<std::string>>& keep,
                         std::vector<std::vector<std::string>>& drop) {
  if (sorted.empty()) return;
  absl::Time newest = sorted.front().time;
  for (const RetentionInput& in : sorted) newest = std::max(newest, in.time);
  if (now.has_value()) newest = std::min(newest, *now);
  const std::string text = FormatDurationText(within);
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (sorted[i].time > newest - within) {
      keep[i].push_back(absl::StrCat("within ", text, " of the newest"));
    } else {
      drop[i].push_back(absl::StrCat("not within ", text, " of the newest"));
    }
  }
}

struct CalendarBucket {
  const char* name;    // "hourly"
  const char* unit;    // "hours"
  const char* format;  // absl::FormatTime, UTC: equal text, same bucket
};

// restic's ApplyPolicy for one bucket kind: walking the checkpoints newest
// first (by time; the higher step first on equal times), one is kept when
// its bucket differs from the last kept one's, while the count lasts. As
// buckets are contiguous in time, that keeps the newest checkpoint of each
// of the `count` newest buckets.
void ApplyCalendarRule(const CalendarBucket& bucket, int count,
                       const std::vector<RetentionInput>& sorted,
                       std::vector<std::vector<std::string>>& keep,
                       std::vector<std::vector<std::string>>& drop) {
  std::vector<size_t> newest_first(sorted.size());
  for (size_t i = 0; i < sorted.size(); ++i) newest_first[i] = i;
  std::sort(newest_first.begin(), newest_first.end(), [&](size_t a, size_t b) {
    if (sorted[a].time != sorted[b].time)
      return sorted[a].time > sorted[b].time;
    return sorted[a].step > sorted[b].step;
  });
  std::optional<std::string> last_kept;
  int left = count;
  for (size_t i : newest_first) {
    std::string key =
        absl::FormatTime(bucket.format, sorted[i].time, absl::UTCTimeZone());
    if (last_kept == key) {
      drop[i].push_back(
          absl::StrCat(bucket.name, ": a newer checkpoint is kept for ", key));
    } else if (left > 0) {
      keep[i].push_back(absl::StrCat(bucket.name, ": newest of ", key));
      last_kept = std::move(key);
      --left;
    } else {
      drop[i].push_back(absl::StrCat(bucket.name, ": older than the ", count,
                                     " newest ", bucket.unit));
    }
  }
}

void ApplyKeepTagsRule(const std::vector<std::string>& keep_tags,
                       const std::vector<RetentionInput>& sorted,
                       std::vector<std::vector<std::string>>& keep,
                       std::vector<std::vector<std::string>>& drop) {
  for (size_t i = 0; i < sorted.size(); ++i) {
    std::vector<std::string> carried;
    for (const std::string& tag : keep_tags) {
      if (std::binary_search(sorted[i].tags.begin(), sorted[i].tags.end(),
                             tag)) {
        carried.push_back(tag);
      }
    }
    if (carried.empty()) {
      drop[i].push_back(
          absl::StrCat("not tagged ", absl::StrJoin(keep_tags, " or ")));
    } else {
      keep[i].push_back(absl::StrCat("tagged ", absl::StrJoin(carried, ", ")));
    }
  }
}

absl::Status ValidateCount(absl::string_view field,
                           const std::optional<int>& count) {
  if (!count.has_value() || (*count >= 1 && *count <= kMaxKeepCount)) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      field, " must be 1 to ", kMaxKeepCount, " (or unset), got ", *count));
}

// A keep_tags name or a keep_best metric as RetentionPolicyText shows it:
// as it is, or quoted and escaped when it holds a comma, a space, a quote,
// a backslash, a parenthesis or a byte that does not print, so that the
// text (which policy_owner.h digests to tell policies apart) reads one way
// only: a metric cannot pose as "(min) keep_within=...".
std::string PolicyNameText(const std::string& name) {
  const bool plain = IsPrintableUtf8(name) &&
                     name.find_first_of(", \"\\()") == std::string::npos;
  return plain ? name : absl::StrCat("\"", absl::CHexEscape(name), "\"");
}

// keep_tags: at most kMaxKeepTags names, each a valid tag name
// (common/tags.h, the one set of tag rules), none repeated.
absl::Status ValidateKeepTags(const std::vector<std::string>& tags) {
  if (tags.size() > kMaxKeepTags) {
    return absl::InvalidArgumentError(absl::StrCat(
        "keep_tags: at most ", kMaxKeepTags, " tags, got ", tags.size()));
  }
  for (size_t i = 0; i < tags.size(); ++i) {
    const std::string& tag = tags[i];
    if (absl::Status valid = ValidateTagName(tag); !valid.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("keep_tags: ", valid.message()));
    }
    if (std::find(tags.begin(), tags.begin() + i, tag) != tags.begin() + i) {
      return absl::InvalidArgumentError(
          absl::StrCat("keep_tags: ", QuoteTruncated(tag), " is given twice"));
    }
  }
  return absl::OkStatus();
}

// "base of step 6" or "base of pending steps 6, 8" (`dependents` ascending).
std::string BaseReason(absl::string_view kind,
                       const std::vector<int64_t>& dependents) {
  return absl::StrCat("base of ", kind,
                      dependents.size() == 1 ? "step " : "steps ",
                      absl::StrJoin(dependents, ", "));
}

// Adds a reason to keep[i] for every checkpoint that a kept one, or a pending
// one, uses as a delta base. A base is older than its dependents, so one pass
// from the newest down sees every dependent of a checkpoint, kept by then,
// before the checkpoint itself: chains are kept whole.
void KeepBases(const std::vector<RetentionInput>& sorted,
               const std::map<int64_t, std::vector<int64_t>>& pending_bases,
               std::vector<std::vector<std::string>>& keep) {
  const size_t n = sorted.size();
  auto index_of = [&](int64_t step) -> std::optional<size_t> {
    auto it = std::lower_bound(
        sorted.begin(), sorted.end(), step,
        [](const RetentionInput& in, int64_t s) { return in.step < s; });
    if (it == sorted.end() || it->step != step) return std::nullopt;
    return static_cast<size_t>(it - sorted.begin());
  };
  std::vector<std::vector<int64_t>> pending_dependents(n);
  for (const auto& [pending_step, bases] : pending_bases) {
    for (int64_t base : bases) {
      if (std::optional<size_t> b = index_of(base); b.has_value()) {
        pending_dependents[*b].push_back(pending_step);
      }
    }
  }
  std::vector<std::vector<int64_t>> dependents(n);
  for (size_t i = n; i-- > 0;) {
    if (!dependents[i].empty()) {
      std::reverse(dependents[i].begin(), dependents[i].end());
      keep[i].push_back(BaseReason("", dependents[i]));
    }
    if (!pending_dependents[i].empty()) {
      keep[i].push_back(BaseReason("pending ", pending_dependents[i]));
    }
    if (keep[i].empty()) continue;
    for (int64_t base : sorted[i].base_steps) {
      std::optional<size_t> b = index_of(base);
      // A base is older; anything else is no input to act on.
      if (b.has_value() && *b < i) dependents[*b].push_back(sorted[i].step);
    }
  }
}

}  // namespace

absl::string_view MetricModeName(Mode mode) {
  switch (mode) {
    case Mode::kMin:
      return "min";
    case Mode::kMax:
      return "max";
    case Mode::kAuto:
      break;
  }
  return "auto";
}

std::string RetentionPolicyText(const RetentionPolicy& policy) {
  std::vector<std::string> parts;
  if (policy.max_to_keep.has_value()) {
    parts.push_back(absl::StrCat("max_to_keep=", *policy.max_to_keep));
  }
  if (policy.keep_every.has_value()) {
    parts.push_back(
        absl::StrCat("keep_every=", absl::FormatDuration(*policy.keep_every)));
  }
  if (policy.keep_best.has_value()) {
    parts.push_back(absl::StrCat("keep_best=", policy.keep_best->k, " by ",
                                 PolicyNameText(policy.keep_best->metric), " (",
                                 MetricModeName(policy.keep_best->mode), ")"));
  }
  if (policy.keep_within.has_value()) {
    parts.push_back(
        absl::StrCat("keep_within=", FormatDurationText(*policy.keep_within)));
  }
  for (const auto& [name, count] : CalendarCounts(policy)) {
    if (count.has_value()) parts.push_back(absl::StrCat(name, "=", *count));
  }
  if (!policy.keep_tags.empty()) {
    parts.push_back(absl::StrCat(
        "keep_tags=",
        absl::StrJoin(policy.keep_tags, ",",
                      [](std::string* out, const std::string& tag) {
                        out->append(PolicyNameText(tag));
                      })));
  }
  if (parts.empty()) return "keep everything";
  return absl::StrJoin(parts, " ");
}

absl::StatusOr<Mode> ResolveMetricMode(absl::string_view metric, Mode mode) {
  if (mode != Mode::kAuto) return mode;
  const bool acc_like =
      absl::StrContains(metric, "acc") || absl::StartsWith(metric, "fmeasure");
  const bool loss_like = absl::StrContains(metric, "loss");
  if (acc_like && !loss_like) return Mode::kMax;
  if (loss_like && !acc_like) return Mode::kMin;
  return absl::InvalidArgumentError(absl::StrCat(
      "cannot tell whether metric ", QuoteTruncated(metric),
      " should be minimised or maximised (auto mode knows names containing "
      "\"loss\" or \"acc\", or starting with \"fmeasure\"); pass mode min or "
      "max"));
}

absl::Status ValidateRetentionPolicy(const RetentionPolicy& policy) {
  if (policy.max_to_keep.has_value() && *policy.max_to_keep < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_to_keep must be at least 1 (or unset to keep all), "
                     "got ",
                     *policy.max_to_keep));
  }
  if (policy.keep_every.has_value()) {
    if (*policy.keep_every <= absl::ZeroDuration() ||
        *policy.keep_every == absl::InfiniteDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat("keep_every must be positive and finite, got ",
                       absl::FormatDuration(*policy.keep_every)));
    }
    if (!policy.max_to_keep.has_value()) {
      return absl::InvalidArgumentError(
          "keep_every needs max_to_keep: checkpoints are only preserved by "
          "time when they leave the max_to_keep most recent");
    }
  }
  if (policy.keep_within.has_value() &&
      (*policy.keep_within <= absl::ZeroDuration() ||
       *policy.keep_within > kMaxKeepWithin)) {
    return absl::InvalidArgumentError(
        absl::StrCat("keep_within must be positive and at most 100 years, got ",
                     FormatDurationText(*policy.keep_within)));
  }
  for (const auto& [name, count] : CalendarCounts(policy)) {
    CKPT_RETURN_IF_ERROR(ValidateCount(name, count));
  }
  CKPT_RETURN_IF_ERROR(ValidateKeepTags(policy.keep_tags));
  if (policy.keep_best.has_value()) {
    const RetentionPolicy::KeepBest& best = *policy.keep_best;
    if (best.k < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("keep_best: k must be at least 1, got ", best.k));
    }
    if (best.metric.empty()) {
      return absl::InvalidArgumentError("keep_best: metric name is empty");
    }
    if (best.metric.size() > kMaxMetricNameBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "keep_best: metric name ", QuoteTruncated(best.metric),
          " is longer than the ", kMaxMetricNameBytes, "-byte limit"));
    }
    if (absl::StatusOr<RetentionPolicy::KeepBest::Mode> resolved =
            ResolveMetricMode(best.metric, best.mode);
        !resolved.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("keep_best: ", resolved.status().message()));
    }
  }
  return absl::OkStatus();
}

RetentionInput ToRetentionInput(const CheckpointRecord& record, bool pinned) {
  RetentionInput in{.step = record.step,
                    .time = record.EffectiveTime(),
                    .metrics = record.metadata.metrics,
                    .pinned = pinned,
                    .base_steps = record.base_steps,
                    .tags = {}};
  for (const auto& [name, value] : record.metadata.tags)
    in.tags.push_back(name);
  return in;
}

std::vector<std::pair<absl::string_view, std::optional<int>>> CalendarCounts(
    const RetentionPolicy& policy) {
  return {{"keep_hourly", policy.keep_hourly},
          {"keep_daily", policy.keep_daily},
          {"keep_weekly", policy.keep_weekly},
          {"keep_monthly", policy.keep_monthly}};
}

std::vector<std::string> RetentionWarnings(
    const RetentionPolicy& policy,
    const std::vector<RetentionInput>& checkpoints) {
  std::vector<std::string> warnings;
  if (policy.keep_best.has_value() && !checkpoints.empty() &&
      !AnyHasMetricValue(checkpoints, policy.keep_best->metric)) {
    warnings.push_back(NoMetricText(policy.keep_best->metric));
  }
  return warnings;
}

absl::StatusOr<std::vector<RetentionDecision>> EvaluateRetention(
    const RetentionPolicy& policy, std::vector<RetentionInput> checkpoints,
    std::optional<absl::Time> every_n_hours_clock_start,
    const std::map<int64_t, std::vector<int64_t>>& pending_bases,
    std::optional<absl::Time> now) {
  CKPT_RETURN_IF_ERROR(ValidateRetentionPolicy(policy));
  std::sort(checkpoints.begin(), checkpoints.end(),
            [](const RetentionInput& a, const RetentionInput& b) {
              return a.step < b.step;
            });
  for (size_t i = 1; i < checkpoints.size(); ++i) {
    if (checkpoints[i].step == checkpoints[i - 1].step) {
      return absl::InvalidArgumentError(absl::StrCat(
          "retention input has step ", checkpoints[i].step, " twice"));
    }
  }
  const size_t n = checkpoints.size();
  std::vector<std::vector<std::string>> keep(n);
  std::vector<std::vector<std::string>> drop(n);
  if (policy.max_to_keep.has_value()) {
    ApplyCheckpointManagerRule(
        policy, checkpoints,
        every_n_hours_clock_start.value_or(n > 0 ? checkpoints.front().time
                                                 : absl::UnixEpoch()),
        keep, drop);
  }
  const bool best_decides =
      policy.keep_best.has_value() &&
      AnyHasMetricValue(checkpoints, policy.keep_best->metric);
  if (best_decides) {
    CKPT_RETURN_IF_ERROR(
        ApplyKeepBestRule(*policy.keep_best, checkpoints, keep, drop));
  } else if (policy.keep_best.has_value()) {
    for (size_t i = 0; i < n; ++i) {
      drop[i].push_back(NoMetricText(policy.keep_best->metric));
    }
  }
  if (policy.keep_within.has_value()) {
    ApplyKeepWithinRule(*policy.keep_within, checkpoints, now, keep, drop);
  }
  static constexpr CalendarBucket kBuckets[] = {
      {"hourly", "hours", "%Y-%m-%dT%H"},
      {"daily", "days", "%Y-%m-%d"},
      {"weekly", "weeks", "%G-W%V"},
      {"monthly", "months", "%Y-%m"}};
  const std::optional<int> counts[] = {policy.keep_hourly, policy.keep_daily,
                                       policy.keep_weekly, policy.keep_monthly};
  bool any_bucket = false;
  for (size_t b = 0; b < 4; ++b) {
    if (!counts[b].has_value()) continue;
    any_bucket = true;
    ApplyCalendarRule(kBuckets[b], *counts[b], checkpoints, keep, drop);
  }
  if (!policy.keep_tags.empty()) {
    ApplyKeepTagsRule(policy.keep_tags, checkpoints, keep, drop);
  }
  // A policy whose only rule is a keep_best that decides nothing keeps
  // everything, as an empty one does.
  const bool no_rule = !policy.max_to_keep.has_value() && !best_decides &&
                       !policy.keep_within.has_value() && !any_bucket &&
                       policy.keep_tags.empty();
  const std::string everything_reason =
      policy.keep_best.has_value() ? NoMetricText(policy.keep_best->metric)
                                   : "no retention policy";
  for (size_t i = 0; i < n; ++i) {
    if (checkpoints[i].pinned) keep[i].push_back("pinned");
    if (i + 1 == n) keep[i].push_back("newest");
    if (no_rule) keep[i].push_back(everything_reason);
  }
  KeepBases(checkpoints, pending_bases, keep);
  std::vector<RetentionDecision> decisions;
  decisions.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const bool kept = !keep[i].empty();
    decisions.push_back(RetentionDecision{
        .step = checkpoints[i].step,
        .keep = kept,
        .reasons = kept ? std::move(keep[i]) : std::move(drop[i])});
  }
  return decisions;
}

}  // namespace ckpt
