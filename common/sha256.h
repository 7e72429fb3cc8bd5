// SHA-256 content hashing (OpenSSL, SHA-NI when the CPU has it).
#pragma once

#include "absl/strings/string_view.h"
#include "common/chunk_id.h"

namespace ckpt {

// Thread-safe; one pass over `bytes`.
ChunkId Sha256(absl::string_view bytes);

}  // namespace ckpt
