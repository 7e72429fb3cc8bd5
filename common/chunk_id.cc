#include "common/chunk_id.h"

#include <cctype>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/quote.h"

namespace ckpt {

absl::StatusOr<ChunkId> ChunkId::FromBytes(absl::string_view raw) {
  if (raw.size() != kSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a chunk hash must be 32 bytes of SHA-256, got ", raw.size()));
  }
  std::array<uint8_t, kSize> digest;
  std::memcpy(digest.data(), raw.data(), kSize);
  return ChunkId(digest);
}

absl::StatusOr<ChunkId> ChunkId::FromHex(absl::string_view hex) {
  if (hex.size() != 2 * kSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a chunk hash must be 64 hex digits, got ", QuoteTruncated(hex)));
  }
  for (char c : hex) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError(
          absl::StrCat("not a hex digit in chunk hash ", QuoteTruncated(hex)));
    }
  }
  return FromBytes(absl::HexStringToBytes(hex));
}

std::string ChunkId::ToHex() const { return absl::BytesToHexString(bytes()); }

}  // namespace ckpt
