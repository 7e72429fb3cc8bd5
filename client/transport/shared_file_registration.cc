#include "client/transport/shared_file_registration.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/shared_file_protocol.h"
#include "common/status_macros.h"
#include "common/unique_fd.h"

namespace ckpt::client {
namespace {

namespace protocol = shared_file_protocol;

class SocketRegistration final : public SharedFileRegistration {
 public:
  SocketRegistration(UniqueFd socket, std::string handle)
      : socket_(std::move(socket)), handle_(std::move(handle)) {}
  // shutdown, not just close: a child forked meanwhile holds a copy of the
  // descriptor, and the connection must end for the server all the same.
  ~SocketRegistration() override { shutdown(socket_.get(), SHUT_RDWR); }
  absl::string_view handle() const override { return handle_; }

 private:
  UniqueFd socket_;  // the server drops the file when this closes
  std::string handle_;
};

absl::Status Refused(absl::string_view why) {
  return absl::FailedPreconditionError(
      absl::StrCat("shared-memory restore unavailable: ", why));
}

// The server's packet, which starts with a status byte; a non-zero one is
// a refusal with its message.
absl::StatusOr<std::string> ReceiveFromServer(int socket) {
  absl::StatusOr<protocol::Packet> packet = protocol::ReceivePacket(socket);
  if (!packet.ok()) {
    return Refused(
        absl::StrCat("the server's socket: ", packet.status().message()));
  }
  // Descriptors from the server are not expected; the packet closes them.
  if (packet->bytes.empty()) return Refused("an empty packet from the server");
  if (packet->bytes[0] != 0) {
    return Refused(absl::StrCat("the server refused: ",
                                absl::string_view(packet->bytes).substr(1)));
  }
  return packet->bytes.substr(1);
}

}  // namespace

absl::StatusOr<std::unique_ptr<SharedFileRegistration>> RegisterAtSocket(
    const SharedFileEndpoint& endpoint, int memfd, absl::Duration timeout) {
  if (endpoint.ticket_id.size() != protocol::kTicketIdBytes ||
      endpoint.ticket.size() != protocol::kTicketBytes) {
    return Refused("the server's endpoint has a malformed ticket");
  }
  absl::StatusOr<protocol::SocketAddress> address =
      protocol::AbstractAddress(endpoint.socket_name);
  if (!address.ok()) return Refused(address.status().message());
  UniqueFd socket(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!socket.valid()) {
    return Refused(absl::StrCat("socket: ", std::strerror(errno)));
  }
  timeval wait = absl::ToTimeval(timeout);
  setsockopt(socket.get(), SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof(wait));
  setsockopt(socket.get(), SOL_SOCKET, SO_SNDTIMEO, &wait, sizeof(wait));
  if (connect(socket.get(),
              reinterpret_cast<const sockaddr*>(&address->address),
              address->length) != 0) {
    return Refused(absl::StrCat(
        "cannot connect to the server's socket (is the client in another "
        "network namespace?): ",
        std::strerror(errno)));
  }
  CKPT_ASSIGN_OR_RETURN(std::string client_nonce,
                        protocol::RandomBytes(protocol::kNonceBytes));
  if (absl::Status sent = protocol::SendPacket(
          socket.get(),
          absl::StrCat(protocol::kHelloMagic, endpoint.ticket_id, client_nonce),
          -1, /*dont_wait=*/false);
      !sent.ok()) {
    return Refused(sent.message());
  }
  CKPT_ASSIGN_OR_RETURN(std::string challenge, ReceiveFromServer(socket.get()));
  if (challenge.size() != protocol::kChallengeBytes - 1) {
    return Refused("a malformed challenge from the server's socket");
  }
  // Before the memfd leaves this process: is this the server we asked?
  const absl::string_view proof =
      absl::string_view(challenge).substr(0, protocol::kProofBytes);
  if (!protocol::SecretEquals(
          proof, protocol::ServerProof(endpoint.ticket, client_nonce))) {
    return Refused(
        "the socket did not prove it is the server's (a server that "
        "restarted, or another process holding its name); the memory file "
        "was not sent");
  }
  const std::string server_nonce = challenge.substr(protocol::kProofBytes);
  if (absl::Status sent = protocol::SendPacket(
          socket.get(),
          absl::StrCat(protocol::kRegisterMagic,
                       protocol::ClientProof(endpoint.ticket, server_nonce)),
          memfd, /*dont_wait=*/false);
      !sent.ok()) {
    return Refused(sent.message());
  }
  CKPT_ASSIGN_OR_RETURN(std::string handle, ReceiveFromServer(socket.get()));
  if (handle.size() != protocol::kHandleBytes) {
    return Refused("a malformed handle from the server's socket");
  }
  return std::make_unique<SocketRegistration>(std::move(socket),
                                              std::move(handle));
}

}  // namespace ckpt::client
