#include "server/service/shared_file_reads.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace ckpt::server {
namespace {

// Every placement, before any write: a bad request leaves the file alone.
absl::Status CheckPlacements(const SharedFileWriter& writer,
                             absl::Span<const ChunkPlacement> placements) {
  for (size_t i = 0; i < placements.size(); ++i) {
    const ChunkPlacement& chunk = placements[i];
    if (chunk.offsets.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("chunks[", i, "] has no offsets"));
    }
    for (uint64_t offset : chunk.offsets) {
      absl::Status range = writer.CheckRange(offset, chunk.size);
      if (!range.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("chunks[", i, "]: ", range.message()));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<uint64_t> ReadChunksIntoSharedFile(
    CheckpointService& service, absl::string_view job,
    const SharedFileWriter& writer, absl::Span<const ChunkPlacement> placements,
    absl::FunctionRef<bool()> cancelled) {
  CKPT_RETURN_IF_ERROR(CheckPlacements(writer, placements));
  uint64_t written = 0;
  for (const ChunkPlacement& chunk : placements) {
    if (cancelled()) return absl::CancelledError("cancelled by the client");
    CKPT_RETURN_IF_ERROR(service.ReadChunkTo(
        job, chunk.id, [&](absl::string_view data) -> absl::Status {
          if (data.size() != chunk.size) {
            return absl::DataLossError(absl::StrCat(
                "chunk ", chunk.id.ShortHex(), " has ", data.size(),
                " bytes, but the request places ", chunk.size));
          }
          for (uint64_t offset : chunk.offsets) {
            // Not CKPT_RETURN_IF_ERROR: inside the outer one it would shadow.
            absl::Status write = writer.Write(offset, data);
            if (!write.ok()) return write;
            written += data.size();
          }
          return absl::OkStatus();
        }));
  }
  return written;
}

}  // namespace ckpt::server
