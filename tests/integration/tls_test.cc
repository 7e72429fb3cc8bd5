// Transport security end to end: the real ckpt-server binary with
// --tls-cert/--tls-key (and --tls-client-ca for mutual TLS) against the C++
// client library and the real `ckpt` CLI, with throwaway certificates made
// by openssl (tests/testing/make_test_pki.sh). Saves and restores work over
// TLS and mTLS; every handshake that should fail does, with nothing stored.
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/client_tensors.h"
#include "tests/testing/real_server_test.h"
#include "tests/testing/server_process.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/test_pki.h"

namespace ckpt::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kJob[] = "tls/model";

class TlsTest : public RealServerTest {
 protected:
  static const TestPki& pki() { return TestPki::Shared(); }

  // Starts ckpt-server with TLS (mutual when `mutual`) and `extra` flags;
  // the test connects its own clients.
  void StartTlsServer(bool mutual, std::vector<std::string> extra = {}) {
    std::vector<std::string> flags = pki().ServerFlags(mutual);
    flags.insert(flags.end(), extra.begin(), extra.end());
    auto server = ServerProcess::Start(db_path(), flags);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  // Options trusting `ca` (none: plaintext), presenting `cert`'s
  // certificate and key (e.g. "client") when given.
  static client::ConnectOptions Options(const std::string& ca,
                                        const std::string& cert = "") {
    client::ConnectOptions options;
    options.connect_timeout = absl::Seconds(10);
    if (!ca.empty()) options.tls_ca_pem = pki().Pem(ca);
    if (!cert.empty()) {
      options.tls_cert_pem = pki().Pem(cert + ".pem");
      options.tls_key_pem = pki().Pem(cert + ".key");
    }
    return options;
  }

  // Saves a tensor through `options`, restores it (by streaming and, when
  // the server offers it, shared memory) and checks every byte.
  void SaveAndRestore(client::ConnectOptions options, int64_t step) {
    const std::string bytes = PatternBytes(9 << 20, 7 + step);
    {
      auto c = client::Client::Connect(server_->address(), options);
      ASSERT_TRUE(c.ok()) << c.status();
      client::SaveOptions save;
      auto saved = (*c)->SaveShard(kJob, step, {Uint8Tensor("w", bytes)}, save);
      ASSERT_TRUE(saved.ok()) << saved.status();
      EXPECT_TRUE(saved->checkpoint_committed);
    }
    for (bool shared_memory : {false, true}) {
      options.shared_memory_restore = shared_memory;
      auto c = client::Client::Connect(server_->address(), options);
      ASSERT_TRUE(c.ok()) << c.status();
      auto restored = (*c)->RestoreShard(kJob, step, 0);
      ASSERT_TRUE(restored.ok()) << restored.status();
      ASSERT_EQ(restored->size(), 1u);
      EXPECT_TRUE(absl::string_view((*restored)[0].bytes.data(),
                                    (*restored)[0].bytes.size()) == bytes)
          << "shared_memory=" << shared_memory;
    }
  }

  // A connection that must fail: Connect waits for the handshake.
  void ExpectRefused(client::ConnectOptions options) {
    // A refused handshake is retried until the timeout: keep it short.
    options.connect_timeout = absl::Seconds(2);
    auto c = client::Client::Connect(server_->address(), options);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable) << c.status();
  }

  // Nothing was stored by the refused clients; `options` connect.
  void ExpectNothingStored(const client::ConnectOptions& options) {
    auto c = client::Client::Connect(server_->address(), options);
    ASSERT_TRUE(c.ok()) << c.status();
    auto jobs = (*c)->ListJobs();
    ASSERT_TRUE(jobs.ok()) << jobs.status();
    EXPECT_TRUE(jobs->empty());
  }

  // `ckpt ARGS` with `env` (NAME=VALUE ...) added to its environment.
  CommandResult Cli(const std::string& env, const std::string& args,
                    const std::string& server = "") {
    return Ckpt(args, env, server);
  }

  // Runs ckpt-server with `flags` expecting it to refuse to start.
  CommandResult ServerThatMustNotStart(const std::string& flags) {
    const std::string err = dir_->path() + "/server.err";
    const std::string command = absl::StrCat(
        BuiltBinary("server/rpc/ckpt-server"), " --data-dir ", db_path(),
        " --listen 127.0.0.1:0 ", flags, " </dev/null >/dev/null 2>", err);
    const int status = std::system(command.c_str());
    CommandResult result;
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    result.err = ReadWholeFile(err);
    return result;
  }
};

TEST_F(TlsTest, SaveAndRestoreOverTls) {
  StartTlsServer(/*mutual=*/false);
  SaveAndRestore(Options("ca.pem"), 1);
  // A client certificate the server does not ask for changes nothing.
  SaveAndRestore(Options("ca.pem", "client"), 2);
}

TEST_F(TlsTest, SaveAndRestoreOverMutualTls) {
  StartTlsServer(/*mutual=*/true);
  SaveAndRestore(Options("ca.pem", "client"), 1);
}

TEST_F(TlsTest, PlaintextClientIsRefusedAtTheHandshake) {
  StartTlsServer(/*mutual=*/false);
  ExpectRefused(Options(""));
  // Without waiting for the connection, the first call fails.
  auto lazy = client::Client::Connect(server_->address(), {});
  ASSERT_TRUE(lazy.ok()) << lazy.status();
  const std::string bytes = PatternBytes(1000, 1);
  auto saved = (*lazy)->SaveShard(kJob, 1, {Uint8Tensor("w", bytes)}, {});
  EXPECT_EQ(saved.status().code(), absl::StatusCode::kUnavailable)
      << saved.status();
  ExpectNothingStored(Options("ca.pem"));
}

TEST_F(TlsTest, ServerCertificateFromAnotherCaIsRefused) {
  StartTlsServer(/*mutual=*/false);
  ExpectRefused(Options("other-ca.pem"));
  ExpectNothingStored(Options("ca.pem"));
}

TEST_F(TlsTest, ServerCertificateNotNamingTheHostIsRefused) {
  auto server = ServerProcess::Start(
      db_path(), {"--tls-cert", pki().Path("named-server.pem"), "--tls-key",
                  pki().Path("named-server.key")});
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = *std::move(server);
  // The certificate names only ckpt.test, not 127.0.0.1.
  ExpectRefused(Options("ca.pem"));
  // ... which the override accepts.
  client::ConnectOptions options = Options("ca.pem");
  options.tls_server_name = "ckpt.test";
  SaveAndRestore(options, 1);
}

TEST_F(TlsTest, MutualTlsRefusesAClientWithoutCertificate) {
  StartTlsServer(/*mutual=*/true);
  ExpectRefused(Options("ca.pem"));
  ExpectNothingStored(Options("ca.pem", "client"));
}

TEST_F(TlsTest, MutualTlsRefusesAClientCertificateFromAnotherCa) {
  StartTlsServer(/*mutual=*/true);
  ExpectRefused(Options("ca.pem", "other-client"));
  ExpectNothingStored(Options("ca.pem", "client"));
}

TEST_F(TlsTest, TlsClientToAPlaintextServerFails) {
  StartServer();  // plaintext, with client_ connected
  ExpectRefused(Options("ca.pem"));
}

TEST_F(TlsTest, ServerRefusesToStartWithBadTlsFiles) {
  struct Case {
    std::string flags;
    std::string message;
  };
  const std::vector<Case> cases = {
      {absl::StrCat("--tls-cert ", dir_->path(), "/missing.pem --tls-key ",
                    pki().Path("server.key")),
       "--tls-cert: cannot read"},
      {absl::StrCat("--tls-cert ", pki().Path("server.pem")),
       "--tls-cert needs --tls-key"},
      {absl::StrCat("--tls-key ", pki().Path("server.key")),
       "--tls-key needs --tls-cert"},
      {absl::StrCat("--tls-client-ca ", pki().Path("ca.pem")),
       "--tls-client-ca needs --tls-cert"},
      {absl::StrCat("--tls-cert ", pki().Path("server.pem"), " --tls-key ",
                    pki().Path("client.key")),
       "--tls-key: the private key does not belong to the certificate"},
      {absl::StrCat("--tls-cert ", pki().Path("server.key"), " --tls-key ",
                    pki().Path("server.key")),
       "--tls-cert: no PEM certificate found"},
      {absl::StrCat("--tls-cert ", pki().Path("server.pem"), " --tls-key ",
                    pki().Path("server.pem")),
       "--tls-key: no unencrypted PEM private key"},
      {absl::StrCat("--tls-cert ", pki().Path("server.pem"), " --tls-key ",
                    pki().Path("server.key"), " --tls-client-ca ",
                    pki().Path("client.key")),
       "--tls-client-ca: no PEM certificate found"},
  };
  for (const Case& c : cases) {
    CommandResult result = ServerThatMustNotStart(c.flags);
    EXPECT_NE(result.exit_code, 0) << c.flags;
    EXPECT_THAT(result.err, HasSubstr(c.message)) << c.flags;
  }
}

TEST_F(TlsTest, CliSavesAndRestoresOverMutualTls) {
  StartTlsServer(/*mutual=*/true);
  const std::string file = dir_->path() + "/weights.bin";
  const std::string bytes = PatternBytes(3 << 20, 5);
  {
    std::ofstream out(file, std::ios::binary);
    out << bytes;
  }
  const std::string tls_flags = absl::StrCat(
      "--tls-ca ", pki().Path("ca.pem"), " --tls-cert ",
      pki().Path("client.pem"), " --tls-key ", pki().Path("client.key"));
  CommandResult put =
      Cli("", absl::StrCat(tls_flags, " put ", kJob, " 1 ", file));
  ASSERT_EQ(put.exit_code, 0) << put.err;
  // The same through the environment; the verb before the flags works too.
  const std::string tls_env =
      absl::StrCat("CKPT_TLS_CA=", pki().Path("ca.pem"),
                   " CKPT_TLS_CERT=", pki().Path("client.pem"),
                   " CKPT_TLS_KEY=", pki().Path("client.key"));
  const std::string out_dir = dir_->path() + "/restored";
  CommandResult get =
      Cli(tls_env, absl::StrCat("get ", kJob, " latest ", out_dir));
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_TRUE(ReadWholeFile(out_dir + "/weights.bin") == bytes);
  // A flag wins over its variable: a wrong CA in the environment is
  // overridden by the right one on the command line.
  CommandResult ls =
      Cli(absl::StrCat(tls_env, " CKPT_TLS_CA=", pki().Path("other-ca.pem")),
          absl::StrCat("--tls-ca ", pki().Path("ca.pem"), " ls --json"));
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  EXPECT_THAT(ls.out, HasSubstr("tls/model"));
}

TEST_F(TlsTest, CliRefusalsNameTheProblem) {
  StartTlsServer(/*mutual=*/true);
  // Plaintext to a TLS server.
  CommandResult plain = Cli("", "ls");
  EXPECT_NE(plain.exit_code, 0);
  EXPECT_THAT(plain.err, HasSubstr("UNAVAILABLE"));
  EXPECT_THAT(plain.err, HasSubstr("without TLS (else pass --tls-ca)?"));
  // mTLS without a client certificate.
  CommandResult no_cert =
      Cli(absl::StrCat("CKPT_TLS_CA=", pki().Path("ca.pem")), "ls");
  EXPECT_NE(no_cert.exit_code, 0);
  EXPECT_THAT(no_cert.err, HasSubstr("UNAVAILABLE"));
  // Files that are not what their flag needs.
  CommandResult bad_ca =
      Cli("", absl::StrCat("--tls-ca ", pki().Path("ca.key"), " ls"));
  EXPECT_NE(bad_ca.exit_code, 0);
  EXPECT_THAT(bad_ca.err, HasSubstr("--tls-ca (or $CKPT_TLS_CA): no PEM "
                                    "certificate found"));
  CommandResult lone_cert =
      Cli("", absl::StrCat("--tls-ca ", pki().Path("ca.pem"), " --tls-cert ",
                           pki().Path("client.pem"), " ls"));
  EXPECT_NE(lone_cert.exit_code, 0);
  EXPECT_THAT(lone_cert.err, HasSubstr("needs --tls-key"));
  CommandResult missing =
      Cli("", absl::StrCat("--tls-ca ", dir_->path(), "/nope.pem ls"));
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_THAT(missing.err, HasSubstr("cannot read"));
}

TEST_F(TlsTest, CliNeverPrintsTheToken) {
  StartTlsServer(/*mutual=*/false);
  const std::string token = "s3cr3t-token-value";
  const std::string token_file = dir_->path() + "/token";
  {
    std::ofstream out(token_file);
    out << token << "\n";
  }
  const std::string ca = absl::StrCat("--tls-ca ", pki().Path("ca.pem"));
  std::vector<CommandResult> runs = {
      Cli("", absl::StrCat(ca, " --token-file ", token_file, " ls --json")),
      Cli(absl::StrCat("CKPT_TOKEN=", token),
          absl::StrCat(ca, " show --json ", kJob, " 3")),
      // In clear to a non-loopback address: refused before connecting.
      Cli(absl::StrCat("CKPT_TOKEN=", token), "ls", "192.0.2.1:7070"),
      // A token that cannot go in a header.
      Cli(absl::StrCat("CKPT_TOKEN='", token, " x'"), absl::StrCat(ca, " ls")),
      Cli("", absl::StrCat(ca, " --token-file ", dir_->path(), "/missing ls")),
  };
  EXPECT_EQ(runs[0].exit_code, 0) << runs[0].err;
  EXPECT_NE(runs[1].exit_code, 0);  // no such checkpoint
  EXPECT_NE(runs[2].exit_code, 0);
  EXPECT_THAT(runs[2].err, HasSubstr("refusing to send the token in clear"));
  EXPECT_NE(runs[3].exit_code, 0);
  EXPECT_THAT(runs[3].err, HasSubstr("not printable ASCII"));
  EXPECT_NE(runs[4].exit_code, 0);
  EXPECT_THAT(runs[4].err, HasSubstr("--token-file: cannot read"));
  for (const CommandResult& run : runs) {
    EXPECT_THAT(run.out, Not(HasSubstr("s3cr3t"))) << run.out;
    EXPECT_THAT(run.err, Not(HasSubstr("s3cr3t"))) << run.err;
  }
}

TEST_F(TlsTest, CliHelpExplainsTheSecurityFlags) {
  StartTlsServer(/*mutual=*/false);
  CommandResult help = Cli("", "--help");
  EXPECT_EQ(help.exit_code, 0);
  for (const char* flag :
       {"--tls-ca", "CKPT_TLS_CA", "--tls-cert", "CKPT_TLS_CERT", "--tls-key",
        "CKPT_TLS_KEY", "--tls-server-name", "--token-file", "CKPT_TOKEN"}) {
    EXPECT_THAT(help.out, HasSubstr(flag));
  }
}

}  // namespace
}  // namespace ckpt::testing
