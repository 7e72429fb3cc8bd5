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

// Calls fn(index) for every element of `box` (its global index, a vector
// of box.offsets.size() numbers), in row-major order; once, with an empty
// index, for a box of no dimensions; never for an empty box.
template <typename Fn>
void ForEachElement(const Box& box, Fn fn) {
  for (int64_t length : box.lengths) {
    if (length == 0) return;
  }
  std::vector<int64_t> index = box.offsets;
  for (;;) {
    fn(static_cast<const std::vector<int64_t>&>(index));
    size_t d = index.size();
    for (;;) {
      if (d == 0) return;
      --d;
      if (++index[d] < box.offsets[d] + box.lengths[d]) break;
      index[d] = box.offsets[d];
    }
  }
}

// The row-major number of element `index` (global) inside `box`.
inline uint64_t ElementNumber(const Box& box,
                              const std::vector<int64_t>& index) {
  uint64_t number = 0;
  for (size_t d = 0; d < index.size(); ++d) {
    number = number * static_cast<uint64_t>(box.lengths[d]) +
             static_cast<uint64_t>(index[d] - box.offsets[d]);
  }
  return number;
}

// The row-major bytes of `box` of a tensor of `shape` whose row-major
// bytes are `global`, copied element by element: the reference the region
// restore's tests compare with.
inline std::string SliceBox(absl::string_view global,
                            const std::vector<int64_t>& shape,
                            size_t element_bytes, const Box& box) {
  const Box whole{std::vector<int64_t>(shape.size(), 0), shape};
  std::string out;
  ForEachElement(box, [&](const std::vector<int64_t>& index) {
    out.append(global.data() + ElementNumber(whole, index) * element_bytes,
               element_bytes);
  });
  return out;
}

// Writes `bytes` (row-major over `box`) into their place in `global`, the
// bytes of a tensor of `shape`.
inline void PasteBox(std::string& global, const std::vector<int64_t>& shape,
                     size_t element_bytes, const Box& box,
                     absl::string_view bytes) {
  const Box whole{std::vector<int64_t>(shape.size(), 0), shape};
  ForEachElement(box, [&](const std::vector<int64_t>& index) {
    global.replace(ElementNumber(whole, index) * element_bytes, element_bytes,
                   bytes.data() + ElementNumber(box, index) * element_bytes,
                   element_bytes);
  });
}

}  // namespace ckpt::testing
