#include "client/portable/safetensors.h"

#include <algorithm>
#include <optional>
#include <set>
#include <tuple>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/portable/json_members.h"
#include "client/portable/strict_json.h"
#include "common/quote.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace ckpt::client::portable {
namespace {

using nlohmann::json;

constexpr char kMetadataKey[] = "__metadata__";
// A byte count the writer allows, as ValidateShardManifest does.
constexpr uint64_t kMaxTensorBytes = uint64_t{1} << 62;
// A header nests an object of objects of arrays.
constexpr int kMaxHeaderDepth = 3;

struct DTypeNames {
  const char* safetensors;
  DType dtype;
};
constexpr DTypeNames kDTypes[] = {
    {"BOOL", DType::kBool},   {"U8", DType::kUint8},
    {"I8", DType::kInt8},     {"I16", DType::kInt16},
    {"I32", DType::kInt32},   {"I64", DType::kInt64},
    {"F16", DType::kFloat16}, {"BF16", DType::kBFloat16},
    {"F32", DType::kFloat32}, {"F64", DType::kFloat64},
};

std::optional<DType> DTypeOf(absl::string_view name) {
  for (const DTypeNames& entry : kDTypes) {
    if (name == entry.safetensors) return entry.dtype;
  }
  return std::nullopt;
}

// What a ckpt dtype is written as: complex ones as their parts' dtype.
absl::string_view SafetensorsName(DType dtype) {
  if (dtype == DType::kComplex64) return "F32";
  if (dtype == DType::kComplex128) return "F64";
  for (const DTypeNames& entry : kDTypes) {
    if (entry.dtype == dtype) return entry.safetensors;
  }
  return "";
}

std::string KnownDTypes() {
  std::vector<std::string> names;
  for (const DTypeNames& entry : kDTypes) names.push_back(entry.safetensors);
  return absl::StrJoin(names, " ");
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// The bytes of `shape` elements of `element_bytes` each; nullopt past
// kMaxTensorBytes. REQUIRES: every dimension >= 0.
std::optional<uint64_t> ShapeBytes(const std::vector<int64_t>& shape,
                                   uint64_t element_bytes) {
  for (int64_t dim : shape) {
    if (dim == 0) return 0;
  }
  uint64_t bytes = element_bytes;
  for (int64_t dim : shape) {
    if (bytes > kMaxTensorBytes / static_cast<uint64_t>(dim)) {
      return std::nullopt;
    }
    bytes *= static_cast<uint64_t>(dim);
  }
  return bytes;
}

// OK when `name` can be a ckpt tensor's (the writer also checks UTF-8,
// which the reader's JSON parse already did).
absl::Status CheckName(absl::string_view name, absl::string_view where) {
  if (name.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": a tensor has an empty name"));
  }
  if (name.size() > kMaxTensorNameBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": tensor ", QuoteTruncated(name), ": its name is longer than ",
        "ckpt's ", kMaxTensorNameBytes, "-byte limit on tensor names"));
  }
  return absl::OkStatus();
}

// A JSON number that is a non-negative integer.
bool IsCount(const json& value) { return value.is_number_unsigned(); }

// One tensor entry of a header, before the complex list is applied.
absl::StatusOr<SafetensorsTensor> ParseEntry(const std::string& name,
                                             const json& value,
                                             uint64_t data_bytes,
                                             absl::string_view file) {
  CKPT_RETURN_IF_ERROR(CheckName(name, file));
  const std::string where =
      absl::StrCat(file, ": tensor ", QuoteTruncated(name));
  auto bad = [&](absl::string_view field, absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": field \"", field, "\" ", why));
  };
  if (!value.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": is not an object {\"dtype\", \"shape\", \"data_offsets\"}"));
  }
  for (const auto& [key, unused] : value.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": has an unknown field ", QuoteTruncated(key),
                       " (a tensor has only \"dtype\", \"shape\" and ",
                       "\"data_offsets\")"));
    }
  }
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    if (!value.contains(field)) return bad(field, "is missing");
  }
  SafetensorsTensor tensor;
  tensor.name = name;

  const json& dtype = value["dtype"];
  if (!dtype.is_string()) return bad("dtype", "is not a string");
  const std::string dtype_name = dtype.get<std::string>();
  const std::optional<DType> parsed = DTypeOf(dtype_name);
  if (!parsed.has_value()) {
    return bad("dtype", absl::StrCat("is ", QuoteTruncated(dtype_name),
                                     ", which ckpt has no dtype for (it holds ",
                                     KnownDTypes(),
                                     "); it is refused, not reinterpreted"));
  }
  tensor.dtype = *parsed;

  const json& shape = value["shape"];
  if (!shape.is_array()) return bad("shape", "is not an array");
  for (size_t d = 0; d < shape.size(); ++d) {
    if (!IsCount(shape[d])) {
      return bad("shape", absl::StrCat("has dimension ", d, " = ",
                                       BoundedText(shape[d].dump(), 64),
                                       ", not a non-negative integer"));
    }
    const uint64_t dim = shape[d].get<uint64_t>();
    if (dim > static_cast<uint64_t>(kMaxDimension)) {
      return bad("shape",
                 absl::StrCat("has dimension ", d, " = ", dim,
                              ", past ckpt's limit of ", kMaxDimension));
    }
    tensor.shape.push_back(static_cast<int64_t>(dim));
  }

  const json& offsets = value["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !IsCount(offsets[0]) ||
      !IsCount(offsets[1])) {
    return bad("data_offsets",
               absl::StrCat("is ", BoundedText(offsets.dump(), 64),
                            ", not two non-negative integers [begin, end]"));
  }
  tensor.begin = offsets[0].get<uint64_t>();
  tensor.end = offsets[1].get<uint64_t>();
  const std::string range =
      absl::StrCat("[", tensor.begin, ", ", tensor.end, ")");
  if (tensor.end < tensor.begin) {
    return bad("data_offsets", absl::StrCat(range, " end before they begin"));
  }
  if (tensor.end > data_bytes) {
    return bad("data_offsets",
               absl::StrCat(range, " reach past the data section's ",
                            data_bytes, " bytes"));
  }
  const std::optional<uint64_t> bytes =
      ShapeBytes(tensor.shape, DTypeSize(tensor.dtype));
  if (!bytes.has_value() || *bytes != tensor.end - tensor.begin) {
    return bad("data_offsets",
               absl::StrCat(range, " hold ", tensor.end - tensor.begin,
                            " bytes, but dtype ", dtype_name, " and shape ",
                            ShapeText(tensor.shape), " take ",
                            bytes.has_value() ? absl::StrCat(*bytes)
                                              : std::string("more than 2^62")));
  }
  return tensor;
}

// __metadata__: an object of strings.
absl::Status ParseMetadata(const json& value, absl::string_view file,
                           std::map<std::string, std::string>* metadata) {
  if (!value.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        file, ": field \"__metadata__\" is not an object of strings"));
  }
  for (const auto& [key, text] : value.items()) {
    if (!text.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": field \"__metadata__\": key ",
                       QuoteTruncated(key), " is not a string"));
    }
    (*metadata)[key] = text.get<std::string>();
  }
  return absl::OkStatus();
}

// Applies kComplexMetadataKey: each tensor listed becomes complex.
absl::Status ApplyComplexList(absl::string_view file,
                              SafetensorsHeader* header) {
  auto it = header->metadata.find(kComplexMetadataKey);
  if (it == header->metadata.end()) return absl::OkStatus();
  const std::string what = absl::StrCat(
      file, ": field \"__metadata__\": key \"", kComplexMetadataKey, "\"");
  CKPT_ASSIGN_OR_RETURN(json list, ParseStrictJson(it->second, what, 1));
  if (!list.is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is not a JSON array of tensor names"));
  }
  absl::flat_hash_map<std::string, SafetensorsTensor*> by_name;
  for (SafetensorsTensor& tensor : header->tensors) {
    by_name[tensor.name] = &tensor;
  }
  absl::flat_hash_set<std::string> listed;
  for (const json& item : list) {
    if (!item.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " holds ", BoundedText(item.dump(), 64),
                       ", not a tensor name"));
    }
    const std::string name = item.get<std::string>();
    auto found = by_name.find(name);
    if (found == by_name.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " lists ", QuoteTruncated(name), ", which is no tensor of it"));
    }
    if (!listed.insert(name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " lists ", QuoteTruncated(name), " twice"));
    }
    SafetensorsTensor& tensor = *found->second;
    if ((tensor.dtype != DType::kFloat32 && tensor.dtype != DType::kFloat64) ||
        tensor.shape.empty() || tensor.shape.back() != 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " lists ", QuoteTruncated(name), " of dtype ",
          SafetensorsName(tensor.dtype), " and shape ", ShapeText(tensor.shape),
          "; a complex tensor is F32 or F64 with a last dimension of 2"));
    }
    tensor.dtype = tensor.dtype == DType::kFloat32 ? DType::kComplex64
                                                   : DType::kComplex128;
    tensor.shape.pop_back();
  }
  return absl::OkStatus();
}

// The tensors, sorted by offsets, must tile [0, data_bytes).
absl::Status CheckCoverage(const std::vector<SafetensorsTensor>& tensors,
                           uint64_t data_bytes, absl::string_view file) {
  uint64_t covered = 0;
  const SafetensorsTensor* previous = nullptr;
  for (const SafetensorsTensor& tensor : tensors) {
    if (tensor.begin < covered) {
      return absl::InvalidArgumentError(absl::StrCat(
          file, ": tensor ", QuoteTruncated(tensor.name),
          ": field \"data_offsets\" [", tensor.begin, ", ", tensor.end,
          ") overlaps tensor ", QuoteTruncated(previous->name), "'s [",
          previous->begin, ", ", previous->end, ")"));
    }
    if (tensor.begin > covered) {
      return absl::InvalidArgumentError(absl::StrCat(
          file, ": bytes [", covered, ", ", tensor.begin,
          ") of the data section belong to no tensor (before tensor ",
          QuoteTruncated(tensor.name),
          "); as in the safetensors reader, tensors must cover the data "
          "section without gaps"));
    }
    covered = tensor.end;
    previous = &tensor;
  }
  if (covered != data_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        file, ": bytes [", covered, ", ", data_bytes,
        ") at the end of the data section belong to no tensor; as in the "
        "safetensors reader, tensors must cover the data section exactly"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<uint64_t> ReadSafetensorsHeaderLength(absl::string_view prefix,
                                                     uint64_t file_size,
                                                     absl::string_view file) {
  if (file_size < 8 || prefix.size() < 8) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": ", file_size,
                     " bytes, shorter than the 8-byte header length that "
                     "begins a safetensors file"));
  }
  uint64_t length = 0;
  for (int i = 7; i >= 0; --i) {
    length = (length << 8) | static_cast<unsigned char>(prefix[i]);
  }
  if (length > file_size - 8) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": header length ", length, " is longer than the ",
                     file_size - 8, " bytes that follow it in the file"));
  }
  if (length > kMaxSafetensorsHeaderBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": header length ", length, " is past the limit of ",
                     kMaxSafetensorsHeaderBytes, " bytes"));
  }
  return length;
}

absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(
    absl::string_view header, uint64_t data_bytes, absl::string_view file) {
  const std::string what = absl::StrCat(file, ": header");
  if (header.empty() || header.front() != '{') {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": does not begin with '{' (a JSON object)"));
  }
  CKPT_ASSIGN_OR_RETURN(json root,
                        ParseStrictJson(header, what, kMaxHeaderDepth));
  if (!root.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": is not a JSON object"));
  }
  SafetensorsHeader parsed;
  parsed.data_offset = 8 + header.size();
  parsed.data_bytes = data_bytes;
  for (const auto& [key, value] : root.items()) {
    if (key == kMetadataKey) {
      CKPT_RETURN_IF_ERROR(ParseMetadata(value, file, &parsed.metadata));
      continue;
    }
    CKPT_ASSIGN_OR_RETURN(SafetensorsTensor tensor,
                          ParseEntry(key, value, data_bytes, file));
    parsed.tensors.push_back(std::move(tensor));
  }
  std::sort(parsed.tensors.begin(), parsed.tensors.end(),
            [](const SafetensorsTensor& a, const SafetensorsTensor& b) {
              return std::tie(a.begin, a.end, a.name) <
                     std::tie(b.begin, b.end, b.name);
            });
  CKPT_RETURN_IF_ERROR(CheckCoverage(parsed.tensors, data_bytes, file));
  CKPT_RETURN_IF_ERROR(ApplyComplexList(file, &parsed));
  return parsed;
}

absl::StatusOr<SafetensorsHeader> ParseSafetensors(absl::string_view contents,
                                                   absl::string_view file) {
  CKPT_ASSIGN_OR_RETURN(
      const uint64_t length,
      ReadSafetensorsHeaderLength(contents, contents.size(), file));
  return ParseSafetensorsHeader(contents.substr(8, length),
                                contents.size() - 8 - length, file);
}

absl::StatusOr<SafetensorsLayout> LayOutSafetensors(
    absl::Span<const SafetensorsSpec> tensors,
    const std::map<std::string, std::string>& metadata) {
  if (metadata.contains(kComplexMetadataKey)) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors metadata key \"", kComplexMetadataKey,
                     "\" is ckpt's own; it lists the complex tensors"));
  }
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  for (const auto& [key, value] : metadata) {
    if (FindInvalidUtf8(key).has_value() ||
        FindInvalidUtf8(value).has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors metadata key ", QuoteTruncated(key),
                       ": not UTF-8 text"));
    }
    meta[key] = value;
  }
  std::vector<std::string> complex;
  for (const SafetensorsSpec& spec : tensors) {
    if (spec.dtype == DType::kComplex64 || spec.dtype == DType::kComplex128) {
      complex.push_back(spec.name);
    }
  }
  if (!complex.empty()) {
    meta[kComplexMetadataKey] = nlohmann::ordered_json(complex).dump();
  }
  if (!meta.empty()) header[kMetadataKey] = std::move(meta);

  SafetensorsLayout layout;
  std::set<absl::string_view> names;
  uint64_t offset = 0;
  for (const SafetensorsSpec& spec : tensors) {
    const std::string where =
        absl::StrCat("tensor ", QuoteTruncated(spec.name));
    CKPT_RETURN_IF_ERROR(CheckName(spec.name, "safetensors"));
    if (FindInvalidUtf8(spec.name).has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": its name is not UTF-8, which safetensors requires"));
    }
    if (spec.name == kMetadataKey || !names.insert(spec.name).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, spec.name == kMetadataKey
                     ? ": the name is safetensors' metadata key"
                     : ": two tensors of one file have this name"));
    }
    const bool is_complex =
        spec.dtype == DType::kComplex64 || spec.dtype == DType::kComplex128;
    std::vector<int64_t> shape = spec.shape;
    if (is_complex) shape.push_back(2);  // real and imaginary parts
    for (int64_t dim : shape) {
      if (dim < 0 || dim > kMaxDimension) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": shape ", ShapeText(spec.shape), " has a dimension ",
            "outside [0, ", kMaxDimension, "]"));
      }
    }
    const uint64_t element_bytes = DTypeSize(spec.dtype) / (is_complex ? 2 : 1);
    const std::optional<uint64_t> bytes = ShapeBytes(shape, element_bytes);
    if (!bytes.has_value() || SafetensorsName(spec.dtype).empty() ||
        offset > kMaxTensorBytes - *bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": ", DTypeName(spec.dtype), " of shape ",
          ShapeText(spec.shape),
          " cannot be written to safetensors (past 2^62 bytes in a file)"));
    }
    // Distinct (checked above).
    AppendMember(header, spec.name,
                 {{"dtype", SafetensorsName(spec.dtype)},
                  {"shape", shape},
                  {"data_offsets", {offset, offset + *bytes}}});
    layout.offsets.push_back(offset);
    offset += *bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  layout.prefix.reserve(8 + text.size());
  uint64_t length = text.size();
  for (int i = 0; i < 8; ++i) {
    layout.prefix.push_back(static_cast<char>(length & 0xff));
    length >>= 8;
  }
  layout.prefix += text;
  for (uint64_t& tensor_offset : layout.offsets) {
    tensor_offset += layout.prefix.size();
  }
  layout.file_bytes = layout.prefix.size() + offset;
  return layout;
}

}  // namespace ckpt::client::portable
