// T23: the JSON files `ckpt import` reads from anyone beside the
// safetensors files (fuzz_safetensors.cc fuzzes those): each input is
// parsed both as ckpt_checkpoint.json (client/portable/checkpoint_json.h)
// and as model.safetensors.index.json (safetensors_index.h). A refusal is
// INVALID_ARGUMENT naming the file. What is accepted keeps the readers'
// promises (a rank inside its world size, boxes of the tensor's shape
// inside its global shape, times a checkpoint can store, plain file names)
// and, written back as JSON, reads back the same.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <map>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/portable/checkpoint_json.h"
#include "client/portable/safetensors_index.h"
#include "common/manifest.h"
#include "nlohmann/json.hpp"
#include "tests/fuzz/fuzz_check.h"

namespace {

namespace portable = ckpt::client::portable;
using nlohmann::json;

constexpr char kJsonPath[] = "fuzz/ckpt_checkpoint.json";
constexpr char kIndexPath[] = "fuzz/model.safetensors.index.json";

bool Refused(const absl::Status& status, absl::string_view path) {
  FUZZ_CHECK(status.code() == absl::StatusCode::kInvalidArgument,
             "a refused file is INVALID_ARGUMENT");
  FUZZ_CHECK(absl::StartsWith(status.message(), path),
             "a refusal names the file");
  return true;
}

bool Storable(absl::Time time) {
  return time >= absl::FromUnixMicros(std::numeric_limits<int64_t>::min()) &&
         time <= absl::FromUnixMicros(std::numeric_limits<int64_t>::max());
}

// The writer's forms: RFC 3339 in UTC; NaN and infinities as strings.
std::string Text(absl::Time time) {
  return absl::FormatTime(absl::RFC3339_full, time, absl::UTCTimeZone());
}
json Metric(double value) {
  if (std::isfinite(value)) return value;
  return std::isnan(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity";
}

// `parsed` as the writer would put it (only what the reader reads).
std::string Rewrite(const portable::CheckpointJson& parsed) {
  json metrics = json::object();
  for (const auto& [name, value] : parsed.metadata.metrics) {
    metrics[name] = Metric(value);
  }
  json metadata = {{"metrics", metrics},
                   {"tags", parsed.metadata.tags},
                   {"writer_time", nullptr}};
  if (parsed.metadata.writer_time.has_value()) {
    metadata["writer_time"] = Text(*parsed.metadata.writer_time);
  }
  json tensors = json::object();
  for (const auto& [name, tensor] : parsed.tensors) {
    tensors[name] = {
        {"file", tensor.file},
        {"dtype", ckpt::DTypeName(tensor.dtype)},
        {"shape", tensor.shape},
        {"global_shape", tensor.global_shape},
        {"box",
         {{"offsets", tensor.box.offsets}, {"lengths", tensor.box.lengths}}}};
  }
  json root = {{"format", "ckpt-checkpoint"},
               {"version", portable::kCheckpointJsonVersion},
               {"job", parsed.job},
               {"step", parsed.step},
               {"commit_time", Text(parsed.commit_time)},
               {"metadata", metadata},
               {"export",
                {{"full", parsed.full},
                 {"rank", parsed.rank},
                 {"world_size", parsed.world_size}}},
               {"tensors", tensors},
               {"objects", nullptr}};
  if (!parsed.objects_json.empty()) {
    root["objects"] = json::parse(parsed.objects_json, nullptr, false);
  }
  return root.dump();
}

bool SameMetrics(const std::map<std::string, double>& a,
                 const std::map<std::string, double>& b) {
  if (a.size() != b.size()) return false;
  for (auto x = a.begin(), y = b.begin(); x != a.end(); ++x, ++y) {
    if (x->first != y->first) return false;
    const bool same =
        std::isnan(x->second) ? std::isnan(y->second) : x->second == y->second;
    if (!same) return false;
  }
  return true;
}

bool Same(const portable::CheckpointJson& a,
          const portable::CheckpointJson& b) {
  if (a.job != b.job || a.step != b.step || a.commit_time != b.commit_time ||
      a.full != b.full || a.rank != b.rank || a.world_size != b.world_size ||
      a.objects_json != b.objects_json || a.metadata.tags != b.metadata.tags ||
      a.metadata.writer_time != b.metadata.writer_time ||
      !SameMetrics(a.metadata.metrics, b.metadata.metrics) ||
      a.tensors.size() != b.tensors.size()) {
    return false;
  }
  for (auto x = a.tensors.begin(), y = b.tensors.begin(); x != a.tensors.end();
       ++x, ++y) {
    const portable::CheckpointJsonTensor& s = x->second;
    const portable::CheckpointJsonTensor& t = y->second;
    if (x->first != y->first || s.file != t.file || s.dtype != t.dtype ||
        s.shape != t.shape || s.global_shape != t.global_shape ||
        !(s.box == t.box)) {
      return false;
    }
  }
  return true;
}

void CheckpointJson(absl::string_view text) {
  absl::StatusOr<portable::CheckpointJson> parsed =
      portable::ParseCheckpointJson(text, kJsonPath);
  if (!parsed.ok() && Refused(parsed.status(), kJsonPath)) return;
  FUZZ_CHECK(parsed->step >= 0, "the step is not negative");
  if (parsed->full) {
    FUZZ_CHECK(parsed->rank == 0 && parsed->world_size == 1,
               "a full export is rank 0 of 1");
  } else {
    FUZZ_CHECK(parsed->world_size >= 1 && parsed->rank >= 0 &&
                   parsed->rank < parsed->world_size,
               "the rank is inside its world size");
  }
  FUZZ_CHECK(Storable(parsed->commit_time), "the commit time is storable");
  FUZZ_CHECK(!parsed->metadata.writer_time.has_value() ||
                 Storable(*parsed->metadata.writer_time),
             "the writer time is storable");
  for (const auto& [name, tensor] : parsed->tensors) {
    absl::StatusOr<ckpt::DType> dtype =
        ckpt::ParseDType(ckpt::DTypeName(tensor.dtype));
    FUZZ_CHECK(dtype.ok() && *dtype == tensor.dtype, "a dtype ckpt names");
    const size_t dims = tensor.global_shape.size();
    FUZZ_CHECK(tensor.shape.size() == dims &&
                   tensor.box.offsets.size() == dims &&
                   tensor.box.lengths == tensor.shape,
               "the box is of the tensor's shape and rank");
    for (size_t d = 0; d < dims; ++d) {
      FUZZ_CHECK(tensor.global_shape[d] >= 0 &&
                     tensor.global_shape[d] <= ckpt::kMaxDimension,
                 "dimensions in range");
      FUZZ_CHECK(
          tensor.box.offsets[d] >= 0 && tensor.shape[d] >= 0 &&
              tensor.box.offsets[d] + tensor.shape[d] <= tensor.global_shape[d],
          "the box lies inside the global shape");
    }
  }
  if (!parsed->objects_json.empty()) {
    const json objects = json::parse(parsed->objects_json, nullptr, false);
    FUZZ_CHECK(
        !objects.is_discarded() && objects.dump() == parsed->objects_json,
        "objects are JSON, as dumped");
  }
  const std::string rewritten = Rewrite(*parsed);
  absl::StatusOr<portable::CheckpointJson> again =
      portable::ParseCheckpointJson(rewritten, kJsonPath);
  if (!again.ok()) {
    std::fprintf(stderr, "%s\n", again.status().ToString().c_str());
  }
  FUZZ_CHECK(again.ok(), "what was read, written back, reads");
  FUZZ_CHECK(Same(*parsed, *again), "and reads back the same");
}

void Index(absl::string_view text) {
  absl::StatusOr<std::map<std::string, std::string>> files =
      portable::ParseSafetensorsIndex(text, kIndexPath);
  if (!files.ok() && Refused(files.status(), kIndexPath)) return;
  for (const auto& [tensor, file] : *files) {
    FUZZ_CHECK(!file.empty() && file != "." && file != ".." &&
                   file.find('/') == std::string::npos &&
                   file.find('\0') == std::string::npos,
               "files are plain names inside the directory");
  }
  const json rewritten = {{"weight_map", *files}};
  absl::StatusOr<std::map<std::string, std::string>> again =
      portable::ParseSafetensorsIndex(rewritten.dump(), kIndexPath);
  FUZZ_CHECK(again.ok() && *again == *files, "the weight map reads back");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  CheckpointJson(text);
  Index(text);
  return 0;
}
