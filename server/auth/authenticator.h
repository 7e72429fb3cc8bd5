// Authenticator: who a call comes from. With a token file (--auth-tokens)
// every call must carry `authorization: Bearer <token>` with a token the
// file lists; the file can be reloaded while serving (SIGHUP). Without one,
// every caller on the server's own host is AnonymousPrincipal() (full
// rights), and callers elsewhere are refused unless the operator explicitly
// allowed them (--insecure-allow-unauthenticated).
//
// Knows no gRPC: the edge hands it what it read from the call.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "server/auth/principal.h"
#include "server/auth/token_file.h"

namespace ckpt::server {

// What the edge knows of a call's credentials.
struct CallCredentials {
  // The values of the call's `authorization` metadata, in order (one, when
  // the client is well-behaved).
  std::vector<absl::string_view> authorization;
  // The peer is on this host (loopback TCP or a Unix socket).
  bool local_peer = false;
};

// The one UNAUTHENTICATED message for a missing, malformed, unknown or
// revoked token, so that the answer tells a caller nothing about which.
inline constexpr absl::string_view kInvalidCredentials =
    "missing or invalid credentials: send the metadata 'authorization: "
    "Bearer <token>' with a token this server's token file lists";

// Thread-safe.
class Authenticator {
 public:
  // No token file. `allow_remote`: also serve callers on other hosts, as
  // AnonymousPrincipal() too (--insecure-allow-unauthenticated).
  static std::unique_ptr<Authenticator> WithoutTokens(bool allow_remote);
  // Loads the token file at `path` now: its error (LoadTokenFile) when it
  // is absent or bad.
  static absl::StatusOr<std::unique_ptr<Authenticator>> FromTokenFile(
      std::string path);

  // Whether calls must carry a token.
  bool requires_tokens() const { return !path_.empty(); }
  // How many tokens are loaded.
  size_t token_count() const;

  // Reads the token file again and, when it parses, replaces the tokens at
  // once for every later call. When it does not, keeps the tokens it had and
  // returns why. OK (and nothing done) without a token file.
  absl::Status Reload();

  // The caller's principal. UNAUTHENTICATED with kInvalidCredentials unless
  // exactly one `authorization` value of the form "Bearer <token>" names a
  // loaded token (with tokens); UNAUTHENTICATED when a remote caller is not
  // allowed (without tokens; the `authorization` metadata is ignored there).
  absl::StatusOr<Principal> Authenticate(
      const CallCredentials& credentials) const;

 private:
  Authenticator(std::string path, bool allow_remote,
                std::shared_ptr<const TokenTable> tokens);

  const std::string path_;  // empty: no token file
  const bool allow_remote_;
  mutable absl::Mutex mu_;
  // Replaced whole by Reload; a call keeps the table it started with.
  std::shared_ptr<const TokenTable> tokens_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ckpt::server
