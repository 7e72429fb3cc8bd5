#include "server/auth/authorize.h"

#include "absl/strings/str_cat.h"

namespace ckpt::server {

absl::Status AuthorizeRole(const Principal& principal, absl::string_view rpc,
                           Role needed) {
  if (principal.role >= needed) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      rpc, ": principal '", principal.name, "' has role ",
      RoleName(principal.role), "; this call needs role ", RoleName(needed),
      needed == Role::kOperator ? "" : " or above"));
}

absl::Status AuthorizeJob(const Principal& principal, absl::string_view rpc,
                          Role needed, absl::string_view job) {
  if (absl::Status role = AuthorizeRole(principal, rpc, needed); !role.ok()) {
    return role;
  }
  if (principal.scope.Covers(job)) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat(rpc, ": the job is outside the scope of principal '",
                   principal.name, "' (", principal.scope.ToString(), ")"));
}

absl::Status AuthorizeTenant(const Principal& principal, absl::string_view rpc,
                             Role needed, absl::string_view tenant,
                             TenantReach reach) {
  if (absl::Status role = AuthorizeRole(principal, rpc, needed); !role.ok()) {
    return role;
  }
  const JobScope& scope = principal.scope;
  const bool reaches = reach == TenantReach::kWhole
                           ? scope.CoversTenant(tenant)
                           : scope.IsAll() || scope.tenant() == tenant;
  if (reaches) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      rpc, ": principal '", principal.name, "' (scope ", scope.ToString(),
      ") may not ", reach == TenantReach::kWhole ? "set" : "read",
      " this tenant's default policy",
      reach == TenantReach::kWhole
          ? ", which needs a scope covering the whole tenant (TENANT/)"
          : ""));
}

Role RoleToPin(bool pinned) { return pinned ? Role::kWriter : Role::kAdmin; }

Role RoleToTag(bool removes) { return removes ? Role::kAdmin : Role::kWriter; }

Role RoleToPrune(bool dry_run) {
  return dry_run ? Role::kReader : Role::kAdmin;
}

bool MayDeleteHistory(const Principal& principal) {
  return principal.role >= Role::kAdmin;
}

}  // namespace ckpt::server
