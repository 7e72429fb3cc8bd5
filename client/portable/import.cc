// ImportDirectory: finds the directory's files (the index's, or every
// *.safetensors), maps and checks each whole (safetensors.h), checks them
// against the index and ckpt_checkpoint.json, and only then saves them as
// one rank's shard through Client::SaveShard.
#include "client/portable/import.h"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <memory>
#include <set>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/portable/checkpoint_json.h"
#include "client/portable/export.h"
#include "client/portable/safetensors.h"
#include "client/portable/safetensors_index.h"
#include "client/portable/staged_dir.h"
#include "common/mapped_file.h"
#include "common/quote.h"
#include "common/status_macros.h"
#include "common/unique_fd.h"

namespace ckpt::client::portable {
namespace {

constexpr const char* kIndexName = kSafetensorsIndexName;
// What `export --format torch` writes (client/python/ckpt/portable.py).
constexpr char kTorchExportName[] = "checkpoint.pt";
// The index is a small JSON object of names; capped as a header is.
constexpr uint64_t kMaxIndexBytes = kMaxSafetensorsHeaderBytes;

std::string ShapeText(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// A file of the directory, mapped and checked.
struct ReadFile {
  std::string name;
  std::unique_ptr<MappedFile> mapped;
  SafetensorsHeader header;
};

class Importer {
 public:
  explicit Importer(std::string dir) : dir_(std::move(dir)) {}

  absl::Status Open() {
    dir_fd_.Reset(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir_fd_.valid()) {
      return absl::ErrnoToStatus(
          errno, absl::StrCat("import: cannot open directory '", dir_, "'"));
    }
    CKPT_ASSIGN_OR_RETURN(std::vector<std::string> names,
                          ListDirectory(dir_fd_.get(), dir_));
    names_ = std::set<std::string>(names.begin(), names.end());
    return absl::OkStatus();
  }

  std::string PathOf(absl::string_view name) const {
    return absl::StrCat(dir_, dir_.back() == '/' ? "" : "/", name);
  }

  bool Holds(const std::string& name) const { return names_.contains(name); }

  // A small file of the directory, mapped, at most `max_bytes` long.
  absl::StatusOr<std::unique_ptr<MappedFile>> Map(const std::string& name,
                                                  uint64_t max_bytes) {
    CKPT_ASSIGN_OR_RETURN(
        std::unique_ptr<MappedFile> file,
        MappedFile::OpenAt(dir_fd_.get(), name, PathOf(name)));
    if (file->bytes().size() > max_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(PathOf(name), ": ", file->bytes().size(),
                       " bytes, past the limit of ", max_bytes));
    }
    return file;
  }

  // The files to read: the index's weight_map values, or every
  // *.safetensors of the directory (not hidden ones: an export's
  // temporary files), sorted.
  absl::StatusOr<std::vector<std::string>> FilesToRead() {
    std::set<std::string> files;
    if (Holds(kIndexName)) {
      CKPT_RETURN_IF_ERROR(ReadIndex());
      for (const auto& [tensor, file] : weight_map_) files.insert(file);
    } else {
      for (const std::string& name : names_) {
        if (absl::EndsWith(name, ".safetensors") && name[0] != '.') {
          files.insert(name);
        }
      }
    }
    if (files.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "import: '", dir_, "' holds no .safetensors file",
          Holds(kIndexName) ? " in its index's weight_map" : "",
          Holds(kTorchExportName)
              ? absl::StrCat("; its ", kTorchExportName,
                             " (an export --format torch) is imported by the "
                             "Python package: python3 -m ckpt import DIR JOB "
                             "STEP, or ckpt.import_dir")
              : ""));
    }
    return std::vector<std::string>(files.begin(), files.end());
  }

  // Checks every tensor of `files` against the index: mapped, to its file.
  absl::Status CheckAgainstIndex(const std::vector<ReadFile>& files) const {
    if (!has_index_) return absl::OkStatus();
    const std::string index = PathOf(kIndexName);
    size_t found = 0;
    for (const ReadFile& file : files) {
      for (const SafetensorsTensor& tensor : file.header.tensors) {
        auto it = weight_map_.find(tensor.name);
        if (it == weight_map_.end() || it->second != file.name) {
          return absl::InvalidArgumentError(absl::StrCat(
              index, ": field \"weight_map\": tensor ",
              QuoteTruncated(tensor.name), " of ", PathOf(file.name), " is ",
              it == weight_map_.end()
                  ? std::string("not mapped")
                  : absl::StrCat("mapped to ", QuoteTruncated(it->second))));
        }
        ++found;
      }
    }
    if (found != weight_map_.size()) {
      for (const auto& [tensor, file] : weight_map_) {
        bool present = false;
        for (const ReadFile& read : files) {
          if (read.name != file) continue;
          for (const SafetensorsTensor& held : read.header.tensors) {
            present |= held.name == tensor;
          }
        }
        if (!present) {
          return absl::InvalidArgumentError(
              absl::StrCat(index, ": field \"weight_map\" maps tensor ",
                           QuoteTruncated(tensor), " to ", QuoteTruncated(file),
                           ", which does not hold it"));
        }
      }
    }
    return absl::OkStatus();
  }

 private:
  absl::Status ReadIndex() {
    has_index_ = true;
    const std::string index = PathOf(kIndexName);
    CKPT_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file,
                          Map(kIndexName, kMaxIndexBytes));
    CKPT_ASSIGN_OR_RETURN(weight_map_,
                          ParseSafetensorsIndex(file->bytes(), index));
    for (const auto& [tensor, name] : weight_map_) {
      if (!Holds(name)) {
        return absl::InvalidArgumentError(absl::StrCat(
            index, ": field \"weight_map\": tensor ", QuoteTruncated(tensor),
            ": file ", QuoteTruncated(name), " is not in the directory"));
      }
    }
    return absl::OkStatus();
  }

  const std::string dir_;
  UniqueFd dir_fd_;
  std::set<std::string> names_;
  bool has_index_ = false;
  std::map<std::string, std::string> weight_map_;
};

// The tensors of ckpt_checkpoint.json must be exactly the files'.
absl::Status CheckAgainstJson(const CheckpointJson& described,
                              const std::vector<ReadFile>& files,
                              const std::string& json_path) {
  const std::string advice =
      absl::StrCat(" (remove ", kCheckpointJsonName,
                   " to import the safetensors files without it)");
  size_t found = 0;
  for (const ReadFile& file : files) {
    for (const SafetensorsTensor& tensor : file.header.tensors) {
      auto it = described.tensors.find(tensor.name);
      const std::string where =
          absl::StrCat(json_path, ": tensor ", QuoteTruncated(tensor.name));
      if (it == described.tensors.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, " of ", file.name, " is not described", advice));
      }
      const CheckpointJsonTensor& said = it->second;
      if (said.file != file.name || said.dtype != tensor.dtype ||
          said.shape != tensor.shape) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": described as ", DTypeName(said.dtype), " ",
            ShapeText(said.shape), " in ", QuoteTruncated(said.file), ", but ",
            file.name, " holds it as ", DTypeName(tensor.dtype), " ",
            ShapeText(tensor.shape), advice));
      }
      ++found;
    }
  }
  if (found != described.tensors.size()) {
    for (const auto& [name, said] : described.tensors) {
      bool present = false;
      for (const ReadFile& file : files) {
        for (const SafetensorsTensor& tensor : file.header.tensors) {
          present |= tensor.name == name;
        }
      }
      if (!present) {
        return absl::InvalidArgumentError(
            absl::StrCat(json_path, ": tensor ", QuoteTruncated(name),
                         " is described but no file holds it", advice));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ImportReport> ImportDirectory(Client& client,
                                             const std::string& dir,
                                             absl::string_view job,
                                             int64_t step,
                                             const ImportOptions& options) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  if (step < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("import: step ", step, " is negative"));
  }
  if (dir.empty()) {
    return absl::InvalidArgumentError("import: the directory is empty");
  }
  Importer importer(dir);
  CKPT_RETURN_IF_ERROR(importer.Open());
  CKPT_ASSIGN_OR_RETURN(std::vector<std::string> names, importer.FilesToRead());

  // Every file mapped and checked; names unique over all of them.
  std::vector<ReadFile> files;
  absl::flat_hash_map<std::string, std::string> file_of;
  for (const std::string& name : names) {
    ReadFile file{name, nullptr, {}};
    CKPT_ASSIGN_OR_RETURN(file.mapped, importer.Map(name, UINT64_MAX));
    CKPT_ASSIGN_OR_RETURN(file.header, ParseSafetensors(file.mapped->bytes(),
                                                        importer.PathOf(name)));
    for (const SafetensorsTensor& tensor : file.header.tensors) {
      auto [it, added] = file_of.emplace(tensor.name, name);
      if (!added) {
        return absl::InvalidArgumentError(absl::StrCat(
            "import: tensor ", QuoteTruncated(tensor.name), " is in both ",
            importer.PathOf(it->second), " and ", importer.PathOf(name)));
      }
    }
    files.push_back(std::move(file));
  }
  CKPT_RETURN_IF_ERROR(importer.CheckAgainstIndex(files));

  ImportReport report;
  report.job = std::string(job);
  report.step = step;
  std::optional<CheckpointJson> described;
  if (importer.Holds(kCheckpointJsonName)) {
    const std::string path = importer.PathOf(kCheckpointJsonName);
    CKPT_ASSIGN_OR_RETURN(
        std::unique_ptr<MappedFile> text,
        importer.Map(kCheckpointJsonName, kMaxCheckpointJsonBytes));
    CKPT_ASSIGN_OR_RETURN(described, ParseCheckpointJson(text->bytes(), path));
    CKPT_RETURN_IF_ERROR(CheckAgainstJson(*described, files, path));
    report.metadata_from_json = true;
    report.objects_json = described->objects_json;
  }

  // Which rank, and the metadata: the caller's over the file's.
  const bool rank_export = described.has_value() && !described->full;
  report.rank = options.rank.value_or(rank_export ? described->rank : 0);
  report.world_size =
      options.world_size.value_or(rank_export ? described->world_size : 1);
  if (report.world_size < 1 || report.rank < 0 ||
      report.rank >= report.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("import: rank ", report.rank,
                                                   " is outside world size ",
                                                   report.world_size));
  }
  const bool use_boxes = rank_export && report.rank == described->rank &&
                         report.world_size == described->world_size;
  CheckpointMetadata metadata;
  if (described.has_value()) {
    metadata = described->metadata;
    // The checkpoint keeps its time (which retention goes by): the
    // writer's, else its commit's on the server it came from.
    if (!metadata.writer_time.has_value()) {
      metadata.writer_time = described->commit_time;
    }
  }
  for (const auto& [name, value] : options.metadata.metrics) {
    metadata.metrics[name] = value;
  }
  for (const auto& [key, value] : options.metadata.tags) {
    metadata.tags[key] = value;
  }
  if (options.metadata.writer_time.has_value()) {
    metadata.writer_time = options.metadata.writer_time;
  }

  std::vector<TensorData> tensors;
  for (const ReadFile& file : files) {
    report.files.push_back(file.name);
    const absl::string_view bytes = file.mapped->bytes();
    for (const SafetensorsTensor& tensor : file.header.tensors) {
      TensorData data;
      data.name = tensor.name;
      data.dtype = tensor.dtype;
      data.global_shape = tensor.shape;
      data.box =
          Box{std::vector<int64_t>(tensor.shape.size(), 0), tensor.shape};
      if (use_boxes) {
        const CheckpointJsonTensor& said = described->tensors.at(tensor.name);
        data.global_shape = said.global_shape;
        data.box = said.box;
        // A checkpoint of one rank must hold every tensor whole, or its
        // commit would refuse it after it began.
        if (report.world_size == 1 && data.box.lengths != data.global_shape) {
          return absl::InvalidArgumentError(absl::StrCat(
              importer.PathOf(kCheckpointJsonName), ": tensor ",
              QuoteTruncated(tensor.name), ": field \"box\" is part of its ",
              "global shape ", ShapeText(data.global_shape),
              ", but the export is of rank 0 of 1, which saves it whole"));
        }
      }
      data.bytes = bytes.substr(file.header.data_offset + tensor.begin,
                                tensor.end - tensor.begin);
      report.tensor_bytes += data.bytes.size();
      tensors.push_back(std::move(data));
    }
  }
  report.tensors = tensors.size();
  for (const TensorData& extra : options.extra_tensors) {
    if (extra.name.empty() || extra.name.size() > kMaxTensorNameBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("import: a tensor given beside the directory has an "
                       "empty name or one past ",
                       kMaxTensorNameBytes, " bytes"));
    }
    auto [it, added] = file_of.emplace(extra.name, "");
    if (!added) {
      return absl::InvalidArgumentError(
          absl::StrCat("import: tensor ", QuoteTruncated(extra.name),
                       " is given beside ", "the directory but is also in ",
                       it->second.empty() ? std::string("the tensors given")
                                          : importer.PathOf(it->second)));
    }
    tensors.push_back(extra);
  }

  SaveOptions save;
  save.rank = report.rank;
  save.world_size = report.world_size;
  save.metadata = std::move(metadata);
  save.progress = options.progress;
  CKPT_ASSIGN_OR_RETURN(report.saved,
                        client.SaveShard(job, step, tensors, save));
  return report;
}

}  // namespace ckpt::client::portable
