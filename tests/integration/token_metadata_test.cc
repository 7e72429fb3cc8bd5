// The client side of bearer tokens: the gRPC transport sends
// `authorization: Bearer <token>` on every call, unary and streaming (the
// contract the server's checks rely on), sends nothing without a token,
// and refuses a token that would cross a network in clear. A tiny
// in-process gRPC server (a generic callback service) records each call's
// metadata and answers UNIMPLEMENTED, over plaintext on loopback and over
// TLS.
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "ckpt/v1/ckpt.grpc.pb.h"
#include "client/transport.h"
#include "client/transport/channel_security.h"
#include "client/transport/grpc_transport.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_pki.h"

namespace ckpt::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// Records, per method, the `authorization` values of every call.
class RecordingService final : public grpc::CallbackGenericService {
 public:
  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* context) override {
    {
      absl::MutexLock lock(&mu_);
      std::vector<std::string>& values = calls_[context->method()];
      values.push_back("<none>");
      auto [begin, end] =
          context->client_metadata().equal_range("authorization");
      int found = 0;
      for (auto it = begin; it != end; ++it, ++found) {
        values.back() = std::string(it->second.data(), it->second.size());
      }
      if (found > 1) values.back() = "<several>";
    }
    return new Refuse();  // deletes itself in OnDone
  }

  std::map<std::string, std::vector<std::string>> calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

 private:
  class Refuse final : public grpc::ServerGenericBidiReactor {
   public:
    Refuse() { Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "seen")); }
    void OnDone() override { delete this; }
  };

  absl::Mutex mu_;
  std::map<std::string, std::vector<std::string>> calls_ ABSL_GUARDED_BY(mu_);
};

class TokenMetadataTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  // Starts the recording server on 127.0.0.1:0, with TLS when `tls`.
  void StartServer(bool tls) {
    std::shared_ptr<grpc::ServerCredentials> credentials =
        grpc::InsecureServerCredentials();
    if (tls) {
      grpc::SslServerCredentialsOptions ssl;
      ssl.pem_key_cert_pairs.push_back({TestPki::Shared().Pem("server.key"),
                                        TestPki::Shared().Pem("server.pem")});
      credentials = grpc::SslServerCredentials(ssl);
    }
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", credentials, &port_);
    builder.RegisterCallbackGenericService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
  }

  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }

  // Makes every Transport call once (each fails: the server refuses all).
  static void CallEverything(client::Transport& transport) {
    const std::string job = "team/model";
    const std::string bytes = "chunk bytes";
    const ChunkId id = Sha256(bytes);
    transport.BeginCheckpoint(job, 1, {}).IgnoreError();
    transport.FindMissingChunks(job, {id}).status().IgnoreError();
    {
      std::unique_ptr<client::ChunkUploadStream> upload =
          transport.OpenUpload(job, 1);
      upload->Add(id, bytes).IgnoreError();
      upload->Close().IgnoreError();
    }
    transport.CommitShard(job, 1, 1, ShardManifest{}).status().IgnoreError();
    transport.GetManifest(job, std::nullopt, std::nullopt)
        .status()
        .IgnoreError();
    transport.ReportRestore(job, 1, 0).IgnoreError();
    transport
        .ReportCopy(job, 1, CopyPeer{.server = "peer", .job = job, .step = 1})
        .IgnoreError();
    transport.ListJobs().status().IgnoreError();
    transport.ListCheckpoints(job, false, false).status().IgnoreError();
    char out[16];
    client::ChunkSink sink{
        .id = id, .size = bytes.size(), .destinations = {out}};
    transport.ReadChunks(job, {sink}, nullptr).IgnoreError();
    transport.RegisterSharedFile(-1).status().IgnoreError();
    transport.ReadChunksIntoFile(job, "handle", {}).IgnoreError();
    transport.AbortCheckpoint(job, 1, "test").IgnoreError();
    transport.DeleteCheckpoint(job, 1, false).IgnoreError();
    transport.GetStats(job).status().IgnoreError();
    transport.SetRetentionPolicy(job, RetentionPolicy{}, nullptr)
        .status()
        .IgnoreError();
    transport.GetRetentionPolicy(job).status().IgnoreError();
    transport.PinCheckpoint(job, 1, true).status().IgnoreError();
    transport.SetCheckpointTags(job, 1, {{"k", "v"}}, {})
        .status()
        .IgnoreError();
    transport.PruneCheckpoints(job, std::nullopt, true, nullptr)
        .status()
        .IgnoreError();
    transport.CollectGarbage(GcOptions{true, std::nullopt})
        .status()
        .IgnoreError();
    transport.VerifyCheckpoints(VerifyOptions{}, nullptr)
        .status()
        .IgnoreError();
    transport.ListEvents(job, 0).status().IgnoreError();
  }

  // Every method of ckpt.v1.CheckpointService, as the server names them.
  static std::set<std::string> AllMethods() {
    const google::protobuf::ServiceDescriptor* service =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
            v1::CheckpointService::service_full_name());
    std::set<std::string> methods;
    for (int i = 0; i < service->method_count(); ++i) {
      methods.insert(absl::StrCat("/", service->full_name(), "/",
                                  service->method(i)->name()));
    }
    return methods;
  }

  // Asserts that every method was called exactly once, with `expected` as
  // its authorization value.
  void ExpectEveryCallCarried(const std::string& expected) {
    std::map<std::string, std::vector<std::string>> calls = service_.calls();
    std::set<std::string> called;
    for (const auto& [method, values] : calls) {
      called.insert(method);
      EXPECT_THAT(values, ElementsAre(expected)) << method;
    }
    // A new RPC the transport gains must be added to CallEverything.
    EXPECT_EQ(called, AllMethods());
  }

  RecordingService service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(TokenMetadataTest, EveryCallCarriesTheBearerTokenOnLoopback) {
  StartServer(/*tls=*/false);
  client::ConnectOptions options;
  options.token = "tok-123_ABC.xyz~+/=";
  auto transport = client::ConnectGrpcTransport(address(), options);
  ASSERT_TRUE(transport.ok()) << transport.status();
  CallEverything(**transport);
  ExpectEveryCallCarried("Bearer tok-123_ABC.xyz~+/=");
}

TEST_F(TokenMetadataTest, EveryCallCarriesTheBearerTokenOverTls) {
  StartServer(/*tls=*/true);
  client::ConnectOptions options;
  options.tls_ca_pem = TestPki::Shared().Pem("ca.pem");
  options.token = "tls-token";
  // "localhost" is in the certificate as well as 127.0.0.1.
  auto transport =
      client::ConnectGrpcTransport(absl::StrCat("localhost:", port_), options);
  ASSERT_TRUE(transport.ok()) << transport.status();
  CallEverything(**transport);
  ExpectEveryCallCarried("Bearer tls-token");
}

TEST_F(TokenMetadataTest, NoTokenSendsNoAuthorization) {
  StartServer(/*tls=*/false);
  auto transport = client::ConnectGrpcTransport(address(), {});
  ASSERT_TRUE(transport.ok()) << transport.status();
  CallEverything(**transport);
  ExpectEveryCallCarried("<none>");
}

TEST_F(TokenMetadataTest, TokenInClearToAnotherHostIsRefused) {
  client::ConnectOptions options;
  options.token = "never-in-clear";
  for (const char* address :
       {"192.0.2.1:7070", "ckpt.example.com:7070", "dns:///ckpt.example:1",
        "ipv4:127.0.0.1:1,192.0.2.1:1", "[2001:db8::1]:7070",
        "localhost.example.com:7070", "127.0.0.1.nip.io:7070",
        "dns://192.0.2.53/localhost:7070", "0.0.0.0:7070", "vsock:3:7070"}) {
    auto transport = client::ConnectGrpcTransport(address, options);
    ASSERT_FALSE(transport.ok()) << address;
    EXPECT_EQ(transport.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(transport.status().message(),
                HasSubstr("refusing to send the token in clear"));
    EXPECT_THAT(transport.status().message(), Not(HasSubstr("never-in")));
  }
  // Over TLS the same addresses are fine (connected lazily).
  options.tls_ca_pem = TestPki::Shared().Pem("ca.pem");
  EXPECT_TRUE(client::ConnectGrpcTransport("192.0.2.1:7070", options).ok());
  // And in clear on loopback, where nobody else is on the path.
  options.tls_ca_pem.clear();
  for (const char* address :
       {"127.0.0.1:7070", "127.8.9.10:1", "localhost:7070", "LOCALHOST.:1",
        "[::1]:7070", "ipv6:[::1]:1", "ipv4:127.0.0.1:1,127.0.0.2:2",
        "dns:///localhost:7070", "dns:localhost:7070", "unix:/tmp/ckpt.sock",
        "dns://192.0.2.53/127.0.0.1:7070", "unix-abstract:ckpt",
        "[::ffff:127.0.0.1]:7070"}) {
    EXPECT_TRUE(client::ConnectGrpcTransport(address, options).ok()) << address;
  }
}

TEST_F(TokenMetadataTest, ATokenThatCannotGoInAHeaderIsRefused) {
  for (const std::string& token :
       {std::string("secret\n"), std::string("two words"),
        std::string("tab\there"), std::string("caf\xc3\xa9")}) {
    client::ConnectOptions options;
    options.token = token;
    auto transport = client::ConnectGrpcTransport("127.0.0.1:1", options);
    ASSERT_FALSE(transport.ok());
    EXPECT_EQ(transport.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(transport.status().message(), HasSubstr("not printable ASCII"));
    EXPECT_THAT(transport.status().message(), Not(HasSubstr("secret")));
  }
}

TEST_F(TokenMetadataTest, InconsistentTlsOptionsAreRefused) {
  struct Case {
    client::ConnectOptions options;
    std::string message;
  };
  std::vector<Case> cases(5);
  cases[0].options.tls_cert_pem = TestPki::Shared().Pem("client.pem");
  cases[0].message = "tls_cert_pem needs tls_key_pem";
  cases[1].options.tls_cert_pem = TestPki::Shared().Pem("client.pem");
  cases[1].options.tls_key_pem = TestPki::Shared().Pem("client.key");
  cases[1].message = "tls_cert_pem needs tls_ca_pem";
  cases[2].options.tls_server_name = "ckpt.test";
  cases[2].message = "tls_server_name needs tls_ca_pem";
  cases[3].options.tls_ca_pem = "not a certificate";
  cases[3].message = "tls_ca_pem: no PEM certificate found";
  cases[4].options.tls_ca_pem = TestPki::Shared().Pem("ca.pem");
  cases[4].options.tls_cert_pem = TestPki::Shared().Pem("client.pem");
  cases[4].options.tls_key_pem = TestPki::Shared().Pem("other-client.key");
  cases[4].message = "does not belong to the certificate";
  for (const Case& c : cases) {
    auto transport = client::ConnectGrpcTransport("127.0.0.1:1", c.options);
    ASSERT_FALSE(transport.ok()) << c.message;
    EXPECT_EQ(transport.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(transport.status().message(), HasSubstr(c.message));
  }
}

}  // namespace
}  // namespace ckpt::testing
