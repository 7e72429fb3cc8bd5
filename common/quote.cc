#include "common/quote.h"

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

std::string BoundedText(absl::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return absl::CHexEscape(text);
  return absl::StrCat(absl::CHexEscape(text.substr(0, max_bytes)), "... (",
                      text.size(), " bytes)");
}

}  // namespace ckpt
