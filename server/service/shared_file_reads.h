// Same-host restores through shared memory: the service half of
// ReadChunksIntoFile. The server writes verified chunks straight into a
// client's restore memfd (SharedFileWriter, shared_file.h), which the client
// registered itself (shared_file_registry.h), instead of sending them,
// saving the copies through the transport and the socket. Whether a client
// may ask at all (on this host, the feature turned on, a registered handle)
// is the transport's decision; this checks every placement and copies the
// bytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/chunk_id.h"
#include "common/shared_file.h"
#include "server/service/checkpoint_service.h"
#include "server/service/shared_file.h"

namespace ckpt::server {

// ChunkPlacement: common/shared_file.h.

// Checks every placement before writing any: INVALID_ARGUMENT naming
// chunks[i] for one without offsets or with a range past the end of
// `file`. A request refused so far leaves the file untouched.
//
// Then, in order, reads each chunk of `job` verified
// (CheckpointService::ReadChunkTo, from the store's buffer: no copy of its
// own) and writes it at each of its offsets. Returns the bytes written,
// every placement counted. Errors from here on may follow writes of earlier
// chunks (the client discards the file on any error): DATA_LOSS when a
// chunk's stored size is not its placement's size (found before that
// chunk's first write) or its bytes are damaged (nothing of it written);
// NOT_FOUND for an absent chunk; RESOURCE_EXHAUSTED when the client's memory
// runs out; CANCELLED when `cancelled()` turns true (asked before each
// chunk). Messages do not name the RPC; the transport adds that.
absl::StatusOr<uint64_t> ReadChunksIntoSharedFile(
    CheckpointService& service, absl::string_view job,
    const SharedFileWriter& file, absl::Span<const ChunkPlacement> placements,
    absl::FunctionRef<bool()> cancelled);

}  // namespace ckpt::server
