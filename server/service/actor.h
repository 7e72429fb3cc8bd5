// Actor: who asks CheckpointService for a change. Its principal is recorded
// in the event of every change it makes (JobEvent::principal) and in the
// log; its rights that depend on stored state are checked by the service
// under its lock (everything else is decided by the caller beforehand, see
// server/auth/authorize.h). Pure data: no gRPC.
#pragma once

#include <string>

namespace ckpt::server {

// The server's own work: lease expiry, background garbage collection.
inline constexpr char kServerPrincipal[] = "ckpt-server";

struct Actor {
  std::string principal = kServerPrincipal;
  // Whether the caller may make the server delete committed checkpoints
  // through retention: replace the job's stored policy with the one it
  // passes to BeginCheckpoint, and have its commits apply the stored policy.
  // False for append-only callers (writers): they may pass the stored
  // policy, or none, and their commits delete nothing (the policy waits for
  // an admin's prune), so that a save, or a stolen job token, can never
  // delete history.
  bool may_delete_history = true;
};

}  // namespace ckpt::server
