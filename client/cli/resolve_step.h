// STEP arguments that need the server: "latest" resolved to the newest
// committed step, as the verbs that change one checkpoint (tag, untag, rm)
// take it.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/client.h"

namespace ckpt::cli {

// A step, or "latest": the newest committed checkpoint of `job` (NOT_FOUND
// when it has none). INVALID_ARGUMENT for anything else (ParseStepOrLatest).
absl::StatusOr<int64_t> ResolveStep(client::Client& client,
                                    absl::string_view job,
                                    absl::string_view text);

}  // namespace ckpt::cli
