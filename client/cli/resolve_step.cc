#include "client/cli/resolve_step.h"

#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cli/args.h"
#include "common/status_macros.h"

namespace ckpt::cli {

absl::StatusOr<int64_t> ResolveStep(client::Client& client,
                                    absl::string_view job,
                                    absl::string_view text) {
  CKPT_ASSIGN_OR_RETURN(std::optional<int64_t> step, ParseStepOrLatest(text));
  if (step.has_value()) return *step;
  CKPT_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> committed,
                        client.ListCheckpoints(job));
  if (committed.empty()) {
    return absl::NotFoundError(
        absl::StrCat("job '", job, "' has no committed checkpoint"));
  }
  return committed.back().step;
}

}  // namespace ckpt::cli
