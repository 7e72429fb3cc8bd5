// How the ckpt CLI reports a failure: the one place that prints errors.
// For people "ckpt: CODE: message" (and a hint line, when there is one);
// with --json one line of JSON, {"code": "CODE", "message": "..."} (plus
// "hint" when there is one), so that scripts parse errors as they parse
// output. Both go to stderr; the exit code is non-zero either way.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "client/cli/commands.h"

namespace ckpt::cli {

// Prints `status` (REQUIRES: not OK) to stderr as `out` asks, with `hint`
// (empty: none), and returns the process exit code: EXIT_FAILURE.
int ReportError(const absl::Status& status, const OutputOptions& out,
                absl::string_view hint = "");

// A command-line error CLI11 found (`message`, exit code `exit_code`),
// reported as an INVALID_ARGUMENT error with `hint`; returns `exit_code`.
int ReportUsageError(absl::string_view message, int exit_code,
                     const OutputOptions& out, absl::string_view hint = "");

// INVALID_ARGUMENT "unknown command 'X'; the commands are: a, b, ..." when
// `word` is not one of `verbs`; OK otherwise.
absl::Status CheckVerb(absl::string_view word,
                       const std::vector<std::string>& verbs);

}  // namespace ckpt::cli
