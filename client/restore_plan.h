// The restore plan behind Client::ReadTensors and Client::RestoreShard:
// which chunks to fetch (each distinct chunk once, however many places it
// fills), the chain of bases that rebuilds a row delta (common/
// delta_base.h's rule), where each fetched byte lands (the tensors, or
// scratch for deltas and quantized entries), and the rebuild (dequantize,
// apply deltas). The parts it shares with the region plan (client/
// region_plan.h), such as the parallel fetch through shared memory, are in
// client/fetch_plan.h. Talks to the server only through a Transport, so it
// builds and is tested without gRPC.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "client/transport.h"
#include "client/types.h"
#include "common/manifest.h"

namespace ckpt::client {

// Fetches the bytes of `entries` of `job` into `outs`, as Client::
// ReadTensors documents: each chunk fetched once over all entries, each base
// manifest once; a delta is rebuilt from its chain of bases, a quantized
// entry dequantized. INVALID_ARGUMENT when outs and entries differ in number
// or an out's size is not its entry's ByteSize (nothing fetched then);
// DATA_LOSS naming the tensor (and the step) when a base checkpoint or its
// matching entry is missing, a chain does not go back in time, a full
// entry's pieces do not add up to its box, or fetched bytes do not decode;
// otherwise the transport's status. On error `outs` hold unspecified bytes.
// Thread-safe as far as `transport` is. `rank`: the shard the entries are
// of, whose own delta bases are followed (FindDeltaBase); nullopt: the
// first shard's that match.
absl::Status ReadTensors(Transport& transport, absl::string_view job,
                         absl::Span<const TensorEntry> entries,
                         absl::Span<const absl::Span<char>> outs,
                         std::optional<int32_t> rank = std::nullopt);

// All tensors of rank `rank` in `checkpoint`, as Client::RestoreShard
// documents: laid out in one RestoreBuffer (a memfd the server may write
// into when `shared_memory` and the system allow), fetched over a few
// ranges in parallel, then rebuilt; `progress`, when set, is called one call
// at a time after every chunk. INVALID_ARGUMENT when rank is outside the
// checkpoint's world size, NOT_FOUND when it has no shard of that rank,
// DATA_LOSS as for ReadTensors, RESOURCE_EXHAUSTED when the memory cannot
// be had; otherwise the transport's status.
absl::StatusOr<std::vector<RestoredTensor>> RestoreShard(
    Transport& transport, const Checkpoint& checkpoint, int32_t rank,
    const RestoreProgressFn& progress, bool shared_memory);

}  // namespace ckpt::client
