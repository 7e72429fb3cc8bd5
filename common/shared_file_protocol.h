// The protocol of the server's shared-memory socket, spoken by both sides:
// a client passes its restore memfd to the server (SCM_RIGHTS) and gets a
// handle that ReadChunksIntoFile then names. Pure POSIX and OpenSSL; no
// gRPC. See docs/security.md, "Shared-memory restore".
//
// The socket is a SOCK_SEQPACKET Unix socket with an abstract name the
// server picks at random when it starts (kSocketNameRandomBytes), so nobody
// can bind it first. Each message is one packet:
//   client -> server  HELLO     kHelloMagic, ticket_id, client_nonce
//   server -> client  CHALLENGE a 0 byte, ServerProof(ticket, client_nonce),
//                               server_nonce
//   client -> server  REGISTER  kRegisterMagic,
//                               ClientProof(ticket, server_nonce),
//                               and exactly one descriptor (SCM_RIGHTS)
//   server -> client  ANSWER    a 0 byte and the handle, or a byte holding
//                               an absl::StatusCode and a message
// Every server packet starts with a status byte; a refusal is an ANSWER
// with a non-zero one, after which the server may close the connection.
// REGISTER/ANSWER may repeat on one connection. Every file registered on a
// connection is dropped when it closes.
//
// The ticket is HMAC(server key, ticket_id); the server gives ticket_id and
// ticket over the gRPC channel (GetSharedFileEndpoint) and keeps only its
// key. The server's proof shows the client that the socket is the server
// it asked (a process that bound the name after that server died cannot
// compute it), before the client sends its memfd; the client's proof shows
// the server that the peer was given the ticket over gRPC.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/unique_fd.h"

namespace ckpt::shared_file_protocol {

inline constexpr size_t kSocketNameRandomBytes = 16;  // 128 bits
inline constexpr size_t kKeyBytes = 32;
inline constexpr size_t kTicketIdBytes = 16;
inline constexpr size_t kTicketBytes = 32;  // HMAC-SHA256
inline constexpr size_t kNonceBytes = 16;
inline constexpr size_t kProofBytes = 32;
inline constexpr size_t kHandleBytes = 16;  // 128 bits
inline constexpr absl::string_view kHelloMagic = "CKPTSHM1";
inline constexpr absl::string_view kRegisterMagic = "CKPTREG1";
inline constexpr size_t kHelloBytes =
    kHelloMagic.size() + kTicketIdBytes + kNonceBytes;
inline constexpr size_t kChallengeBytes = 1 + kProofBytes + kNonceBytes;
inline constexpr size_t kRegisterBytes = kRegisterMagic.size() + kProofBytes;
// The largest packet either side sends (an ANSWER with its message).
inline constexpr size_t kMaxPacketBytes = 512;

// `size` bytes from OpenSSL's generator. INTERNAL if it fails.
absl::StatusOr<std::string> RandomBytes(size_t size);

// HMAC-SHA256(key, label || data).
std::string Hmac(absl::string_view key, absl::string_view label,
                 absl::string_view data);
inline std::string TicketFor(absl::string_view key,
                             absl::string_view ticket_id) {
  return Hmac(key, "ticket", ticket_id);
}
inline std::string ServerProof(absl::string_view ticket,
                               absl::string_view client_nonce) {
  return Hmac(ticket, "server", client_nonce);
}
inline std::string ClientProof(absl::string_view ticket,
                               absl::string_view server_nonce) {
  return Hmac(ticket, "client", server_nonce);
}
// Compares in time independent of where `a` and `b` differ.
bool SecretEquals(absl::string_view a, absl::string_view b);

// The address of the abstract socket `name` (no leading NUL; at most 100
// bytes). INVALID_ARGUMENT for an empty or longer name.
struct SocketAddress {
  sockaddr_un address{};
  socklen_t length = 0;
};
absl::StatusOr<SocketAddress> AbstractAddress(absl::string_view name);

// One packet and the descriptors that came with it (owned; closed with the
// packet when unused).
struct Packet {
  std::string bytes;
  std::vector<UniqueFd> fds;
};
// Receives one packet of at most kMaxPacketBytes on `socket`, with up to 4
// descriptors (marked close-on-exec). UNAVAILABLE when the peer closed or
// the read failed (DEADLINE_EXCEEDED when a receive timeout ran out);
// INVALID_ARGUMENT when the peer sent more descriptors or a longer packet
// than that (whatever descriptors arrived are closed).
absl::StatusOr<Packet> ReceivePacket(int socket);
// Sends `bytes` as one packet, with `fd` (when >= 0) attached. Never
// raises SIGPIPE; never blocks when `dont_wait`.
absl::Status SendPacket(int socket, absl::string_view bytes, int fd,
                        bool dont_wait);

}  // namespace ckpt::shared_file_protocol
