#include "common/best_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/quote.h"
#include "common/retention.h"
#include "common/status_macros.h"

namespace ckpt {
namespace {

// 0: ranked (a non-NaN value), 1: NaN, 2: no such metric.
int Group(const CheckpointRecord& record, absl::string_view metric) {
  auto it = record.metadata.metrics.find(std::string(metric));
  if (it == record.metadata.metrics.end()) return 2;
  return std::isnan(it->second) ? 1 : 0;
}

}  // namespace

bool ImprovesOn(double candidate, std::optional<double> best,
                MetricMode resolved) {
  if (std::isnan(candidate)) return false;
  if (!best.has_value() || std::isnan(*best)) return true;
  return resolved == MetricMode::kMin ? candidate < *best : candidate > *best;
}

absl::StatusOr<std::vector<CheckpointRecord>> SortByMetric(
    std::vector<CheckpointRecord> records, absl::string_view metric,
    MetricMode mode) {
  CKPT_ASSIGN_OR_RETURN(const MetricMode resolved,
                        ResolveMetricMode(metric, mode));
  std::sort(records.begin(), records.end(),
            [](const CheckpointRecord& a, const CheckpointRecord& b) {
              return a.step < b.step;
            });
  const std::string key(metric);
  std::stable_sort(records.begin(), records.end(),
                   [&](const CheckpointRecord& a, const CheckpointRecord& b) {
                     const int ga = Group(a, metric);
                     const int gb = Group(b, metric);
                     if (ga != gb) return ga < gb;
                     if (ga != 0) return false;
                     return ImprovesOn(a.metadata.metrics.at(key),
                                       b.metadata.metrics.at(key), resolved);
                   });
  return records;
}

absl::StatusOr<CheckpointRecord> BestCheckpoint(
    absl::Span<const CheckpointRecord> records, absl::string_view metric,
    MetricMode mode) {
  std::vector<CheckpointRecord> committed;
  size_t with_metric = 0;
  for (const CheckpointRecord& record : records) {
    if (record.state != CheckpointState::kCommitted) continue;
    if (Group(record, metric) != 2) ++with_metric;
    committed.push_back(record);
  }
  CKPT_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> sorted,
                        SortByMetric(std::move(committed), metric, mode));
  if (sorted.empty() || Group(sorted.front(), metric) != 0) {
    if (with_metric == 0) {
      return absl::NotFoundError(absl::StrCat(
          "none of the ", sorted.size(), " committed checkpoints has metric ",
          QuoteTruncated(metric), " to rank by"));
    }
    return absl::NotFoundError(absl::StrCat(
        "every one of the ", with_metric, " committed checkpoints with metric ",
        QuoteTruncated(metric), " has it NaN, which is never best"));
  }
  return std::move(sorted.front());
}

}  // namespace ckpt
