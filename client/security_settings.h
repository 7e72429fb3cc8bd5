// How the CLI and the Python client turn what a user gives (file paths, a
// token, or the CKPT_TLS_* / CKPT_TOKEN environment variables) into
// ConnectOptions' TLS and token fields, so that both read the same files
// the same way and name the user's own flag or argument in every error.
#pragma once

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/types.h"

namespace ckpt::client {

// The environment variables both read, each the default of its flag or
// argument (which win over it).
inline constexpr char kTlsCaEnv[] = "CKPT_TLS_CA";
inline constexpr char kTlsCertEnv[] = "CKPT_TLS_CERT";
inline constexpr char kTlsKeyEnv[] = "CKPT_TLS_KEY";
inline constexpr char kTlsServerNameEnv[] = "CKPT_TLS_SERVER_NAME";
// The token itself (not a file).
inline constexpr char kTokenEnv[] = "CKPT_TOKEN";
// `ckpt copy`: the token for the target server, when it needs another.
inline constexpr char kTargetTokenEnv[] = "CKPT_TO_TOKEN";

// Empty fields are not given.
struct SecuritySettings {
  std::string tls_ca_file;    // PEM CA certificates: use TLS
  std::string tls_cert_file;  // PEM client certificate chain (mTLS)
  std::string tls_key_file;   // its PEM private key
  std::string tls_server_name;
  // A file holding the token (trailing whitespace, e.g. the newline an
  // editor adds, is dropped); wins over `token`.
  std::string token_file;
  std::string token;
};

// How the user spells each setting, for error messages.
struct SecurityNames {
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
  std::string token_file;
};

// A second connection's settings as changes to the first's (`ckpt copy`:
// the global flags apply to both servers, the --to-* flags to the target
// only). A field set replaces the base's, an empty one clears it (e.g. a
// plaintext target next to a TLS source); unset fields keep the base's.
// A token given either way (file or text) replaces both of the base's.
struct SecurityOverrides {
  std::optional<std::string> tls_ca_file;
  std::optional<std::string> tls_cert_file;
  std::optional<std::string> tls_key_file;
  std::optional<std::string> tls_server_name;
  std::optional<std::string> token_file;  // wins over `token`
  std::optional<std::string> token;
};

// `base` with `overrides` applied, and how each resulting setting is spelt:
// `names` for the overridden ones, `base_names` for the rest.
struct OverriddenSettings {
  SecuritySettings settings;
  SecurityNames names;
};
OverriddenSettings ApplyOverrides(const SecuritySettings& base,
                                  const SecurityNames& base_names,
                                  const SecurityOverrides& overrides,
                                  const SecurityNames& names);

// Reads the files of `settings` into `options` and checks them: the PEM
// texts parse, the key belongs to the certificate, a certificate comes with
// its key and with a CA. INVALID_ARGUMENT naming the setting otherwise; no
// message ever contains the token. The transport then applies its own
// checks (CheckConnectSecurity), such as no token in clear to another host.
absl::Status ApplySecuritySettings(const SecuritySettings& settings,
                                   const SecurityNames& names,
                                   ConnectOptions* options);

// The token in the file at `path`, without trailing whitespace.
// INVALID_ARGUMENT naming `what` when it cannot be read or holds no token.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path,
                                          absl::string_view what);

}  // namespace ckpt::client
