// The one set of rules for checkpoint tags (CheckpointMetadata::tags, a
// KEY -> VALUE map; a bare tag is a KEY with an empty VALUE): what a tag
// may be, how the CLI spells one, and what a tag query matches. The server
// applies them at BeginCheckpoint and SetCheckpointTags, the CLI to `tag`,
// `untag` and `ls --tag`, retention to its keep-tag rule. Pure: no I/O.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ckpt {

using Tags = std::map<std::string, std::string>;

inline constexpr size_t kMaxTagNameBytes = 256;
inline constexpr size_t kMaxTagValueBytes = 4096;
inline constexpr size_t kMaxTagsPerCheckpoint = 256;

// A tag name (KEY): 1-kMaxTagNameBytes bytes, no control bytes (below 0x20,
// 0x7f) and no '=' (which separates KEY=VALUE on the command line and in
// keep-tag rules). INVALID_ARGUMENT quoting it otherwise.
absl::Status ValidateTagName(absl::string_view name);

// A tag value: at most kMaxTagValueBytes bytes; `name` is quoted in the
// error.
absl::Status ValidateTagValue(absl::string_view name, absl::string_view value);

// A checkpoint's tags: every name and value valid, and at most
// kMaxTagsPerCheckpoint of them.
absl::Status ValidateTags(const Tags& tags);

// A tag as the CLI takes it: "KEY" (an empty value) or "KEY=VALUE" (split at
// the first '='), the name and value valid.
absl::StatusOr<std::pair<std::string, std::string>> ParseTag(
    absl::string_view text);

// Whether `tags` match `query`: "KEY" matches a tag KEY of any value,
// "KEY=VALUE" only that value.
bool MatchesTag(const Tags& tags, absl::string_view query);

}  // namespace ckpt
