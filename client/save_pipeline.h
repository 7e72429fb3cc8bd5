// The save pipeline behind Client::SaveShard: lays a rank's tensors out as a
// shard manifest (quantizing or delta-encoding those that ask for it),
// chunks the stored bytes, hashes the chunks on a few threads while earlier
// batches are checked with FindMissingChunks and the missing ones uploaded
// (each distinct chunk at most once), then commits the shard, retrying once
// when the commit finds chunks missing. Talks to the server only through a
// Transport, so it builds and is tested without gRPC.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "client/transport.h"
#include "client/types.h"

namespace ckpt::client {

// Saves rank options.rank's shard of checkpoint (job, step) through
// `transport`, as Client::SaveShard documents: INVALID_ARGUMENT, before
// any call, for a rank outside world_size, a chunk_bytes outside
// 1..kMaxChunkBytes, or a tensor whose bytes, delta rows or quantization
// request are malformed; otherwise the first failing call's status. If the
// commit is refused with FAILED_PRECONDITION, the missing chunks are
// checked again and uploaded and the commit retried once; when none were
// missing, that refusal is returned. On error the checkpoint stays pending
// (chunks already uploaded stay stored) until its lease expires or it is
// aborted. Thread-safe as far as `transport` is; the tensors' bytes must
// stay valid and unchanged until it returns.
absl::StatusOr<SaveResult> SaveShard(Transport& transport,
                                     absl::string_view job, int64_t step,
                                     absl::Span<const TensorData> tensors,
                                     const SaveOptions& options);

}  // namespace ckpt::client
