// ChunkId: the SHA-256 digest that names an immutable chunk of bytes.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ckpt {

class ChunkId {
 public:
  static constexpr size_t kSize = 32;

  ChunkId() { digest_.fill(0); }
  explicit ChunkId(const std::array<uint8_t, kSize>& digest)
      : digest_(digest) {}

  // Parses a raw 32-byte digest; INVALID_ARGUMENT for any other length.
  static absl::StatusOr<ChunkId> FromBytes(absl::string_view raw);
  // Parses 64 lowercase or uppercase hex digits.
  static absl::StatusOr<ChunkId> FromHex(absl::string_view hex);

  absl::string_view bytes() const {
    return {reinterpret_cast<const char*>(digest_.data()), kSize};
  }
  std::string ToHex() const;
  // First 12 hex digits, for messages and tables.
  std::string ShortHex() const { return ToHex().substr(0, 12); }

  friend bool operator==(const ChunkId& a, const ChunkId& b) {
    return a.digest_ == b.digest_;
  }
  friend bool operator!=(const ChunkId& a, const ChunkId& b) {
    return !(a == b);
  }
  friend bool operator<(const ChunkId& a, const ChunkId& b) {
    return a.digest_ < b.digest_;
  }
  template <typename H>
  friend H AbslHashValue(H h, const ChunkId& id) {
    // The digest is already uniformly distributed: its prefix is enough.
    uint64_t prefix;
    std::memcpy(&prefix, id.digest_.data(), sizeof(prefix));
    return H::combine(std::move(h), prefix);
  }

 private:
  std::array<uint8_t, kSize> digest_;
};

}  // namespace ckpt
