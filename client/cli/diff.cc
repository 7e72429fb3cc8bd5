// `ckpt diff JOB STEP_A STEP_B`: what checkpoint B changed relative to
// checkpoint A, as `restic diff` shows what a snapshot changed. Fetches the
// two manifests (no chunk is read) and prints common/checkpoint_diff.h's
// comparison: a table of the tensors that differ (all with --all), the
// metrics, tags and writer time that differ, and the bytes B added over A.
// Names and tags are the writers' text: the table escapes control bytes.
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/cli/args.h"
#include "client/cli/commands.h"
#include "client/cli/format.h"
#include "client/cli/json_output.h"
#include "common/checkpoint_diff.h"
#include "common/quote.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace ckpt::cli {
namespace {

using nlohmann::json;

template <typename T>
json OrNull(const std::optional<T>& value) {
  return value.has_value() ? json(*value) : json(nullptr);
}

json SideJson(const std::optional<TensorSide>& side) {
  if (!side.has_value()) return nullptr;
  return {
      {"dtype", std::string(DTypeName(side->dtype))},
      {"global_shape", side->global_shape},
      {"box", {{"offsets", side->box.offsets}, {"lengths", side->box.lengths}}},
      {"kind", side->kind},
      {"base_step", OrNull(side->delta_base_step)},
      {"bytes", side->bytes},
      {"stored_bytes", side->stored_bytes},
      {"chunk_count", side->chunks},
      {"rows", side->total_rows},
      {"delta_rows", OrNull(side->delta_rows)}};
}

json TensorJson(const TensorDiff& tensor) {
  return {{"name", tensor.name},
          {"rank", tensor.rank},
          {"change", std::string(TensorChangeName(tensor.change))},
          {"a", SideJson(tensor.a)},
          {"b", SideJson(tensor.b)},
          {"dtype_changed", tensor.dtype_changed},
          {"shape_changed", tensor.shape_changed},
          {"box_changed", tensor.box_changed},
          {"kind_changed", tensor.kind_changed},
          {"chunks_differing", tensor.chunks_differing},
          {"rows_changed", OrNull(tensor.rows_changed)},
          {"new_bytes", tensor.new_bytes}};
}

template <typename T>
json ChangesJson(const std::map<std::string, ValueChange<T>>& changes) {
  json out = json::object();
  for (const auto& [name, change] : changes) {
    out[name] = {{"a", OrNull(change.a)}, {"b", OrNull(change.b)}};
  }
  return out;
}

json DiffJson(const CheckpointDiff& diff, bool all) {
  json tensors = json::array();
  for (const TensorDiff& tensor : diff.tensors) {
    if (all || tensor.change != TensorChange::kSame) {
      tensors.push_back(TensorJson(tensor));
    }
  }
  json writer_time = nullptr;
  if (diff.writer_time.has_value()) {
    auto text = [](const std::optional<absl::Time>& time) {
      return time.has_value() ? json(FormatTimestamp(*time)) : json(nullptr);
    };
    writer_time = {{"a", text(diff.writer_time->a)},
                   {"b", text(diff.writer_time->b)}};
  }
  return {{"job", diff.b.job},
          {"a", RecordJson(diff.a)},
          {"b", RecordJson(diff.b)},
          {"tensors", tensors},
          {"metrics", ChangesJson(diff.metrics)},
          {"tags", ChangesJson(diff.tags)},
          {"writer_time", writer_time},
          {"chunks_added", diff.chunks_added},
          {"bytes_added", diff.bytes_added},
          {"summary",
           {{"same", diff.Count(TensorChange::kSame)},
            {"changed", diff.Count(TensorChange::kChanged)},
            {"added", diff.Count(TensorChange::kAdded)},
            {"removed", diff.Count(TensorChange::kRemoved)}}}};
}

// "x", or "x -> y" when the sides differ; one side when only one exists.
std::string Pair(const std::optional<TensorSide>& a,
                 const std::optional<TensorSide>& b,
                 std::string (*text)(const TensorSide&)) {
  if (!a.has_value()) return text(*b);
  if (!b.has_value()) return text(*a);
  const std::string x = text(*a), y = text(*b);
  return x == y ? x : absl::StrCat(x, " -> ", y);
}

std::string DTypeText(const TensorSide& side) {
  return std::string(DTypeName(side.dtype));
}
std::string ShapeText(const TensorSide& side) {
  return FormatShape(side.global_shape);
}
std::string BoxText(const TensorSide& side) { return FormatBox(side.box); }
std::string KindText(const TensorSide& side) {
  return side.delta_base_step.has_value()
             ? absl::StrCat(side.kind, " on ", *side.delta_base_step)
             : side.kind;
}

// CHUNKS: differing of B's (changed), B's (added), A's (removed).
std::string ChunksCell(const TensorDiff& tensor) {
  switch (tensor.change) {
    case TensorChange::kAdded:
      return absl::StrCat(tensor.b->chunks);
    case TensorChange::kRemoved:
      return absl::StrCat(tensor.a->chunks);
    case TensorChange::kSame:
    case TensorChange::kChanged:
      return absl::StrCat(tensor.chunks_differing, "/", tensor.b->chunks);
  }
  return "-";
}

// ROWS: the rows B's delta replaces over A of the tensor's rows; for a
// delta against another step, its rows and that step.
std::string RowsCell(const TensorDiff& tensor) {
  if (tensor.rows_changed.has_value()) {
    return absl::StrCat(*tensor.rows_changed, "/", tensor.b->total_rows);
  }
  if (tensor.b.has_value() && tensor.b->delta_rows.has_value()) {
    return absl::StrCat(*tensor.b->delta_rows, "/", tensor.b->total_rows,
                        " vs ", *tensor.b->delta_base_step);
  }
  return "-";
}

std::string MetricText(const std::optional<double>& value) {
  return value.has_value() ? absl::StrFormat("%g", *value) : "-";
}
std::string TagText(const std::optional<std::string>& value) {
  return value.has_value() ? EscapeControlBytes(*value) : "-";
}
std::string TimeText(const std::optional<absl::Time>& time) {
  return time.has_value() ? FormatTimestamp(*time) : "-";
}

void PrintDiff(const CheckpointDiff& diff, bool all) {
  std::cout << "job " << diff.b.job << ": step " << diff.a.step << " ("
            << FormatTimestamp(DisplayTime(diff.a)) << ") -> step "
            << diff.b.step << " (" << FormatTimestamp(DisplayTime(diff.b))
            << ")\n";
  std::vector<std::vector<std::string>> rows;
  for (const TensorDiff& tensor : diff.tensors) {
    if (!all && tensor.change == TensorChange::kSame) continue;
    rows.push_back({std::string(TensorChangeName(tensor.change)),
                    EscapeControlBytes(tensor.name), absl::StrCat(tensor.rank),
                    Pair(tensor.a, tensor.b, DTypeText),
                    Pair(tensor.a, tensor.b, ShapeText),
                    Pair(tensor.a, tensor.b, BoxText),
                    Pair(tensor.a, tensor.b, KindText), ChunksCell(tensor),
                    RowsCell(tensor),
                    tensor.b.has_value() ? HumanBytes(tensor.new_bytes)
                                         : std::string("-")});
  }
  if (!rows.empty()) {
    std::cout << "\n";
    PrintTable(std::cout,
               {"CHANGE", "TENSOR", "RANK", "DTYPE", "SHAPE", "BOX", "KIND",
                "CHUNKS", "ROWS", "NEW"},
               rows);
  }
  if (!diff.metrics.empty()) {
    std::vector<std::vector<std::string>> metric_rows;
    for (const auto& [name, change] : diff.metrics) {
      metric_rows.push_back({EscapeControlBytes(name), MetricText(change.a),
                             MetricText(change.b)});
    }
    std::cout << "\n";
    PrintTable(std::cout, {"METRIC", "A", "B"}, metric_rows);
  }
  if (!diff.tags.empty()) {
    std::vector<std::vector<std::string>> tag_rows;
    for (const auto& [name, change] : diff.tags) {
      tag_rows.push_back(
          {EscapeControlBytes(name), TagText(change.a), TagText(change.b)});
    }
    std::cout << "\n";
    PrintTable(std::cout, {"TAG", "A", "B"}, tag_rows);
  }
  std::cout << "\n";
  if (diff.writer_time.has_value()) {
    std::cout << "writer time: " << TimeText(diff.writer_time->a) << " -> "
              << TimeText(diff.writer_time->b) << "\n";
  }
  std::cout << "added by step " << diff.b.step << ": "
            << HumanBytes(diff.bytes_added) << " in " << diff.chunks_added
            << (diff.chunks_added == 1 ? " chunk" : " chunks") << " that step "
            << diff.a.step << " does not reference\n"
            << diff.Count(TensorChange::kChanged) << " changed, "
            << diff.Count(TensorChange::kAdded) << " added, "
            << diff.Count(TensorChange::kRemoved) << " removed, "
            << diff.Count(TensorChange::kSame) << " same\n";
}

}  // namespace

absl::Status RunDiff(client::Client& client, const DiffArgs& args,
                     const OutputOptions& out) {
  CKPT_ASSIGN_OR_RETURN(std::optional<int64_t> step_a,
                        ParseStepOrLatest(args.step_a));
  CKPT_ASSIGN_OR_RETURN(std::optional<int64_t> step_b,
                        ParseStepOrLatest(args.step_b));
  CKPT_ASSIGN_OR_RETURN(Checkpoint a, client.GetManifest(args.job, step_a));
  CKPT_ASSIGN_OR_RETURN(Checkpoint b, client.GetManifest(args.job, step_b));
  const CheckpointDiff diff = DiffCheckpoints(a, b);
  if (out.json) {
    PrintJson(DiffJson(diff, args.all));
  } else {
    PrintDiff(diff, args.all);
  }
  return absl::OkStatus();
}

}  // namespace ckpt::cli
