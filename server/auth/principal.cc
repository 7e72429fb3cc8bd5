#include "server/auth/principal.h"

namespace ckpt::server {

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kReader:
      return "reader";
    case Role::kWriter:
      return "writer";
    case Role::kAdmin:
      return "admin";
    case Role::kOperator:
      return "operator";
  }
  return "unknown";
}

std::optional<Role> ParseRole(absl::string_view name) {
  for (Role role :
       {Role::kReader, Role::kWriter, Role::kAdmin, Role::kOperator}) {
    if (name == RoleName(role)) return role;
  }
  return std::nullopt;
}

Principal AnonymousPrincipal() {
  return Principal{"anonymous", Role::kOperator, JobScope::All()};
}

}  // namespace ckpt::server
