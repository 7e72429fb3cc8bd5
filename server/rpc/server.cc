#include "server/rpc/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "server/rpc/call_log.h"
#include "server/rpc/grpc_core_log.h"
#include "server/rpc/grpc_service.h"
#include "server/rpc/shared_file_socket.h"
#include "server/service/shared_file_registry.h"

namespace ckpt::server {

bool IsLoopbackListenAddress(absl::string_view address) {
  if (absl::StartsWith(address, "unix:")) return true;
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos) return false;
  absl::string_view host = address.substr(0, colon);
  if (host == "[::1]" || host == "localhost") return true;
  if (!absl::StartsWith(host, "127.")) return false;
  int dots = 0;
  for (char c : host) {
    if (c == '.') {
      ++dots;
    } else if (c < '0' || c > '9') {
      return false;
    }
  }
  return dots == 3;
}

int RequestThreads(const ServerOptions& options) {
  if (options.request_threads > 0) return options.request_threads;
  return std::max(4, 2 * static_cast<int>(std::thread::hardware_concurrency()));
}

namespace {

std::shared_ptr<grpc::ServerCredentials> ServerCredentials(
    const std::optional<ServerTlsOptions>& tls) {
  if (!tls.has_value()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions ssl(
      tls->client_ca_pem.empty()
          ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
          : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  ssl.pem_root_certs = tls->client_ca_pem;
  ssl.pem_key_cert_pairs.push_back(
      {.private_key = tls->private_key_pem, .cert_chain = tls->cert_chain_pem});
  return grpc::SslServerCredentials(ssl);
}

// The shared-memory socket when same-host restores are on; null when they
// are off or the socket cannot be made (then they are off, and said so).
std::unique_ptr<SharedFileSocket> StartSharedFileSocket(
    const ServerOptions& options, SharedFileRegistry* registry) {
  if (!options.limits.shared_file_reads) return nullptr;
  absl::StatusOr<std::unique_ptr<SharedFileSocket>> socket =
      SharedFileSocket::Start(registry);
  if (!socket.ok()) {
    CKPT_LOG(Warning, "same-host restores through shared memory are off: ",
             socket.status().message());
    return nullptr;
  }
  return *std::move(socket);
}

}  // namespace

struct CheckpointServer::Impl {
  Impl(CheckpointService* service, const ServerOptions& options)
      : loopback_only(options.authenticator == nullptr
                          ? Authenticator::WithoutTokens(false)
                          : nullptr),
        shared_file_socket(
            StartSharedFileSocket(options, &shared_file_registry)),
        requests("ckpt-request", RequestThreads(options)),
        maintenance("ckpt-maint", std::max(1, options.maintenance_threads)),
        grpc_service(service,
                     options.authenticator != nullptr ? options.authenticator
                                                      : loopback_only.get(),
                     options.limits, &requests, &maintenance,
                     shared_file_socket.get(), options.metrics,
                     options.quotas) {}

  // The authenticator when the options give none.
  std::unique_ptr<Authenticator> loopback_only;
  // Same-host restores: the files clients passed, and the socket they pass
  // them at (null when turned off). Declared before grpc_service, which
  // uses them; Shutdown stops the socket after the gRPC server.
  SharedFileRegistry shared_file_registry;
  std::unique_ptr<SharedFileSocket> shared_file_socket;
  // Declared before grpc_service, which uses them; Shutdown stops them
  // after the gRPC server, as calls finish from their tasks.
  Executor requests;
  Executor maintenance;
  GrpcCheckpointService grpc_service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;

  absl::Mutex mu;
  bool shut_down ABSL_GUARDED_BY(mu) = false;
  bool writable ABSL_GUARDED_BY(mu) = true;
};

// The service name health checkers ask about (grpc.health.v1).
constexpr char kCheckpointServiceName[] = "ckpt.v1.CheckpointService";

absl::StatusOr<std::unique_ptr<CheckpointServer>> CheckpointServer::Start(
    const ServerOptions& options, CheckpointService* service) {
  if (options.limits.max_queued_calls == 0) {
    return absl::InvalidArgumentError(
        "StreamLimits::max_queued_calls must be at least 1 (0 refuses every "
        "unary call)");
  }
  if (options.limits.upload_buffer_bytes == 0) {
    return absl::InvalidArgumentError(
        "StreamLimits::upload_buffer_bytes must be positive (0 would let no "
        "upload read a message)");
  }
  if (options.limits.verify_heartbeat_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "StreamLimits::verify_heartbeat_interval must be positive (infinite: "
        "no heartbeats)");
  }
  // Both are process-wide switches read when a server is built.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  auto impl = std::make_unique<Impl>(service, options);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address,
                           ServerCredentials(options.tls), &impl->port);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  // With reuse allowed, a leftover server on the same port would silently
  // share (and steal) connections.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Clients ping every 60 s during calls (ConnectOptions::keepalive_time)
  // to notice a frozen server; gRPC's default answers pings more often than
  // every 5 minutes with GOAWAY.
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  // Limits a misbehaving client meets (ServerOptions says why each).
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             options.max_concurrent_streams);
  builder.AddChannelArgument(
      GRPC_ARG_MAX_CONNECTION_IDLE_MS,
      static_cast<int>(std::min<int64_t>(
          absl::ToInt64Milliseconds(options.max_connection_idle), INT_MAX)));
  // Off by default: probing grows each connection's receive window to the
  // measured bandwidth-delay product, which on fast links buffers many MiB
  // per uploading connection outside the upload budget. An upload keeps a
  // read pending, whose message size opens its stream's window regardless.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE,
                             options.grpc_bdp_probe ? 1 : 0);
  grpc::ResourceQuota memory_quota("ckpt-server");
  memory_quota.Resize(static_cast<size_t>(options.grpc_memory_quota_bytes));
  builder.SetResourceQuota(memory_quota);
  builder.RegisterService(&impl->grpc_service);
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
  interceptors.push_back(MakeCallLogFactory(options.metrics));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  RouteGrpcCoreLogs();
  {
    // A port in use makes gRPC core log its own error first; the status
    // below says it once, naming the address.
    QuietGrpcCoreErrors quiet;
    impl->server = builder.BuildAndStart();
  }
  if (impl->server == nullptr || impl->port == 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on '", options.listen_address, "' (address in use or ",
        options.tls.has_value() ? "invalid, or TLS settings refused?)"
                                : "invalid?)"));
  }
  // gRPC's health service knows only the server as a whole ("") until told
  // of a service; probes ask about this one (NOT_SERVING from Shutdown on).
  if (grpc::HealthCheckServiceInterface* health =
          impl->server->GetHealthCheckService()) {
    health->SetServingStatus(v1::CheckpointService::service_full_name(), true);
  }
  return std::make_unique<CheckpointServer>(PrivateTag{}, std::move(impl));
}

CheckpointServer::CheckpointServer(PrivateTag, std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

CheckpointServer::~CheckpointServer() {
  Shutdown(absl::Now());
  Wait();
}

int CheckpointServer::port() const { return impl_->port; }

void CheckpointServer::Shutdown(absl::Time deadline) {
  {
    absl::MutexLock lock(&impl_->mu);
    if (impl_->shut_down) return;
    impl_->shut_down = true;
  }
  CKPT_LOG(Info, "draining: health reports NOT_SERVING");
  // Refuse new calls (UNAVAILABLE), tell health checkers, and let the calls
  // in flight finish until the deadline.
  impl_->grpc_service.calls().StartDraining();
  {
    // Under mu, so that a SetWritable racing this cannot turn it back.
    absl::MutexLock lock(&impl_->mu);
    if (grpc::HealthCheckServiceInterface* health =
            impl_->server->GetHealthCheckService()) {
      health->SetServingStatus(false);
    }
  }
  impl_->grpc_service.calls().WaitUntilIdle(deadline);
  // Then shut down at once: gRPC's graceful shutdown would also wait, up to
  // the deadline, for idle clients to close their connections. Calls still
  // running past the deadline are cancelled here; Shutdown returns once
  // every call's OnDone has run, so no task remains that would finish one.
  impl_->server->Shutdown(absl::ToChronoTime(absl::Now()));
  // Every OnDone has run, so every call has left the counter; waiting for it
  // anyway makes that order our own (each Exit and this wait share the
  // counter's mutex) instead of an assumption about gRPC's internals, before
  // anything a reactor touched is destroyed.
  impl_->grpc_service.calls().WaitUntilIdle(absl::InfiniteFuture());
  impl_->requests.Shutdown();
  impl_->maintenance.Shutdown();
  // No call uses a registered file any more: close the connections.
  if (impl_->shared_file_socket != nullptr) impl_->shared_file_socket->Stop();
}

void CheckpointServer::SetWritable(bool writable, absl::string_view reason) {
  absl::MutexLock lock(&impl_->mu);
  if (impl_->shut_down || impl_->writable == writable) return;
  impl_->writable = writable;
  if (grpc::HealthCheckServiceInterface* health =
          impl_->server->GetHealthCheckService()) {
    health->SetServingStatus(kCheckpointServiceName, writable);
  }
  if (writable) {
    CKPT_LOG(Info, "storage writable again: health reports SERVING for ",
             kCheckpointServiceName);
  } else {
    CKPT_LOG(Warning, "storage cannot take writes (", reason,
             "): health reports NOT_SERVING for ", kCheckpointServiceName);
  }
}

size_t CheckpointServer::requests_queued() const {
  return impl_->requests.queued();
}

size_t CheckpointServer::shared_files_registered() const {
  return impl_->shared_file_registry.size();
}

void CheckpointServer::Wait() { impl_->server->Wait(); }

}  // namespace ckpt::server
