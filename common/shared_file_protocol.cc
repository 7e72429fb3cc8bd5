#include "common/shared_file_protocol.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace ckpt::shared_file_protocol {
namespace {

constexpr int kMaxFdsPerPacket = 4;

}  // namespace

absl::StatusOr<std::string> RandomBytes(size_t size) {
  std::string bytes(size, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()),
                 static_cast<int>(size)) != 1) {
    return absl::InternalError("the system's random generator failed");
  }
  return bytes;
}

std::string Hmac(absl::string_view key, absl::string_view label,
                 absl::string_view data) {
  const std::string message = absl::StrCat(label, data);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int out_size = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(),
       out, &out_size);
  return std::string(reinterpret_cast<const char*>(out), out_size);
}

bool SecretEquals(absl::string_view a, absl::string_view b) {
  return a.size() == b.size() &&
         CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

absl::StatusOr<SocketAddress> AbstractAddress(absl::string_view name) {
  SocketAddress out;
  // The leading NUL makes the name abstract: no file, gone with the socket.
  if (name.empty() || name.size() + 1 > sizeof(out.address.sun_path) - 7) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a shared-memory socket name has 1 to 100 bytes, got ", name.size()));
  }
  out.address.sun_family = AF_UNIX;
  out.address.sun_path[0] = '\0';
  std::memcpy(out.address.sun_path + 1, name.data(), name.size());
  out.length =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  return out;
}

absl::StatusOr<Packet> ReceivePacket(int socket) {
  Packet packet;
  packet.bytes.resize(kMaxPacketBytes + 1);  // one more: detects truncation
  iovec io{packet.bytes.data(), packet.bytes.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerPacket)];
  msghdr message{};
  message.msg_iov = &io;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = recvmsg(socket, &message, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  const int error = errno;
  // Own every descriptor that arrived first, so each path closes them.
  for (cmsghdr* c = CMSG_FIRSTHDR(&message); n >= 0 && c != nullptr;
       c = CMSG_NXTHDR(&message, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      packet.fds.emplace_back(fd);
    }
  }
  if (n < 0) {
    if (error == EAGAIN || error == EWOULDBLOCK) {
      return absl::DeadlineExceededError("no answer in time");
    }
    return absl::UnavailableError(
        absl::StrCat("receive failed: ", std::strerror(error)));
  }
  if (n == 0) return absl::UnavailableError("the peer closed the connection");
  if ((message.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) != 0 ||
      static_cast<size_t>(n) > kMaxPacketBytes) {
    return absl::InvalidArgumentError(
        "a packet with too many descriptors or bytes");
  }
  packet.bytes.resize(static_cast<size_t>(n));
  return packet;
}

absl::Status SendPacket(int socket, absl::string_view bytes, int fd,
                        bool dont_wait) {
  iovec io{const_cast<char*>(bytes.data()), bytes.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr message{};
  message.msg_iov = &io;
  message.msg_iovlen = 1;
  if (fd >= 0) {
    message.msg_control = control;
    message.msg_controllen = sizeof(control);
    cmsghdr* c = CMSG_FIRSTHDR(&message);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  }
  ssize_t n;
  do {
    n = sendmsg(socket, &message,
                MSG_NOSIGNAL | (dont_wait ? MSG_DONTWAIT : 0));
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(bytes.size())) {
    return absl::UnavailableError(absl::StrCat(
        "send failed: ", n < 0 ? std::strerror(errno) : "short send"));
  }
  return absl::OkStatus();
}

}  // namespace ckpt::shared_file_protocol
