// The authorization decisions of the server: whether a principal's role
// allows a call, and whether its scope covers the job the call names. Each
// refusal is PERMISSION_DENIED naming the RPC, the principal and what it
// lacks. Decided from the principal and the request alone, before anything
// is looked up, so a refusal never depends on what the server holds.
// Pure: no gRPC, no I/O.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "server/auth/principal.h"

namespace ckpt::server {

// OK when the principal's role is `needed` or above.
absl::Status AuthorizeRole(const Principal& principal, absl::string_view rpc,
                           Role needed);

// AuthorizeRole, then OK when the principal's scope covers `job`. The scope
// refusal never quotes the job name: the answer for another tenant's job is
// the same, byte for byte, whether that job exists or not.
absl::Status AuthorizeJob(const Principal& principal, absl::string_view rpc,
                          Role needed, absl::string_view job);

// What a call naming a tenant rather than a job (its default retention
// policy) needs of the principal's scope.
enum class TenantReach {
  kRead,   // a scope inside the tenant (any prefix of it) or "*"
  kWhole,  // a scope covering the whole tenant ("tenant/") or "*"
};

// AuthorizeRole, then OK when the principal's scope reaches `tenant` as
// `reach` says. As AuthorizeJob's, the refusal never quotes the tenant.
absl::Status AuthorizeTenant(const Principal& principal, absl::string_view rpc,
                             Role needed, absl::string_view tenant,
                             TenantReach reach);

// Roles of the calls whose needs depend on the request. Pinning keeps
// history, so writers may; unpinning lets retention delete, so it is admin's.
Role RoleToPin(bool pinned);
// As pinning: adding tags keeps history (writer); removing one may let a
// keep-tag rule delete (admin).
Role RoleToTag(bool removes);
// A dry run reads; a real prune deletes.
Role RoleToPrune(bool dry_run);

// Whether the principal may make retention delete history (Actor): replace
// a job's retention policy through BeginCheckpoint (checked by the service
// against the stored policy, under its lock; SetRetentionPolicy needs admin
// outright), and have its commits apply the stored policy. A writer may
// not: it is append-only.
bool MayDeleteHistory(const Principal& principal);

}  // namespace ckpt::server
