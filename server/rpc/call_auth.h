// The gRPC side of authentication and authorization: reads who sent a call
// (its `authorization` metadata and whether its peer is on this host),
// hands that to the Authenticator, and applies the role and scope decisions
// of server/auth/authorize.h. Every RPC goes through Admit before it looks
// at anything the server holds.
#pragma once

#include <grpcpp/grpcpp.h>

#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/auth/authenticator.h"
#include "server/auth/authorize.h"
#include "server/service/actor.h"

namespace ckpt::server {

// The call's credentials; the views point into the call's metadata, valid
// until it finishes.
CallCredentials CredentialsOf(const grpc::CallbackServerContext& context);

// Authenticates the call (UNAUTHENTICATED "<rpc>: ..."), then checks that
// its principal has role `needed` and, when `job` is given, that its scope
// covers the job (PERMISSION_DENIED "<rpc>: ..."). Returns the principal.
absl::StatusOr<Principal> Admit(
    const Authenticator& authenticator,
    const grpc::CallbackServerContext& context, absl::string_view rpc,
    Role needed, std::optional<absl::string_view> job = std::nullopt);

// As Admit, for a call naming a tenant instead of a job (AuthorizeTenant).
absl::StatusOr<Principal> AdmitTenant(
    const Authenticator& authenticator,
    const grpc::CallbackServerContext& context, absl::string_view rpc,
    Role needed, absl::string_view tenant, TenantReach reach);

// The service's view of the principal: its name for the events, and the
// rights the service checks against stored state.
Actor ActorOf(const Principal& principal);

}  // namespace ckpt::server
