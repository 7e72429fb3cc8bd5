#include "client/python/portable_binding.h"

#include <pybind11/stl.h>

#include <memory>
#include <utility>

#include "client/portable/export.h"
#include "client/portable/import.h"
#include "client/python/py_common.h"
#include "client/python/region_binding.h"

namespace ckpt::client {

py::dict ExportCheckpointBinding(Client& client, const py::handle& manifest,
                                 const std::string& dir, bool full,
                                 int32_t rank, int32_t world_size,
                                 std::optional<uint64_t> max_file_bytes,
                                 const std::string& objects_json) {
  std::shared_ptr<const Checkpoint> checkpoint = CheckpointOf(manifest);
  portable::ExportOptions options;
  options.full = full;
  options.rank = rank;
  options.world_size = world_size;
  if (max_file_bytes.has_value()) options.max_file_bytes = *max_file_bytes;
  options.objects_json = objects_json;
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
  return dict;
}

py::dict ImportDirectoryBinding(
    Client& client, const std::string& dir, const std::string& job,
    int64_t step, std::optional<int32_t> rank,
    std::optional<int32_t> world_size,
    const std::map<std::string, double>& metrics,
    const std::map<std::string, std::string>& tags) {
  portable::ImportOptions options;
  options.rank = rank;
  options.world_size = world_size;
  options.metadata.metrics = metrics;
  options.metadata.tags = tags;
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
  dict["metadata_from_json"] = report.metadata_from_json;
  dict["saved"] = SaveResultToDict(report.saved);
  return dict;
}

}  // namespace ckpt::client
