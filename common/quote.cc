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

bool IsPrintableUtf8(absl::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const uint8_t lead = static_cast<uint8_t>(text[i]);
    if (lead < 0x80) {
      if (lead < 0x20 || lead == 0x7f) return false;
      ++i;
      continue;
    }
    // The sequence length and the smallest code point it may encode (so
    // that overlong forms are refused).
    size_t length = 0;
    uint32_t code = 0;
    uint32_t min_code = 0;
    if ((lead & 0xe0) == 0xc0) {
      length = 2;
      code = lead & 0x1f;
      min_code = 0x80;
    } else if ((lead & 0xf0) == 0xe0) {
      length = 3;
      code = lead & 0x0f;
      min_code = 0x800;
    } else if ((lead & 0xf8) == 0xf0) {
      length = 4;
      code = lead & 0x07;
      min_code = 0x10000;
    } else {
      return false;  // a continuation byte, or 0xf8-0xff, as a lead
    }
    if (text.size() - i < length) return false;
    for (size_t k = 1; k < length; ++k) {
      const uint8_t next = static_cast<uint8_t>(text[i + k]);
      if ((next & 0xc0) != 0x80) return false;
      code = (code << 6) | (next & 0x3f);
    }
    if (code < min_code || code > 0x10ffff ||
        (code >= 0xd800 && code <= 0xdfff) || (code >= 0x80 && code < 0xa0)) {
      return false;
    }
    i += length;
  }
  return true;
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
