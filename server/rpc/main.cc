// ckpt-server: serves ckpt.v1.CheckpointService over its stores: RocksDB,
// or a Ceph pool shared with other servers (store_setup.h).
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
//
// Its settings come from server/config (defaults, then --config FILE, then
// flags). Two other modes exit at once: --print-config prints the effective
// settings as YAML, --health-probe asks a running server's gRPC health
// (exit 0 when SERVING). docs/operations.md covers both, and shutdown.

#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
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
#include "common/failpoint.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/tls_pem.h"
#include "server/auth/authenticator.h"
#include "server/config/config_file.h"
#include "server/config/server_flags.h"
#include "server/config/server_settings.h"
#include "server/observability/metrics.h"
#include "server/observability/prometheus_metrics.h"
#include "server/rpc/health_probe.h"
#include "server/rpc/server.h"
#include "server/rpc/shutdown_watchdog.h"
#include "server/rpc/store_setup.h"
#include "server/service/checkpoint_service.h"
#include "server/service/stored_bytes_quota.h"
#include "server/storage/rocksdb_store.h"

namespace ckpt::server {
namespace {

// How long past the grace the shutdown may still take (stopping the
// background tasks, closing the store) before the watchdog ends it.
constexpr absl::Duration kShutdownStuckAfter = absl::Seconds(10);

// The limits and quotas the flags give, their sizes parsed.
void ApplyLimits(const ServerSettings& flags, ServerOptions& options) {
  options.limits.upload_idle_timeout =
      absl::Seconds(flags.upload_idle_timeout_seconds);
  options.limits.max_upload_stream_bytes =
      static_cast<uint64_t>(flags.max_upload_stream_bytes);
  options.limits.upload_buffer_bytes =
      static_cast<uint64_t>(flags.upload_buffer_bytes);
  options.max_concurrent_streams =
      static_cast<int>(flags.max_concurrent_streams);
  options.grpc_memory_quota_bytes =
      static_cast<uint64_t>(flags.grpc_memory_quota_bytes);
  options.grpc_bdp_probe = flags.grpc_bdp_probe;
  options.max_connection_idle =
      absl::Seconds(flags.max_connection_idle_seconds);
  options.quotas.defaults.max_stored_bytes =
      static_cast<uint64_t>(flags.quota_max_stored_bytes);
  options.quotas.defaults.max_upload_streams =
      static_cast<uint32_t>(flags.quota_max_upload_streams);
  for (const auto& [tenant, quota] : flags.quota_tenants) {
    QuotaOverride& override = options.quotas.tenants[tenant];
    if (quota.max_stored_bytes.has_value()) {
      override.max_stored_bytes =
          static_cast<uint64_t>(*quota.max_stored_bytes);
    }
    if (quota.max_upload_streams.has_value()) {
      override.max_upload_streams =
          static_cast<uint32_t>(*quota.max_upload_streams);
    }
  }
}

// The TLS settings the --tls-* flags give (nullopt: none), each file read
// and checked here so that a wrong one stops the start with a message
// naming its flag rather than failing every client's handshake later.
absl::StatusOr<std::optional<ServerTlsOptions>> LoadTls(
    const ServerSettings& flags) {
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
    const ServerSettings& flags) {
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

void ExpireLeases(CheckpointService* service, Metrics* metrics) {
  absl::StatusOr<int> expired = service->ExpireLeases();
  if (expired.ok() && *expired > 0) metrics->LeasesExpired(*expired);
  if (!expired.ok()) {
    CKPT_EVENT(Warning, "lease_expiry_failed",
               {"msg", expired.status().ToString()});
  } else if (*expired > 0) {
    CKPT_EVENT(Info, "leases_expired", {"aborted", *expired});
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
void CollectGarbage(CheckpointService* service, Metrics* metrics) {
  absl::StatusOr<GcReport> report = service->CollectGarbage({});
  metrics->GcFinished(report.ok(), report.ok() ? report->chunks_deleted : 0,
                      report.ok() ? report->bytes_deleted : 0);
  if (absl::IsFailedPrecondition(report.status())) {
    // Another server sharing the store is collecting (LockCollection).
    CKPT_LOG(Info, "background gc skipped: ", report.status().message());
  } else if (!report.ok()) {
    CKPT_LOG(Warning, "background gc failed: ", report.status().ToString());
  }
}

const char* SignalName(int signal_number) {
  switch (signal_number) {
    case SIGTERM:
      return "SIGTERM";
    case SIGINT:
      return "SIGINT";
    case SIGHUP:
      return "SIGHUP";
    default:
      return "other";
  }
}

absl::Status Run(const ServerSettings& flags, const sigset_t& signals) {
  CKPT_EVENT(Info, "starting", {"data_dir", flags.data_dir},
             {"chunk_store", flags.chunk_store}, {"listen", flags.listen},
             {"pid", ::getpid()});
  // Before the store opens: a bad file fails fast and touches nothing.
  CKPT_ASSIGN_OR_RETURN(std::optional<ServerTlsOptions> tls, LoadTls(flags));
  CKPT_ASSIGN_OR_RETURN(std::unique_ptr<Authenticator> authenticator,
                        MakeAuthenticator(flags));
  ServiceOptions service_options;
  service_options.default_lease = absl::Seconds(flags.default_lease_seconds);
  service_options.max_lease = absl::Seconds(flags.max_lease_seconds);
  service_options.chunk_hold = absl::Seconds(flags.chunk_hold_seconds);
  service_options.shared_min_hold = absl::Seconds(flags.rados_min_hold_seconds);
  service_options.verify_threads = static_cast<int>(flags.verify_threads);
  CKPT_RETURN_IF_ERROR(ValidateServiceOptions(service_options));
  ServerOptions server_options;
  ApplyLimits(flags, server_options);
  CKPT_ASSIGN_OR_RETURN(
      std::unique_ptr<OpenedStores> stores,
      OpenStores(flags, server_options.quotas, RealClock::Get()));
  CKPT_EVENT(Info, "store_open", {"store", stores->description()});
  CheckpointService service(stores->chunks(), stores->metadata(),
                            RealClock::Get(), service_options);
  std::unique_ptr<PrometheusMetrics> prometheus;
  Metrics* metrics = NoMetrics();
  if (!flags.metrics_listen.empty()) {
    PrometheusOptions metrics_options;
    metrics_options.listen_address = flags.metrics_listen;
    metrics_options.data_dir = stores->data_dir();
    metrics_options.store_property = [&stores](const std::string& name) {
      return stores->IntProperty(name);
    };
    absl::StatusOr<std::unique_ptr<PrometheusMetrics>> started =
        PrometheusMetrics::Start(std::move(metrics_options));
    if (!started.ok()) {
      return absl::Status(
          started.status().code(),
          absl::StrCat("--metrics-listen ", flags.metrics_listen, ": ",
                       started.status().message()));
    }
    prometheus = *std::move(started);
    metrics = prometheus.get();
    CKPT_EVENT(Info, "metrics_listening",
               {"address", absl::StrCat(HostOf(flags.metrics_listen), ":",
                                        prometheus->port())});
  }

  server_options.limits.shared_file_reads = flags.shared_memory_reads;
  server_options.request_threads = static_cast<int>(flags.request_threads);
  server_options.maintenance_threads =
      static_cast<int>(flags.maintenance_threads);
  server_options.listen_address = flags.listen;
  server_options.tls = std::move(tls);
  server_options.authenticator = authenticator.get();
  server_options.metrics = metrics;
  absl::StatusOr<std::unique_ptr<CheckpointServer>> started =
      CheckpointServer::Start(server_options, &service);
  if (!started.ok()) {
    return absl::Status(started.status().code(),
                        absl::StrCat("--listen ", flags.listen, ": ",
                                     started.status().message()));
  }
  std::unique_ptr<CheckpointServer> server = *std::move(started);

  std::optional<Periodic> lease_reaper;
  lease_reaper.emplace(
      absl::Seconds(flags.lease_check_interval_seconds),
      [&service, metrics] { ExpireLeases(&service, metrics); });
  // Health: NOT_SERVING for the checkpoint service while the store cannot
  // take writes; polling also resumes a store stopped on a full disk once
  // space is freed, even when no write comes to do it.
  const OpenedStores* stores_for_health = stores.get();
  CheckpointServer* server_for_health = server.get();
  auto check_health = [stores_for_health, server_for_health] {
    StoreHealth health = stores_for_health->Health();
    server_for_health->SetWritable(health.writable(), health.detail);
  };
  check_health();
  std::optional<Periodic> health_poller;
  health_poller.emplace(absl::Seconds(flags.health_check_interval_seconds),
                        check_health);
  std::optional<Periodic> collector;
  if (flags.gc_interval_seconds > 0) {
    collector.emplace(
        absl::Seconds(flags.gc_interval_seconds),
        [&service, metrics] { CollectGarbage(&service, metrics); });
  }

  const std::string address =
      absl::StrCat(HostOf(flags.listen), ":", server->port());
  CKPT_EVENT(Info, "listening", {"address", address},
             {"data_dir", flags.data_dir},
             {"request_threads", RequestThreads(server_options)},
             {"maintenance_threads", server_options.maintenance_threads},
             {"verify_threads", VerifyThreads(service_options)},
             {"transport", TransportSecurity(server_options.tls)});
  std::cout << "ckpt-server listening on " << address << std::endl;

  // The signals are blocked in every thread (see main), so they stay pending
  // until this sigwait takes one: no work ever runs in a signal handler.
  int signal_number = 0;
  while (sigwait(&signals, &signal_number) == 0 && signal_number == SIGHUP) {
    CKPT_EVENT(Info, "signal", {"signal", "SIGHUP"}, {"action", "reload"});
    ReloadTokens(*authenticator);
  }
  CKPT_EVENT(Info, "signal", {"signal", SignalName(signal_number)},
             {"action", "shutdown"});
  // From here the process ends within the grace plus kShutdownStuckAfter,
  // cleanly or through the watchdog.
  const absl::Duration grace = absl::Seconds(flags.shutdown_grace_seconds);
  CKPT_EVENT(Info, "draining", {"step", "draining_calls"},
             {"grace", absl::FormatDuration(grace)});
  ShutdownWatchdog watchdog(grace + kShutdownStuckAfter, "draining_calls");
  server->Shutdown(absl::Now() + grace);
  server->Wait();
  watchdog.SetStep("stopping_background_tasks");
  collector.reset();  // waits for a collection in progress
  lease_reaper.reset();
  health_poller.reset();
  server.reset();
  watchdog.SetStep("closing_store");
  // Scrapes read the store's properties: stop them before it closes.
  if (prometheus != nullptr) prometheus->StopServing();
  stores.reset();  // flushes and closes the database
  CKPT_EVENT(Info, "shutdown", {"result", "clean"});
  return absl::OkStatus();
}

// --health-probe with `settings`: TLS when the server serves TLS, trusting
// --probe-tls-ca (or, without it, the server's own certificate, which
// works for a self-signed one).
absl::Status RunHealthProbe(const ServerSettings& settings,
                            const std::string& service) {
  HealthProbeOptions options;
  options.address = ProbeAddressFor(settings.listen);
  options.service = service;
  options.tls_server_name = settings.probe_tls_server_name;
  if (!settings.tls_cert.empty() || !settings.probe_tls_ca.empty()) {
    const std::string& ca = settings.probe_tls_ca.empty()
                                ? settings.tls_cert
                                : settings.probe_tls_ca;
    CKPT_ASSIGN_OR_RETURN(
        options.tls_ca_pem,
        ReadCredentialFile(ca, settings.probe_tls_ca.empty()
                                   ? "--tls-cert (no --probe-tls-ca)"
                                   : "--probe-tls-ca"));
  }
  if (!settings.probe_tls_cert.empty() || !settings.probe_tls_key.empty()) {
    CKPT_ASSIGN_OR_RETURN(
        options.tls_cert_pem,
        ReadCredentialFile(settings.probe_tls_cert, "--probe-tls-cert"));
    CKPT_ASSIGN_OR_RETURN(
        options.tls_key_pem,
        ReadCredentialFile(settings.probe_tls_key, "--probe-tls-key"));
  }
  return ProbeHealth(options);
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
  CLI::App app{
      "ckpt-server: stores distributed training checkpoints (gRPC service "
      "ckpt.v1.CheckpointService).\nPrints 'ckpt-server listening on "
      "HOST:PORT' once ready; SIGTERM or SIGINT shut it down gracefully "
      "(--shutdown-grace-seconds), SIGHUP reloads the --auth-tokens "
      "file.\nWithout --auth-tokens it serves only clients on its own host "
      "(see docs/security.md). Every setting can also be given in a --config "
      "file (docs/operations.md)."};
  ckpt::server::ServerFlags server_flags(&app);
  bool print_config = false;
  bool health_probe = false;
  std::string probe_service = "ckpt.v1.CheckpointService";
  app.add_flag("--health-probe", health_probe,
               "Ask the gRPC health service of the server at --listen (a "
               "wildcard host: this host's loopback address) whether it is "
               "SERVING, over the same transport: TLS when --tls-cert is set "
               "(with --probe-tls-*). Exit 0 when it is; otherwise print one "
               "line saying why and exit 1. For container health checks");
  app.add_option("--probe-service", probe_service,
                 "The service --health-probe asks about: "
                 "ckpt.v1.CheckpointService (NOT_SERVING while draining or "
                 "when writes cannot succeed), or \"\" for the server as a "
                 "whole")
      ->capture_default_str();
  app.add_flag("--print-config", print_config,
               "Print the effective settings (defaults, then --config, then "
               "flags) as a YAML config file, and exit");
  bool list_failpoints = false;
  app.add_flag("--list-failpoints", list_failpoints,
               "Print the names of the failpoints (one a line) a crash test "
               "may arm with CKPT_FAILPOINT=NAME, NAME@K or NAME%N, and exit; "
               "exit 1 in a build without them (tests/reliability/README.md)");
  app.set_version_flag("--version", "ckpt-server " CKPT_VERSION,
                       "Print the version (ckpt-server X.Y.Z) and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (list_failpoints) {
    if (!ckpt::failpoint::kEnabled) {
      std::cerr << "ckpt-server: this build has no failpoints (configure "
                   "with -DCKPT_FAILPOINTS=ON, as the dev, asan and tsan "
                   "presets do)"
                << std::endl;
      return 1;
    }
    for (const char* name : ckpt::failpoint::kNames) {
      std::cout << name << '\n';
    }
    return 0;
  }
  absl::StatusOr<ckpt::server::ServerSettings> flags = server_flags.Resolve();
  if (!flags.ok()) {
    std::cerr << "ckpt-server: " << flags.status().message() << std::endl;
    return 2;
  }
  ckpt::LogLevel level = ckpt::LogLevel::kInfo;
  if (!ckpt::ParseLogLevel(flags->log_level, &level)) {
    std::cerr << "ckpt-server: --log-level " << flags->log_level
              << ": not debug, info, warning or error" << std::endl;
    return 2;
  }
  ckpt::SetMinLogLevel(level);
  if (print_config) {
    std::cout << ckpt::server::ConfigYaml(*flags);
    return 0;
  }
  if (health_probe) {
    absl::Status probe = ckpt::server::RunHealthProbe(*flags, probe_service);
    if (!probe.ok()) {
      std::cout << "ckpt-server --health-probe: " << probe.message()
                << std::endl;
      return 1;
    }
    return 0;
  }
  absl::StatusOr<ckpt::server::ChunkStoreChoice> chunk_store =
      ckpt::server::ParseChunkStore(flags->chunk_store);
  if (!chunk_store.ok()) {
    std::cerr << "ckpt-server: " << chunk_store.status().message() << std::endl;
    return 2;
  }
  if (chunk_store->kind == ckpt::server::ChunkStoreChoice::Kind::kRocksDb &&
      flags->data_dir.empty()) {
    std::cerr << "ckpt-server: no data directory: give --data-dir DIR (or "
                 "data_dir in the --config file)"
              << std::endl;
    return 2;
  }

  // A failpoint armed by the environment (common/failpoint.h): a bad value
  // refuses to start, so a typo never silently arms nothing.
  absl::StatusOr<std::optional<ckpt::failpoint::Arming>> arming =
      ckpt::failpoint::ArmingFromEnvironment();
  if (!arming.ok()) {
    std::cerr << "ckpt-server: " << arming.status().message() << std::endl;
    return 2;
  }
  if (arming->has_value()) {
    CKPT_EVENT(Warning, "failpoint_armed",
               {"name", ckpt::failpoint::kNames[(*arming)->index]},
               {"spec", std::getenv("CKPT_FAILPOINT")},
               {"seed", (*arming)->seed});
  }

  // Block the signals before any thread exists so every thread (gRPC's
  // included) inherits the mask and only sigwait receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::Status status = ckpt::server::Run(*flags, signals);
  if (!status.ok()) {
    // Always written, whatever --log-level says.
    ckpt::LogEvent(ckpt::LogLevel::kError, "start_failed",
                   {{"code", absl::StatusCodeToString(status.code())},
                    {"msg", status.message()}});
    return 1;
  }
  return 0;
}
