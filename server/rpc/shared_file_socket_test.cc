// SharedFileSocket with the client's registration code
// (client/transport/shared_file_registration.h) and raw sockets: what a
// client may register, that nothing outlives its connection (a client
// killed mid-restore included), and how the socket treats strangers,
// impostors and garbage. No gRPC server: the endpoint comes from the socket.

#include "server/rpc/shared_file_socket.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/transport/shared_file_registration.h"
#include "common/shared_file_protocol.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/shared_file_test_util.h"
#include "tests/testing/temp_dir.h"

namespace ckpt::server {
namespace {

namespace protocol = shared_file_protocol;
using testing::EventuallyTrue;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::TestMemfd;

constexpr absl::Duration kTimeout = absl::Seconds(5);

int OpenDescriptors() {
  int count = 0;
  DIR* dir = opendir("/proc/self/fd");
  while (readdir(dir) != nullptr) ++count;
  closedir(dir);
  return count;
}

UniqueFd RawConnect(const std::string& name) {
  auto address = protocol::AbstractAddress(name);
  EXPECT_TRUE(address.ok());
  UniqueFd socket(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  timeval wait = absl::ToTimeval(kTimeout);
  setsockopt(socket.get(), SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof(wait));
  EXPECT_EQ(connect(socket.get(),
                    reinterpret_cast<const sockaddr*>(&address->address),
                    address->length),
            0);
  return socket;
}

class SharedFileSocketTest : public ::testing::Test {
 protected:
  void Start(SharedFileSocketOptions options = {}) {
    auto socket = SharedFileSocket::Start(&registry_, options);
    ASSERT_TRUE(socket.ok()) << socket.status();
    socket_ = *std::move(socket);
    auto endpoint = socket_->NewEndpoint();
    ASSERT_TRUE(endpoint.ok());
    endpoint_ = *endpoint;
  }
  void SetUp() override { Start(); }

  absl::StatusOr<std::unique_ptr<client::SharedFileRegistration>> Register(
      int fd) {
    return client::RegisterAtSocket(endpoint_, fd, kTimeout);
  }

  SharedFileRegistry registry_;
  std::unique_ptr<SharedFileSocket> socket_;
  SharedFileEndpoint endpoint_;
};

TEST_F(SharedFileSocketTest, NameIsAbstractAndRandomAndTicketsDiffer) {
  EXPECT_THAT(endpoint_.socket_name, ::testing::StartsWith("ckpt-shm-"));
  EXPECT_EQ(endpoint_.socket_name.size(),
            9 + 2 * protocol::kSocketNameRandomBytes);
  SharedFileRegistry other_registry;
  auto other = SharedFileSocket::Start(&other_registry);
  ASSERT_TRUE(other.ok());
  auto other_endpoint = (*other)->NewEndpoint();
  auto again = socket_->NewEndpoint();
  ASSERT_TRUE(other_endpoint.ok() && again.ok());
  EXPECT_NE(other_endpoint->socket_name, endpoint_.socket_name);
  EXPECT_EQ(again->socket_name, endpoint_.socket_name);
  EXPECT_NE(again->ticket_id, endpoint_.ticket_id);
  EXPECT_NE(again->ticket, endpoint_.ticket);
}

TEST_F(SharedFileSocketTest, RegistersTheMemfdItsOwnerPassesUntilItCloses) {
  TestMemfd file(8192);
  auto registration = Register(file.fd);
  ASSERT_TRUE(registration.ok()) << registration.status();
  EXPECT_EQ(registry_.size(), 1u);
  auto writer = registry_.Find((*registration)->handle());
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE((*writer)->Write(4096, "from the server").ok());
  EXPECT_EQ(file.Read(4096, 15), "from the server");
  writer->reset();
  registration->reset();
  EXPECT_TRUE(EventuallyTrue([&] { return registry_.size() == 0; }));
  EXPECT_TRUE(EventuallyTrue([&] { return socket_->connections() == 0; }));
}

// A client killed while its restore is registered leaves nothing behind:
// the kernel closes its socket, and the server drops the file.
TEST_F(SharedFileSocketTest, AKilledClientLeavesNoRegisteredFile) {
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(ready[0]);
    TestMemfd file(1 << 20);
    auto registration = Register(file.fd);
    const char ok = registration.ok() ? 1 : 0;
    (void)!write(ready[1], &ok, 1);
    pause();  // killed here, mid-restore
    _exit(0);
  }
  close(ready[1]);
  char ok = 0;
  ASSERT_EQ(read(ready[0], &ok, 1), 1);
  close(ready[0]);
  ASSERT_EQ(ok, 1);
  EXPECT_EQ(registry_.size(), 1u);
  ASSERT_EQ(kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(EventuallyTrue([&] { return registry_.size() == 0; }))
      << registry_.size() << " files still registered";
  EXPECT_TRUE(EventuallyTrue([&] { return socket_->connections() == 0; }));
}

// A child forked while the restore was registered (a data-loader worker,
// say) holds a copy of the socket; ending the registration ends it anyway.
TEST_F(SharedFileSocketTest, ARegistrationEndsEvenWhileAForkedChildLives) {
  TestMemfd file(8192);
  auto registration = Register(file.fd);
  ASSERT_TRUE(registration.ok()) << registration.status();
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    pause();
    _exit(0);
  }
  registration->reset();
  EXPECT_TRUE(EventuallyTrue([&] { return registry_.size() == 0; }));
  kill(child, SIGKILL);
  int status = 0;
  EXPECT_EQ(waitpid(child, &status, 0), child);
}

TEST_F(SharedFileSocketTest, RefusesNonMemfdsWithAClearMessage) {
  auto dir = ckpt::testing::TempDir::Create("ckpt-shm-socket");
  ASSERT_TRUE(dir.ok());
  testing::NotWritableMemfds refused((*dir)->path());
  const int before = OpenDescriptors();
  for (const auto& [what, fd, message] :
       {std::tuple<std::string, int, std::string>{
            "file on disk", refused.disk_file.get(), "not a memfd"},
        {"pipe", refused.pipe_write.get(), "not a regular file"},
        {"read-only memfd", refused.read_only.get(), "read-only"}}) {
    auto registration = Register(fd);
    EXPECT_TRUE(absl::IsFailedPrecondition(registration.status()))
        << what << ": " << registration.status();
    EXPECT_THAT(registration.status().message(), HasSubstr(message)) << what;
    EXPECT_THAT(registration.status().message(), Not(HasSubstr("secret-name")));
  }
  EXPECT_EQ(registry_.size(), 0u);
  // The server (this process) kept none of the descriptors it was sent.
  EXPECT_TRUE(EventuallyTrue([&] { return OpenDescriptors() == before; }))
      << OpenDescriptors() << " descriptors, " << before << " before";
}

// A ticket this server never gave (or a socket that is not the server's):
// the client sees no proof and never sends its memfd.
TEST_F(SharedFileSocketTest, AClientSendsNothingToASocketWithoutTheProof) {
  TestMemfd file(8192);
  SharedFileEndpoint forged = endpoint_;
  forged.ticket = std::string(protocol::kTicketBytes, 'x');
  auto registration = Register(file.fd);
  ASSERT_TRUE(registration.ok());
  registration->reset();
  auto refused = client::RegisterAtSocket(forged, file.fd, kTimeout);
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status()));
  EXPECT_THAT(refused.status().message(), HasSubstr("did not prove"));
  EXPECT_TRUE(EventuallyTrue([&] { return registry_.size() == 0; }));
}

TEST_F(SharedFileSocketTest, AnImpostorSocketNeverReceivesTheMemfd) {
  SharedFileEndpoint impostor = endpoint_;
  impostor.socket_name = absl::StrCat(endpoint_.socket_name, "-impostor");
  auto address = protocol::AbstractAddress(impostor.socket_name);
  UniqueFd listener(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  ASSERT_EQ(
      bind(listener.get(), reinterpret_cast<const sockaddr*>(&address->address),
           address->length),
      0);
  ASSERT_EQ(listen(listener.get(), 1), 0);
  size_t descriptors_received = 0;
  std::thread fake_server([&] {
    UniqueFd peer(accept(listener.get(), nullptr, nullptr));
    auto hello = protocol::ReceivePacket(peer.get());
    ASSERT_TRUE(hello.ok());
    // Answers as a server would, but without the key.
    (void)protocol::SendPacket(
        peer.get(),
        std::string(1, '\0') + std::string(protocol::kChallengeBytes - 1, 'p'),
        -1, false);
    auto next = protocol::ReceivePacket(peer.get());
    if (next.ok()) descriptors_received = next->fds.size();
  });
  TestMemfd file(8192);
  auto registration = client::RegisterAtSocket(impostor, file.fd, kTimeout);
  fake_server.join();
  EXPECT_TRUE(absl::IsFailedPrecondition(registration.status()));
  EXPECT_THAT(registration.status().message(), HasSubstr("did not prove"));
  EXPECT_EQ(descriptors_received, 0u);
}

// Raw REGISTER packets: a wrong proof, and a right one with no descriptor
// or two, register nothing and leak no descriptor.
TEST_F(SharedFileSocketTest, BadRegistrationsRegisterNothingAndLeakNothing) {
  TestMemfd file(8192);
  const int before = OpenDescriptors();
  auto handshake = [&](UniqueFd& socket) -> std::string {
    const std::string nonce(protocol::kNonceBytes, 'n');
    EXPECT_TRUE(protocol::SendPacket(socket.get(),
                                     absl::StrCat(protocol::kHelloMagic,
                                                  endpoint_.ticket_id, nonce),
                                     -1, false)
                    .ok());
    auto challenge = protocol::ReceivePacket(socket.get());
    EXPECT_TRUE(challenge.ok());
    return challenge.ok() ? challenge->bytes.substr(1 + protocol::kProofBytes)
                          : "";
  };
  {
    UniqueFd socket = RawConnect(endpoint_.socket_name);
    handshake(socket);
    ASSERT_TRUE(protocol::SendPacket(
                    socket.get(),
                    absl::StrCat(protocol::kRegisterMagic,
                                 std::string(protocol::kProofBytes, 'w')),
                    file.fd, false)
                    .ok());
    auto answer = protocol::ReceivePacket(socket.get());
    ASSERT_TRUE(answer.ok()) << answer.status();
    EXPECT_EQ(answer->bytes[0],
              static_cast<char>(absl::StatusCode::kPermissionDenied));
    EXPECT_TRUE(absl::IsUnavailable(
        protocol::ReceivePacket(socket.get()).status()));  // closed
  }
  {
    UniqueFd socket = RawConnect(endpoint_.socket_name);
    const std::string server_nonce = handshake(socket);
    ASSERT_TRUE(
        protocol::SendPacket(
            socket.get(),
            absl::StrCat(protocol::kRegisterMagic,
                         protocol::ClientProof(endpoint_.ticket, server_nonce)),
            -1, false)
            .ok());
    auto answer = protocol::ReceivePacket(socket.get());
    ASSERT_TRUE(answer.ok());
    EXPECT_EQ(answer->bytes[0],
              static_cast<char>(absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(answer->bytes, HasSubstr("exactly one descriptor, got 0"));
  }
  {
    // A HELLO carrying a descriptor.
    UniqueFd socket = RawConnect(endpoint_.socket_name);
    ASSERT_TRUE(protocol::SendPacket(
                    socket.get(),
                    absl::StrCat(protocol::kHelloMagic, endpoint_.ticket_id,
                                 std::string(protocol::kNonceBytes, 'n')),
                    file.fd, false)
                    .ok());
    auto answer = protocol::ReceivePacket(socket.get());
    ASSERT_TRUE(answer.ok());
    EXPECT_NE(answer->bytes[0], 0);
  }
  EXPECT_EQ(registry_.size(), 0u);
  EXPECT_TRUE(EventuallyTrue([&] { return socket_->connections() == 0; }));
  EXPECT_TRUE(EventuallyTrue([&] { return OpenDescriptors() == before; }))
      << OpenDescriptors() << " descriptors, " << before << " before";
}

TEST_F(SharedFileSocketTest, IdleConnectionsAndOneUsersFloodAreCut) {
  socket_.reset();
  Start({.max_connections = 16,
         .max_connections_per_uid = 2,
         .handshake_timeout = absl::Milliseconds(300)});
  UniqueFd first = RawConnect(endpoint_.socket_name);
  UniqueFd second = RawConnect(endpoint_.socket_name);
  ASSERT_TRUE(EventuallyTrue([&] { return socket_->connections() == 2; }));
  UniqueFd third = RawConnect(endpoint_.socket_name);
  auto answer = protocol::ReceivePacket(third.get());
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->bytes[0],
            static_cast<char>(absl::StatusCode::kResourceExhausted));
  // The two that never register are closed after the handshake timeout.
  EXPECT_TRUE(
      absl::IsUnavailable(protocol::ReceivePacket(first.get()).status()));
  EXPECT_TRUE(EventuallyTrue([&] { return socket_->connections() == 0; }));
}

TEST_F(SharedFileSocketTest, StopDropsEveryFile) {
  TestMemfd file(8192);
  auto registration = Register(file.fd);
  ASSERT_TRUE(registration.ok());
  EXPECT_EQ(registry_.size(), 1u);
  socket_->Stop();
  EXPECT_EQ(registry_.size(), 0u);
  EXPECT_EQ(socket_->connections(), 0u);
}

}  // namespace
}  // namespace ckpt::server
