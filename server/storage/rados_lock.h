// cls_lock for the RADOS stores: an exclusive leased lock taken with a
// bounded wait, its holder named in words, renewal, release, and the
// fence that makes a write conditional on still holding it. Include only
// from .cc files (it exposes librados).
#pragma once

#include <rados/librados.hpp>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace ckpt::server {

// A random cookie: each acquisition has its own, so a lock this process
// lost and took again is not mistaken for the old one.
std::string NewLockCookie();

struct LockRequest {
  std::string oid;
  std::string name;    // the cls_lock name, e.g. "ckpt.job"
  std::string cookie;  // NewLockCookie()
  std::string what;    // "job t/j", for messages
  absl::Duration lease;
  // How long to retry while another client holds it; zero: do not wait
  // (FAILED_PRECONDITION naming the holder).
  absl::Duration wait;
  Clock* clock;  // for `sent_at` (the lease); waiting uses real time
};

// Takes the lock (creating the object when absent, as cls_lock does).
// UNAVAILABLE naming the holder and the time waited when it stays held.
// `sent_at`: when the request that got it was sent (the lease runs from
// no earlier than that).
absl::Status LockExclusive(librados::IoCtx& io, const LockRequest& request,
                           absl::Time* sent_at);
// Extends the lease of a lock we hold; ABORTED when it is no longer ours
// (it expired, and maybe another client took it).
absl::Status RenewLock(librados::IoCtx& io, const LockRequest& request);
// Releases it; a lock already gone (expired, broken) is fine, other errors
// are logged: the lease ends by itself anyway.
void Unlock(librados::IoCtx& io, const std::string& oid,
            const std::string& name, const std::string& cookie);
// "client.4133 at v2:127.0.0.1:0/3021 (cookie …)", or why nobody is named.
std::string DescribeLockHolder(librados::IoCtx& io, const std::string& oid,
                               const std::string& name);

// Adds to `op` the OSD-side check that (this client, cookie) holds the
// exclusive lock `name` on the op's object: without it the whole op fails
// with EBUSY and writes nothing.
void AddLockFence(librados::ObjectWriteOperation& op, const std::string& name,
                  const std::string& cookie);
// The cls_lock_assert_op input of that check, in Ceph's encoding (exposed
// for the test that checks it against a real OSD).
librados::bufferlist EncodeAssertLocked(const std::string& name,
                                        const std::string& cookie);

}  // namespace ckpt::server
