#include "server/rpc/health_probe.h"

#include <grpc/grpc.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/notification.h"

namespace ckpt::server {
namespace {

// grpc.health.v1.HealthCheckRequest { string service = 1; }, encoded by
// hand: gRPC ships no C++ stub for the health service's client side, and
// two fields do not warrant a generated one.
std::string EncodeRequest(absl::string_view service) {
  std::string out;
  if (service.empty()) return out;
  out.push_back(0x0a);  // field 1, length-delimited
  for (size_t n = service.size();; n >>= 7) {
    if (n < 0x80) {
      out.push_back(static_cast<char>(n));
      break;
    }
    out.push_back(static_cast<char>((n & 0x7f) | 0x80));
  }
  absl::StrAppend(&out, service);
  return out;
}

// HealthCheckResponse { ServingStatus status = 1; }: the status, 0
// (UNKNOWN) when absent, -1 when the bytes are not such a message.
int DecodeStatus(const std::string& bytes) {
  if (bytes.empty()) return 0;
  if (bytes.size() < 2 || bytes[0] != 0x08) return -1;
  const unsigned char value = static_cast<unsigned char>(bytes[1]);
  return value < 0x80 ? value : -1;
}

const char* StatusName(int status) {
  switch (status) {
    case 0:
      return "UNKNOWN";
    case 1:
      return "SERVING";
    case 2:
      return "NOT_SERVING";
    case 3:
      return "SERVICE_UNKNOWN (no such service)";
    default:
      return "an unreadable answer";
  }
}

std::shared_ptr<grpc::ChannelCredentials> Credentials(
    const HealthProbeOptions& options) {
  if (options.tls_ca_pem.empty()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = options.tls_ca_pem;
  ssl.pem_cert_chain = options.tls_cert_pem;
  ssl.pem_private_key = options.tls_key_pem;
  return grpc::SslCredentials(ssl);
}

}  // namespace

std::string ProbeAddressFor(absl::string_view listen) {
  const size_t colon = listen.rfind(':');
  if (colon == absl::string_view::npos) return std::string(listen);
  const absl::string_view host = listen.substr(0, colon);
  const absl::string_view port = listen.substr(colon + 1);
  if (host.empty() || host == "0.0.0.0" || host == "*") {
    return absl::StrCat("127.0.0.1:", port);
  }
  if (host == "[::]" || host == "[::0]") return absl::StrCat("[::1]:", port);
  return std::string(listen);
}

namespace {

absl::Status ProbeOnce(const HealthProbeOptions& options) {
  grpc::ChannelArguments args;
  if (!options.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(options.tls_server_name);
  }
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(options.address, Credentials(options), args);
  grpc::GenericStub stub(channel);
  const absl::Time deadline = absl::Now() + options.timeout;
  // Connected first, in at most half the probe's time: gRPC 1.51 can fail a
  // connect() that succeeded (see CallSetup in
  // client/transport/grpc_transport.cc), and the call would fail on it; the
  // wait rides out the reconnect. A server that is not there still fails
  // the probe at the call, with the connection's error.
  channel->WaitForConnected(absl::ToChronoTime(
      absl::Now() + std::min(absl::Seconds(2), options.timeout / 2)));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(deadline));
  context.set_wait_for_ready(false);

  const std::string request_bytes = EncodeRequest(options.service);
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  grpc::Status call_status;
  absl::Notification done;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(),
                 &request, &response, [&](grpc::Status status) {
                   call_status = std::move(status);
                   done.Notify();
                 });
  done.WaitForNotification();

  const std::string what = options.service.empty()
                               ? std::string("the server")
                               : absl::StrCat("service ", options.service);
  if (!call_status.ok()) {
    // gRPC's messages may span lines; the probe's reason is one line.
    return absl::UnavailableError(absl::StrCat(
        options.address, ": health check failed: ",
        absl::StatusCodeToString(
            static_cast<absl::StatusCode>(call_status.error_code())),
        ": ", absl::StrReplaceAll(call_status.error_message(), {{"\n", " "}})));
  }
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (response.Dump(&slices).ok()) {
    for (const grpc::Slice& part : slices) {
      bytes.append(reinterpret_cast<const char*>(part.begin()), part.size());
    }
  }
  const int status = DecodeStatus(bytes);
  if (status == 1) return absl::OkStatus();
  return absl::UnavailableError(
      absl::StrCat(options.address, ": ", what, " is ", StatusName(status)));
}

}  // namespace

absl::Status ProbeHealth(const HealthProbeOptions& options) {
  // The probe's process exits right after it. gRPC otherwise shuts down in
  // the background once its last object is gone, and exiting first can
  // leave a TLS handshake's state unfreed (LeakSanitizer saw it): hold a
  // reference, and release it waiting for gRPC to finish.
  grpc_init();
  absl::Status status = ProbeOnce(options);
  grpc_shutdown_blocking();
  return status;
}

}  // namespace ckpt::server
