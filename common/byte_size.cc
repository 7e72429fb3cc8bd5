#include "common/byte_size.h"

#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace ckpt {
namespace {

constexpr std::string_view kUnitLetters = "KMGTP";

}  // namespace

absl::StatusOr<uint64_t> ParseByteCount(absl::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && absl::ascii_isdigit(text[digits])) ++digits;
  if (digits == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", text,
        "' is not a byte size (a whole number, optionally with a unit K, M, "
        "G, T or P: powers of 1024)"));
  }
  absl::string_view unit = text.substr(digits);
  int shift = 0;
  if (!unit.empty()) {
    const size_t letter = kUnitLetters.find(absl::ascii_toupper(unit[0]));
    absl::string_view rest = unit.substr(1);
    if (letter == std::string_view::npos ||
        !(rest.empty() || absl::EqualsIgnoreCase(rest, "i") ||
          absl::EqualsIgnoreCase(rest, "iB"))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", text, "': unknown unit '", unit,
          "' (use K, M, G, T or P, optionally with i or iB: powers of 1024; "
          "KB, MB... are refused as ambiguous)"));
    }
    shift = 10 * static_cast<int>(letter + 1);
  }
  uint64_t number = 0;
  if (!absl::SimpleAtoi(text.substr(0, digits), &number) ||
      number > (UINT64_MAX >> shift)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is too large"));
  }
  return number << shift;
}

absl::StatusOr<uint64_t> ParseByteSize(absl::string_view flag,
                                       absl::string_view text,
                                       bool allow_zero) {
  absl::StatusOr<uint64_t> bytes = ParseByteCount(text);
  if (!bytes.ok() || (*bytes == 0 && !allow_zero)) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, " '", text, "' is not a size: a ",
        allow_zero ? "non-negative" : "positive",
        " integer, optionally followed by K, M, G, T or P (KiB, MiB, GiB, "
        "TiB, PiB: powers of 1024), e.g. 5G"));
  }
  return bytes;
}

std::string FormatByteSize(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  int unit = -1;
  while (bytes != 0 && unit + 1 < 5 &&
         bytes % (uint64_t{1} << (10 * (unit + 2))) == 0) {
    ++unit;
  }
  if (unit < 0) return absl::StrCat(bytes);
  return absl::StrCat(bytes >> (10 * (unit + 1)), kUnits[unit]);
}

}  // namespace ckpt
