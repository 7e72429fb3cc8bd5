// The portable-files part of ckpt._ckpt (issue 15): Client.export_checkpoint
// and Client.import_directory over client/portable/ (ExportCheckpoint,
// ImportDirectory), with the GIL released while they run. ckpt_module.cc
// registers them on Client; ckpt/portable.py builds the user's API on them.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "client/client.h"

namespace ckpt::client {

namespace py = pybind11;

// Client.export_checkpoint(manifest, dir, full, rank, world_size,
// max_file_bytes, objects_json): ExportCheckpoint of a Manifest
// (Client.get_manifest); returns {job, step, files, tensors, tensor_bytes}.
py::dict ExportCheckpointBinding(Client& client, const py::handle& manifest,
                                 const std::string& dir, bool full,
                                 int32_t rank, int32_t world_size,
                                 std::optional<uint64_t> max_file_bytes,
                                 const std::string& objects_json);

// Client.import_directory(dir, job, step, rank, world_size, metrics, tags):
// ImportDirectory; returns {job, step, files, tensors, metadata_from_json,
// saved} (saved: as Client.save_shard's result).
py::dict ImportDirectoryBinding(Client& client, const std::string& dir,
                                const std::string& job, int64_t step,
                                std::optional<int32_t> rank,
                                std::optional<int32_t> world_size,
                                const std::map<std::string, double>& metrics,
                                const std::map<std::string, std::string>& tags);

}  // namespace ckpt::client
