// Parsing of the flag and argument values that several verbs of the ckpt CLI
// share: steps and "latest", NAME=VALUE assignments, checkpoint metadata,
// retention policy flags (counts, hours, durations) and --dirty-rows lists.
// CLI11 hands the verbs these as typed text; they are parsed here so that
// each rule, and each error message naming its flag, exists once. Pure (no
// I/O, no server) but for the files --dirty-rows NAME=@FILE names. Every
// error is INVALID_ARGUMENT, as `ckpt` prints it, but for a file that cannot
// be read (errno's status).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "common/best_checkpoint.h"
#include "common/byte_size.h"
#include "common/duration_text.h"
#include "common/manifest.h"
#include "common/retention.h"
#include "common/verify.h"

namespace ckpt::cli {

// A STEP argument: a non-negative decimal integer.
absl::StatusOr<int64_t> ParseStep(absl::string_view text);

// A STEP argument that may also be "latest": nullopt then, for the newest
// committed checkpoint (Client::GetManifest's meaning of no step).
absl::StatusOr<std::optional<int64_t>> ParseStepOrLatest(
    absl::string_view text);

// `copy --steps`: steps separated by commas, at least one; a repeat is
// dropped.
absl::StatusOr<std::vector<int64_t>> ParseStepList(absl::string_view text);
// `copy --limit-rate`: bytes per second, as ParseByteSize reads a size,
// with an error that says it is a rate. `flag` names the flag in the error.
absl::StatusOr<uint64_t> ParseByteRate(absl::string_view flag,
                                       absl::string_view text);

// `verify --read-data-subset`, in restic's three forms: "n/t" (part n of
// t), "x%" (0 < x <= 100, decimal) or a size ("500M", "2G"; ParseByteSize).
struct SubsetSpec {
  std::optional<ReadDataSubset> part;  // n/t
  double percent = 0;                  // x%, when > 0
  uint64_t bytes = 0;                  // a size, when > 0
};
absl::StatusOr<SubsetSpec> ParseSubsetSpec(absl::string_view text);

// The part a spec reads. The server reads one part n of t, so "x%" reads
// part `pick` of t = floor(100 / x) (at least x% of the chunks), and a size
// part `pick` of t = floor(stored_bytes / size) (about that many of the
// `stored_bytes` bytes of stored chunks; every chunk when they are fewer).
// `pick(t)` chooses n in 1..t (at random, as restic picks its packs).
ReadDataSubset ResolveSubset(const SubsetSpec& spec, uint64_t stored_bytes,
                             const std::function<uint32_t(uint32_t)>& pick);

// NAME=VALUE, split at the first '=': NAME must not be empty, VALUE may be
// (and may hold further '='). `flag` names the flag in the error.
absl::StatusOr<std::pair<std::string, std::string>> SplitAssignment(
    absl::string_view flag, absl::string_view text);

// `put`'s metadata: --metric NAME=NUMBER and --tag KEY=VALUE (repeatable; a
// later one of the same name wins), --time RFC 3339 (empty: none).
absl::StatusOr<CheckpointMetadata> ParseMetadata(
    const std::vector<std::string>& metrics,
    const std::vector<std::string>& tags, const std::string& time);

// ParseByteSize (sizes of flags such as --max-file-size) is in
// common/byte_size.h, ParseDurationFlag (durations such as --keep-within
// and --stall-timeout) in common/duration_text.h.

// Retention flags, as typed (empty: not given), parsed and checked by the
// verbs so that every error names its flag. `policy set` and `prune` take
// the same set.
struct PolicyFlags {
  std::string max_to_keep;  // --keep-last N, alias --max-to-keep
  // --keep-every DURATION, alias --keep-every-n-hours; a plain number is
  // hours (and may be fractional).
  std::string keep_every;
  std::string keep_within;  // --keep-within DURATION
  std::string keep_hourly;  // --keep-hourly N, and so on
  std::string keep_daily;
  std::string keep_weekly;
  std::string keep_monthly;
  std::vector<std::string> keep_tags;  // --keep-tag TAG, repeatable
  std::string keep_best;               // K
  std::string metric;
  std::string mode;  // min, max or auto (default)
};

// Whether any retention flag was given.
bool AnyPolicyFlag(const PolicyFlags& flags);

// A count flag's value: a positive integer that fits an int.
absl::StatusOr<int> ParseCount(absl::string_view flag, absl::string_view text);

// A --mode value: min, max, or auto (also when empty, i.e. not given).
// `flag` names the flag in the error.
absl::StatusOr<MetricMode> ParseMetricMode(absl::string_view flag,
                                           absl::string_view text);

// The policy the flags describe. Durations are common/duration_text.h's
// (30m, 6h, 1d, 2w). This only parses: the server validates the policy as
// a whole (ValidateRetentionPolicy), e.g. that keep_every goes with
// max_to_keep or that tags are printable.
absl::StatusOr<RetentionPolicy> ParsePolicyFlags(const PolicyFlags& flags);

// `name`'s --dirty-rows list: indices and inclusive ranges A-B (decimal
// digits only), comma-separated, in any order, repeats allowed, empty for
// none. Returns the rows sorted and without repeats. Refuses a malformed
// item, a descending range and a row at or past `rows` (the tensor's row
// count).
absl::StatusOr<std::vector<uint64_t>> ParseRowList(absl::string_view name,
                                                   absl::string_view list,
                                                   uint64_t rows);

// Per file of `put`, the rows --dirty-rows gives its delta; nullopt: none
// given (its rows are found by fingerprints).
using GivenRows = std::vector<std::optional<std::vector<uint64_t>>>;

// Per tensor (same order as `tensors`), the rows its --dirty-rows NAME=ROWS
// entry gives, parsed by ParseRowList against its global_shape[0] rows, or
// with NAME=@FILE read from FILE by ReadRowListFile (row_list_file.h).
// Refuses a NAME that is no tensor's and a NAME given twice.
// REQUIRES: the tensors are row matrices (global_shape[0] their rows).
absl::StatusOr<GivenRows> ParseDirtyRows(
    const std::vector<std::string>& flags,
    const std::vector<client::TensorData>& tensors);

}  // namespace ckpt::cli
