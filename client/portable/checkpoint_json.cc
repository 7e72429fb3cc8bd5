#include "client/portable/checkpoint_json.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/portable/json_members.h"
#include "client/portable/strict_json.h"
#include "common/quote.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace ckpt::client::portable {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

constexpr char kFormat[] = "ckpt-checkpoint";
// Deep enough for the objects of the deepest state the Python package
// saves: tree.py's MAX_DEPTH (128) levels, each up to three JSON levels in
// tree_json.py ({"$dict": [[key, value]]}), under root.objects.ranks.RANK.
// Still bounded: the parse is iterative, but dump() recurses.
constexpr int kMaxDepth = 3 * 129 + 8;

std::string Rfc3339(absl::Time time) {
  return absl::FormatTime(absl::RFC3339_full, time, absl::UTCTimeZone());
}

ordered_json MetricValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  return value;
}

ordered_json BoxJson(const Box& box) {
  return {{"offsets", box.offsets}, {"lengths", box.lengths}};
}

ordered_json SavedJson(int32_t rank, const TensorEntry& entry) {
  ordered_json saved = {{"rank", rank},
                        {"offsets", entry.box.offsets},
                        {"lengths", entry.box.lengths},
                        {"delta_base_step", nullptr},
                        {"quantization", nullptr}};
  if (entry.delta_base_step.has_value()) {
    saved["delta_base_step"] = *entry.delta_base_step;
  }
  if (entry.quantization.has_value()) {
    saved["quantization"] = {
        {"bits", entry.quantization->bits},
        {"max_abs_error", entry.quantization->max_abs_error},
        {"relative_l2_error", entry.quantization->relative_l2_error}};
  }
  return saved;
}

// Reading: each helper names `where` (the file and the field) in its error.
absl::Status Bad(absl::string_view where, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(where, " ", why));
}

absl::StatusOr<const json*> Field(const json& object, const char* key,
                                  absl::string_view where) {
  if (!object.is_object()) return Bad(where, "is not an object");
  auto it = object.find(key);
  if (it == object.end()) {
    return Bad(absl::StrCat(where, " field \"", key, "\""), "is missing");
  }
  return &*it;
}

absl::StatusOr<int64_t> Integer(const json& value, absl::string_view where,
                                int64_t min, int64_t max) {
  if (!value.is_number_integer()) return Bad(where, "is not an integer");
  const bool fits = value.is_number_unsigned()
                        ? value.get<uint64_t>() <= static_cast<uint64_t>(max)
                        : value.get<int64_t>() <= max;
  if (!fits || value.get<int64_t>() < min) {
    return Bad(where, absl::StrCat("is outside [", min, ", ", max, "]"));
  }
  return value.get<int64_t>();
}

absl::StatusOr<std::vector<int64_t>> Dims(const json& value,
                                          absl::string_view where) {
  if (!value.is_array()) return Bad(where, "is not an array");
  std::vector<int64_t> dims;
  for (const json& item : value) {
    CKPT_ASSIGN_OR_RETURN(int64_t dim, Integer(item, where, 0, kMaxDimension));
    dims.push_back(dim);
  }
  return dims;
}

absl::StatusOr<std::string> String(const json& value, absl::string_view where) {
  if (!value.is_string()) return Bad(where, "is not a string");
  return value.get<std::string>();
}

absl::StatusOr<absl::Time> Time(const json& value, absl::string_view where) {
  CKPT_ASSIGN_OR_RETURN(std::string text, String(value, where));
  absl::Time time;
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, text, &time, &error)) {
    return Bad(where,
               absl::StrCat("is not an RFC 3339 time: ", QuoteTruncated(text)));
  }
  // A checkpoint stores its times as microseconds since 1970 in 64 bits
  // (about 292,000 years either way), which would silently clamp a time
  // past them; absl::ParseTime also takes "infinite-future" and
  // "infinite-past" in any format, which would keep a checkpoint from
  // every time-based retention rule.
  if (time < absl::FromUnixMicros(std::numeric_limits<int64_t>::min()) ||
      time > absl::FromUnixMicros(std::numeric_limits<int64_t>::max())) {
    return Bad(where, absl::StrCat("is a time past what a checkpoint stores: ",
                                   QuoteTruncated(text)));
  }
  return time;
}

absl::Status ParseMetadata(const json& value, absl::string_view where,
                           CheckpointMetadata* metadata) {
  CKPT_ASSIGN_OR_RETURN(const json* metrics, Field(value, "metrics", where));
  if (!metrics->is_object()) return Bad(where, "\"metrics\" is not an object");
  for (const auto& [name, number] : metrics->items()) {
    const std::string metric =
        absl::StrCat(where, " metric ", QuoteTruncated(name));
    double parsed = 0;
    if (number.is_number()) {
      parsed = number.get<double>();
    } else if (number == "NaN") {
      parsed = std::numeric_limits<double>::quiet_NaN();
    } else if (number == "Infinity" || number == "-Infinity") {
      parsed = number == "Infinity" ? std::numeric_limits<double>::infinity()
                                    : -std::numeric_limits<double>::infinity();
    } else {
      return Bad(metric,
                 "is not a number (nor \"NaN\", \"Infinity\", "
                 "\"-Infinity\")");
    }
    metadata->metrics[name] = parsed;
  }
  CKPT_ASSIGN_OR_RETURN(const json* tags, Field(value, "tags", where));
  if (!tags->is_object()) return Bad(where, "\"tags\" is not an object");
  for (const auto& [key, text] : tags->items()) {
    CKPT_ASSIGN_OR_RETURN(
        metadata->tags[key],
        String(text, absl::StrCat(where, " tag ", QuoteTruncated(key))));
  }
  CKPT_ASSIGN_OR_RETURN(const json* writer_time,
                        Field(value, "writer_time", where));
  if (!writer_time->is_null()) {
    CKPT_ASSIGN_OR_RETURN(
        metadata->writer_time,
        Time(*writer_time, absl::StrCat(where, " field \"writer_time\"")));
  }
  return absl::OkStatus();
}

absl::StatusOr<CheckpointJsonTensor> ParseTensor(const json& value,
                                                 absl::string_view where) {
  CheckpointJsonTensor tensor;
  auto field = [&](const char* key) { return Field(value, key, where); };
  auto named = [&](const char* key) {
    return absl::StrCat(where, " field \"", key, "\"");
  };
  CKPT_ASSIGN_OR_RETURN(const json* file, field("file"));
  CKPT_ASSIGN_OR_RETURN(tensor.file, String(*file, named("file")));
  CKPT_ASSIGN_OR_RETURN(const json* dtype, field("dtype"));
  CKPT_ASSIGN_OR_RETURN(std::string dtype_name, String(*dtype, named("dtype")));
  absl::StatusOr<DType> parsed = ParseDType(dtype_name);
  if (!parsed.ok()) {
    return Bad(named("dtype"), absl::StrCat("is ", QuoteTruncated(dtype_name),
                                            ", which is no ckpt dtype"));
  }
  tensor.dtype = *parsed;
  CKPT_ASSIGN_OR_RETURN(const json* shape, field("shape"));
  CKPT_ASSIGN_OR_RETURN(tensor.shape, Dims(*shape, named("shape")));
  CKPT_ASSIGN_OR_RETURN(const json* global, field("global_shape"));
  CKPT_ASSIGN_OR_RETURN(tensor.global_shape,
                        Dims(*global, named("global_shape")));
  CKPT_ASSIGN_OR_RETURN(const json* box, field("box"));
  CKPT_ASSIGN_OR_RETURN(const json* offsets,
                        Field(*box, "offsets", named("box")));
  CKPT_ASSIGN_OR_RETURN(tensor.box.offsets, Dims(*offsets, named("box")));
  CKPT_ASSIGN_OR_RETURN(const json* lengths,
                        Field(*box, "lengths", named("box")));
  CKPT_ASSIGN_OR_RETURN(tensor.box.lengths, Dims(*lengths, named("box")));
  const size_t dims = tensor.global_shape.size();
  bool inside = tensor.box.offsets.size() == dims &&
                tensor.box.lengths == tensor.shape &&
                tensor.shape.size() == dims;
  for (size_t d = 0; inside && d < dims; ++d) {
    inside =
        tensor.box.offsets[d] <= tensor.global_shape[d] &&
        tensor.box.lengths[d] <= tensor.global_shape[d] - tensor.box.offsets[d];
  }
  if (!inside) {
    return Bad(named("box"),
               "is not a box of the tensor's shape inside its global shape");
  }
  return tensor;
}

}  // namespace

std::string WriteCheckpointJson(const Checkpoint& checkpoint,
                                const ExportOptions& options,
                                absl::Span<const ExportTensor> tensors,
                                absl::Span<const ExportFile> files) {
  const CheckpointRecord& record = checkpoint.record;
  ordered_json metrics = ordered_json::object();
  for (const auto& [name, value] : record.metadata.metrics) {
    metrics[name] = MetricValue(value);
  }
  ordered_json tags = ordered_json::object();
  for (const auto& [key, value] : record.metadata.tags) tags[key] = value;
  ordered_json metadata = {
      {"metrics", metrics}, {"tags", tags}, {"writer_time", nullptr}};
  if (record.metadata.writer_time.has_value()) {
    metadata["writer_time"] = Rfc3339(*record.metadata.writer_time);
  }
  ordered_json exported = {{"full", options.full},
                           {"rank", nullptr},
                           {"world_size", nullptr},
                           {"format", "safetensors"}};
  if (!options.full) {
    exported["rank"] = options.rank;
    exported["world_size"] = options.world_size;
  }
  ordered_json file_names = ordered_json::array();
  std::vector<const std::string*> file_of(tensors.size());
  for (const ExportFile& file : files) {
    file_names.push_back(file.name);
    for (size_t index : file.tensors) file_of[index] = &file.name;
  }
  ordered_json described = ordered_json::object();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const ExportTensor& tensor = tensors[i];
    ordered_json saved = ordered_json::array();
    bool dequantized = false;
    for (const auto& [rank, entry] : tensor.plan->saved) {
      if (std::find(tensor.ranks.begin(), tensor.ranks.end(), rank) ==
          tensor.ranks.end()) {
        continue;
      }
      saved.push_back(SavedJson(rank, *entry));
      dequantized |= entry->IsQuantized();
    }
    // Distinct: PlanExport checked.
    AppendMember(described, tensor.name,
                 {{"file", *file_of[i]},
                  {"dtype", DTypeName(tensor.source.dtype)},
                  {"shape", tensor.shape()},
                  {"tensor", tensor.source.name},
                  {"layout", tensor.plan->sharded ? "sharded" : "whole"},
                  {"ranks", tensor.ranks},
                  {"global_shape", tensor.source.global_shape},
                  {"box", BoxJson(tensor.source.region)},
                  {"dequantized", dequantized},
                  {"saved", saved}});
  }
  ordered_json root = {{"format", kFormat},
                       {"version", kCheckpointJsonVersion},
                       {"job", record.job},
                       {"step", record.step},
                       {"world_size", record.world_size},
                       {"create_time", Rfc3339(record.create_time)},
                       {"commit_time", Rfc3339(record.commit_time)},
                       {"metadata", metadata},
                       {"delta_base_steps", record.base_steps},
                       {"export", exported},
                       {"files", file_names},
                       {"tensors", described},
                       {"objects", nullptr}};
  if (!options.objects_json.empty()) {
    root["objects"] = ordered_json::parse(options.objects_json);
  }
  return root.dump(2) + "\n";
}

absl::StatusOr<CheckpointJson> ParseCheckpointJson(absl::string_view text,
                                                   absl::string_view file) {
  CKPT_ASSIGN_OR_RETURN(json root, ParseStrictJson(text, file, kMaxDepth));
  const std::string where(file);
  auto field = [&](const char* key) { return Field(root, key, where); };
  auto named = [&](const char* key) {
    return absl::StrCat(file, " field \"", key, "\"");
  };
  CKPT_ASSIGN_OR_RETURN(const json* format, field("format"));
  if (*format != kFormat) {
    return Bad(named("format"), absl::StrCat("is not \"", kFormat, "\""));
  }
  CKPT_ASSIGN_OR_RETURN(const json* version, field("version"));
  CKPT_RETURN_IF_ERROR(
      Integer(*version, named("version"), 1, kCheckpointJsonVersion).status());

  CheckpointJson parsed;
  CKPT_ASSIGN_OR_RETURN(const json* job, field("job"));
  CKPT_ASSIGN_OR_RETURN(parsed.job, String(*job, named("job")));
  CKPT_ASSIGN_OR_RETURN(const json* step, field("step"));
  CKPT_ASSIGN_OR_RETURN(
      parsed.step,
      Integer(*step, named("step"), 0, std::numeric_limits<int64_t>::max()));
  CKPT_ASSIGN_OR_RETURN(const json* commit_time, field("commit_time"));
  CKPT_ASSIGN_OR_RETURN(parsed.commit_time,
                        Time(*commit_time, named("commit_time")));
  CKPT_ASSIGN_OR_RETURN(const json* metadata, field("metadata"));
  CKPT_RETURN_IF_ERROR(
      ParseMetadata(*metadata, named("metadata"), &parsed.metadata));

  CKPT_ASSIGN_OR_RETURN(const json* exported, field("export"));
  CKPT_ASSIGN_OR_RETURN(const json* full,
                        Field(*exported, "full", named("export")));
  if (!full->is_boolean()) {
    return Bad(named("export"), "\"full\" is not true or false");
  }
  parsed.full = full->get<bool>();
  if (!parsed.full) {
    CKPT_ASSIGN_OR_RETURN(const json* world,
                          Field(*exported, "world_size", named("export")));
    CKPT_ASSIGN_OR_RETURN(
        const int64_t world_size,
        Integer(*world, absl::StrCat(named("export"), " \"world_size\""), 1,
                std::numeric_limits<int32_t>::max()));
    CKPT_ASSIGN_OR_RETURN(const json* rank,
                          Field(*exported, "rank", named("export")));
    CKPT_ASSIGN_OR_RETURN(
        const int64_t rank_value,
        Integer(*rank, absl::StrCat(named("export"), " \"rank\""), 0,
                world_size - 1));
    parsed.world_size = static_cast<int32_t>(world_size);
    parsed.rank = static_cast<int32_t>(rank_value);
  }

  CKPT_ASSIGN_OR_RETURN(const json* tensors, field("tensors"));
  if (!tensors->is_object()) return Bad(named("tensors"), "is not an object");
  for (const auto& [name, value] : tensors->items()) {
    CKPT_ASSIGN_OR_RETURN(
        parsed.tensors[name],
        ParseTensor(value,
                    absl::StrCat(file, " tensor ", QuoteTruncated(name), ":")));
  }
  auto objects = root.find("objects");
  if (objects != root.end() && !objects->is_null()) {
    parsed.objects_json = objects->dump();
  }
  return parsed;
}

}  // namespace ckpt::client::portable
