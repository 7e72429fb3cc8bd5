#include "common/chunking.h"

#include <algorithm>

namespace ckpt {

std::vector<absl::string_view> SplitIntoChunks(absl::string_view bytes,
                                               size_t chunk_bytes) {
  std::vector<absl::string_view> chunks;
  chunks.reserve((bytes.size() + chunk_bytes - 1) / chunk_bytes);
  for (size_t offset = 0; offset < bytes.size(); offset += chunk_bytes) {
    chunks.push_back(
        bytes.substr(offset, std::min(chunk_bytes, bytes.size() - offset)));
  }
  return chunks;
}

}  // namespace ckpt
