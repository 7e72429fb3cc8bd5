#include "server/auth/authenticator.h"

#include <utility>

#include "absl/strings/match.h"

namespace ckpt::server {

Authenticator::Authenticator(std::string path, bool allow_remote,
                             std::shared_ptr<const TokenTable> tokens)
    : path_(std::move(path)),
      allow_remote_(allow_remote),
      tokens_(std::move(tokens)) {}

std::unique_ptr<Authenticator> Authenticator::WithoutTokens(bool allow_remote) {
  return std::unique_ptr<Authenticator>(
      new Authenticator("", allow_remote, nullptr));
}

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::FromTokenFile(
    std::string path) {
  if (path.empty()) {
    return absl::InvalidArgumentError("the token file path is empty");
  }
  absl::StatusOr<TokenTable> tokens = LoadTokenFile(path);
  if (!tokens.ok()) return tokens.status();
  return std::unique_ptr<Authenticator>(new Authenticator(
      std::move(path), /*allow_remote=*/true,
      std::make_shared<const TokenTable>(*std::move(tokens))));
}

size_t Authenticator::token_count() const {
  absl::MutexLock lock(&mu_);
  return tokens_ == nullptr ? 0 : tokens_->size();
}

absl::Status Authenticator::Reload() {
  if (!requires_tokens()) return absl::OkStatus();
  absl::StatusOr<TokenTable> tokens = LoadTokenFile(path_);
  if (!tokens.ok()) return tokens.status();
  auto table = std::make_shared<const TokenTable>(*std::move(tokens));
  absl::MutexLock lock(&mu_);
  tokens_ = std::move(table);
  return absl::OkStatus();
}

absl::StatusOr<Principal> Authenticator::Authenticate(
    const CallCredentials& credentials) const {
  if (!requires_tokens()) {
    if (credentials.local_peer || allow_remote_) return AnonymousPrincipal();
    return absl::UnauthenticatedError(
        "this server has no token file (--auth-tokens) and serves only "
        "clients on its own host");
  }
  const absl::Status invalid = absl::UnauthenticatedError(kInvalidCredentials);
  if (credentials.authorization.size() != 1) return invalid;
  // RFC 6750: the scheme is case-insensitive, one space, then the token.
  constexpr absl::string_view kScheme = "bearer ";
  const absl::string_view value = credentials.authorization[0];
  if (value.size() <= kScheme.size() ||
      !absl::StartsWithIgnoreCase(value, kScheme)) {
    return invalid;
  }
  const absl::string_view token = value.substr(kScheme.size());
  std::shared_ptr<const TokenTable> tokens;
  {
    absl::MutexLock lock(&mu_);
    tokens = tokens_;
  }
  const Principal* principal = tokens->Find(token);
  if (principal == nullptr) return invalid;
  return *principal;
}

}  // namespace ckpt::server
