#include "client/cli/json_output.h"

#include <iostream>
#include <string>

#include "absl/time/time.h"
#include "client/cli/format.h"
#include "common/duration_text.h"

namespace ckpt::cli {

using nlohmann::json;

void PrintJson(const json& value) { std::cout << value.dump(2) << "\n"; }

json MetadataJson(const CheckpointMetadata& metadata) {
  json metrics = json::object();
  for (const auto& [name, value] : metadata.metrics) metrics[name] = value;
  json tags = json::object();
  for (const auto& [key, value] : metadata.tags) tags[key] = value;
  return {{"metrics", metrics}, {"tags", tags}};
}

json RecordJson(const CheckpointRecord& record) {
  json metadata = MetadataJson(record.metadata);
  json out = {
      {"job", record.job},
      {"step", record.step},
      {"state", std::string(CheckpointStateName(record.state))},
      {"time", FormatTimestamp(DisplayTime(record))},
      {"world_size", record.world_size},
      {"logical_bytes", record.logical_bytes},
      {"metrics", metadata["metrics"]},
      {"tags", metadata["tags"]},
      {"committed_ranks", record.committed_ranks},
      {"create_time", FormatTimestamp(record.create_time)},
      {"pinned", record.pinned},
      {"kind", std::string(CheckpointKindName(record))},
      // The highest when its deltas use several bases.
      {"base_step", record.base_steps.empty() ? json(nullptr)
                                              : json(record.base_steps.back())},
      {"base_steps", record.base_steps},
      {"bytes_added", record.bytes_added},
      // Where a copy between servers (`ckpt copy`) took it from.
      {"copied_from", record.copied_from.has_value()
                          ? json{{"server", record.copied_from->server},
                                 {"job", record.copied_from->job},
                                 {"step", record.copied_from->step}}
                          : json(nullptr)},
  };
  if (record.state == CheckpointState::kCommitted) {
    out["commit_time"] = FormatTimestamp(record.commit_time);
  }
  if (record.state == CheckpointState::kPending) {
    out["lease_expiry"] = FormatTimestamp(record.lease_expiry);
  }
  if (record.state == CheckpointState::kAborted) {
    out["abort_reason"] = record.abort_reason;
  }
  return out;
}

json PolicyOriginJson(const std::optional<PolicyOrigin>& origin) {
  if (!origin.has_value()) return json(nullptr);
  return {
      {"source", std::string(PolicySourceName(origin->source))},
      {"principal",
       origin->principal.empty() ? json(nullptr) : json(origin->principal)},
      {"time", origin->time.has_value() ? json(FormatTimestamp(*origin->time))
                                        : json(nullptr)},
      {"inferred", origin->inferred}};
}

json PolicyJson(const RetentionPolicy& policy) {
  json out = {{"max_to_keep", nullptr},
              {"keep_every", nullptr},
              {"keep_every_seconds", nullptr},
              {"keep_best", nullptr}};
  if (policy.max_to_keep.has_value()) out["max_to_keep"] = *policy.max_to_keep;
  if (policy.keep_every.has_value()) {
    out["keep_every"] = absl::FormatDuration(*policy.keep_every);
    out["keep_every_seconds"] = absl::ToDoubleSeconds(*policy.keep_every);
  }
  if (policy.keep_best.has_value()) {
    out["keep_best"] = {
        {"k", policy.keep_best->k},
        {"metric", policy.keep_best->metric},
        {"mode", std::string(MetricModeName(policy.keep_best->mode))}};
  }
  out["keep_within"] = nullptr;
  out["keep_within_seconds"] = nullptr;
  if (policy.keep_within.has_value()) {
    out["keep_within"] = FormatDurationText(*policy.keep_within);
    out["keep_within_seconds"] = absl::ToDoubleSeconds(*policy.keep_within);
  }
  for (const auto& [name, count] : CalendarCounts(policy)) {
    out[std::string(name)] = count.has_value() ? json(*count) : json(nullptr);
  }
  out["keep_tags"] = policy.keep_tags;
  return out;
}

json QuantizationJson(const Quantization& quantization) {
  return {{"bits", quantization.bits},
          {"max_abs_error", quantization.max_abs_error},
          {"relative_l2_error", quantization.relative_l2_error}};
}

}  // namespace ckpt::cli
