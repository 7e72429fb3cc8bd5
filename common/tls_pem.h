// Loading and checking the PEM files that configure TLS (server certificate
// and key, CA bundles, client certificate and key), shared by ckpt-server
// and the clients. gRPC takes PEM text and reports a bad file only as an
// opaque handshake failure, long after startup; these checks, with OpenSSL,
// turn a wrong, empty or mismatched file into an error at startup that
// names the flag (or argument) it came from. Pure apart from reading files.
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ckpt {

// A CA bundle of every public CA is about 200 KiB.
inline constexpr size_t kMaxCredentialFileBytes = 16 << 20;

// The contents of the credential file (PEM, or a token) at `path`.
// INVALID_ARGUMENT naming `what` (the flag, e.g. "--tls-cert") and why when
// it cannot be read (also a directory, a FIFO or a file over
// kMaxCredentialFileBytes) or is empty.
absl::StatusOr<std::string> ReadCredentialFile(const std::string& path,
                                               absl::string_view what);

// OK when `pem` holds one or more X.509 certificates and nothing else that
// fails to parse. INVALID_ARGUMENT naming `what` otherwise.
absl::Status CheckCertificatesPem(absl::string_view pem,
                                  absl::string_view what);

// OK when `key_pem` holds an unencrypted private key that belongs to the
// first certificate of `cert_pem`. INVALID_ARGUMENT naming `key_what`
// otherwise (an encrypted key is refused: nobody could type its passphrase
// at a server's or a training job's start).
// REQUIRES: CheckCertificatesPem(cert_pem) is OK.
absl::Status CheckKeyMatchesCertificate(absl::string_view key_pem,
                                        absl::string_view key_what,
                                        absl::string_view cert_pem,
                                        absl::string_view cert_what);

}  // namespace ckpt
