// Registration of a restore memfd at a server's shared-memory socket: the
// client side of common/shared_file_protocol.h (connect, check the
// server's proof, pass the descriptor with SCM_RIGHTS, receive the
// handle). Plain Unix sockets; no gRPC (the gRPC transport fetches the
// endpoint and calls this).
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/transport.h"
#include "common/shared_file.h"

namespace ckpt::client {

// Registers `memfd` at `endpoint`; the registration keeps the connection
// open, and closing it (destroying the registration) ends it. Every
// failure is FAILED_PRECONDITION, so that the restore streams instead: a
// socket that cannot be reached (another network namespace), one that does
// not prove it is the server's (then the memfd is never sent), or a server
// that refuses the file (with its reason). `timeout` bounds each wait for
// the server.
absl::StatusOr<std::unique_ptr<SharedFileRegistration>> RegisterAtSocket(
    const SharedFileEndpoint& endpoint, int memfd, absl::Duration timeout);

}  // namespace ckpt::client
