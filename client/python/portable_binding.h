// The portable-files part of ckpt._ckpt (issue 15): export and import of
// safetensors directories over client/portable/ (ExportCheckpoint,
// ImportDirectory, with the GIL released while they run) and the
// ckpt_checkpoint.json writer and reader they use, so that the Python
// package's torch exports write and read the same file. ckpt_module.cc
// registers the Client methods; RegisterPortable the module functions.
// ckpt/portable.py builds the user's API on them.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "client/client.h"
#include "client/python/py_common.h"

namespace ckpt::client {

namespace py = pybind11;

// Client.export_checkpoint(manifest, dir, full, rank, world_size,
// max_file_bytes, objects_json, exclude_tensors): ExportCheckpoint of a
// Manifest (Client.get_manifest); returns {job, step, files, tensors,
// tensor_bytes, tensor_names}.
py::dict ExportCheckpointBinding(Client& client, const py::handle& manifest,
                                 const std::string& dir, bool full,
                                 int32_t rank, int32_t world_size,
                                 std::optional<uint64_t> max_file_bytes,
                                 const std::string& objects_json,
                                 const std::vector<std::string>& exclude);

// Client.import_directory(dir, job, step, rank, world_size, metrics, tags,
// extra_tensors): ImportDirectory; returns {job, step, files, tensors,
// tensor_bytes, rank, world_size, metadata_from_json, objects_json, saved}
// (saved: as Client.save_shard's result).
py::dict ImportDirectoryBinding(Client& client, const std::string& dir,
                                const std::string& job, int64_t step,
                                std::optional<int32_t> rank,
                                std::optional<int32_t> world_size,
                                const std::map<std::string, double>& metrics,
                                const std::map<std::string, std::string>& tags,
                                const std::vector<PyTensor>& extra_tensors);

// Defines checkpoint_json(manifest, full, rank, world_size) (the text of
// ckpt_checkpoint.json for a checkpoint, with no tensors or files) and
// parse_checkpoint_json(text, file) (what import reads of one, as a dict;
// ValueError naming the file and field) in `module`.
void RegisterPortable(py::module_& module);

}  // namespace ckpt::client
