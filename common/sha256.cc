#include "common/sha256.h"

#include <openssl/sha.h>

namespace ckpt {

ChunkId Sha256(absl::string_view bytes) {
  std::array<uint8_t, ChunkId::kSize> digest;
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
         digest.data());
  return ChunkId(digest);
}

}  // namespace ckpt
