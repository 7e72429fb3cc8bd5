// ExportCheckpoint: plans the export (export_plan.h), checks the directory,
// then streams the tensors slab by slab into staged safetensors files
// (staged_dir.h), writes the index and ckpt_checkpoint.json, records the
// restore and renames the files into place.
#include "client/portable/export.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/portable/checkpoint_json.h"
#include "client/portable/export_plan.h"
#include "client/portable/json_members.h"
#include "client/portable/safetensors.h"
#include "client/portable/staged_dir.h"
#include "client/whole_tensors.h"
#include "common/quote.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace ckpt::client::portable {
namespace {

constexpr char kIndexName[] = "model.safetensors.index.json";
constexpr uint64_t kMinBufferBytes = uint64_t{1} << 20;

absl::Status CheckOptions(const ExportOptions& options) {
  if (!options.full && (options.world_size < 1 || options.rank < 0 ||
                        options.rank >= options.world_size)) {
    return absl::InvalidArgumentError(
        absl::StrCat("export: rank ", options.rank, " is outside world size ",
                     options.world_size));
  }
  if (options.max_file_bytes == 0) {
    return absl::InvalidArgumentError(
        "export: the largest file size must be at least 1 byte");
  }
  if (options.buffer_bytes < kMinBufferBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "export: the buffer must hold at least ", kMinBufferBytes, " bytes"));
  }
  if (!options.objects_json.empty() &&
      !nlohmann::json::accept(options.objects_json)) {
    return absl::InvalidArgumentError(
        "export: objects_json is not a JSON value");
  }
  return absl::OkStatus();
}

// A file name in the directory that belongs to an export: writing another
// export beside it would mix two checkpoints in one directory.
bool IsExportFile(absl::string_view name) {
  return absl::EndsWith(name, ".safetensors") || name == kIndexName ||
         name == kCheckpointJsonName;
}

absl::Status CheckDirectoryFree(const StagedDirectory& dir) {
  CKPT_ASSIGN_OR_RETURN(std::vector<std::string> names, dir.List());
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    if (IsExportFile(name)) {
      return absl::AlreadyExistsError(absl::StrCat(
          "'", dir.PathOf(name), "' exists; an export is written only into ",
          "a directory without *.safetensors files, ", kIndexName, " or ",
          kCheckpointJsonName, ", and never over a file"));
    }
  }
  return absl::OkStatus();
}

// Reads regions of the checkpoint in batches of at most `budget` bytes
// (one region larger than that is a batch of its own) into one buffer.
class BatchReader {
 public:
  BatchReader(Client& client, const Checkpoint& checkpoint, uint64_t budget)
      : client_(client), checkpoint_(checkpoint), budget_(budget) {}

  // Whether a region of `bytes` still fits the current batch.
  bool Fits(uint64_t bytes) const {
    return requests_.empty() || batch_bytes_ + bytes <= budget_;
  }
  void Add(RegionRequest request, uint64_t bytes) {
    requests_.push_back(std::move(request));
    sizes_.push_back(bytes);
    batch_bytes_ += bytes;
  }
  bool empty() const { return requests_.empty(); }

  // Reads the batch; then region(i) is the i-th region's bytes until the
  // next Read. `progress(done, total)` over the batch's fetched bytes.
  absl::Status Read(const RestoreProgressFn& progress) {
    if (buffer_size_ < batch_bytes_) {
      buffer_.reset();
      try {
        // Not zeroed: only the pages written are touched.
        buffer_ = std::make_unique_for_overwrite<char[]>(batch_bytes_);
      } catch (const std::bad_alloc&) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "export: cannot allocate ", batch_bytes_, " bytes to read ",
            requests_.size() == 1 ? QuoteTruncated(requests_[0].name)
                                  : std::string("a batch of tensors")));
      }
      buffer_size_ = batch_bytes_;
    }
    std::vector<absl::Span<char>> outs;
    uint64_t at = 0;
    for (uint64_t size : sizes_) {
      outs.emplace_back(buffer_.get() + at, size);
      at += size;
    }
    CKPT_RETURN_IF_ERROR(
        client_.ReadRegions(checkpoint_, requests_, outs, progress).status());
    read_ = std::move(outs);
    requests_.clear();
    sizes_.clear();
    batch_bytes_ = 0;
    return absl::OkStatus();
  }
  absl::string_view region(size_t i) const {
    return {read_[i].data(), read_[i].size()};
  }

 private:
  Client& client_;
  const Checkpoint& checkpoint_;
  const uint64_t budget_;
  std::vector<RegionRequest> requests_;
  std::vector<uint64_t> sizes_;
  uint64_t batch_bytes_ = 0;
  std::vector<absl::Span<char>> read_;  // the last batch's regions
  std::unique_ptr<char[]> buffer_;
  uint64_t buffer_size_ = 0;
};

// --full: whether every copy of a per-rank tensor holds the bytes of the
// first, compared slab by slab.
absl::StatusOr<bool> CopiesEqual(Client& client, const Checkpoint& checkpoint,
                                 const WholeTensor& plan, uint64_t budget) {
  const RegionRequest& first = plan.copies[0];
  const uint64_t element = DTypeSize(first.dtype);
  for (size_t copy = 1; copy < plan.copies.size(); ++copy) {
    for (const Box& slab :
         SplitRegion(first.region, element, std::max(element, budget / 2))) {
      BatchReader reader(client, checkpoint, budget);
      uint64_t bytes = element;
      for (int64_t length : slab.lengths) bytes *= length;
      for (const RegionRequest* source : {&first, &plan.copies[copy]}) {
        RegionRequest request = *source;
        request.region = slab;
        reader.Add(std::move(request), bytes);
      }
      CKPT_RETURN_IF_ERROR(reader.Read({}));
      if (reader.region(0) != reader.region(1)) return false;
    }
  }
  return true;
}

// One region of a tensor read in one piece, and the staged file its bytes
// are appended to.
struct Slab {
  size_t file;
  RegionRequest request;
  uint64_t bytes;
};

// Every tensor's slabs, in file order: row-major pieces of at most
// buffer_bytes (a quantized tensor whole).
std::vector<Slab> PlanSlabs(absl::Span<const ExportTensor> tensors,
                            absl::Span<const ExportFile> files,
                            absl::Span<const size_t> staged,
                            const ExportOptions& options) {
  std::vector<Slab> slabs;
  for (size_t f = 0; f < files.size(); ++f) {
    for (size_t index : files[f].tensors) {
      const ExportTensor& tensor = tensors[index];
      const uint64_t element = DTypeSize(tensor.source.dtype);
      const uint64_t limit = std::max(
          element, tensor.quantized ? tensor.ByteSize() : options.buffer_bytes);
      for (const Box& box : SplitRegion(tensor.source.region, element, limit)) {
        RegionRequest request = tensor.source;
        request.region = box;
        uint64_t bytes = element;
        for (int64_t length : box.lengths) bytes *= length;
        slabs.push_back({staged[f], std::move(request), bytes});
      }
    }
  }
  return slabs;
}

// Reads `slabs` in batches of at most `budget` bytes and appends each to
// its file, calling `progress` over `total` bytes.
absl::Status StreamSlabs(Client& client, const Checkpoint& checkpoint,
                         const std::vector<Slab>& slabs, StagedDirectory& out,
                         uint64_t budget, uint64_t total,
                         const RestoreProgressFn& progress) {
  BatchReader reader(client, checkpoint, budget);
  uint64_t done = 0;
  size_t next = 0;  // the first slab not yet in a batch
  while (next < slabs.size()) {
    const size_t first = next;
    uint64_t batch = 0;
    while (next < slabs.size() && reader.Fits(slabs[next].bytes)) {
      reader.Add(slabs[next].request, slabs[next].bytes);
      batch += slabs[next].bytes;
      ++next;
    }
    RestoreProgressFn inner;
    if (progress) {
      // The batch's share of its fetched bytes, as bytes of the export.
      inner = [&](uint64_t fetched, uint64_t fetch_total) {
        const uint64_t part =
            fetch_total == 0
                ? 0
                : static_cast<uint64_t>(static_cast<double>(batch) * fetched /
                                        fetch_total);
        progress(done + std::min(part, batch), total);
      };
    }
    CKPT_RETURN_IF_ERROR(reader.Read(inner));
    for (size_t i = first; i < next; ++i) {
      CKPT_RETURN_IF_ERROR(out.Append(slabs[i].file, reader.region(i - first)));
    }
    done += batch;
    if (progress) progress(done, total);
  }
  if (progress && slabs.empty()) progress(0, 0);
  return absl::OkStatus();
}

// The index of a split export: {"metadata": {"total_size"}, "weight_map"}.
std::string IndexJson(absl::Span<const ExportTensor> tensors,
                      absl::Span<const ExportFile> files) {
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  uint64_t total = 0;
  for (const ExportFile& file : files) {
    for (size_t index : file.tensors) {
      // Distinct: PlanExport checked.
      AppendMember(weight_map, tensors[index].name, file.name);
    }
    total += file.bytes;
  }
  return nlohmann::ordered_json{{"metadata", {{"total_size", total}}},
                                {"weight_map", weight_map}}
             .dump(2) +
         "\n";
}

}  // namespace

absl::StatusOr<ExportReport> ExportCheckpoint(
    Client& client, const Checkpoint& checkpoint, const std::string& dir,
    const ExportOptions& options, const RestoreProgressFn& progress) {
  CKPT_RETURN_IF_ERROR(CheckOptions(options));
  const std::vector<WholeTensor> plans = PlanWholeTensors(checkpoint);
  // Planned and checked in full before anything is fetched, except for the
  // comparison of per-rank copies, which reads them.
  CKPT_ASSIGN_OR_RETURN(
      std::vector<ExportTensor> tensors,
      PlanExport(checkpoint, plans, options, [&](const WholeTensor& plan) {
        return CopiesEqual(client, checkpoint, plan, options.buffer_bytes);
      }));
  const std::vector<ExportFile> files =
      AssignFiles(tensors, options.max_file_bytes);
  std::vector<SafetensorsLayout> layouts;
  for (const ExportFile& file : files) {
    std::vector<SafetensorsSpec> specs;
    for (size_t index : file.tensors) {
      specs.push_back({tensors[index].name, tensors[index].source.dtype,
                       tensors[index].shape()});
    }
    // "format": "pt" is what Hugging Face loaders expect of a checkpoint.
    CKPT_ASSIGN_OR_RETURN(SafetensorsLayout layout,
                          LayOutSafetensors(specs, {{"format", "pt"}}));
    layouts.push_back(std::move(layout));
  }

  CKPT_ASSIGN_OR_RETURN(std::unique_ptr<StagedDirectory> out,
                        StagedDirectory::Open(dir));
  CKPT_RETURN_IF_ERROR(CheckDirectoryFree(*out));

  ExportReport report;
  report.job = checkpoint.record.job;
  report.step = checkpoint.record.step;
  uint64_t total = 0;
  for (const ExportTensor& tensor : tensors) total += tensor.ByteSize();

  std::vector<size_t> staged;  // per file, its index in `out`
  for (size_t f = 0; f < files.size(); ++f) {
    CKPT_ASSIGN_OR_RETURN(const size_t file, out->Create(files[f].name));
    CKPT_RETURN_IF_ERROR(out->Append(file, layouts[f].prefix));
    staged.push_back(file);
    report.files.push_back(files[f].name);
    for (size_t index : files[f].tensors) {
      report.tensor_names.push_back(tensors[index].name);
    }
  }
  CKPT_RETURN_IF_ERROR(StreamSlabs(
      client, checkpoint, PlanSlabs(tensors, files, staged, options), *out,
      options.buffer_bytes, total, progress));

  if (files.size() > 1) {
    CKPT_ASSIGN_OR_RETURN(const size_t index, out->Create(kIndexName));
    CKPT_RETURN_IF_ERROR(out->Append(index, IndexJson(tensors, files)));
    report.files.push_back(kIndexName);
  }
  CKPT_ASSIGN_OR_RETURN(const size_t json, out->Create(kCheckpointJsonName));
  CKPT_RETURN_IF_ERROR(out->Append(
      json, WriteCheckpointJson(checkpoint, options, tensors, files)));
  report.files.push_back(kCheckpointJsonName);
  report.tensors = tensors.size();
  report.tensor_bytes = total;

  // The files are complete: the restore succeeded. A checkpoint deleted
  // meanwhile (NOT_FOUND) or a server older than the call (UNIMPLEMENTED)
  // only loses the history entry, as for `ckpt get`; any other refusal
  // fails the export, and the staged files are removed.
  CKPT_RETURN_IF_ERROR(out->Sync());
  absl::Status reported =
      client.ReportRestore(checkpoint.record.job, checkpoint.record.step,
                           options.full ? 0 : options.rank);
  if (!reported.ok() && !absl::IsNotFound(reported) &&
      !absl::IsUnimplemented(reported)) {
    return reported;
  }
  CKPT_RETURN_IF_ERROR(out->Commit());
  return report;
}

}  // namespace ckpt::client::portable
