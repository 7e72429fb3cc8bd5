#include "common/tls_pem.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "common/small_file.h"

namespace ckpt {
namespace {

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct KeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using Bio = std::unique_ptr<BIO, BioFree>;
using Cert = std::unique_ptr<X509, X509Free>;
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;

Bio MemoryBio(absl::string_view pem) {
  return Bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// Refuses a passphrase prompt: OpenSSL would otherwise read the terminal.
int NoPassphrase(char*, int, int, void*) { return -1; }

Cert FirstCertificate(absl::string_view pem) {
  Bio bio = MemoryBio(pem);
  if (bio == nullptr) return nullptr;
  return Cert(PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr));
}

}  // namespace

absl::StatusOr<std::string> ReadCredentialFile(const std::string& path,
                                               absl::string_view what) {
  absl::StatusOr<std::string> text =
      ReadSmallRegularFile(path, kMaxCredentialFileBytes);
  if (!text.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": cannot read '", path, "': ", text.status().message()));
  }
  if (text->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": '", path, "' is empty"));
  }
  return text;
}

absl::Status CheckCertificatesPem(absl::string_view pem,
                                  absl::string_view what) {
  Bio bio = MemoryBio(pem);
  if (bio == nullptr) return absl::ResourceExhaustedError("BIO_new_mem_buf");
  int certificates = 0;
  while (true) {
    Cert cert(PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr));
    if (cert == nullptr) break;
    ++certificates;
  }
  // The loop ends at the end of the text (PEM_R_NO_START_LINE) or at a
  // block that does not parse.
  const unsigned long error = ERR_peek_last_error();
  const bool clean_end = ERR_GET_LIB(error) == ERR_LIB_PEM &&
                         ERR_GET_REASON(error) == PEM_R_NO_START_LINE;
  ERR_clear_error();
  if (certificates == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": no PEM certificate found"));
  }
  if (!clean_end) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": certificate ", certificates + 1, " does not parse"));
  }
  return absl::OkStatus();
}

absl::Status CheckKeyMatchesCertificate(absl::string_view key_pem,
                                        absl::string_view key_what,
                                        absl::string_view cert_pem,
                                        absl::string_view cert_what) {
  Bio bio = MemoryBio(key_pem);
  if (bio == nullptr) return absl::ResourceExhaustedError("BIO_new_mem_buf");
  Key key(PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr));
  ERR_clear_error();
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        key_what,
        ": no unencrypted PEM private key found (an encrypted key is not "
        "supported)"));
  }
  Cert cert = FirstCertificate(cert_pem);
  ERR_clear_error();
  if (cert == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(cert_what, ": no PEM certificate found"));
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat(key_what,
                     ": the private key does not belong to the "
                     "certificate of ",
                     cert_what));
  }
  return absl::OkStatus();
}

}  // namespace ckpt
