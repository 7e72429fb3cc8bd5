// TokenTable: the bearer tokens a server accepts, read from its token file
// (--auth-tokens), one entry per line, as an htpasswd file:
//
//   # comment
//   SHA256_HEX_OF_TOKEN  PRINCIPAL  ROLE  SCOPE
//
// The file holds only the SHA-256 of each token (64 hex digits), never the
// token, and so does the table. Parsing is strict: any bad line fails the
// whole file, with an error naming the line number and what is wrong. No
// error ever quotes a line's fields, as a token pasted by mistake in place
// of its hash would otherwise end up in a log. See docs/security.md.
#pragma once

#include <cstddef>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/auth/principal.h"

namespace ckpt::server {

class TokenTable {
 public:
  TokenTable() = default;

  // The table of a token file's text; INVALID_ARGUMENT "line N: ..." for
  // the first bad line. Blank lines and everything from a '#' to the end of
  // its line are ignored; fields are separated by spaces or tabs. The
  // PRINCIPAL is 1-64 of A-Z a-z 0-9 . _ @ -; the ROLE reader, writer, admin
  // or operator; the SCOPE '*', 'tenant/' or 'tenant/prefix' (JobScope),
  // '*' for an operator and only for one. A hash may appear once; a
  // principal may have several tokens (to rotate them).
  static absl::StatusOr<TokenTable> Parse(absl::string_view text);

  // The principal whose token is `token`, or nullptr.
  const Principal* Find(absl::string_view token) const;

  size_t size() const { return by_hash_.size(); }

 private:
  // Raw 32-byte SHA-256 of the token -> who it is.
  absl::flat_hash_map<std::string, Principal> by_hash_;
};

// Reads and parses the token file at `path`. Errors name the path (they go
// to the server's log and stderr, never to a caller); a path that is not a
// regular file (a directory, a FIFO) is an error, not a crash or a hang.
absl::StatusOr<TokenTable> LoadTokenFile(const std::string& path);

}  // namespace ckpt::server
