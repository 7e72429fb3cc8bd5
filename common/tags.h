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
// Names and values together: a checkpoint's tags travel in every listing of
// its job, so their size bounds what one writer can make a listing cost.
inline constexpr size_t kMaxTagBytesPerCheckpoint = 16 * 1024;

// A tag name (KEY): 1-kMaxTagNameBytes bytes of printable UTF-8
// (IsPrintableUtf8: no control characters, which `ckpt ls` would print to
// a terminal) and no '=' (which separates KEY=VALUE on the command line
// and in keep-tag rules). INVALID_ARGUMENT quoting it otherwise.
absl::Status ValidateTagName(absl::string_view name);

// A tag value: at most kMaxTagValueBytes bytes of printable UTF-8 (empty
// is allowed); `name` is quoted in the error.
absl::Status ValidateTagValue(absl::string_view name, absl::string_view value);

// The bytes of a checkpoint's tags: every name and value.
size_t TagBytes(const Tags& tags);

// A checkpoint's tags: every name and value valid, at most
// kMaxTagsPerCheckpoint of them and kMaxTagBytesPerCheckpoint in all.
absl::Status ValidateTags(const Tags& tags);

// A tag as the CLI takes it: "KEY" (an empty value) or "KEY=VALUE" (split at
// the first '='), the name and value valid.
absl::StatusOr<std::pair<std::string, std::string>> ParseTag(
    absl::string_view text);

// Whether `tags` match `query`: "KEY" matches a tag KEY of any value,
// "KEY=VALUE" only that value.
bool MatchesTag(const Tags& tags, absl::string_view query);

}  // namespace ckpt
