// Helpers shared by the files that implement CheckpointService and by
// job_events.cc. Internal to server/service/: nothing outside this folder
// includes it. A helper used by one file only stays in that file's anonymous
// namespace.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/retention.h"

namespace ckpt::server::internal {

// "checkpoint job@step", the name used in messages and logs.
std::string Describe(absl::string_view job, int64_t step);

// INVALID_ARGUMENT for a negative step.
absl::Status ValidateStep(int64_t step);

// The steps that `decisions` delete, in their order.
std::vector<int64_t> DeletedSteps(
    const std::vector<RetentionDecision>& decisions);

}  // namespace ckpt::server::internal
