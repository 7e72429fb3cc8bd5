#include "common/duration_text.h"

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/quote.h"

namespace ckpt {
namespace {

// Longest first: "ms" must be tried before "m".
const std::vector<std::pair<absl::string_view, absl::Duration>>& Units() {
  static const auto* units =
      new std::vector<std::pair<absl::string_view, absl::Duration>>{
          {"ms", absl::Milliseconds(1)}, {"s", absl::Seconds(1)},
          {"m", absl::Minutes(1)},       {"h", absl::Hours(1)},
          {"d", absl::Hours(24)},        {"w", absl::Hours(24 * 7)}};
  return *units;
}

// 10000 Gregorian years.
constexpr absl::Duration kMaxDuration = absl::Hours(int64_t{24} * 3652425);

absl::Status NotADuration(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat(QuoteTruncated(text), " is not a duration: ", why));
}

bool IsNumber(absl::string_view text) {
  bool digit = false, dot = false;
  for (char c : text) {
    if (absl::ascii_isdigit(c)) {
      digit = true;
    } else if (c == '.' && !dot) {
      dot = true;
    } else {
      return false;
    }
  }
  return digit;
}

}  // namespace

absl::StatusOr<absl::Duration> ParseDurationText(
    absl::string_view text, std::optional<absl::Duration> plain_number_unit) {
  if (text.empty()) return NotADuration(text, "it is empty");
  absl::Duration total = absl::ZeroDuration();
  if (IsNumber(text)) {
    if (!plain_number_unit.has_value()) {
      return NotADuration(text, "it needs a unit (ms, s, m, h, d or w)");
    }
    double value;
    if (!absl::SimpleAtod(text, &value))
      return NotADuration(text, "bad number");
    if (value > absl::FDivDuration(kMaxDuration, *plain_number_unit)) {
      return NotADuration(text, "longer than 10000 years");
    }
    total = value * *plain_number_unit;
  } else {
    absl::string_view rest = text;
    while (!rest.empty()) {
      size_t digits = 0;
      while (digits < rest.size() &&
             (absl::ascii_isdigit(rest[digits]) || rest[digits] == '.')) {
        ++digits;
      }
      const absl::string_view number = rest.substr(0, digits);
      double value;
      if (!IsNumber(number) || !absl::SimpleAtod(number, &value)) {
        return NotADuration(
            text, "expected NUMBER UNIT parts such as 30m, 6h, 1d or 2w");
      }
      rest.remove_prefix(digits);
      const std::pair<absl::string_view, absl::Duration>* unit = nullptr;
      for (const auto& candidate : Units()) {
        if (absl::StartsWith(rest, candidate.first)) {
          unit = &candidate;
          break;
        }
      }
      if (unit == nullptr) {
        return NotADuration(text,
                            "each number needs a unit: ms, s, m, h, d or w");
      }
      rest.remove_prefix(unit->first.size());
      if (value > absl::FDivDuration(kMaxDuration, unit->second)) {
        return NotADuration(text, "longer than 10000 years");
      }
      total += value * unit->second;
    }
  }
  if (total > kMaxDuration)
    return NotADuration(text, "longer than 10000 years");
  if (total <= absl::ZeroDuration()) return NotADuration(text, "it is zero");
  return total;
}

absl::StatusOr<absl::Duration> ParseDurationFlag(
    absl::string_view flag, absl::string_view text,
    std::optional<absl::Duration> plain_number_unit) {
  absl::StatusOr<absl::Duration> parsed =
      ParseDurationText(text, plain_number_unit);
  if (parsed.ok()) return parsed;
  return absl::InvalidArgumentError(absl::StrCat(
      flag, " takes a positive duration such as 30m, 6h, 1d or 2w",
      plain_number_unit == absl::Hours(1) ? " (or a number of hours)" : "",
      "; got ", QuoteTruncated(text)));
}

std::string FormatDurationText(absl::Duration duration) {
  if (duration <= absl::ZeroDuration() ||
      duration == absl::InfiniteDuration() ||
      absl::Trunc(duration, absl::Milliseconds(1)) != duration) {
    return absl::FormatDuration(duration);
  }
  std::string out;
  for (auto it = Units().rbegin(); it != Units().rend(); ++it) {
    const int64_t count = absl::IDivDuration(duration, it->second, &duration);
    if (count > 0) absl::StrAppend(&out, count, it->first);
  }
  return out;
}

}  // namespace ckpt
