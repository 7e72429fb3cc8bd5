#include "common/quote.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace ckpt {

std::string QuoteTruncated(absl::string_view text) {
  if (text.size() <= kQuotedPrefixBytes) {
    return absl::StrCat("'", absl::CHexEscape(text), "'");
  }
  return absl::StrCat("'", absl::CHexEscape(text.substr(0, kQuotedPrefixBytes)),
                      "...' (", text.size(), " bytes)");
}

std::string TruncateUtf8(std::string text, size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  constexpr absl::string_view kEllipsis = "...";
  size_t cut = max_bytes - kEllipsis.size();
  // Back off continuation bytes (10xxxxxx) to the start of a character.
  while (cut > 0 && (static_cast<uint8_t>(text[cut]) & 0xc0) == 0x80) --cut;
  text.resize(cut);
  text.append(kEllipsis.data(), kEllipsis.size());
  return text;
}

std::string EscapeControlBytes(absl::string_view text) {
  const auto is_control = [](char c) {
    return static_cast<uint8_t>(c) < 0x20 || c == 0x7f;
  };
  if (std::none_of(text.begin(), text.end(), is_control)) {
    return std::string(text);
  }
  std::string out;
  out.reserve(text.size() + 8);
  for (char c : text) {
    if (is_control(c)) {
      out += absl::CHexEscape(absl::string_view(&c, 1));
    } else {
      out += c;
    }
  }
  return out;
}

std::string BoundedText(absl::string_view text, size_t max_bytes) {
  // Cut before escaping too, so a huge text is not copied whole first.
  const size_t escaped_max = 4 * max_bytes + 3;
  return TruncateUtf8(
      EscapeControlBytes(text.substr(0, std::min(text.size(), escaped_max))),
      max_bytes);
}

}  // namespace ckpt
