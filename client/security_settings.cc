#include "client/security_settings.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/tls_pem.h"

namespace ckpt::client {

absl::StatusOr<std::string> ReadTokenFile(const std::string& path,
                                          absl::string_view what) {
  CKPT_ASSIGN_OR_RETURN(std::string token, ReadCredentialFile(path, what));
  absl::StripTrailingAsciiWhitespace(&token);
  if (token.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": '", path, "' holds no token"));
  }
  return token;
}

OverriddenSettings ApplyOverrides(const SecuritySettings& base,
                                  const SecurityNames& base_names,
                                  const SecurityOverrides& overrides,
                                  const SecurityNames& names) {
  OverriddenSettings result{base, base_names};
  auto apply = [](const std::optional<std::string>& given,
                  const std::string& name, std::string* value,
                  std::string* value_name) {
    if (!given.has_value()) return;
    *value = *given;
    *value_name = name;
  };
  apply(overrides.tls_ca_file, names.tls_ca, &result.settings.tls_ca_file,
        &result.names.tls_ca);
  apply(overrides.tls_cert_file, names.tls_cert, &result.settings.tls_cert_file,
        &result.names.tls_cert);
  apply(overrides.tls_key_file, names.tls_key, &result.settings.tls_key_file,
        &result.names.tls_key);
  apply(overrides.tls_server_name, names.tls_server_name,
        &result.settings.tls_server_name, &result.names.tls_server_name);
  if (overrides.token_file.has_value() || overrides.token.has_value()) {
    result.settings.token_file = overrides.token_file.value_or("");
    result.settings.token =
        overrides.token_file.has_value() ? "" : overrides.token.value_or("");
    result.names.token_file = names.token_file;
  }
  return result;
}

absl::Status ApplySecuritySettings(const SecuritySettings& settings,
                                   const SecurityNames& names,
                                   ConnectOptions* options) {
  if (settings.tls_cert_file.empty() != settings.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        settings.tls_cert_file.empty()
            ? absl::StrCat(names.tls_key, " needs ", names.tls_cert)
            : absl::StrCat(names.tls_cert, " needs ", names.tls_key));
  }
  if (settings.tls_ca_file.empty()) {
    if (!settings.tls_cert_file.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(names.tls_cert, " needs ", names.tls_ca,
                       " (a client certificate is presented only over TLS)"));
    }
    if (!settings.tls_server_name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(names.tls_server_name, " needs ", names.tls_ca));
    }
  } else {
    CKPT_ASSIGN_OR_RETURN(
        options->tls_ca_pem,
        ReadCredentialFile(settings.tls_ca_file, names.tls_ca));
    CKPT_RETURN_IF_ERROR(
        CheckCertificatesPem(options->tls_ca_pem, names.tls_ca));
    options->tls_server_name = settings.tls_server_name;
  }
  if (!settings.tls_cert_file.empty()) {
    CKPT_ASSIGN_OR_RETURN(
        options->tls_cert_pem,
        ReadCredentialFile(settings.tls_cert_file, names.tls_cert));
    CKPT_RETURN_IF_ERROR(
        CheckCertificatesPem(options->tls_cert_pem, names.tls_cert));
    CKPT_ASSIGN_OR_RETURN(
        options->tls_key_pem,
        ReadCredentialFile(settings.tls_key_file, names.tls_key));
    CKPT_RETURN_IF_ERROR(
        CheckKeyMatchesCertificate(options->tls_key_pem, names.tls_key,
                                   options->tls_cert_pem, names.tls_cert));
  }
  if (!settings.token_file.empty()) {
    CKPT_ASSIGN_OR_RETURN(options->token,
                          ReadTokenFile(settings.token_file, names.token_file));
  } else {
    options->token = settings.token;
  }
  return absl::OkStatus();
}

}  // namespace ckpt::client
