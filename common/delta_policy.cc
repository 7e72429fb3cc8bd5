#include "common/delta_policy.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace ckpt {
namespace {

DeltaDecision Full(std::string reason) {
  return DeltaDecision{DeltaDecision::Kind::kFull, std::nullopt,
                       std::move(reason)};
}

DeltaDecision Delta(int64_t base_step, std::string reason) {
  return DeltaDecision{DeltaDecision::Kind::kDelta, base_step,
                       std::move(reason)};
}

// delta_bytes >= fraction * full_bytes, exact for sizes up to 2^53 (long
// double keeps 64 bits of mantissa on x86-64).
bool ReachesFraction(uint64_t delta_bytes, double fraction,
                     uint64_t full_bytes) {
  return static_cast<long double>(delta_bytes) >=
         static_cast<long double>(fraction) *
             static_cast<long double>(full_bytes);
}

}  // namespace

absl::string_view DeltaModeName(DeltaMode mode) {
  switch (mode) {
    case DeltaMode::kIntermittent:
      return "intermittent";
    case DeltaMode::kConsecutive:
      return "consecutive";
  }
  return "unknown";
}

absl::StatusOr<DeltaDecision> DecideDelta(const DeltaHistory& history,
                                          const DeltaPolicyOptions& options) {
  if (!(options.max_delta_fraction > 0 && options.max_delta_fraction <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("delta policy: max_delta_fraction ",
                     options.max_delta_fraction, " is not in (0, 1]"));
  }
  if (options.max_chain_length < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("delta policy: max_chain_length ",
                     options.max_chain_length, " is below 1"));
  }
  if (history.chain_length < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "delta policy: chain_length ", history.chain_length, " is negative"));
  }
  if (!history.baseline_step.has_value()) {
    return Full("no baseline yet: full save");
  }
  const int64_t baseline = *history.baseline_step;
  if (history.previous_step < baseline) {
    return absl::InvalidArgumentError(
        absl::StrCat("delta policy: previous step ", history.previous_step,
                     " is before the baseline step ", baseline));
  }
  if (history.delta_bytes >= history.full_bytes) {
    return Full(absl::StrCat("delta ", history.delta_bytes,
                             " B is not smaller than full ", history.full_bytes,
                             " B: new baseline"));
  }
  if (ReachesFraction(history.delta_bytes, options.max_delta_fraction,
                      history.full_bytes)) {
    return Full(absl::StrFormat("delta %d B >= %g x full %d B: new baseline",
                                history.delta_bytes, options.max_delta_fraction,
                                history.full_bytes));
  }
  const std::string size_note =
      absl::StrFormat("delta %d B < %g x full %d B", history.delta_bytes,
                      options.max_delta_fraction, history.full_bytes);
  switch (options.mode) {
    case DeltaMode::kIntermittent:
      return Delta(baseline, absl::StrCat(size_note,
                                          ": delta against baseline "
                                          "step ",
                                          baseline));
    case DeltaMode::kConsecutive:
      if (history.chain_length >= options.max_chain_length) {
        return Full(absl::StrCat("chain of ", history.chain_length,
                                 " deltas reached max_chain_length ",
                                 options.max_chain_length, ": new baseline"));
      }
      return Delta(history.previous_step,
                   absl::StrCat(size_note, ", chain ", history.chain_length,
                                " < ", options.max_chain_length,
                                ": delta against previous step ",
                                history.previous_step));
  }
  return absl::InternalError("delta policy: unknown mode");
}

}  // namespace ckpt
