#include "server/rpc/call_auth.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/rpc/call_log.h"
#include "server/rpc/request_checks.h"

namespace ckpt::server {

CallCredentials CredentialsOf(const grpc::CallbackServerContext& context) {
  CallCredentials credentials;
  // gRPC lowercases metadata keys.
  auto [begin, end] = context.client_metadata().equal_range("authorization");
  for (auto it = begin; it != end; ++it) {
    credentials.authorization.emplace_back(it->second.data(),
                                           it->second.size());
  }
  credentials.local_peer = IsLocalPeer(context.peer());
  return credentials;
}

absl::StatusOr<Principal> Admit(const Authenticator& authenticator,
                                const grpc::CallbackServerContext& context,
                                absl::string_view rpc, Role needed,
                                std::optional<absl::string_view> job) {
  if (job.has_value()) NoteJob(context, *job);
  absl::StatusOr<Principal> principal =
      authenticator.Authenticate(CredentialsOf(context));
  if (!principal.ok()) {
    return absl::Status(principal.status().code(),
                        absl::StrCat(rpc, ": ", principal.status().message()));
  }
  NoteCaller(context, principal->name);
  CKPT_RETURN_IF_ERROR(job.has_value()
                           ? AuthorizeJob(*principal, rpc, needed, *job)
                           : AuthorizeRole(*principal, rpc, needed));
  return principal;
}

absl::StatusOr<Principal> AdmitTenant(
    const Authenticator& authenticator,
    const grpc::CallbackServerContext& context, absl::string_view rpc,
    Role needed, absl::string_view tenant, TenantReach reach) {
  CKPT_ASSIGN_OR_RETURN(Principal principal,
                        Admit(authenticator, context, rpc, Role::kReader));
  CKPT_RETURN_IF_ERROR(AuthorizeTenant(principal, rpc, needed, tenant, reach));
  return principal;
}

Actor ActorOf(const Principal& principal) {
  return Actor{principal.name, MayDeleteHistory(principal)};
}

}  // namespace ckpt::server
