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
  // Whether a retention policy passed to BeginCheckpoint may replace the
  // job's stored one. False for append-only callers (writers): they may pass
  // the stored policy, or none, so that a save can never delete history.
  bool may_change_retention = true;
};

}  // namespace ckpt::server
