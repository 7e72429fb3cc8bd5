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

// Thrown by the parse callback to stop the parse; caught below, never
// escapes this file.
struct Refusal {
  std::string message;
};

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
  // The keys of each object being parsed, innermost last; arrays hold no
  // keys, so only objects push a set.
  std::vector<absl::flat_hash_set<std::string>> keys;
  int depth = 0;
  auto callback = [&](int /*callback_depth*/, json::parse_event_t event,
                      json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        keys.emplace_back();
        [[fallthrough]];
      case json::parse_event_t::array_start:
        if (++depth > max_depth) {
          throw Refusal{absl::StrCat("nests arrays and objects deeper than ",
                                     max_depth, " levels")};
        }
        break;
      case json::parse_event_t::object_end:
        keys.pop_back();
        [[fallthrough]];
      case json::parse_event_t::array_end:
        --depth;
        break;
      case json::parse_event_t::key:
        if (!keys.back().insert(parsed.get<std::string>()).second) {
          throw Refusal{absl::StrCat("has the key ",
                                     QuoteTruncated(parsed.get<std::string>()),
                                     " twice in one object")};
        }
        break;
      case json::parse_event_t::value:
        break;
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), callback);
  } catch (const Refusal& refusal) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", refusal.message));
  } catch (const json::exception& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 2:
    // ...": the bracketed id means nothing to a user.
    absl::string_view message = e.what();
    const size_t id_end = message.find("] ");
    if (id_end != absl::string_view::npos) message.remove_prefix(id_end + 2);
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": not valid JSON: ", BoundedText(message, 512)));
  }
}

}  // namespace ckpt::client::portable
