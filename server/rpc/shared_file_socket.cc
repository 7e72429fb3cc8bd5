#include "server/rpc/shared_file_socket.h"

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/shared_file_protocol.h"
#include "common/status_macros.h"

namespace ckpt::server {

namespace protocol = shared_file_protocol;

struct SharedFileSocket::Connection {
  UniqueFd socket;
  uint64_t id = 0;
  PeerCredentials peer;
  absl::Time accepted;
  bool greeted = false;
  size_t registered = 0;  // successful registrations
  std::string ticket;
  std::string server_nonce;
};

namespace {

// An ANSWER: the status code, then the handle or the message.
std::string Answer(const absl::StatusOr<std::string>& handle) {
  std::string out(1, static_cast<char>(handle.status().code()));
  if (handle.ok()) {
    out += *handle;
  } else {
    absl::StrAppend(&out, handle.status().message().substr(
                              0, protocol::kMaxPacketBytes - 1));
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SharedFileSocket>> SharedFileSocket::Start(
    SharedFileRegistry* registry, SharedFileSocketOptions options) {
  CKPT_ASSIGN_OR_RETURN(
      std::string random,
      protocol::RandomBytes(protocol::kSocketNameRandomBytes));
  CKPT_ASSIGN_OR_RETURN(std::string key,
                        protocol::RandomBytes(protocol::kKeyBytes));
  std::string name = absl::StrCat("ckpt-shm-", absl::BytesToHexString(random));
  CKPT_ASSIGN_OR_RETURN(protocol::SocketAddress address,
                        protocol::AbstractAddress(name));
  UniqueFd listener(
      socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!listener.valid() ||
      bind(listener.get(), reinterpret_cast<const sockaddr*>(&address.address),
           address.length) != 0 ||
      listen(listener.get(), 64) != 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot open the shared-memory socket: ", std::strerror(errno)));
  }
  UniqueFd wake(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake.valid()) {
    return absl::UnavailableError(
        absl::StrCat("cannot make the shared-memory socket's eventfd: ",
                     std::strerror(errno)));
  }
  std::unique_ptr<SharedFileSocket> server(
      new SharedFileSocket(registry, options, std::move(name), std::move(key),
                           std::move(listener), std::move(wake)));
  server->thread_ = std::thread([raw = server.get()] { raw->Run(); });
  return server;
}

SharedFileSocket::SharedFileSocket(SharedFileRegistry* registry,
                                   SharedFileSocketOptions options,
                                   std::string name, std::string key,
                                   UniqueFd listener, UniqueFd wake)
    : registry_(registry),
      options_(options),
      name_(std::move(name)),
      key_(std::move(key)),
      listener_(std::move(listener)),
      wake_(std::move(wake)) {}

SharedFileSocket::~SharedFileSocket() { Stop(); }

absl::StatusOr<SharedFileEndpoint> SharedFileSocket::NewEndpoint() const {
  CKPT_ASSIGN_OR_RETURN(std::string ticket_id,
                        protocol::RandomBytes(protocol::kTicketIdBytes));
  std::string ticket = protocol::TicketFor(key_, ticket_id);
  return SharedFileEndpoint{name_, std::move(ticket_id), std::move(ticket)};
}

void SharedFileSocket::Stop() {
  if (stopped_.exchange(true)) return;
  const uint64_t one = 1;
  (void)!write(wake_.get(), &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
  for (const std::unique_ptr<Connection>& connection : open_) {
    registry_->DropConnection(connection->id);
  }
  open_.clear();
  connections_ = 0;
}

void SharedFileSocket::Run() {
  pthread_setname_np(pthread_self(), "ckpt-shm-socket");
  std::vector<pollfd> polled;
  while (!stopped_.load()) {
    polled.clear();
    polled.push_back({wake_.get(), POLLIN, 0});
    polled.push_back({listener_.get(), POLLIN, 0});
    // Connections that have registered nothing yet must do so in time.
    const absl::Time now = absl::Now();
    absl::Duration wait = absl::InfiniteDuration();
    for (const std::unique_ptr<Connection>& connection : open_) {
      polled.push_back({connection->socket.get(), POLLIN, 0});
      if (connection->registered == 0) {
        wait = std::min(
            wait, connection->accepted + options_.handshake_timeout - now);
      }
    }
    const int timeout_ms = wait == absl::InfiniteDuration()
                               ? -1
                               : static_cast<int>(std::max<int64_t>(
                                     0, absl::ToInt64Milliseconds(absl::Ceil(
                                            wait, absl::Milliseconds(1)))));
    if (poll(polled.data(), polled.size(), timeout_ms) < 0 && errno != EINTR) {
      CKPT_LOG(Error,
               "shared-memory socket: poll failed: ", std::strerror(errno));
      return;
    }
    if (stopped_.load()) return;
    // Serve the connections polled (those accepted below wait a round).
    const absl::Time after = absl::Now();
    std::vector<std::unique_ptr<Connection>> kept;
    kept.reserve(open_.size());
    for (size_t i = 0; i < open_.size(); ++i) {
      Connection& connection = *open_[i];
      bool keep = true;
      if ((polled[i + 2].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        keep = Serve(connection);
      }
      if (keep && connection.registered == 0 &&
          after - connection.accepted >= options_.handshake_timeout) {
        keep = false;
      }
      if (keep) {
        kept.push_back(std::move(open_[i]));
      } else {
        registry_->DropConnection(connection.id);
      }
    }
    open_ = std::move(kept);
    if ((polled[1].revents & POLLIN) != 0) Accept();
    connections_ = open_.size();
  }
}

void SharedFileSocket::Accept() {
  while (true) {
    UniqueFd socket(accept4(listener_.get(), nullptr, nullptr,
                            SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!socket.valid()) return;  // EAGAIN, or a connection that went away
    ucred credentials{};
    socklen_t size = sizeof(credentials);
    if (getsockopt(socket.get(), SOL_SOCKET, SO_PEERCRED, &credentials,
                   &size) != 0) {
      continue;
    }
    const size_t same_uid = static_cast<size_t>(
        std::count_if(open_.begin(), open_.end(), [&](const auto& connection) {
          return connection->peer.uid == credentials.uid;
        }));
    if (open_.size() >= options_.max_connections ||
        same_uid >= options_.max_connections_per_uid) {
      (void)protocol::SendPacket(
          socket.get(),
          Answer(absl::ResourceExhaustedError(
              "the shared-memory socket has too many connections open")),
          -1, /*dont_wait=*/true);
      continue;
    }
    auto connection = std::make_unique<Connection>();
    connection->socket = std::move(socket);
    connection->id = next_id_++;
    connection->peer =
        PeerCredentials{credentials.pid, credentials.uid, credentials.gid};
    connection->accepted = absl::Now();
    open_.push_back(std::move(connection));
  }
}

bool SharedFileSocket::Serve(Connection& connection) {
  absl::StatusOr<protocol::Packet> packet =
      protocol::ReceivePacket(connection.socket.get());
  if (!packet.ok()) {
    if (absl::IsInvalidArgument(packet.status())) {
      (void)protocol::SendPacket(connection.socket.get(),
                                 Answer(packet.status()), -1, true);
    }
    return false;  // closed by the peer, or a packet we refuse
  }
  const int socket = connection.socket.get();
  auto refuse = [&](absl::Status status) {
    (void)protocol::SendPacket(socket, Answer(status), -1, true);
    return false;
  };
  if (!connection.greeted) {
    if (packet->bytes.size() != protocol::kHelloBytes ||
        !absl::StartsWith(packet->bytes, protocol::kHelloMagic) ||
        !packet->fds.empty()) {
      return refuse(absl::InvalidArgumentError("expected a HELLO packet"));
    }
    const absl::string_view hello = packet->bytes;
    const absl::string_view ticket_id =
        hello.substr(protocol::kHelloMagic.size(), protocol::kTicketIdBytes);
    const absl::string_view client_nonce =
        hello.substr(protocol::kHelloMagic.size() + protocol::kTicketIdBytes);
    absl::StatusOr<std::string> server_nonce =
        protocol::RandomBytes(protocol::kNonceBytes);
    if (!server_nonce.ok()) return refuse(server_nonce.status());
    connection.ticket = protocol::TicketFor(key_, ticket_id);
    connection.server_nonce = *server_nonce;
    connection.greeted = true;
    return protocol::SendPacket(
               socket,
               absl::StrCat(
                   absl::string_view("\0", 1),
                   protocol::ServerProof(connection.ticket, client_nonce),
                   connection.server_nonce),
               -1, true)
        .ok();
  }
  if (packet->bytes.size() != protocol::kRegisterBytes ||
      !absl::StartsWith(packet->bytes, protocol::kRegisterMagic)) {
    return refuse(absl::InvalidArgumentError("expected a REGISTER packet"));
  }
  const absl::string_view proof =
      absl::string_view(packet->bytes).substr(protocol::kRegisterMagic.size());
  if (!protocol::SecretEquals(
          proof,
          protocol::ClientProof(connection.ticket, connection.server_nonce))) {
    return refuse(absl::PermissionDeniedError(
        "the REGISTER proof does not match the ticket (get one with "
        "GetSharedFileEndpoint)"));
  }
  if (packet->fds.size() != 1) {
    return refuse(absl::InvalidArgumentError(absl::StrCat(
        "REGISTER carries exactly one descriptor, got ", packet->fds.size())));
  }
  absl::StatusOr<std::string> handle = registry_->Register(
      connection.id, std::move(packet->fds[0]), connection.peer);
  if (handle.ok()) ++connection.registered;
  // A refused file leaves the connection open: the client may fall back.
  return protocol::SendPacket(socket, Answer(handle), -1, true).ok();
}

}  // namespace ckpt::server
