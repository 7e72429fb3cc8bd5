// The `--json` output of the ckpt CLI that several verbs share: one builder
// per value that more than one verb prints, so that its keys are spelt the
// same everywhere. Keys are stable snake_case, numbers exact, and an absent
// value is null rather than a missing key. A verb's own object is built in
// its file.
#pragma once

#include <optional>

#include "common/manifest.h"
#include "common/policy_origin.h"
#include "common/retention.h"
#include "nlohmann/json.hpp"

namespace ckpt::cli {

// Prints `value` to stdout, indented by 2, with a newline.
void PrintJson(const nlohmann::json& value);

// {"metrics": {NAME: number}, "tags": {KEY: string}}.
nlohmann::json MetadataJson(const CheckpointMetadata& metadata);

// One checkpoint's header, as `ls JOB` lists it and `show` begins: job,
// step, state, time (DisplayTime), world size, sizes, metrics and tags,
// ranks, pin, kind and delta bases; commit_time, lease_expiry or
// abort_reason by state.
nlohmann::json RecordJson(const CheckpointRecord& record);

// {"max_to_keep", "keep_every", "keep_every_seconds", "keep_best": {"k",
// "metric", "mode"}, "keep_within" (e.g. "2d"), "keep_within_seconds",
// "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly"}, each null
// when the policy has no such rule, and "keep_tags" (a list, maybe empty).
nlohmann::json PolicyJson(const RetentionPolicy& policy);

// Who set a policy: {"source": "operator" | "writer" | "tenant_default",
// "principal" (null when unknown), "time" (FormatTimestamp, null when
// unknown), "inferred"}; null for nullopt (an older server).
nlohmann::json PolicyOriginJson(const std::optional<PolicyOrigin>& origin);

// {"bits", "max_abs_error", "relative_l2_error"}.
nlohmann::json QuantizationJson(const Quantization& quantization);

}  // namespace ckpt::cli
