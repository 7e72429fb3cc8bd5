// ckpt-server: serves ckpt.v1.CheckpointService over a RocksDB store.
//
// Once listening it prints exactly one line to stdout,
//   ckpt-server listening on HOST:PORT
// (with the chosen port when --listen asked for port 0), so scripts and tests
// can start it with `--listen 127.0.0.1:0` and read the port. SIGTERM and
// SIGINT shut it down gracefully; SIGHUP reloads the token file. With
// --tls-cert and --tls-key the port speaks TLS only (mutual TLS with
// --tls-client-ca); the startup log says which.
//
// Without --auth-tokens it serves only clients on its own host, and refuses
// to listen on another address unless --insecure-allow-unauthenticated says
// so (docs/security.md).

#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/tls_pem.h"
#include "server/auth/authenticator.h"
#include "server/rpc/server.h"
#include "server/service/checkpoint_service.h"
#include "server/storage/rocksdb_store.h"

namespace ckpt::server {
namespace {

struct Flags {
  std::string data_dir;
  std::string listen = "127.0.0.1:7070";
  double lease_check_interval_seconds = 5;
  int64_t default_lease_seconds = 1800;
  int64_t max_lease_seconds = 3600;
  double gc_interval_seconds = 3600;
  double health_check_interval_seconds = 1;
  int max_background_flushes = RocksDbStoreOptions{}.max_background_flushes;
  int64_t chunk_hold_seconds = 1800;
  bool direct_io = true;
  bool shared_memory_reads = true;
  int request_threads = 0;
  int maintenance_threads = 2;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  std::string auth_tokens;
  bool insecure_allow_unauthenticated = false;
};

// The TLS settings the --tls-* flags give (nullopt: none), each file read
// and checked here so that a wrong one stops the start with a message
// naming its flag rather than failing every client's handshake later.
absl::StatusOr<std::optional<ServerTlsOptions>> LoadTls(const Flags& flags) {
  if (flags.tls_cert.empty() && flags.tls_key.empty()) {
    if (!flags.tls_client_ca.empty()) {
      return absl::InvalidArgumentError(
          "--tls-client-ca needs --tls-cert and --tls-key (mutual TLS runs "
          "over TLS)");
    }
    return std::nullopt;
  }
  if (flags.tls_cert.empty() || flags.tls_key.empty()) {
    return absl::InvalidArgumentError(flags.tls_cert.empty()
                                          ? "--tls-key needs --tls-cert"
                                          : "--tls-cert needs --tls-key");
  }
  ServerTlsOptions tls;
  CKPT_ASSIGN_OR_RETURN(tls.cert_chain_pem,
                        ReadCredentialFile(flags.tls_cert, "--tls-cert"));
  CKPT_RETURN_IF_ERROR(CheckCertificatesPem(tls.cert_chain_pem, "--tls-cert"));
  CKPT_ASSIGN_OR_RETURN(tls.private_key_pem,
                        ReadCredentialFile(flags.tls_key, "--tls-key"));
  struct stat key_stat {};
  if (::stat(flags.tls_key.c_str(), &key_stat) == 0 &&
      (key_stat.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    CKPT_LOG(Warning, "--tls-key ", flags.tls_key,
             " is accessible to other users (chmod 600 it)");
  }
  CKPT_RETURN_IF_ERROR(CheckKeyMatchesCertificate(
      tls.private_key_pem, "--tls-key", tls.cert_chain_pem, "--tls-cert"));
  if (!flags.tls_client_ca.empty()) {
    CKPT_ASSIGN_OR_RETURN(
        tls.client_ca_pem,
        ReadCredentialFile(flags.tls_client_ca, "--tls-client-ca"));
    CKPT_RETURN_IF_ERROR(
        CheckCertificatesPem(tls.client_ca_pem, "--tls-client-ca"));
  }
  return tls;
}

// How the port is secured, for the startup log.
std::string TransportSecurity(const std::optional<ServerTlsOptions>& tls) {
  if (!tls.has_value()) return "plaintext (no TLS)";
  if (tls->client_ca_pem.empty()) return "TLS";
  return "mutual TLS (client certificates required)";
}

// Who may call: from the token file, or, without one, the loopback-only
// default (refusing an address others can reach unless explicitly allowed).
absl::StatusOr<std::unique_ptr<Authenticator>> MakeAuthenticator(
    const Flags& flags) {
  if (!flags.auth_tokens.empty()) {
    if (flags.insecure_allow_unauthenticated) {
      return absl::InvalidArgumentError(
          "--insecure-allow-unauthenticated contradicts --auth-tokens: give "
          "one or the other");
    }
    CKPT_ASSIGN_OR_RETURN(std::unique_ptr<Authenticator> authenticator,
                          Authenticator::FromTokenFile(flags.auth_tokens));
    CKPT_LOG(Info, "authenticating every call with the ",
             authenticator->token_count(), " token(s) of ", flags.auth_tokens,
             " (SIGHUP reloads it)");
    return authenticator;
  }
  if (flags.insecure_allow_unauthenticated) {
    CKPT_LOG(Warning,
             "no --auth-tokens and --insecure-allow-unauthenticated: anyone "
             "who can reach ",
             flags.listen,
             " may read, change and delete every checkpoint of every tenant");
    return Authenticator::WithoutTokens(/*allow_remote=*/true);
  }
  if (!IsLoopbackListenAddress(flags.listen)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--listen ", flags.listen,
        " may be reachable from other hosts, and without --auth-tokens "
        "anyone reaching it could read and delete every checkpoint. Give "
        "--auth-tokens FILE (see docs/security.md), listen on a loopback "
        "address, or pass --insecure-allow-unauthenticated to serve without "
        "authentication anyway"));
  }
  CKPT_LOG(Info,
           "no --auth-tokens: serving only clients on this host, each with "
           "full rights");
  return Authenticator::WithoutTokens(/*allow_remote=*/false);
}

// Host part of HOST:PORT (brackets of an IPv6 literal kept).
std::string HostOf(const std::string& address) {
  size_t colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

// Runs `work` every `interval` on its own thread until destroyed; the
// destructor ends the wait at once (not after a sleep) and joins.
class Periodic {
 public:
  template <typename Work>
  Periodic(absl::Duration interval, Work work)
      : thread_([this, interval, work = std::move(work)] {
          while (!stop_.WaitForNotificationWithTimeout(interval)) work();
        }) {}
  ~Periodic() {
    stop_.Notify();
    thread_.join();
  }

 private:
  absl::Notification stop_;
  std::thread thread_;  // last: starts once stop_ exists
};

void ExpireLeases(CheckpointService* service) {
  absl::StatusOr<int> expired = service->ExpireLeases();
  if (!expired.ok()) {
    CKPT_LOG(Warning, "lease expiry failed: ", expired.status().ToString());
  } else if (*expired > 0) {
    CKPT_LOG(Info, "aborted ", *expired,
             " pending checkpoint(s) whose lease expired");
  }
}

// On SIGHUP. A bad file keeps the tokens loaded before: a typo must not
// lock everybody out, nor let anybody in.
void ReloadTokens(Authenticator& authenticator) {
  if (!authenticator.requires_tokens()) {
    CKPT_LOG(Info, "SIGHUP: no --auth-tokens file to reload");
    return;
  }
  if (absl::Status status = authenticator.Reload(); !status.ok()) {
    CKPT_LOG(Error, "SIGHUP: keeping the ", authenticator.token_count(),
             " token(s) loaded before, as the token file did not load: ",
             status.message());
    return;
  }
  CKPT_LOG(Info,
           "SIGHUP: reloaded the token file: ", authenticator.token_count(),
           " token(s)");
}

// The collection logs its own summary.
void CollectGarbage(CheckpointService* service) {
  absl::StatusOr<GcReport> report = service->CollectGarbage({});
  if (!report.ok()) {
    CKPT_LOG(Warning, "background gc failed: ", report.status().ToString());
  }
}

absl::Status Run(const Flags& flags, const sigset_t& signals) {
  // Before the store opens: a bad file fails fast and touches nothing.
  CKPT_ASSIGN_OR_RETURN(std::optional<ServerTlsOptions> tls, LoadTls(flags));
  CKPT_ASSIGN_OR_RETURN(std::unique_ptr<Authenticator> authenticator,
                        MakeAuthenticator(flags));
  ServiceOptions service_options;
  service_options.default_lease = absl::Seconds(flags.default_lease_seconds);
  service_options.max_lease = absl::Seconds(flags.max_lease_seconds);
  service_options.chunk_hold = absl::Seconds(flags.chunk_hold_seconds);
  CKPT_RETURN_IF_ERROR(ValidateServiceOptions(service_options));
  RocksDbStoreOptions store_options;
  store_options.direct_io = flags.direct_io;
  store_options.max_background_flushes = flags.max_background_flushes;
  CKPT_ASSIGN_OR_RETURN(std::unique_ptr<RocksDbStore> store,
                        RocksDbStore::Open(flags.data_dir, store_options));
  CheckpointService service(store.get(), store.get(), RealClock::Get(),
                            service_options);

  ServerOptions server_options;
  server_options.limits.shared_file_reads = flags.shared_memory_reads;
  server_options.request_threads = flags.request_threads;
  server_options.maintenance_threads = flags.maintenance_threads;
  server_options.listen_address = flags.listen;
  server_options.tls = std::move(tls);
  server_options.authenticator = authenticator.get();
  CKPT_ASSIGN_OR_RETURN(std::unique_ptr<CheckpointServer> server,
                        CheckpointServer::Start(server_options, &service));

  std::optional<Periodic> lease_reaper;
  lease_reaper.emplace(absl::Seconds(flags.lease_check_interval_seconds),
                       [&service] { ExpireLeases(&service); });
  // Health: NOT_SERVING for the checkpoint service while the store cannot
  // take writes; polling also resumes a store stopped on a full disk once
  // space is freed, even when no write comes to do it.
  RocksDbStore* store_for_health = store.get();
  CheckpointServer* server_for_health = server.get();
  auto check_health = [store_for_health, server_for_health] {
    StoreHealth health = store_for_health->Health();
    server_for_health->SetWritable(health.writable(), health.detail);
  };
  check_health();
  std::optional<Periodic> health_poller;
  health_poller.emplace(absl::Seconds(flags.health_check_interval_seconds),
                        check_health);
  std::optional<Periodic> collector;
  if (flags.gc_interval_seconds > 0) {
    collector.emplace(absl::Seconds(flags.gc_interval_seconds),
                      [&service] { CollectGarbage(&service); });
  }

  const std::string address =
      absl::StrCat(HostOf(flags.listen), ":", server->port());
  CKPT_LOG(Info, "serving data dir ", flags.data_dir, " on ", address, " with ",
           RequestThreads(server_options), " request and ",
           server_options.maintenance_threads, " maintenance threads; ",
           TransportSecurity(server_options.tls));
  std::cout << "ckpt-server listening on " << address << std::endl;

  // The signals are blocked in every thread (see main), so they stay pending
  // until this sigwait takes one: no work ever runs in a signal handler.
  int signal_number = 0;
  while (sigwait(&signals, &signal_number) == 0 && signal_number == SIGHUP) {
    ReloadTokens(*authenticator);
  }
  CKPT_LOG(Info, "received signal ", signal_number, ", shutting down");

  server->Shutdown(absl::Now() + absl::Seconds(10));
  server->Wait();
  collector.reset();  // waits for a collection in progress
  lease_reaper.reset();
  health_poller.reset();
  server.reset();
  store.reset();  // flushes and closes the database
  CKPT_LOG(Info, "shut down cleanly");
  return absl::OkStatus();
}

}  // namespace
}  // namespace ckpt::server

int main(int argc, char** argv) {
  // Chunks pass through many multi-MiB buffers (gRPC messages, memtable
  // arenas). glibc would mmap and unmap each, so every chunk would fault in
  // fresh pages, which costs more than the bytes' copy (several microseconds
  // a page on virtual machines). Keep such buffers in the heap and reuse it.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
  ckpt::server::Flags flags;
  CLI::App app{
      "ckpt-server: stores distributed training checkpoints (gRPC service "
      "ckpt.v1.CheckpointService).\nPrints 'ckpt-server listening on "
      "HOST:PORT' once ready; SIGTERM or SIGINT shut it down gracefully, "
      "SIGHUP reloads the --auth-tokens file.\nWithout --auth-tokens it "
      "serves only clients on its own host (see docs/security.md)."};
  app.add_option("--data-dir", flags.data_dir,
                 "Directory of the RocksDB database (created if missing)")
      ->required();
  app.add_option("--listen", flags.listen,
                 "HOST:PORT to listen on; port 0 picks a free port, printed "
                 "on stdout")
      ->capture_default_str();
  app.add_option(
      "--auth-tokens", flags.auth_tokens,
      "Token file: every call must then carry 'authorization: Bearer "
      "<token>' with a token it lists. One line per token: "
      "SHA256_HEX_OF_TOKEN PRINCIPAL ROLE SCOPE (role reader, writer, admin "
      "or operator; scope tenant/, tenant/prefix, or * for an operator); "
      "# starts a comment. Only the tokens' hashes are in it. Reloaded on "
      "SIGHUP (a bad file keeps the tokens loaded before). Without it, only "
      "clients on this host are served, each with full rights");
  app.add_flag(
      "--insecure-allow-unauthenticated", flags.insecure_allow_unauthenticated,
      "Without --auth-tokens, serve clients on other hosts too, and listen on "
      "any address: anyone who can reach the port may then read and delete "
      "every checkpoint. For isolated networks and tests only");
  app.add_option("--lease-check-interval", flags.lease_check_interval_seconds,
                 "Seconds between checks that abort pending checkpoints "
                 "whose lease expired")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--default-lease-seconds", flags.default_lease_seconds,
                 "Lease of a pending checkpoint when the client asks for "
                 "none; renewed by every BeginCheckpoint and CommitShard. At "
                 "most --max-lease-seconds")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--max-lease-seconds", flags.max_lease_seconds,
                 "Longest lease a client may ask for; a longer request is "
                 "refused (INVALID_ARGUMENT naming this cap). Renewals never "
                 "extend a lease past it, and a stored lease that reaches "
                 "further (from an older server) is cut to it, so every "
                 "pending checkpoint ends and none holds back garbage "
                 "collection forever")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--gc-interval", flags.gc_interval_seconds,
                 "Seconds between background garbage collections (deleting "
                 "chunks no checkpoint references); 0 turns them off "
                 "(`ckpt gc` still runs one on demand)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--health-check-interval-seconds",
                 flags.health_check_interval_seconds,
                 "Seconds between checks of whether the store can take "
                 "writes (free space on the data dir's volume, RocksDB's "
                 "background errors). The gRPC health service (grpc.health.v1) "
                 "answers NOT_SERVING for ckpt.v1.CheckpointService while it "
                 "cannot and SERVING again once it can; each check also "
                 "resumes a store stopped on a full disk once space is freed. "
                 "The overall service \"\" stays SERVING until shutdown")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--max-background-flushes", flags.max_background_flushes,
                 "RocksDB memtable flushes that may run at once. 1 keeps "
                 "RocksDB 7.8 from wedging or aborting when flushes fail "
                 "together on a full disk; 2 may save faster "
                 "(docs/operations.md, Disk full)")
      ->capture_default_str()
      ->check(CLI::Range(1, 16));
  app.add_option("--chunk-hold-seconds", flags.chunk_hold_seconds,
                 "How long garbage collection spares an unreferenced chunk "
                 "after a save last uploaded or asked about it: the longest "
                 "a rank may take from upload to commit")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--direct-io", flags.direct_io,
                 "Read and write chunk files with O_DIRECT, bypassing the "
                 "page cache (true or false); ignored where the file system "
                 "has no O_DIRECT, e.g. tmpfs")
      ->capture_default_str();
  app.add_option("--shared-memory-reads", flags.shared_memory_reads,
                 "Let clients on this host restore through shared memory: "
                 "the server writes verified chunks straight into the "
                 "client's memory instead of sending them over the socket "
                 "(true or false). The client passes its memory file (a "
                 "sealed memfd) to the server over a Unix socket with an "
                 "abstract random name; see docs/security.md")
      ->capture_default_str();
  app.add_option("--request-threads", flags.request_threads,
                 "Threads that do the work of client calls (saves, restores, "
                 "listings), so that the network threads never wait on "
                 "hashing or the disk; calls beyond them wait in line. 0: "
                 "twice the machine's cores, at least 4")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--maintenance-threads", flags.maintenance_threads,
                 "Threads for garbage collection and verify calls, which may "
                 "read the whole store for minutes; kept apart so they never "
                 "slow the other calls. Further such calls wait in line")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--tls-cert", flags.tls_cert,
                 "Serve TLS only (plaintext clients fail at the handshake) "
                 "with this PEM certificate chain, the server's own "
                 "certificate first; its subjectAltName must name the host "
                 "or IP address clients dial. Needs --tls-key");
  app.add_option("--tls-key", flags.tls_key,
                 "The PEM private key (unencrypted) of --tls-cert; keep it "
                 "readable by the server's user only");
  app.add_option("--tls-client-ca", flags.tls_client_ca,
                 "Mutual TLS: require every client to present a certificate "
                 "issued by a CA in this PEM file (needs --tls-cert)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  // Block the signals before any thread exists so every thread (gRPC's
  // included) inherits the mask and only sigwait receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::Status status = ckpt::server::Run(flags, signals);
  if (!status.ok()) {
    std::cerr << "ckpt-server: " << status.ToString() << std::endl;
    return 1;
  }
  return 0;
}
