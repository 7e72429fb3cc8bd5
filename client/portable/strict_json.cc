#include "client/portable/strict_json.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/quote.h"

namespace ckpt::client::portable {
namespace {

using nlohmann::json;

// The checks, as a SAX pass over the text before the DOM is built:
// nlohmann's parse with a callback (the obvious place for them) rescans
// an object's members at the end of each member object, quadratic in an
// object's size (a header of 100,000 tensors took minutes). Stops at the
// first refusal or parse error, keeping its message.
class StrictChecks final : public json::json_sax_t {
 public:
  explicit StrictChecks(int max_depth) : max_depth_(max_depth) {}

  const std::string& refusal() const { return refusal_; }
  const std::string& parse_error() const { return parse_error_; }

  bool null() override { return true; }
  bool boolean(bool /*value*/) override { return true; }
  bool number_integer(number_integer_t /*value*/) override { return true; }
  bool number_unsigned(number_unsigned_t /*value*/) override { return true; }
  bool number_float(number_float_t /*value*/,
                    const string_t& /*text*/) override {
    return true;
  }
  bool string(string_t& /*value*/) override { return true; }
  bool binary(binary_t& /*value*/) override { return true; }
  bool start_object(std::size_t /*elements*/) override {
    keys_.emplace_back();
    return Enter();
  }
  bool key(string_t& key) override {
    if (keys_.back().insert(key).second) return true;
    refusal_ = absl::StrCat("has the key ", QuoteTruncated(key),
                            " twice in one object");
    return false;
  }
  bool end_object() override {
    keys_.pop_back();
    --depth_;
    return true;
  }
  bool start_array(std::size_t /*elements*/) override { return Enter(); }
  bool end_array() override {
    --depth_;
    return true;
  }
  bool parse_error(std::size_t /*position*/, const std::string& /*token*/,
                   const nlohmann::detail::exception& error) override {
    parse_error_ = error.what();
    return false;
  }

 private:
  bool Enter() {
    if (++depth_ <= max_depth_) return true;
    refusal_ = absl::StrCat("nests arrays and objects deeper than ", max_depth_,
                            " levels");
    return false;
  }

  const int max_depth_;
  int depth_ = 0;
  // The keys of each object being parsed, innermost last.
  std::vector<absl::flat_hash_set<std::string>> keys_;
  std::string refusal_;
  std::string parse_error_;
};

// "[json.exception.parse_error.101] parse error at line 1, column 2: ...",
// without the bracketed id, which means nothing to a user.
std::string ParseErrorText(absl::string_view message) {
  const size_t id_end = message.find("] ");
  if (id_end != absl::string_view::npos) message.remove_prefix(id_end + 2);
  return BoundedText(message, 512);
}

// The JSON string byte `offset` of `text` is in, as an error message quotes
// it (escaped and bounded); empty when the byte is outside any string.
std::string EnclosingString(absl::string_view text, size_t offset) {
  size_t open = absl::string_view::npos;
  for (size_t i = 0; i < offset; ++i) {
    if (text[i] == '\\' && open != absl::string_view::npos) {
      ++i;  // an escaped character, perhaps a quote
    } else if (text[i] == '"') {
      open = open == absl::string_view::npos ? i : absl::string_view::npos;
    }
  }
  if (open == absl::string_view::npos) return "";
  size_t close = text.find('"', offset);
  if (close == absl::string_view::npos) close = text.size();
  return absl::StrCat(", in the string ",
                      QuoteTruncated(text.substr(open + 1, close - open - 1)));
}

}  // namespace

std::optional<size_t> FindInvalidUtf8(absl::string_view text) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  const size_t size = text.size();
  size_t i = 0;
  while (i < size) {
    const unsigned char lead = bytes[i];
    if (lead < 0x80) {
      ++i;
      continue;
    }
    size_t length = 0;
    unsigned char low = 0x80;  // bounds of the second byte (RFC 3629)
    unsigned char high = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) {
      length = 2;
    } else if (lead >= 0xe0 && lead <= 0xef) {
      length = 3;
      if (lead == 0xe0) low = 0xa0;   // no overlong form
      if (lead == 0xed) high = 0x9f;  // no surrogate
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      length = 4;
      if (lead == 0xf0) low = 0x90;   // no overlong form
      if (lead == 0xf4) high = 0x8f;  // nothing past U+10FFFF
    } else {
      return i;
    }
    for (size_t k = 1; k < length; ++k) {
      if (i + k >= size) return i + k;
      const unsigned char next = bytes[i + k];
      const unsigned char min = k == 1 ? low : 0x80;
      const unsigned char max = k == 1 ? high : 0xbf;
      if (next < min || next > max) return i + k;
    }
    i += length;
  }
  return std::nullopt;
}

absl::StatusOr<json> ParseStrictJson(absl::string_view text,
                                     absl::string_view what, int max_depth) {
  if (std::optional<size_t> bad = FindInvalidUtf8(text)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": byte ", *bad, " is not valid UTF-8",
                     EnclosingString(text, *bad),
                     " (names and metadata must be UTF-8 text)"));
  }
  StrictChecks checks(max_depth);
  if (!json::sax_parse(text.begin(), text.end(), &checks)) {
    if (!checks.refusal().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": ", checks.refusal()));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": not valid JSON: ", ParseErrorText(checks.parse_error())));
  }
  // Checked: parses without a callback (linear), to the same value.
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": not valid JSON: ", ParseErrorText(e.what())));
  }
}

}  // namespace ckpt::client::portable
