#include "client/portable/safetensors_index.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "client/portable/strict_json.h"
#include "common/quote.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace ckpt::client::portable {

absl::StatusOr<std::map<std::string, std::string>> ParseSafetensorsIndex(
    absl::string_view text, absl::string_view path) {
  // An object of objects of names: deeper is not an index.
  CKPT_ASSIGN_OR_RETURN(nlohmann::json root, ParseStrictJson(text, path, 3));
  auto weight_map = root.is_object() ? root.find("weight_map") : root.end();
  if (weight_map == root.end() || !weight_map->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": field \"weight_map\" is missing or not an object"));
  }
  std::map<std::string, std::string> files;
  for (const auto& [tensor, value] : weight_map->items()) {
    const std::string where = absl::StrCat(
        path, ": field \"weight_map\": tensor ", QuoteTruncated(tensor));
    if (!value.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": the file is not a string"));
    }
    std::string name = value.get<std::string>();
    if (name.empty() || name == "." || name == ".." ||
        name.find('/') != std::string::npos ||
        name.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": file ", QuoteTruncated(name),
                       " is not a plain file name inside the directory"));
    }
    files.emplace(tensor, std::move(name));
  }
  return files;
}

}  // namespace ckpt::client::portable
