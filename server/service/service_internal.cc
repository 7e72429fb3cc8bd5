#include "server/service/service_internal.h"

#include "absl/strings/str_cat.h"

namespace ckpt::server::internal {

std::string Describe(absl::string_view job, int64_t step) {
  return absl::StrCat("checkpoint ", job, "@", step);
}

absl::Status ValidateStep(int64_t step) {
  if (step < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("step must be >= 0, got ", step));
  }
  return absl::OkStatus();
}

std::vector<int64_t> DeletedSteps(
    const std::vector<RetentionDecision>& decisions) {
  std::vector<int64_t> steps;
  for (const auto& decision : decisions) {
    if (!decision.keep) steps.push_back(decision.step);
  }
  return steps;
}

}  // namespace ckpt::server::internal
