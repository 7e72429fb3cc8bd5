// What the RADOS stores' .cc files share of librados: the connection's
// handles, errno to absl::Status, an I/O context per namespace, and an
// owner for asynchronous completions. Include only from .cc files.
#pragma once

#include <memory>
#include <rados/librados.hpp>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "server/storage/rados_cluster.h"

namespace ckpt::server {

struct RadosCluster::Handles {
  librados::Rados rados;
  librados::IoCtx pool;  // namespace "" (never changed: shared by threads)
};

// OK for rc >= 0; otherwise the status for -rc, its message
// "<what>: <strerror> (errno N)". ENOENT is NOT_FOUND, EEXIST
// ALREADY_EXISTS, ECANCELED ABORTED (a failed guard), EBUSY and ETIMEDOUT
// UNAVAILABLE, EACCES/EPERM PERMISSION_DENIED, ENOSPC/EDQUOT
// RESOURCE_EXHAUSTED, EINVAL/ENAMETOOLONG/EMSGSIZE/EFBIG INVALID_ARGUMENT.
absl::Status RadosStatus(int rc, absl::string_view what);

// A copy of the pool's context set to namespace `ns`: an IoCtx's namespace
// is per object, not per call, so each caller takes its own.
librados::IoCtx IoCtxIn(RadosCluster& cluster, absl::string_view ns);

struct AioCompletionReleaser {
  void operator()(librados::AioCompletion* c) const { c->release(); }
};
using AioCompletionPtr =
    std::unique_ptr<librados::AioCompletion, AioCompletionReleaser>;
inline AioCompletionPtr NewAioCompletion() {
  return AioCompletionPtr(librados::Rados::aio_create_completion());
}

}  // namespace ckpt::server
