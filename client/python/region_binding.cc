#include "client/python/region_binding.h"

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "client/python/py_common.h"
#include "common/sha256.h"

namespace ckpt::client {
namespace {

// A fetched checkpoint, shared with the reads that run without the GIL.
class PyManifest {
 public:
  explicit PyManifest(Checkpoint checkpoint)
      : checkpoint_(std::make_shared<const Checkpoint>(std::move(checkpoint))) {
  }

  const std::shared_ptr<const Checkpoint>& checkpoint() const {
    return checkpoint_;
  }
  const CheckpointRecord& record() const { return checkpoint_->record; }

  std::vector<int32_t> Ranks() const {
    std::vector<int32_t> ranks;
    for (const ShardManifest& shard : checkpoint_->shards) {
      ranks.push_back(shard.rank);
    }
    return ranks;
  }

  // Rank `rank`'s entries as tuples (see EntryTuple).
  py::list Entries(int32_t rank) const {
    py::list out;
    for (const TensorEntry& entry : ShardOf(rank).tensors) {
      out.append(EntryTuple(entry));
    }
    return out;
  }

  // [(rank, entry tuple)] of every rank's entry named `name`, by rank.
  py::list EntriesNamed(const std::string& name) {
    Index();
    py::list out;
    if (auto found = by_name_.find(name); found != by_name_.end()) {
      for (const auto& [rank, entry] : found->second) {
        out.append(py::make_tuple(rank, EntryTuple(*entry)));
      }
    }
    return out;
  }

  // Makes the content key of a row delta cover its whole chain: the bytes
  // it rebuilds are those of its bases too, and each rank's chain runs
  // through its own. Only deltas whose own link equals another entry's
  // (the only ones a comparison could take for the same tensor) are
  // resolved, fetching their base manifests with `client`; their keys
  // become their chains'. Other keys are unchanged. The errors of a
  // broken chain are raised (as a restore of it would).
  void ResolveChains(Client& client) {
    if (chains_resolved_) return;
    absl::flat_hash_map<std::string, int> links;
    for (const ShardManifest& shard : checkpoint_->shards) {
      for (const TensorEntry& entry : shard.tensors) {
        if (entry.IsDelta()) ++links[LinkKey(entry)];
      }
    }
    std::vector<std::pair<int32_t, const TensorEntry*>> wanted;
    for (const ShardManifest& shard : checkpoint_->shards) {
      for (const TensorEntry& entry : shard.tensors) {
        if (entry.IsDelta() && links[LinkKey(entry)] > 1) {
          wanted.emplace_back(shard.rank, &entry);
        }
      }
    }
    std::vector<absl::StatusOr<std::vector<TensorEntry>>> chains;
    if (!wanted.empty()) {
      py::gil_scoped_release release;
      chains = client.ResolveDeltaChains(*checkpoint_, wanted);
    }
    absl::flat_hash_map<const TensorEntry*, std::string> keys;
    for (size_t i = 0; i < wanted.size(); ++i) {
      std::string text = "chain";
      for (const TensorEntry& link : ValueOrThrow(std::move(chains[i]))) {
        text += LinkKey(link);
      }
      keys[wanted[i].second] = std::string(Sha256(text).bytes());
    }
    chain_keys_ = std::move(keys);
    chains_resolved_ = true;
  }

 private:
  void Index() {
    if (!by_name_.empty()) return;
    for (const ShardManifest& shard : checkpoint_->shards) {
      for (const TensorEntry& entry : shard.tensors) {
        by_name_[entry.name].emplace_back(shard.rank, &entry);
      }
    }
  }

  const ShardManifest& ShardOf(int32_t rank) const {
    for (const ShardManifest& shard : checkpoint_->shards) {
      if (shard.rank == rank) return shard;
    }
    ThrowValueError(absl::StrCat("checkpoint ", checkpoint_->record.step,
                                 " of ", checkpoint_->record.job,
                                 " has no shard of rank ", rank));
  }

  // Equal for two entries iff they reference the same pieces (ids and
  // sizes, in order), the same delta base step and the same quantization:
  // one link of a delta chain (see ResolveChains).
  static std::string LinkKey(const TensorEntry& entry) {
    std::string text;
    text.reserve(entry.pieces.size() * (ChunkId::kSize + 8) + 40);
    auto append_u64 = [&text](uint64_t value) {
      char raw[8];
      std::memcpy(raw, &value, sizeof(raw));
      text.append(raw, sizeof(raw));
    };
    for (const ChunkRef& piece : entry.pieces) {
      text.append(piece.id.bytes().data(), ChunkId::kSize);
      append_u64(piece.size);
    }
    if (entry.delta_base_step.has_value()) {
      text.push_back('D');
      append_u64(static_cast<uint64_t>(*entry.delta_base_step));
    }
    if (entry.quantization.has_value()) {
      const Quantization& q = *entry.quantization;
      text.push_back('Q');
      append_u64(static_cast<uint64_t>(q.bits));
      uint64_t bits;
      std::memcpy(&bits, &q.max_abs_error, sizeof(bits));
      append_u64(bits);
      std::memcpy(&bits, &q.relative_l2_error, sizeof(bits));
      append_u64(bits);
    }
    return std::string(Sha256(text).bytes());
  }

  // Equal for two entries iff they hold the same saved bytes: LinkKey, or
  // for a delta whose chain ResolveChains resolved, its whole chain's.
  py::bytes ContentKey(const TensorEntry& entry) const {
    if (auto chain = chain_keys_.find(&entry); chain != chain_keys_.end()) {
      return py::bytes(chain->second);
    }
    return py::bytes(LinkKey(entry));
  }

  // (name, dtype, global_shape, offsets, lengths, content_key).
  py::tuple EntryTuple(const TensorEntry& entry) const {
    return py::make_tuple(entry.name, std::string(DTypeName(entry.dtype)),
                          entry.global_shape, entry.box.offsets,
                          entry.box.lengths, ContentKey(entry));
  }

  std::shared_ptr<const Checkpoint> checkpoint_;
  // Built on first use; entries point into *checkpoint_.
  absl::flat_hash_map<std::string,
                      std::vector<std::pair<int32_t, const TensorEntry*>>>
      by_name_;
  // ResolveChains' keys of the deltas it resolved.
  absl::flat_hash_map<const TensorEntry*, std::string> chain_keys_;
  bool chains_resolved_ = false;
};

const PyManifest& ManifestOf(const py::handle& manifest) {
  if (!py::isinstance<PyManifest>(manifest)) {
    ThrowValueError("manifest: needs a ckpt Manifest (Client.get_manifest)");
  }
  return manifest.cast<const PyManifest&>();
}

std::vector<RegionRequest> ToRequests(const std::vector<PyRegion>& requests) {
  std::vector<RegionRequest> out;
  out.reserve(requests.size());
  for (const auto& [name, dtype, global_shape, offsets, lengths, source_rank] :
       requests) {
    RegionRequest request;
    request.name = name;
    request.dtype = ValueOrThrow(ParseDType(dtype));
    request.global_shape = global_shape;
    request.region = Box{.offsets = offsets, .lengths = lengths};
    request.source_rank = source_rank;
    out.push_back(std::move(request));
  }
  return out;
}

py::dict StatsToDict(const RegionReadStats& stats) {
  py::dict dict;
  dict["chunks_fetched"] = stats.chunks_fetched;
  dict["bytes_fetched"] = stats.bytes_fetched;
  dict["bytes_used"] = stats.bytes_used;
  return dict;
}

}  // namespace

void RegisterManifestType(py::module_& module) {
  py::class_<PyManifest>(
      module, "Manifest",
      "A committed checkpoint as Client.get_manifest fetched it: its header "
      "and every rank's tensor entries, to plan region reads from.")
      .def_property_readonly("job",
                             [](const PyManifest& m) { return m.record().job; })
      .def_property_readonly(
          "step", [](const PyManifest& m) { return m.record().step; })
      .def_property_readonly(
          "world_size",
          [](const PyManifest& m) { return m.record().world_size; })
      .def_property_readonly(
          "record",
          [](const PyManifest& m) { return RecordToDict(m.record()); },
          "The checkpoint header, as Client.list_checkpoints gives it.")
      .def_property_readonly("ranks", &PyManifest::Ranks,
                             "The ranks with a shard, ascending.")
      .def("entries", &PyManifest::Entries, py::arg("rank"),
           "Rank `rank`'s tensor entries: (name, dtype, global_shape, "
           "offsets, lengths, content_key) each; content_key (bytes) is "
           "equal for two entries iff they reference the same pieces, delta "
           "base and quantization, and once Client.resolve_chains(manifest) "
           "ran, for row deltas, the same along their whole chains. "
           "ValueError for a rank without a shard.")
      .def("entries_named", &PyManifest::EntriesNamed, py::arg("name"),
           "[(rank, entry)] of every rank's entry named `name`, by rank.");
}

py::object GetManifest(Client& client, const std::string& job,
                       std::optional<int64_t> step) {
  absl::StatusOr<Checkpoint> manifest;
  {
    py::gil_scoped_release release;
    manifest = client.GetManifest(job, step);
  }
  return py::cast(PyManifest(ValueOrThrow(std::move(manifest))));
}

std::shared_ptr<const Checkpoint> CheckpointOf(const py::handle& manifest) {
  return ManifestOf(manifest).checkpoint();
}

py::dict ReadRegions(Client& client, const py::handle& manifest,
                     const std::vector<PyRegion>& requests,
                     const py::list& outs) {
  std::shared_ptr<const Checkpoint> checkpoint = CheckpointOf(manifest);
  const std::vector<RegionRequest> regions = ToRequests(requests);
  if (outs.size() != regions.size()) {
    ThrowValueError(absl::StrCat("read_regions: ", regions.size(),
                                 " requests but ", outs.size(), " outs"));
  }
  std::vector<std::unique_ptr<BufferView>> views;
  std::vector<absl::Span<char>> spans;
  views.reserve(regions.size());
  spans.reserve(regions.size());
  for (size_t i = 0; i < regions.size(); ++i) {
    views.push_back(std::make_unique<BufferView>(
        outs[i], /*writable=*/true,
        absl::StrCat("out of region '", regions[i].name, "'")));
    spans.emplace_back(views.back()->data(), views.back()->size());
  }
  absl::StatusOr<RegionReadStats> stats;
  {
    py::gil_scoped_release release;
    stats = client.ReadRegions(*checkpoint, regions, spans);
  }
  return StatsToDict(ValueOrThrow(std::move(stats)));
}

py::tuple RestoreRegions(Client& client, const py::handle& manifest,
                         const std::vector<PyRegion>& requests) {
  std::shared_ptr<const Checkpoint> checkpoint = CheckpointOf(manifest);
  const std::vector<RegionRequest> regions = ToRequests(requests);
  absl::StatusOr<RestoredRegions> result;
  {
    py::gil_scoped_release release;
    result = client.RestoreRegions(*checkpoint, regions);
  }
  RestoredRegions restored = ValueOrThrow(std::move(result));
  py::list arrays;
  for (RestoredTensor& tensor : restored.tensors) {
    arrays.append(ArrayOwning(tensor));
  }
  return py::make_tuple(arrays, StatsToDict(restored.stats));
}

void ResolveChains(Client& client, const py::handle& manifest) {
  if (!py::isinstance<PyManifest>(manifest)) {
    ThrowValueError("manifest: needs a ckpt Manifest (Client.get_manifest)");
  }
  manifest.cast<PyManifest&>().ResolveChains(client);
}

void ReportRestore(Client& client, const std::string& job, int64_t step,
                   int32_t rank) {
  absl::Status status;
  {
    py::gil_scoped_release release;
    status = client.ReportRestore(job, step, rank);
  }
  CheckOk(status);
}

}  // namespace ckpt::client
