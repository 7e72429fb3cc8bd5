#include "server/auth/token_file.h"

#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/sha256.h"
#include "common/small_file.h"

namespace ckpt::server {
namespace {

constexpr size_t kHexDigits = 64;
constexpr size_t kMaxPrincipalChars = 64;
// Some 300,000 lines: far more tokens than a server has.
constexpr size_t kMaxTokenFileBytes = 64 << 20;

bool IsHex(absl::string_view text) {
  for (char c : text) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

bool IsPrincipalName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxPrincipalChars) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' &&
        c != '_' && c != '@' && c != '-') {
      return false;
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<TokenTable> TokenTable::Parse(absl::string_view text) {
  TokenTable table;
  // Line of each hash, for the duplicate message.
  absl::flat_hash_map<std::string, int> line_of;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    auto bad = [line_number](absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", line_number, ": ", what));
    };
    if (size_t hash = line.find('#'); hash != absl::string_view::npos) {
      line = line.substr(0, hash);
    }
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (fields.empty()) continue;
    if (fields.size() != 4) {
      return bad(absl::StrCat(
          "expected 4 fields, SHA256_HEX_OF_TOKEN PRINCIPAL ROLE SCOPE; got ",
          fields.size()));
    }
    if (fields[0].size() != kHexDigits || !IsHex(fields[0])) {
      return bad(
          "the first field must be the SHA-256 of the token as 64 hex digits "
          "(never the token itself; see docs/security.md)");
    }
    if (!IsPrincipalName(fields[1])) {
      return bad(
          "the principal must be 1-64 characters of A-Z a-z 0-9 . _ @ -");
    }
    std::optional<Role> role = ParseRole(fields[2]);
    if (!role.has_value()) {
      return bad("the role must be reader, writer, admin or operator");
    }
    absl::StatusOr<JobScope> scope = JobScope::Parse(fields[3]);
    if (!scope.ok()) return bad(scope.status().message());
    if (*role == Role::kOperator && !scope->IsAll()) {
      return bad("an operator's scope must be '*'");
    }
    if (*role != Role::kOperator && scope->IsAll()) {
      return bad(
          "only an operator may have scope '*'; give 'tenant/' or "
          "'tenant/prefix'");
    }
    std::string digest =
        absl::HexStringToBytes(absl::AsciiStrToLower(fields[0]));
    if (auto [it, inserted] = line_of.emplace(digest, line_number); !inserted) {
      return bad(absl::StrCat("the same token hash as line ", it->second));
    }
    table.by_hash_.emplace(
        std::move(digest),
        Principal{std::string(fields[1]), *role, *std::move(scope)});
  }
  return table;
}

const Principal* TokenTable::Find(absl::string_view token) const {
  const ChunkId digest = Sha256(token);
  auto it = by_hash_.find(digest.bytes());
  return it == by_hash_.end() ? nullptr : &it->second;
}

absl::StatusOr<TokenTable> LoadTokenFile(const std::string& path) {
  absl::StatusOr<std::string> text =
      ReadSmallRegularFile(path, kMaxTokenFileBytes);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat("cannot read the token file ", path, ": ",
                                     text.status().message()));
  }
  absl::StatusOr<TokenTable> table = TokenTable::Parse(*text);
  if (!table.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("token file ", path, ", ", table.status().message()));
  }
  return table;
}

}  // namespace ckpt::server
