#include "common/tags.h"

#include "absl/strings/str_cat.h"
#include "common/quote.h"

namespace ckpt {

absl::Status ValidateTagName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxTagNameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("a tag name must be 1-", kMaxTagNameBytes, " bytes, got ",
                     QuoteTruncated(name)));
  }
  if (!IsPrintableUtf8(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("a tag name must be UTF-8 without control characters, "
                     "got ",
                     QuoteTruncated(name)));
  }
  for (const char c : name) {
    if (c == '=') {
      return absl::InvalidArgumentError(
          absl::StrCat("a tag name must not hold '=' (it separates "
                       "KEY=VALUE), got ",
                       QuoteTruncated(name)));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateTagValue(absl::string_view name, absl::string_view value) {
  if (value.size() > kMaxTagValueBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the value of tag ", QuoteTruncated(name), " is ", value.size(),
        " bytes; at most ", kMaxTagValueBytes, " are allowed"));
  }
  if (!IsPrintableUtf8(value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the value of tag ", QuoteTruncated(name),
                     " must be UTF-8 without control characters, got ",
                     QuoteTruncated(value)));
  }
  return absl::OkStatus();
}

size_t TagBytes(const Tags& tags) {
  size_t bytes = 0;
  for (const auto& [name, value] : tags) bytes += name.size() + value.size();
  return bytes;
}

absl::Status ValidateTags(const Tags& tags) {
  if (tags.size() > kMaxTagsPerCheckpoint) {
    return absl::InvalidArgumentError(
        absl::StrCat("a checkpoint may carry at most ", kMaxTagsPerCheckpoint,
                     " tags, got ", tags.size()));
  }
  if (const size_t bytes = TagBytes(tags); bytes > kMaxTagBytesPerCheckpoint) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a checkpoint's tags may hold at most ", kMaxTagBytesPerCheckpoint,
        " bytes of names and values together, got ", bytes));
  }
  for (const auto& [name, value] : tags) {
    if (absl::Status status = ValidateTagName(name); !status.ok()) {
      return status;
    }
    if (absl::Status status = ValidateTagValue(name, value); !status.ok()) {
      return status;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::pair<std::string, std::string>> ParseTag(
    absl::string_view text) {
  const size_t eq = text.find('=');
  std::pair<std::string, std::string> tag(
      text.substr(0, eq),
      eq == absl::string_view::npos ? "" : text.substr(eq + 1));
  if (absl::Status status = ValidateTagName(tag.first); !status.ok()) {
    return status;
  }
  if (absl::Status status = ValidateTagValue(tag.first, tag.second);
      !status.ok()) {
    return status;
  }
  return tag;
}

bool MatchesTag(const Tags& tags, absl::string_view query) {
  const size_t eq = query.find('=');
  const auto found = tags.find(std::string(query.substr(0, eq)));
  if (found == tags.end()) return false;
  return eq == absl::string_view::npos || found->second == query.substr(eq + 1);
}

}  // namespace ckpt
