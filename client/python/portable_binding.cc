#include "client/python/portable_binding.h"

#include <pybind11/stl.h>

#include <memory>
#include <utility>

#include "client/portable/checkpoint_json.h"
#include "client/portable/export.h"
#include "client/portable/import.h"
#include "client/python/region_binding.h"

namespace ckpt::client {
namespace {

// ExportOptions' layout fields.
portable::ExportOptions LayoutOptions(bool full, int32_t rank,
                                      int32_t world_size) {
  portable::ExportOptions options;
  options.full = full;
  options.rank = rank;
  options.world_size = world_size;
  return options;
}

py::object OptionalSeconds(const std::optional<absl::Time>& time) {
  return time.has_value() ? py::object(py::float_(UnixSecondsOf(*time)))
                          : py::object(py::none());
}

py::dict ParsedJsonToDict(const portable::CheckpointJson& parsed) {
  py::dict dict;
  dict["job"] = parsed.job;
  dict["step"] = parsed.step;
  dict["metrics"] = parsed.metadata.metrics;
  dict["tags"] = parsed.metadata.tags;
  dict["writer_time"] = OptionalSeconds(parsed.metadata.writer_time);
  dict["commit_time"] = UnixSecondsOf(parsed.commit_time);
  dict["full"] = parsed.full;
  dict["rank"] = parsed.rank;
  dict["world_size"] = parsed.world_size;
  py::dict tensors;
  for (const auto& [name, tensor] : parsed.tensors) {
    tensors[py::str(name)] = py::make_tuple(
        tensor.file, std::string(DTypeName(tensor.dtype)), tensor.shape,
        tensor.global_shape, tensor.box.offsets, tensor.box.lengths);
  }
  dict["tensors"] = tensors;
  dict["objects_json"] = parsed.objects_json;
  return dict;
}

}  // namespace

py::dict ExportCheckpointBinding(Client& client, const py::handle& manifest,
                                 const std::string& dir, bool full,
                                 int32_t rank, int32_t world_size,
                                 std::optional<uint64_t> max_file_bytes,
                                 const std::string& objects_json,
                                 const std::vector<std::string>& exclude) {
  std::shared_ptr<const Checkpoint> checkpoint = CheckpointOf(manifest);
  portable::ExportOptions options = LayoutOptions(full, rank, world_size);
  if (max_file_bytes.has_value()) options.max_file_bytes = *max_file_bytes;
  options.objects_json = objects_json;
  options.exclude_tensors = exclude;
  absl::StatusOr<portable::ExportReport> result;
  {
    py::gil_scoped_release release;
    result = portable::ExportCheckpoint(client, *checkpoint, dir, options);
  }
  const portable::ExportReport report = ValueOrThrow(std::move(result));
  py::dict dict;
  dict["job"] = report.job;
  dict["step"] = report.step;
  dict["files"] = report.files;
  dict["tensors"] = report.tensors;
  dict["tensor_bytes"] = report.tensor_bytes;
  dict["tensor_names"] = report.tensor_names;
  return dict;
}

py::dict ImportDirectoryBinding(Client& client, const std::string& dir,
                                const std::string& job, int64_t step,
                                std::optional<int32_t> rank,
                                std::optional<int32_t> world_size,
                                const std::map<std::string, double>& metrics,
                                const std::map<std::string, std::string>& tags,
                                const std::vector<PyTensor>& extra_tensors) {
  portable::ImportOptions options;
  options.rank = rank;
  options.world_size = world_size;
  options.metadata.metrics = metrics;
  options.metadata.tags = tags;
  std::vector<std::unique_ptr<BufferView>> views;
  for (const PyTensor& tensor : extra_tensors) {
    options.extra_tensors.push_back(TensorFromPython(tensor, &views));
  }
  absl::StatusOr<portable::ImportReport> result;
  {
    py::gil_scoped_release release;
    result = portable::ImportDirectory(client, dir, job, step, options);
  }
  const portable::ImportReport report = ValueOrThrow(std::move(result));
  py::dict dict;
  dict["job"] = report.job;
  dict["step"] = report.step;
  dict["files"] = report.files;
  dict["tensors"] = report.tensors;
  dict["tensor_bytes"] = report.tensor_bytes;
  dict["rank"] = report.rank;
  dict["world_size"] = report.world_size;
  dict["metadata_from_json"] = report.metadata_from_json;
  dict["objects_json"] = report.objects_json;
  dict["saved"] = SaveResultToDict(report.saved);
  return dict;
}

void RegisterPortable(py::module_& module) {
  module.def(
      "checkpoint_json",
      [](const py::handle& manifest, bool full, int32_t rank,
         int32_t world_size) {
        return portable::WriteCheckpointJson(
            *CheckpointOf(manifest), LayoutOptions(full, rank, world_size), {},
            {});
      },
      py::arg("manifest"), py::kw_only(), py::arg("full"), py::arg("rank"),
      py::arg("world_size"),
      "The text of ckpt_checkpoint.json for the checkpoint of `manifest` "
      "exported as `full` or rank `rank` of `world_size`, with no tensors "
      "and no files (client/portable/checkpoint_json.h).");
  module.def(
      "parse_checkpoint_json",
      [](const std::string& text, const std::string& file) {
        return ParsedJsonToDict(
            ValueOrThrow(portable::ParseCheckpointJson(text, file)));
      },
      py::arg("text"), py::arg("file"),
      "What import reads of a ckpt_checkpoint.json: {job, step, metrics, "
      "tags, writer_time, commit_time, full, rank, world_size, tensors: "
      "{name: (file, dtype, shape, global_shape, offsets, lengths)}, "
      "objects_json}. ValueError naming `file` and the field when it is "
      "malformed.");
}

}  // namespace ckpt::client
