// Hand-made safetensors files for tests of the reader and of `ckpt
// import`: bytes built without ckpt's writer, so that the reader is tested
// against the format rather than against itself. Header-only.
#pragma once

#include <cstdint>
#include <string>

namespace ckpt::testing {

// The 8-byte little-endian length of `header`, then `header` and `data`.
inline std::string SafetensorsBytes(const std::string& header,
                                    const std::string& data = "") {
  std::string file;
  uint64_t length = header.size();
  for (int i = 0; i < 8; ++i) {
    file.push_back(static_cast<char>(length & 0xff));
    length >>= 8;
  }
  return file + header + data;
}

}  // namespace ckpt::testing
