#include "client/transport/channel_security.h"

#include <arpa/inet.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "common/tls_pem.h"

namespace ckpt::client {
namespace {

bool IsLoopbackHost(absl::string_view host) {
  if (absl::ConsumeSuffix(&host, ".")) {
    // "localhost." is the absolute spelling of "localhost".
  }
  if (absl::EqualsIgnoreCase(host, "localhost")) return true;
  const std::string text(host);
  in_addr v4{};
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

// The host of "HOST", "HOST:PORT", "[IPV6]" or "[IPV6]:PORT"; a bare IPv6
// literal (more than one colon, no brackets) is all host.
absl::string_view HostOf(absl::string_view address) {
  if (absl::ConsumePrefix(&address, "[")) {
    const size_t close = address.find(']');
    return close == absl::string_view::npos ? absl::string_view()
                                            : address.substr(0, close);
  }
  const size_t colon = address.find(':');
  if (colon == absl::string_view::npos) return address;
  if (address.find(':', colon + 1) != absl::string_view::npos) return address;
  return address.substr(0, colon);
}

bool AllLoopback(absl::string_view addresses) {
  bool any = false;
  for (absl::string_view address : absl::StrSplit(addresses, ',')) {
    if (!IsLoopbackHost(HostOf(address))) return false;
    any = true;
  }
  return any;
}

absl::Status CheckPrintableToken(absl::string_view token) {
  for (size_t i = 0; i < token.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(token[i]);
    if (c < 0x21 || c > 0x7e) {
      // The position, never the token or the character itself.
      return absl::InvalidArgumentError(absl::StrCat(
          "ConnectOptions.token: byte ", i + 1, " of ", token.size(),
          " is not printable ASCII (a token goes in a header: no spaces, "
          "control characters or line breaks; strip the token file's "
          "trailing newline)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool IsLoopbackTarget(absl::string_view target) {
  if (absl::StartsWith(target, "unix:") ||
      absl::StartsWith(target, "unix-abstract:")) {
    return true;
  }
  if (absl::ConsumePrefix(&target, "ipv4:") ||
      absl::ConsumePrefix(&target, "ipv6:")) {
    return AllLoopback(target);
  }
  if (absl::ConsumePrefix(&target, "dns:")) {
    bool own_resolver = true;
    if (absl::ConsumePrefix(&target, "//")) {
      // dns://AUTHORITY/HOST:PORT: HOST is looked up at the DNS server
      // AUTHORITY (none named: the system's resolver).
      const size_t slash = target.find('/');
      if (slash == absl::string_view::npos) return false;
      own_resolver = slash == 0;
      target.remove_prefix(slash + 1);
    }
    const absl::string_view host = HostOf(target);
    // Another DNS server may answer anything for "localhost": only an
    // address literal is then known to be loopback.
    if (!own_resolver &&
        absl::EqualsIgnoreCase(host.substr(0, 9), "localhost")) {
      return false;
    }
    return IsLoopbackHost(host);
  }
  // gRPC reads any other target as a DNS name with the default scheme,
  // which is a single host.
  if (target.find(',') != absl::string_view::npos) return false;
  return IsLoopbackHost(HostOf(target));
}

absl::Status CheckConnectSecurity(absl::string_view address,
                                  const ConnectOptions& options) {
  const bool tls = !options.tls_ca_pem.empty();
  if (options.tls_cert_pem.empty() != options.tls_key_pem.empty()) {
    return absl::InvalidArgumentError(
        options.tls_cert_pem.empty()
            ? "ConnectOptions.tls_key_pem needs tls_cert_pem"
            : "ConnectOptions.tls_cert_pem needs tls_key_pem");
  }
  if (!tls && !options.tls_cert_pem.empty()) {
    return absl::InvalidArgumentError(
        "ConnectOptions.tls_cert_pem needs tls_ca_pem (a client certificate "
        "is presented only over TLS)");
  }
  if (!tls && !options.tls_server_name.empty()) {
    return absl::InvalidArgumentError(
        "ConnectOptions.tls_server_name needs tls_ca_pem");
  }
  if (tls) {
    CKPT_RETURN_IF_ERROR(
        CheckCertificatesPem(options.tls_ca_pem, "ConnectOptions.tls_ca_pem"));
  }
  if (!options.tls_cert_pem.empty()) {
    CKPT_RETURN_IF_ERROR(CheckCertificatesPem(options.tls_cert_pem,
                                              "ConnectOptions.tls_cert_pem"));
    CKPT_RETURN_IF_ERROR(CheckKeyMatchesCertificate(
        options.tls_key_pem, "ConnectOptions.tls_key_pem", options.tls_cert_pem,
        "ConnectOptions.tls_cert_pem"));
  }
  if (!options.token.empty()) {
    CKPT_RETURN_IF_ERROR(CheckPrintableToken(options.token));
    if (!tls && !IsLoopbackTarget(address)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "refusing to send the token in clear to ", address,
          ", which is not a loopback address: connect with TLS (a CA "
          "certificate: --tls-ca, CKPT_TLS_CA or tls_ca=)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace ckpt::client
