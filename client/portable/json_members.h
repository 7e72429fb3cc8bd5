// Appending a member to an nlohmann::ordered_json object without the key
// lookup that operator[] and emplace make: ordered_json keeps its members
// in a vector and searches it on every insert, so an object of n members
// built with operator[] costs O(n^2) (an export of 100,000 tensors spent
// minutes on its header). For objects whose keys are known to be distinct.
#pragma once

#include <string>
#include <utility>

#include "nlohmann/json.hpp"

namespace ckpt::client::portable {

// Appends `key`: `value` to `object` (made an object if null) in O(1).
// REQUIRES: `object` has no member `key`.
inline void AppendMember(nlohmann::ordered_json& object, std::string key,
                         nlohmann::ordered_json value) {
  if (object.is_null()) object = nlohmann::ordered_json::object();
  // ordered_map is a std::vector of pairs; its own inserts search it.
  auto& members = object.get_ref<nlohmann::ordered_json::object_t&>();
  static_cast<nlohmann::ordered_json::object_t::Container&>(members)
      .emplace_back(std::move(key), std::move(value));
}

}  // namespace ckpt::client::portable
