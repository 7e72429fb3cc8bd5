// Durations as people type them on the command line (30m, 6h, 1d, 2w,
// 1h30m): the one grammar of the CLI's duration flags and of the Python
// manager's, so that a duration means the same everywhere, and the form
// policies print them in.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ckpt {

// One or more NUMBER UNIT parts, e.g. "30m", "6h", "1d", "2w", "1h30m",
// "1.5h", "90s", "250ms": NUMBER is decimal digits with an optional
// fraction, UNIT one of ms, s, m (minutes), h, d (24h) or w (7d); no sign,
// no spaces. A plain number is read in `plain_number_unit` when one is
// given (e.g. hours for --keep-every-n-hours) and refused otherwise.
// INVALID_ARGUMENT "'TEXT' is not a duration: ..." on anything else, on
// zero and on durations past 10000 years. Callers bound further.
absl::StatusOr<absl::Duration> ParseDurationText(
    absl::string_view text,
    std::optional<absl::Duration> plain_number_unit = std::nullopt);

// ParseDurationText for a flag: INVALID_ARGUMENT "FLAG takes a positive
// duration such as 30m, 6h, 1d or 2w; got 'TEXT'" (or "... or a number of
// hours" when the plain number unit is an hour).
absl::StatusOr<absl::Duration> ParseDurationFlag(
    absl::string_view flag, absl::string_view text,
    std::optional<absl::Duration> plain_number_unit = std::nullopt);

// The shortest form ParseDurationText reads back when `duration` is a whole
// number of milliseconds, using the largest units first: "2w", "1d12h",
// "1h30m", "90s" ("1m30s"), "250ms"; otherwise absl::FormatDuration.
std::string FormatDurationText(absl::Duration duration);

}  // namespace ckpt
