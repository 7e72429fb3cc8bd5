// Principal: who is calling, as the token file names it: a name, a role and
// the jobs it may touch (JobScope). Role is what it may do there. Pure data:
// no gRPC, no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "common/job_scope.h"

namespace ckpt::server {

// Ordered: each role may do everything the ones before it may.
enum class Role : uint8_t {
  // Lists, shows and restores checkpoints; reads events, the retention
  // policy, stats, and dry-run prunes.
  kReader = 1,
  // Reader plus saving: begin, find-missing, upload, commit, abort, pin.
  // Append-only: nothing it does deletes history (restic rest-server's
  // --append-only is the model).
  kWriter,
  // Everything within its scope: delete, prune, unpin, set the retention
  // policy, verify.
  kAdmin,
  // Everything on the whole server, including garbage collection. Its scope
  // is "*", and only an operator's may be.
  kOperator,
};

// "reader", "writer", "admin", "operator".
absl::string_view RoleName(Role role);
// The inverse of RoleName; nullopt for anything else.
std::optional<Role> ParseRole(absl::string_view name);

struct Principal {
  std::string name;
  Role role = Role::kReader;
  JobScope scope = JobScope::All();
  friend bool operator==(const Principal&, const Principal&) = default;
};

// The caller of a server without a token file (loopback only, unless the
// operator allowed otherwise): full rights, as before authentication existed.
Principal AnonymousPrincipal();

}  // namespace ckpt::server
