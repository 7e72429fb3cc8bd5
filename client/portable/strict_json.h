// Strict JSON for the files `ckpt import` reads from anyone (safetensors
// headers, model.safetensors.index.json, ckpt_checkpoint.json): text that
// is not UTF-8, a duplicate key (which nlohmann, like most parsers, would
// silently resolve to its last value, letting a file say two things) or
// nesting past a bound is refused, with a message that says where. Pure.
#pragma once

#include <cstddef>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace ckpt::client::portable {

// The offset of the first byte of `text` that does not begin or continue
// a well-formed UTF-8 character (RFC 3629: no overlong forms, no
// surrogates, nothing past U+10FFFF); nullopt when it is all well-formed.
std::optional<size_t> FindInvalidUtf8(absl::string_view text);

// `text` parsed as one JSON value. INVALID_ARGUMENT beginning with `what`
// (e.g. "model.safetensors: header") when it is not UTF-8 (the byte offset
// and the string it is in), not JSON (nlohmann's line and column), holds an
// object with a key twice (the key), or nests arrays and objects deeper
// than `max_depth`.
absl::StatusOr<nlohmann::json> ParseStrictJson(absl::string_view text,
                                               absl::string_view what,
                                               int max_depth);

}  // namespace ckpt::client::portable
