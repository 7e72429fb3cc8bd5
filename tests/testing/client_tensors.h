// TensorData builders for tests of the client library (against a real
// server or a FakeTransport). Header-only.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "client/types.h"
#include "common/manifest.h"

namespace ckpt::testing {

// A whole tensor (its box the full shape) viewing `bytes`, which the caller
// keeps alive and unchanged while it is saved.
inline client::TensorData WholeTensor(const std::string& name, DType dtype,
                                      std::vector<int64_t> shape,
                                      absl::string_view bytes) {
  client::TensorData tensor;
  tensor.name = name;
  tensor.dtype = dtype;
  tensor.box = Box{std::vector<int64_t>(shape.size(), 0), shape};
  tensor.global_shape = std::move(shape);
  tensor.bytes = bytes;
  return tensor;
}

// A whole 1-D uint8 tensor of `bytes`.
inline client::TensorData Uint8Tensor(const std::string& name,
                                      absl::string_view bytes) {
  return WholeTensor(name, DType::kUint8, {static_cast<int64_t>(bytes.size())},
                     bytes);
}

// `size` bytes of a fixed pseudo-random pattern per `seed`: distinct seeds
// (and distinct chunks of one pattern) differ.
inline std::string PatternBytes(size_t size, uint32_t seed) {
  std::string bytes(size, '\0');
  uint32_t x = seed * 2654435761u + 12345u;
  for (char& c : bytes) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return bytes;
}

}  // namespace ckpt::testing
