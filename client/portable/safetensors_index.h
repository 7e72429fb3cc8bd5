// model.safetensors.index.json, the index a sharded Hugging Face model
// directory carries (`ckpt import` reads it when present): its
// "weight_map" maps each tensor to the safetensors file of the directory
// that holds it. Its strict reader, pure (the directory is not looked at).
#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ckpt::client::portable {

inline constexpr char kSafetensorsIndexName[] = "model.safetensors.index.json";

// The index's weight_map, tensor -> file, parsed strictly
// (client/portable/strict_json.h). INVALID_ARGUMENT beginning with `path`
// when it is not JSON, not an object with an object "weight_map", or maps a
// tensor to something other than a plain file name (a string, not empty,
// not "." or "..", no '/', no NUL). Other members are ignored.
absl::StatusOr<std::map<std::string, std::string>> ParseSafetensorsIndex(
    absl::string_view text, absl::string_view path);

}  // namespace ckpt::client::portable
