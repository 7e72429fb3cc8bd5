#include "client/transport.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace ckpt::client {

absl::Status DeliverChunk(const ChunkSink& sink, size_t answer,
                          absl::string_view answered_id,
                          absl::string_view data) {
  if (answered_id != sink.id.bytes() || data.size() != sink.size) {
    return absl::DataLossError(
        absl::StrCat("ReadChunks: answer ", answer, " is ", data.size(),
                     " bytes of another chunk than the requested ",
                     sink.id.ShortHex(), " (", sink.size, " bytes)"));
  }
  for (char* destination : sink.destinations) {
    std::memcpy(destination, data.data(), sink.size);
  }
  return absl::OkStatus();
}

}  // namespace ckpt::client
