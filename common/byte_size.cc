#include "common/byte_size.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace ckpt {

absl::StatusOr<uint64_t> ParseByteSize(absl::string_view flag,
                                       absl::string_view text,
                                       bool allow_zero) {
  size_t digits = 0;
  while (digits < text.size() && absl::ascii_isdigit(text[digits])) ++digits;
  absl::string_view suffix = text.substr(digits);
  int shift = -1;
  for (const auto& [unit, bits] : {std::pair<absl::string_view, int>{"", 0},
                                   {"K", 10},
                                   {"KiB", 10},
                                   {"M", 20},
                                   {"MiB", 20},
                                   {"G", 30},
                                   {"GiB", 30},
                                   {"T", 40},
                                   {"TiB", 40}}) {
    if (absl::EqualsIgnoreCase(suffix, unit)) shift = bits;
  }
  uint64_t value = 0;
  if (digits == 0 || shift < 0 ||
      !absl::SimpleAtoi(text.substr(0, digits), &value) ||
      (value == 0 && !allow_zero) || value > (UINT64_MAX >> shift)) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, " '", text, "' is not a size: a ",
        allow_zero ? "non-negative" : "positive",
        " integer, optionally followed by K, M, G or T (KiB, MiB, GiB, TiB), "
        "e.g. 5G"));
  }
  return value << shift;
}

}  // namespace ckpt
