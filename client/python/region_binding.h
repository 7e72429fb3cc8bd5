// The resharded-restore part of ckpt._ckpt (issue 14): Manifest, a
// checkpoint fetched once (Client.get_manifest) whose entries Python plans
// a restore from, and the region reads over it (Client.read_regions,
// Client.restore_regions) and the restore report (Client.report_restore).
// ckpt_module.cc registers these on Client; ckpt/restore.py uses them.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "client/client.h"

namespace ckpt::client {

namespace py = pybind11;

// One region request as Python passes it: (name, dtype, global_shape,
// offsets, lengths, source_rank or None); see RegionRequest.
using PyRegion = std::tuple<std::string, std::string, std::vector<int64_t>,
                            std::vector<int64_t>, std::vector<int64_t>,
                            std::optional<int32_t>>;

// Defines ckpt._ckpt.Manifest in `module`.
void RegisterManifestType(py::module_& module);

// Client.get_manifest(job, step=None): a Manifest of the committed
// checkpoint (the latest when step is None). Records no restore event.
py::object GetManifest(Client& client, const std::string& job,
                       std::optional<int64_t> step);

// The checkpoint a Manifest holds (shared with the reads that run without
// the GIL); ValueError when `manifest` is not a Manifest.
std::shared_ptr<const Checkpoint> CheckpointOf(const py::handle& manifest);

// Client.read_regions(manifest, requests, outs): each request's region
// read into outs[i] (a writable C-contiguous buffer of exactly the region's
// bytes), with the GIL released; returns the stats as a dict
// {chunks_fetched, bytes_fetched, bytes_used}.
py::dict ReadRegions(Client& client, const py::handle& manifest,
                     const std::vector<PyRegion>& requests,
                     const py::list& outs);

// Client.restore_regions(manifest, requests): (arrays, stats), one new
// numpy array per request shaped as its region, over the memory the client
// restored into (no copy).
py::tuple RestoreRegions(Client& client, const py::handle& manifest,
                         const std::vector<PyRegion>& requests);

// Client.resolve_chains(manifest): the content keys of the manifest's row
// deltas cover their whole chains from then on (base manifests fetched,
// with the GIL released, for the deltas whose own links match another's).
void ResolveChains(Client& client, const py::handle& manifest);

// Client.report_restore(job, step, rank).
void ReportRestore(Client& client, const std::string& job, int64_t step,
                   int32_t rank);

}  // namespace ckpt::client
