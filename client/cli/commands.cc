#include "client/cli/commands.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "client/cli/format.h"
#include "client/cli/progress.h"
#include "client/incremental.h"
#include "common/delta_base.h"
#include "common/event.h"
#include "common/retention.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace ckpt::cli {
namespace {

using nlohmann::json;

absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  return absl::ErrnoToStatus(errno, absl::StrCat(what, " '", path, "'"));
}

// A read-only memory mapping of a whole file, so `ckpt put` uploads straight
// from the page cache without copying the file into a buffer.
class MappedFile {
 public:
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(
      const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoError("cannot open", path);
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      absl::Status status = ErrnoError("cannot stat", path);
      ::close(fd);
      return status;
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat("'", path, "' is not a regular file"));
    }
    const size_t size = static_cast<size_t>(st.st_size);
    void* data = nullptr;
    if (size > 0) {  // mmap of length 0 is an error
      data = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (data == MAP_FAILED) {
        absl::Status status = ErrnoError("cannot map", path);
        ::close(fd);
        return status;
      }
      // Upload reads it once, front to back.
      ::madvise(data, size, MADV_SEQUENTIAL);
    }
    ::close(fd);  // the mapping stays valid without the descriptor
    return std::make_unique<MappedFile>(data, size);
  }

  MappedFile(void* data, size_t size) : data_(data), size_(size) {}
  ~MappedFile() {
    if (data_ != nullptr) ::munmap(data_, size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  absl::string_view bytes() const {
    return {static_cast<const char*>(data_), size_};
  }

 private:
  void* data_;
  size_t size_;
};

absl::StatusOr<int64_t> ParseStep(absl::string_view text) {
  int64_t step;
  if (!absl::SimpleAtoi(text, &step) || step < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("STEP must be a non-negative integer, got '", text, "'"));
  }
  return step;
}

// The manifest of STEP, where STEP is a step or "latest"; fetched to restore
// `restoring_rank`'s shard when given (the server records the restore).
absl::StatusOr<Checkpoint> GetManifestAt(
    client::Client& client, const std::string& job, absl::string_view step_text,
    std::optional<int32_t> restoring_rank = std::nullopt) {
  std::optional<int64_t> step;  // nullopt: latest
  if (step_text != "latest") {
    CKPT_ASSIGN_OR_RETURN(step, ParseStep(step_text));
  }
  return client.GetManifest(job, step, restoring_rank);
}

absl::StatusOr<std::pair<std::string, std::string>> SplitAssignment(
    absl::string_view flag, absl::string_view text) {
  std::pair<std::string, std::string> kv =
      absl::StrSplit(text, absl::MaxSplits('=', 1));
  if (kv.first.empty() || text.find('=') == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " expects NAME=VALUE, got '", text, "'"));
  }
  return kv;
}

absl::StatusOr<CheckpointMetadata> ParseMetadata(const PutArgs& args) {
  CheckpointMetadata metadata;
  for (const std::string& text : args.metrics) {
    CKPT_ASSIGN_OR_RETURN(auto kv, SplitAssignment("--metric", text));
    double value;
    if (!absl::SimpleAtod(kv.second, &value)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--metric ", kv.first, ": '", kv.second, "' is not a number"));
    }
    metadata.metrics[kv.first] = value;
  }
  for (const std::string& text : args.tags) {
    CKPT_ASSIGN_OR_RETURN(auto kv, SplitAssignment("--tag", text));
    metadata.tags[kv.first] = kv.second;
  }
  if (!args.time.empty()) {
    absl::Time time;
    std::string error;
    if (!absl::ParseTime(absl::RFC3339_full, args.time, &time, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--time '", args.time, "' is not RFC 3339 (e.g. ",
                       "2024-05-01T12:00:00Z): ", error));
    }
    metadata.writer_time = time;
  }
  return metadata;
}

// Tensor names become file names under OUTDIR: refuse anything that could
// escape it or name a directory.
absl::Status CheckSafeFileName(absl::string_view name) {
  if (name.empty() || name == "." || name == ".." ||
      name.find('/') != absl::string_view::npos ||
      name.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("refusing to write tensor '", name,
                     "' as a file: its name is not a plain file name"));
  }
  return absl::OkStatus();
}

absl::Status WriteFile(const std::string& path, absl::string_view bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("cannot create", path);
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      absl::Status status = ErrnoError("cannot write", path);
      ::close(fd);
      return status;
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  if (::close(fd) != 0) return ErrnoError("cannot close", path);
  return absl::OkStatus();
}

json MetadataJson(const CheckpointMetadata& metadata) {
  json metrics = json::object();
  for (const auto& [name, value] : metadata.metrics) metrics[name] = value;
  json tags = json::object();
  for (const auto& [key, value] : metadata.tags) tags[key] = value;
  return {{"metrics", metrics}, {"tags", tags}};
}

// The time shown for a checkpoint: the writer's, else the commit's; a
// pending or aborted one has no commit time, so its creation time is shown.
absl::Time DisplayTime(const CheckpointRecord& record) {
  if (record.state == CheckpointState::kCommitted) {
    return record.EffectiveTime();
  }
  return record.metadata.writer_time.value_or(record.create_time);
}

// The listing of one checkpoint header; shared by `ls JOB` and `show`.
json RecordJson(const CheckpointRecord& record) {
  json metadata = MetadataJson(record.metadata);
  json out = {
      {"job", record.job},
      {"step", record.step},
      {"state", std::string(CheckpointStateName(record.state))},
      {"time", FormatTimestamp(DisplayTime(record))},
      {"world_size", record.world_size},
      {"logical_bytes", record.logical_bytes},
      {"metrics", metadata["metrics"]},
      {"tags", metadata["tags"]},
      {"committed_ranks", record.committed_ranks},
      {"create_time", FormatTimestamp(record.create_time)},
      {"pinned", record.pinned},
      {"kind", std::string(CheckpointKindName(record))},
      // The highest when its deltas use several bases.
      {"base_step", record.base_steps.empty() ? json(nullptr)
                                              : json(record.base_steps.back())},
      {"base_steps", record.base_steps},
      {"bytes_added", record.bytes_added},
  };
  if (record.state == CheckpointState::kCommitted) {
    out["commit_time"] = FormatTimestamp(record.commit_time);
  }
  if (record.state == CheckpointState::kPending) {
    out["lease_expiry"] = FormatTimestamp(record.lease_expiry);
  }
  if (record.state == CheckpointState::kAborted) {
    out["abort_reason"] = record.abort_reason;
  }
  return out;
}

void PrintJson(const json& value) { std::cout << value.dump(2) << "\n"; }

bool AnyPolicyFlag(const PolicyFlags& flags) {
  return !flags.max_to_keep.empty() || !flags.keep_every_n_hours.empty() ||
         !flags.keep_every.empty() || !flags.keep_best.empty() ||
         !flags.metric.empty() || !flags.mode.empty();
}

absl::StatusOr<int> ParseCount(absl::string_view flag, absl::string_view text) {
  int value;
  if (!absl::SimpleAtoi(text, &value) || value < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " must be a positive integer, got '", text, "'"));
  }
  return value;
}

// The policy the flags describe; the server validates it as a whole
// (ValidateRetentionPolicy), this only parses.
absl::StatusOr<RetentionPolicy> ParsePolicyFlags(const PolicyFlags& flags,
                                                 absl::string_view keep_flag) {
  RetentionPolicy policy;
  if (!flags.max_to_keep.empty()) {
    CKPT_ASSIGN_OR_RETURN(policy.max_to_keep,
                          ParseCount(keep_flag, flags.max_to_keep));
  }
  if (!flags.keep_every_n_hours.empty()) {
    double hours;
    if (!absl::SimpleAtod(flags.keep_every_n_hours, &hours) || !(hours > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--keep-every-n-hours must be a positive number, got '",
                       flags.keep_every_n_hours, "'"));
    }
    policy.keep_every = absl::Hours(hours);
  }
  if (!flags.keep_every.empty()) {
    absl::Duration every;
    if (!absl::ParseDuration(flags.keep_every, &every) ||
        every <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--keep-every must be a positive duration such as 6h, "
                       "30m or 1h30m, got '",
                       flags.keep_every, "'"));
    }
    policy.keep_every = every;
  }
  if (flags.keep_best.empty()) {
    if (!flags.metric.empty() || !flags.mode.empty()) {
      return absl::InvalidArgumentError(
          "--metric and --mode go with --keep-best K");
    }
    return policy;
  }
  RetentionPolicy::KeepBest best;
  CKPT_ASSIGN_OR_RETURN(best.k, ParseCount("--keep-best", flags.keep_best));
  if (flags.metric.empty()) {
    return absl::InvalidArgumentError("--keep-best needs --metric NAME");
  }
  best.metric = flags.metric;
  if (flags.mode.empty() || flags.mode == "auto") {
    best.mode = RetentionPolicy::KeepBest::Mode::kAuto;
  } else if (flags.mode == "min") {
    best.mode = RetentionPolicy::KeepBest::Mode::kMin;
  } else if (flags.mode == "max") {
    best.mode = RetentionPolicy::KeepBest::Mode::kMax;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "--mode must be min, max or auto, got '", flags.mode, "'"));
  }
  policy.keep_best = std::move(best);
  return policy;
}

json PolicyJson(const RetentionPolicy& policy) {
  json out = {{"max_to_keep", nullptr},
              {"keep_every", nullptr},
              {"keep_every_seconds", nullptr},
              {"keep_best", nullptr}};
  if (policy.max_to_keep.has_value()) out["max_to_keep"] = *policy.max_to_keep;
  if (policy.keep_every.has_value()) {
    out["keep_every"] = absl::FormatDuration(*policy.keep_every);
    out["keep_every_seconds"] = absl::ToDoubleSeconds(*policy.keep_every);
  }
  if (policy.keep_best.has_value()) {
    out["keep_best"] = {
        {"k", policy.keep_best->k},
        {"metric", policy.keep_best->metric},
        {"mode", std::string(MetricModeName(policy.keep_best->mode))}};
  }
  return out;
}

// logical / stored: how many times over the stored bytes are referenced.
// 1.0 when nothing is stored, i.e. no savings to report.
double DedupRatio(uint64_t logical_bytes, uint64_t stored_bytes) {
  return stored_bytes == 0 ? 1.0
                           : static_cast<double>(logical_bytes) /
                                 static_cast<double>(stored_bytes);
}

std::string FormatRatio(double ratio) {
  return absl::StrFormat("%.2fx", ratio);
}

json QuantizationJson(const Quantization& quantization) {
  return {{"bits", quantization.bits},
          {"max_abs_error", quantization.max_abs_error},
          {"relative_l2_error", quantization.relative_l2_error}};
}

// "max 0.0050 L2 0.37%": the maximum absolute error and the L2 error
// relative to the tensor's norm.
std::string FormatQuantizationError(const Quantization& quantization) {
  return absl::StrFormat("max %.2g L2 %.2g%%", quantization.max_abs_error,
                         100 * quantization.relative_l2_error);
}

// `put --json`'s "quantized": each tensor saved quantized, with its width
// and error as the manifest records them.
json QuantizedSummaries(const std::map<std::string, Quantization>& quantized) {
  json summaries = json::array();
  for (const auto& [name, quantization] : quantized) {
    json summary = QuantizationJson(quantization);
    summary["name"] = name;
    summaries.push_back(std::move(summary));
  }
  return summaries;
}

// Per file of `put`, the rows --dirty-rows gives its delta; nullopt: none
// given (its rows are found by fingerprints).
using GivenRows = std::vector<std::optional<std::vector<uint64_t>>>;

// `put --json`'s "deltas": the tensors saved as row deltas, and whether
// their rows came from --dirty-rows or from comparing fingerprints.
nlohmann::json DeltaSummaries(const std::vector<client::TensorData>& tensors,
                              const GivenRows& given) {
  nlohmann::json deltas = nlohmann::json::array();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const client::TensorData& tensor = tensors[i];
    if (!tensor.delta_base_step.has_value()) continue;
    deltas.push_back(
        {{"name", tensor.name},
         {"base_step", *tensor.delta_base_step},
         {"rows", tensor.delta_rows.size()},
         {"total_rows", tensor.global_shape[0]},
         {"rows_from", given[i].has_value() ? "dirty-rows" : "fingerprints"}});
  }
  return deltas;
}

// One index of a --dirty-rows list: decimal digits only (no sign or
// spaces), so that a typo is refused instead of read as some other row.
std::optional<uint64_t> ParseRowIndex(absl::string_view text) {
  uint64_t row;
  if (text.empty() ||
      !std::all_of(text.begin(), text.end(),
                   [](char c) { return absl::ascii_isdigit(c); }) ||
      !absl::SimpleAtoi(text, &row)) {
    return std::nullopt;
  }
  return row;
}

// The rows of `name`'s --dirty-rows list: indices and inclusive ranges A-B,
// comma-separated, in any order, repeats allowed, empty for none; sorted
// and without repeats. INVALID_ARGUMENT for a malformed list or a row past
// the tensor's `rows`.
absl::StatusOr<std::vector<uint64_t>> ParseRowList(absl::string_view name,
                                                   absl::string_view list,
                                                   uint64_t rows) {
  std::vector<uint64_t> parsed;
  if (list.empty()) return parsed;
  for (absl::string_view item : absl::StrSplit(list, ',')) {
    const size_t dash = item.find('-');
    std::optional<uint64_t> first = ParseRowIndex(item.substr(0, dash));
    std::optional<uint64_t> last = dash == absl::string_view::npos
                                       ? first
                                       : ParseRowIndex(item.substr(dash + 1));
    if (!first.has_value() || !last.has_value() || *last < *first) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--dirty-rows ", name, ": '", item,
          "' is not a row index or an ascending range A-B in '", list, "'"));
    }
    if (*last >= rows) {
      return absl::InvalidArgumentError(
          absl::StrCat("--dirty-rows ", name, ": row ", *last,
                       " is past its last row (it has ", rows, " rows)"));
    }
    for (uint64_t row = *first; row <= *last; ++row) parsed.push_back(row);
  }
  std::sort(parsed.begin(), parsed.end());
  parsed.erase(std::unique(parsed.begin(), parsed.end()), parsed.end());
  return parsed;
}

// Per tensor, the rows its --dirty-rows entry gives (NAME=ROWS), or nullopt
// when it has none. REQUIRES: the tensors are row matrices.
absl::StatusOr<GivenRows> ParseDirtyRows(
    const std::vector<std::string>& flags,
    const std::vector<client::TensorData>& tensors) {
  GivenRows given(tensors.size());
  for (const std::string& text : flags) {
    CKPT_ASSIGN_OR_RETURN(auto kv, SplitAssignment("--dirty-rows", text));
    auto tensor = std::find_if(
        tensors.begin(), tensors.end(),
        [&](const client::TensorData& t) { return t.name == kv.first; });
    if (tensor == tensors.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--dirty-rows ", kv.first, ": no FILE is put as tensor '", kv.first,
          "' (a tensor is named after its file's base name)"));
    }
    std::optional<std::vector<uint64_t>>& rows =
        given[static_cast<size_t>(tensor - tensors.begin())];
    if (rows.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--dirty-rows names '", kv.first, "' twice; list its rows once"));
    }
    CKPT_ASSIGN_OR_RETURN(
        rows, ParseRowList(kv.first, kv.second,
                           static_cast<uint64_t>(tensor->global_shape[0])));
  }
  return given;
}

}  // namespace

absl::Status RunPut(client::Client& client, const PutArgs& args,
                    const OutputOptions& out) {
  CKPT_ASSIGN_OR_RETURN(int64_t step, ParseStep(args.step));
  client::SaveOptions options;
  options.rank = args.rank;
  options.world_size = args.world_size;
  CKPT_ASSIGN_OR_RETURN(options.metadata, ParseMetadata(args));
  if (args.row_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--row-bytes must be >= 0, got ", args.row_bytes));
  }
  if (args.delta_against.has_value() && args.row_bytes == 0) {
    return absl::InvalidArgumentError(
        "--delta-against needs --row-bytes (the rows a delta replaces), as "
        "the base was saved with");
  }
  if (args.delta_against.has_value() && *args.delta_against >= step) {
    return absl::InvalidArgumentError(
        absl::StrCat("--delta-against ", *args.delta_against,
                     " must be an older step than ", step));
  }

  if (args.quantize_bits.has_value()) {
    const int bits = *args.quantize_bits;
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
      return absl::InvalidArgumentError(
          absl::StrCat("--quantize-bits must be 2, 3, 4 or 8, got ", bits));
    }
    if (args.delta_against.has_value()) {
      return absl::InvalidArgumentError(
          "--quantize-bits cannot go with --delta-against: a quantized "
          "tensor is always saved in full");
    }
    if (args.row_bytes % 4 != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--row-bytes ", args.row_bytes,
          " is not a multiple of 4: --quantize-bits rows are float32"));
    }
  }
  if (!args.dirty_rows.empty() && !args.delta_against.has_value()) {
    return absl::InvalidArgumentError(
        "--dirty-rows needs --delta-against (the step whose rows the others "
        "are taken from) and --row-bytes");
  }

  std::vector<std::unique_ptr<MappedFile>> files;
  std::vector<client::TensorData> tensors;
  absl::flat_hash_set<std::string> names;
  for (const std::string& path : args.files) {
    std::string name = std::filesystem::path(path).filename().string();
    CKPT_RETURN_IF_ERROR(CheckSafeFileName(name));
    if (!names.insert(name).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "two files are named '", name, "'; tensor names must be unique"));
    }
    CKPT_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file,
                          MappedFile::Open(path));
    const auto size = static_cast<int64_t>(file->bytes().size());
    // float32 elements with --quantize-bits, else bytes.
    const int64_t element_bytes = args.quantize_bits.has_value() ? 4 : 1;
    if (size % element_bytes != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, " has ", size,
          " bytes, not a multiple of 4 (float32) for --quantize-bits"));
    }
    std::vector<int64_t> shape = {size / element_bytes};
    if (args.row_bytes > 0) {
      if (size % args.row_bytes != 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, " has ", size, " bytes, not a multiple of ",
                         "--row-bytes ", args.row_bytes));
      }
      shape = {size / args.row_bytes, args.row_bytes / element_bytes};
    }
    client::TensorData tensor;
    tensor.name = name;
    tensor.dtype =
        args.quantize_bits.has_value() ? DType::kFloat32 : DType::kUint8;
    tensor.quantize_bits = args.quantize_bits;
    tensor.global_shape = shape;
    tensor.box.offsets.assign(shape.size(), 0);
    tensor.box.lengths = shape;
    tensor.bytes = file->bytes();
    tensors.push_back(std::move(tensor));
    files.push_back(std::move(file));
  }

  // Checked before any base is read or anything saved.
  CKPT_ASSIGN_OR_RETURN(const GivenRows given,
                        ParseDirtyRows(args.dirty_rows, tensors));
  // Rows changed since the base, per tensor saved as a delta by
  // fingerprints.
  std::vector<std::vector<uint64_t>> changed_rows(tensors.size());
  if (args.delta_against.has_value()) {
    CKPT_ASSIGN_OR_RETURN(Checkpoint base,
                          client.GetManifest(args.job, *args.delta_against));
    for (size_t i = 0; i < tensors.size(); ++i) {
      client::TensorData& tensor = tensors[i];
      absl::StatusOr<const TensorEntry*> base_entry =
          FindDeltaBase(base.shards, client::TensorLayout(tensor));
      if (given[i].has_value()) {
        if (!base_entry.ok()) {
          return absl::FailedPreconditionError(absl::StrCat(
              "--dirty-rows ", tensor.name, ": the base checkpoint, step ",
              *args.delta_against, ", cannot hold the delta's other rows, ",
              base_entry.status().message()));
        }
        tensor.delta_rows = *given[i];
      } else if (base_entry.ok()) {
        CKPT_ASSIGN_OR_RETURN(
            changed_rows[i],
            client::RowsChangedSince(client, args.job, **base_entry, tensor,
                                     /*threads=*/2));
        tensor.delta_rows = changed_rows[i];
      } else {
        continue;  // no such tensor there: full
      }
      tensor.delta_base_step = *args.delta_against;
    }
  }

  CKPT_ASSIGN_OR_RETURN(client::SaveResult result,
                        client.SaveShard(args.job, step, tensors, options));
  if (out.json) {
    PrintJson(
        {{"job", args.job},
         {"step", step},
         {"rank", args.rank},
         {"world_size", args.world_size},
         {"tensors", tensors.size()},
         {"logical_bytes", result.logical_bytes},
         {"chunks_total", result.chunks_total},
         {"chunks_sent", result.chunks_sent},
         {"bytes_sent", result.bytes_sent},
         {"checkpoint_committed", result.checkpoint_committed},
         {"deltas", DeltaSummaries(tensors, given)},
         {"quantized", QuantizedSummaries(result.quantized)},
         {"committed_ranks", result.checkpoint.committed_ranks},
         {"state", std::string(CheckpointStateName(result.checkpoint.state))}});
    return absl::OkStatus();
  }
  std::cout << "saved " << args.job << " step " << step << " rank " << args.rank
            << " of " << args.world_size << ": " << tensors.size()
            << " file(s), " << HumanBytes(result.logical_bytes) << "\n"
            << "chunks: " << result.chunks_total << " total, "
            << result.chunks_sent << " sent (" << HumanBytes(result.bytes_sent)
            << ")\n";
  for (size_t i = 0; i < tensors.size(); ++i) {
    const client::TensorData& tensor = tensors[i];
    if (!tensor.delta_base_step.has_value()) {
      if (args.delta_against.has_value()) {
        std::cout << tensor.name << ": saved in full (step "
                  << *args.delta_against << " has no tensor '" << tensor.name
                  << "' of this dtype and shape)\n";
      }
      continue;
    }
    std::cout << tensor.name << ": delta against step "
              << *tensor.delta_base_step << ", " << tensor.delta_rows.size()
              << " of " << tensor.global_shape[0] << " rows"
              << (given[i].has_value() ? " (from --dirty-rows)" : "") << "\n";
  }
  for (const auto& [name, quantization] : result.quantized) {
    std::cout << name << ": quantized to " << quantization.bits
              << " bits, error " << FormatQuantizationError(quantization)
              << "\n";
  }
  if (result.checkpoint.state == CheckpointState::kCommitted) {
    std::cout << "checkpoint committed\n";
  } else {
    std::cout << "waiting for other ranks: "
              << result.checkpoint.committed_ranks.size() << " of "
              << result.checkpoint.world_size << " committed\n";
  }
  return absl::OkStatus();
}

absl::Status RunGet(client::Client& client, const GetArgs& args,
                    const OutputOptions& out) {
  CKPT_ASSIGN_OR_RETURN(Checkpoint checkpoint,
                        GetManifestAt(client, args.job, args.step, args.rank));
  // Check every name before fetching or writing anything.
  for (const ShardManifest& shard : checkpoint.shards) {
    if (shard.rank != args.rank) continue;
    for (const TensorEntry& entry : shard.tensors) {
      CKPT_RETURN_IF_ERROR(CheckSafeFileName(entry.name));
    }
  }
  std::vector<client::RestoredTensor> tensors;
  {
    ProgressBar bar;
    CKPT_ASSIGN_OR_RETURN(
        tensors, client.RestoreShard(checkpoint, args.rank,
                                     [&](uint64_t done, uint64_t total) {
                                       bar.Update("restoring", done, total,
                                                  ProgressUnit::kBytes);
                                     }));
  }
  std::error_code error;
  std::filesystem::create_directories(args.out_dir, error);
  if (error) {
    return absl::ErrnoToStatus(
        error.value(), absl::StrCat("cannot create '", args.out_dir, "'"));
  }
  json files = json::array();
  std::vector<std::vector<std::string>> rows;
  uint64_t total = 0;
  for (const client::RestoredTensor& tensor : tensors) {
    const std::string path =
        (std::filesystem::path(args.out_dir) / tensor.entry.name).string();
    CKPT_RETURN_IF_ERROR(WriteFile(
        path, absl::string_view(tensor.bytes.data(), tensor.bytes.size())));
    total += tensor.bytes.size();
    files.push_back({{"name", tensor.entry.name},
                     {"path", path},
                     {"bytes", tensor.bytes.size()}});
    rows.push_back({path, HumanBytes(tensor.bytes.size())});
  }
  if (out.json) {
    PrintJson({{"job", args.job},
               {"step", checkpoint.record.step},
               {"rank", args.rank},
               {"bytes", total},
               {"files", files}});
    return absl::OkStatus();
  }
  std::cout << "restored " << args.job << " step " << checkpoint.record.step
            << " rank " << args.rank << ": " << tensors.size() << " file(s), "
            << HumanBytes(total) << "\n";
  PrintTable(std::cout, {"FILE", "SIZE"}, rows);
  return absl::OkStatus();
}

absl::Status RunLs(client::Client& client, const LsArgs& args,
                   const OutputOptions& out) {
  if (args.job.empty()) {
    CKPT_ASSIGN_OR_RETURN(std::vector<client::JobSummary> jobs,
                          client.ListJobs());
    if (out.json) {
      json list = json::array();
      for (const client::JobSummary& job : jobs) {
        list.push_back({{"name", job.job.name},
                        {"checkpoint_count", job.checkpoint_count},
                        {"logical_bytes", job.logical_bytes},
                        {"latest_step", job.latest_step.has_value()
                                            ? json(*job.latest_step)
                                            : json(nullptr)},
                        {"create_time", FormatTimestamp(job.job.create_time)},
                        {"policy", job.job.retention_policy.has_value()
                                       ? PolicyJson(*job.job.retention_policy)
                                       : json(nullptr)}});
      }
      PrintJson(list);
      return absl::OkStatus();
    }
    std::vector<std::vector<std::string>> rows;
    for (const client::JobSummary& job : jobs) {
      rows.push_back({job.job.name, absl::StrCat(job.checkpoint_count),
                      HumanBytes(job.logical_bytes),
                      job.latest_step.has_value()
                          ? absl::StrCat(*job.latest_step)
                          : std::string("-"),
                      job.job.retention_policy.has_value()
                          ? RetentionPolicyText(*job.job.retention_policy)
                          : std::string("-")});
    }
    PrintTable(std::cout, {"JOB", "CHECKPOINTS", "SIZE", "LATEST", "POLICY"},
               rows);
    return absl::OkStatus();
  }

  CKPT_ASSIGN_OR_RETURN(
      std::vector<client::CheckpointUsage> listed,
      client.ListCheckpointsWithUniqueBytes(args.job, args.all));
  if (out.json) {
    json list = json::array();
    for (const client::CheckpointUsage& usage : listed) {
      json value = RecordJson(usage.record);
      value["unique_bytes"] = usage.unique_bytes.has_value()
                                  ? json(*usage.unique_bytes)
                                  : json(nullptr);
      list.push_back(std::move(value));
    }
    PrintJson(list);
    return absl::OkStatus();
  }
  // UNIQUE: what deleting the checkpoint alone would free at the next GC;
  // ADDED: what saving it stored new; BASE: the steps its deltas apply to.
  std::vector<std::string> header = {"STEP",   "TIME",   "WORLD", "KIND",
                                     "BASE",   "SIZE",   "ADDED", "UNIQUE",
                                     "PINNED", "METRICS"};
  if (args.all) header.push_back("STATE");
  std::vector<std::vector<std::string>> rows;
  for (const client::CheckpointUsage& usage : listed) {
    const CheckpointRecord& record = usage.record;
    std::vector<std::string> row = {absl::StrCat(record.step),
                                    FormatTimestamp(DisplayTime(record)),
                                    absl::StrCat(record.world_size),
                                    std::string(CheckpointKindName(record)),
                                    FormatSteps(record.base_steps),
                                    HumanBytes(record.logical_bytes),
                                    HumanBytes(record.bytes_added),
                                    usage.unique_bytes.has_value()
                                        ? HumanBytes(*usage.unique_bytes)
                                        : std::string("-"),
                                    record.pinned ? "pinned" : "-",
                                    FormatMetrics(record.metadata.metrics)};
    if (args.all) row.emplace_back(CheckpointStateName(record.state));
    rows.push_back(std::move(row));
  }
  PrintTable(std::cout, header, rows);
  return absl::OkStatus();
}

namespace {

// "full", "delta" or "quantized Nb".
std::string EntryKind(const TensorEntry& entry) {
  if (entry.IsQuantized()) {
    return absl::StrCat("quantized ", entry.quantization->bits, "b");
  }
  return entry.IsDelta() ? "delta" : "full";
}

// A quantized entry's error, else "-".
std::string FormatQuantizationError(const TensorEntry& entry) {
  return entry.IsQuantized() ? FormatQuantizationError(*entry.quantization)
                             : "-";
}

json QuantizationJson(const TensorEntry& entry) {
  return entry.IsQuantized() ? QuantizationJson(*entry.quantization)
                             : json(nullptr);
}

}  // namespace

absl::Status RunShow(client::Client& client, const ShowArgs& args,
                     const OutputOptions& out) {
  CKPT_ASSIGN_OR_RETURN(Checkpoint checkpoint,
                        GetManifestAt(client, args.job, args.step));
  const CheckpointRecord& record = checkpoint.record;
  if (out.json) {
    json shards = json::array();
    for (const ShardManifest& shard : checkpoint.shards) {
      json tensors = json::array();
      for (const TensorEntry& entry : shard.tensors) {
        json chunks = json::array();
        for (const ChunkRef& piece : entry.pieces) {
          chunks.push_back(
              {{"sha256", piece.id.ToHex()}, {"size", piece.size}});
        }
        tensors.push_back(
            {{"name", entry.name},
             {"dtype", std::string(DTypeName(entry.dtype))},
             {"global_shape", entry.global_shape},
             {"box",
              {{"offsets", entry.box.offsets}, {"lengths", entry.box.lengths}}},
             {"bytes", entry.ByteSize()},
             {"stored_bytes", entry.StoredBytes()},
             {"delta", entry.IsDelta()},
             {"base_step",
              entry.IsDelta() ? json(*entry.delta_base_step) : json(nullptr)},
             {"quantization", QuantizationJson(entry)},
             {"chunk_count", entry.pieces.size()},
             {"chunks", chunks}});
      }
      shards.push_back({{"rank", shard.rank},
                        {"bytes", shard.ByteSize()},
                        {"tensors", tensors}});
    }
    json value = RecordJson(record);
    value["shards"] = shards;
    PrintJson(value);
    return absl::OkStatus();
  }
  std::cout << "job " << record.job << " step " << record.step << " ("
            << CheckpointStateName(record.state) << ", "
            << FormatTimestamp(DisplayTime(record)) << ")\n"
            << "world size " << record.world_size << ", "
            << HumanBytes(record.logical_bytes) << "\n"
            << "kind " << CheckpointKindName(record);
  if (record.IsIncremental()) {
    std::cout << " (deltas against step(s) " << FormatSteps(record.base_steps)
              << ")";
  }
  std::cout << ", " << HumanBytes(record.bytes_added) << " added\n"
            << "metrics: " << FormatMetrics(record.metadata.metrics) << "\n"
            << "tags: " << FormatTags(record.metadata.tags) << "\n\n";
  std::vector<std::vector<std::string>> rows;
  for (const ShardManifest& shard : checkpoint.shards) {
    for (const TensorEntry& entry : shard.tensors) {
      rows.push_back(
          {absl::StrCat(shard.rank), entry.name,
           std::string(DTypeName(entry.dtype)), FormatShape(entry.global_shape),
           FormatBox(entry.box), EntryKind(entry),
           entry.IsDelta() ? absl::StrCat(*entry.delta_base_step)
                           : std::string("-"),
           absl::StrCat(entry.pieces.size()), HumanBytes(entry.ByteSize()),
           HumanBytes(entry.StoredBytes()), FormatQuantizationError(entry)});
    }
  }
  // SIZE: the tensor's bytes; STORED: what its pieces hold (a delta's rows,
  // a quantized tensor's codes); ERROR: a quantized tensor's measured error.
  PrintTable(std::cout,
             {"RANK", "TENSOR", "DTYPE", "SHAPE", "BOX", "KIND", "BASE",
              "CHUNKS", "SIZE", "STORED", "ERROR"},
             rows);
  return absl::OkStatus();
}

absl::Status RunRm(client::Client& client, const RmArgs& args,
                   const OutputOptions& out) {
  CKPT_ASSIGN_OR_RETURN(int64_t step, ParseStep(args.step));
  CKPT_RETURN_IF_ERROR(client.DeleteCheckpoint(args.job, step));
  if (out.json) {
    PrintJson({{"job", args.job}, {"step", step}, {"deleted", true}});
  } else {
    std::cout << "deleted " << args.job << " step " << step
              << " (chunk space is reclaimed by garbage collection)\n";
  }
  return absl::OkStatus();
}

absl::Status RunStats(client::Client& client, const StatsArgs& args,
                      const OutputOptions& out) {
  CKPT_ASSIGN_OR_RETURN(client::Stats stats, client.GetStats(args.job));
  const double dedup_ratio =
      DedupRatio(stats.logical_bytes, stats.stored_bytes);
  if (out.json) {
    json jobs = json::array();
    for (const client::JobStats& job : stats.jobs) {
      jobs.push_back({{"job", job.job},
                      {"checkpoint_count", job.checkpoint_count},
                      {"logical_bytes", job.logical_bytes}});
    }
    json tenants = json::array();
    for (const client::TenantStats& tenant : stats.tenants) {
      tenants.push_back({{"tenant", tenant.tenant},
                         {"job_count", tenant.job_count},
                         {"checkpoint_count", tenant.checkpoint_count},
                         {"logical_bytes", tenant.logical_bytes},
                         {"stored_bytes", tenant.stored_bytes},
                         {"chunk_count", tenant.chunk_count},
                         {"dedup_ratio", DedupRatio(tenant.logical_bytes,
                                                    tenant.stored_bytes)}});
    }
    json value = {{"logical_bytes", stats.logical_bytes},
                  {"stored_bytes", stats.stored_bytes},
                  {"chunk_count", stats.chunk_count},
                  {"dedup_ratio", dedup_ratio},
                  {"job_count", stats.job_count},
                  {"checkpoint_count", stats.checkpoint_count},
                  {"jobs", jobs},
                  {"tenants", tenants}};
    if (!args.job.empty()) value["job"] = args.job;
    PrintJson(value);
    return absl::OkStatus();
  }
  std::cout << (args.job.empty() ? std::string("server")
                                 : absl::StrCat("job ", args.job))
            << "\n";
  std::vector<std::vector<std::string>> rows = {
      {"logical bytes", absl::StrCat(HumanBytes(stats.logical_bytes), " (",
                                     stats.logical_bytes, ")")},
      {"stored bytes", absl::StrCat(HumanBytes(stats.stored_bytes), " (",
                                    stats.stored_bytes, ")")},
      {"chunks", absl::StrCat(stats.chunk_count)},
      {"dedup ratio", FormatRatio(dedup_ratio)},
      {"checkpoints", absl::StrCat(stats.checkpoint_count)},
  };
  if (args.job.empty()) {
    rows.push_back({"jobs", absl::StrCat(stats.job_count)});
  }
  for (const auto& row : rows) {
    std::cout << "  " << row[0] << std::string(15 - row[0].size(), ' ')
              << row[1] << "\n";
  }
  std::vector<std::vector<std::string>> job_rows;
  for (const client::JobStats& job : stats.jobs) {
    job_rows.push_back({job.job, absl::StrCat(job.checkpoint_count),
                        HumanBytes(job.logical_bytes)});
  }
  std::cout << "\n";
  PrintTable(std::cout, {"JOB", "CHECKPOINTS", "LOGICAL"}, job_rows);
  // Chunks are stored, and deduplicated, per tenant.
  std::vector<std::vector<std::string>> tenant_rows;
  for (const client::TenantStats& tenant : stats.tenants) {
    tenant_rows.push_back(
        {tenant.tenant, absl::StrCat(tenant.job_count),
         absl::StrCat(tenant.checkpoint_count),
         HumanBytes(tenant.logical_bytes), HumanBytes(tenant.stored_bytes),
         absl::StrCat(tenant.chunk_count),
         FormatRatio(DedupRatio(tenant.logical_bytes, tenant.stored_bytes))});
  }
  std::cout << "\n";
  PrintTable(
      std::cout,
      {"TENANT", "JOBS", "CHECKPOINTS", "LOGICAL", "STORED", "CHUNKS", "DEDUP"},
      tenant_rows);
  return absl::OkStatus();
}

absl::Status RunPolicySet(client::Client& client, const PolicySetArgs& args,
                          const OutputOptions& out) {
  if (!args.flags.keep_every.empty()) {
    return absl::InvalidArgumentError(
        "policy set takes --keep-every-n-hours H, not --keep-every");
  }
  CKPT_ASSIGN_OR_RETURN(RetentionPolicy policy,
                        ParsePolicyFlags(args.flags, "--max-to-keep"));
  CKPT_ASSIGN_OR_RETURN(std::vector<int64_t> deleted,
                        client.SetRetentionPolicy(args.job, policy));
  if (out.json) {
    PrintJson({{"job", args.job},
               {"policy", PolicyJson(policy)},
               {"deleted_steps", deleted}});
    return absl::OkStatus();
  }
  std::cout << "policy of " << args.job << ": " << RetentionPolicyText(policy)
            << "\n";
  if (deleted.empty()) {
    std::cout << "applied: nothing to delete\n";
  } else {
    std::cout << "applied: deleted " << deleted.size()
              << " checkpoint(s), steps " << absl::StrJoin(deleted, ", ")
              << "\n";
  }
  return absl::OkStatus();
}

absl::Status RunPolicyGet(client::Client& client, const PolicyGetArgs& args,
                          const OutputOptions& out) {
  CKPT_ASSIGN_OR_RETURN(std::optional<RetentionPolicy> policy,
                        client.GetRetentionPolicy(args.job));
  if (out.json) {
    PrintJson(
        {{"job", args.job},
         {"policy", policy.has_value() ? PolicyJson(*policy) : json(nullptr)}});
    return absl::OkStatus();
  }
  std::cout << "policy of " << args.job << ": "
            << (policy.has_value() ? RetentionPolicyText(*policy)
                                   : std::string("none (keep everything)"))
            << "\n";
  return absl::OkStatus();
}

absl::Status RunPin(client::Client& client, const PinArgs& args,
                    const OutputOptions& out) {
  CKPT_ASSIGN_OR_RETURN(int64_t step, ParseStep(args.step));
  CKPT_ASSIGN_OR_RETURN(CheckpointRecord record,
                        client.PinCheckpoint(args.job, step, args.pinned));
  if (out.json) {
    PrintJson({{"job", args.job}, {"step", step}, {"pinned", record.pinned}});
  } else {
    std::cout << (record.pinned ? "pinned " : "unpinned ") << args.job
              << " step " << step << "\n";
  }
  return absl::OkStatus();
}

absl::Status RunPrune(client::Client& client, const PruneArgs& args,
                      const OutputOptions& out) {
  if (!args.flags.keep_every_n_hours.empty()) {
    return absl::InvalidArgumentError(
        "prune takes --keep-every DURATION (e.g. 6h), not "
        "--keep-every-n-hours");
  }
  std::optional<RetentionPolicy> policy;  // nullopt: the stored one
  if (AnyPolicyFlag(args.flags)) {
    CKPT_ASSIGN_OR_RETURN(policy, ParsePolicyFlags(args.flags, "--keep-last"));
  }
  CKPT_ASSIGN_OR_RETURN(
      std::vector<RetentionDecision> decisions,
      client.PruneCheckpoints(args.job, policy, args.dry_run));
  std::vector<int64_t> deleted;
  for (const auto& decision : decisions) {
    if (!decision.keep) deleted.push_back(decision.step);
  }
  if (out.json) {
    json list = json::array();
    for (const auto& decision : decisions) {
      list.push_back({{"step", decision.step},
                      {"keep", decision.keep},
                      {"action", decision.keep ? "keep" : "delete"},
                      {"reasons", decision.reasons}});
    }
    PrintJson(
        {{"job", args.job},
         {"dry_run", args.dry_run},
         {"policy", policy.has_value() ? PolicyJson(*policy) : json("stored")},
         {"decisions", list},
         {"deleted_steps", deleted}});
    return absl::OkStatus();
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& decision : decisions) {
    rows.push_back({absl::StrCat(decision.step),
                    decision.keep ? "keep" : "delete",
                    absl::StrJoin(decision.reasons, "; ")});
  }
  PrintTable(std::cout, {"STEP", "ACTION", "REASONS"}, rows);
  std::cout << (args.dry_run ? "dry run: would delete " : "deleted ")
            << deleted.size() << " of " << decisions.size() << " checkpoint(s)"
            << (args.dry_run ? "; nothing was deleted" : "") << "\n";
  return absl::OkStatus();
}

absl::Status RunGc(client::Client& client, const GcArgs& args,
                   const OutputOptions& out) {
  if (!out.json && isatty(STDERR_FILENO)) {
    std::cerr << (args.dry_run ? "finding garbage" : "collecting garbage")
              << " on the server (reads every manifest; may take a while)..."
              << std::endl;
  }
  CKPT_ASSIGN_OR_RETURN(GcReport report, client.CollectGarbage(args.dry_run));
  if (out.json) {
    json damaged = json::array();
    for (const DamagedCheckpoint& entry : report.damaged) {
      json missing = json::array();
      for (const ChunkId& id : entry.missing_chunks)
        missing.push_back(id.ToHex());
      damaged.push_back({{"job", entry.job},
                         {"step", entry.step},
                         {"state", CheckpointStateName(entry.state)},
                         {"missing_chunks", missing}});
    }
    json skipped = json::array();
    for (const auto& [tenant, reason] : report.skipped_tenants) {
      skipped.push_back({{"tenant", tenant}, {"reason", reason}});
    }
    PrintJson({{"dry_run", report.dry_run},
               {"chunks_scanned", report.chunks_scanned},
               {"bytes_scanned", report.bytes_scanned},
               {"chunks_referenced", report.chunks_referenced},
               {"chunks_held", report.chunks_held},
               {"chunks_deleted", report.chunks_deleted},
               {"bytes_deleted", report.bytes_deleted},
               {"disk_bytes_before", report.disk_bytes_before},
               {"disk_bytes_after", report.disk_bytes_after},
               {"skipped_tenants", skipped},
               {"damaged", damaged},
               {"duration_seconds", absl::ToDoubleSeconds(report.duration)}});
  } else {
    std::cout << "scanned " << report.chunks_scanned << " chunk(s) ("
              << HumanBytes(report.bytes_scanned) << "); "
              << report.chunks_referenced << " referenced; "
              << report.chunks_held << " held for saves in flight\n";
    for (const auto& [tenant, reason] : report.skipped_tenants) {
      std::cout << "skipped tenant " << tenant << ": " << reason << "\n";
    }
    if (!report.damaged.empty()) {
      std::vector<std::vector<std::string>> rows;
      for (const DamagedCheckpoint& entry : report.damaged) {
        std::vector<std::string> ids;
        for (const ChunkId& id : entry.missing_chunks) {
          ids.push_back(id.ShortHex());
        }
        rows.push_back({entry.job, absl::StrCat(entry.step),
                        std::string(CheckpointStateName(entry.state)),
                        absl::StrJoin(ids, ", ")});
      }
      PrintTable(std::cout, {"JOB", "STEP", "STATE", "MISSING CHUNKS"}, rows);
    } else if (report.dry_run) {
      std::cout << "dry run: would delete " << report.chunks_deleted
                << " chunk(s) (" << HumanBytes(report.bytes_deleted)
                << "); nothing was deleted\n";
    } else {
      std::cout << "deleted " << report.chunks_deleted << " chunk(s) ("
                << HumanBytes(report.bytes_deleted) << ")\n";
      if (report.chunks_deleted > 0) {
        const uint64_t freed =
            report.disk_bytes_before > report.disk_bytes_after
                ? report.disk_bytes_before - report.disk_bytes_after
                : 0;
        std::cout << "chunk store on disk: "
                  << HumanBytes(report.disk_bytes_before) << " -> "
                  << HumanBytes(report.disk_bytes_after) << " (freed "
                  << HumanBytes(freed) << ")\n";
      }
    }
    std::cout << "took " << absl::FormatDuration(report.duration) << "\n";
  }
  if (!report.damaged.empty()) {
    return absl::DataLossError(absl::StrCat(
        report.damaged.size(),
        " checkpoint(s) reference missing chunks, so nothing was deleted; "
        "`ckpt verify` names them, and deleting them lets GC run"));
  }
  return absl::OkStatus();
}

namespace {

// Damaged chunks' checkpoints named in a table cell before "...".
constexpr size_t kMaxCheckpointsPerCell = 4;

std::string FormatCheckpoint(const CheckpointKey& key) {
  return absl::StrCat(key.job, "@", key.step);
}

json VerifyReportJson(const VerifyArgs& args, std::optional<int64_t> step,
                      const VerifyReport& report) {
  json chunks = json::array();
  for (const VerifyReport::DamagedChunk& chunk : report.damaged_chunks) {
    json checkpoints = json::array();
    for (const CheckpointKey& key : chunk.checkpoints) {
      checkpoints.push_back({{"job", key.job}, {"step", key.step}});
    }
    chunks.push_back({{"chunk", chunk.id.ShortHex()},
                      {"sha256", chunk.id.ToHex()},
                      {"tenant", chunk.tenant},
                      {"size", chunk.size},
                      {"problem", std::string(ChunkProblemName(chunk.problem))},
                      {"detail", chunk.detail},
                      {"checkpoints", checkpoints}});
  }
  json checkpoints = json::array();
  for (const VerifyReport::DamagedCheckpoint& damaged :
       report.damaged_checkpoints) {
    checkpoints.push_back({{"job", damaged.checkpoint.job},
                           {"step", damaged.checkpoint.step},
                           {"missing_chunks", damaged.missing_chunks},
                           {"corrupt_chunks", damaged.corrupt_chunks},
                           {"problems", damaged.problems}});
  }
  return {{"job", args.job.empty() ? json(nullptr) : json(args.job)},
          {"step", step.has_value() ? json(*step) : json(nullptr)},
          {"read_data", report.read_data},
          {"read_data_subset", report.read_data_subset.has_value()
                                   ? json(report.read_data_subset->ToString())
                                   : json(nullptr)},
          {"ok", report.ok()},
          {"checkpoints_checked", report.checkpoints_checked},
          {"pending_skipped", report.pending_skipped},
          {"chunks_checked", report.chunks_checked},
          {"chunks_read", report.chunks_read},
          {"bytes_read", report.bytes_read},
          {"damaged_chunk_count", report.damaged_chunk_count},
          {"damaged_chunks", chunks},
          {"damaged_checkpoints", checkpoints}};
}

void PrintVerifyReport(const VerifyArgs& args, std::optional<int64_t> step,
                       const VerifyReport& report) {
  const std::string scope =
      args.job.empty()   ? std::string("all jobs")
      : step.has_value() ? FormatCheckpoint(CheckpointKey{args.job, *step})
                         : args.job;
  std::cout << "verified " << report.checkpoints_checked
            << " committed checkpoint(s) of " << scope;
  if (report.pending_skipped > 0) {
    std::cout << " (" << report.pending_skipped << " pending skipped)";
  }
  std::cout << "\n"
            << "  " << report.chunks_checked
            << " chunk(s) checked for presence";
  if (report.read_data) {
    std::cout << "; " << report.chunks_read << " read and hashed ("
              << HumanBytes(report.bytes_read) << ")";
    if (report.read_data_subset.has_value()) {
      std::cout << ", subset " << report.read_data_subset->ToString();
    }
  } else {
    std::cout << "; data not read (--read-data reads it)";
  }
  std::cout << "\n";
  if (report.ok()) {
    std::cout << "no damage found\n";
    return;
  }
  if (report.damaged_chunk_count > 0) {
    std::vector<std::vector<std::string>> rows;
    for (const VerifyReport::DamagedChunk& chunk : report.damaged_chunks) {
      std::vector<std::string> names;
      for (const CheckpointKey& key : chunk.checkpoints) {
        if (names.size() == kMaxCheckpointsPerCell) {
          names.push_back(
              absl::StrCat("... (", chunk.checkpoints.size(), " in all)"));
          break;
        }
        names.push_back(FormatCheckpoint(key));
      }
      rows.push_back({chunk.id.ShortHex(), chunk.tenant, HumanBytes(chunk.size),
                      std::string(ChunkProblemName(chunk.problem)),
                      absl::StrJoin(names, ", "), chunk.detail});
    }
    std::cout << "\ndamaged chunks: " << report.damaged_chunk_count;
    if (report.damaged_chunks.size() < report.damaged_chunk_count) {
      std::cout << " (first " << report.damaged_chunks.size() << " listed)";
    }
    std::cout << "\n";
    PrintTable(std::cout,
               {"CHUNK", "TENANT", "SIZE", "PROBLEM", "CHECKPOINTS", "DETAIL"},
               rows);
  }
  std::vector<std::vector<std::string>> rows;
  for (const VerifyReport::DamagedCheckpoint& damaged :
       report.damaged_checkpoints) {
    rows.push_back({FormatCheckpoint(damaged.checkpoint),
                    absl::StrCat(damaged.missing_chunks),
                    absl::StrCat(damaged.corrupt_chunks),
                    damaged.problems.empty()
                        ? std::string("-")
                        : absl::StrJoin(damaged.problems, "; ")});
  }
  std::cout << "\ndamaged checkpoints: " << report.damaged_checkpoints.size()
            << "\n";
  PrintTable(std::cout, {"CHECKPOINT", "MISSING", "CORRUPT", "PROBLEMS"}, rows);
}

}  // namespace

absl::Status RunVerify(client::Client& client, const VerifyArgs& args,
                       const OutputOptions& out) {
  VerifyOptions options;
  options.job = args.job;
  options.read_data = args.read_data;
  if (!args.read_data_subset.empty()) {
    absl::StatusOr<ReadDataSubset> subset =
        ParseReadDataSubset(args.read_data_subset);
    if (!subset.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--read-data-subset: ", subset.status().message()));
    }
    options.read_data_subset = *subset;
  }
  if (args.step == "latest") {
    CKPT_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> records,
                          client.ListCheckpoints(args.job));
    if (records.empty()) {
      return absl::NotFoundError(
          absl::StrCat("job '", args.job, "' has no committed checkpoint"));
    }
    options.step = records.back().step;
  } else if (!args.step.empty()) {
    CKPT_ASSIGN_OR_RETURN(options.step, ParseStep(args.step));
  }

  absl::StatusOr<VerifyReport> report;
  {
    ProgressBar bar;
    report = client.VerifyCheckpoints(options, [&](const VerifyProgress& now) {
      if (now.stage == VerifyStage::kExistence) {
        bar.Update("checking chunks", now.chunks_done, now.chunks_total,
                   ProgressUnit::kCount);
      } else {
        bar.Update("reading data", now.bytes_done, now.bytes_total,
                   ProgressUnit::kBytes);
      }
    });
  }
  CKPT_RETURN_IF_ERROR(report.status());
  if (out.json) {
    PrintJson(VerifyReportJson(args, options.step, *report));
  } else {
    PrintVerifyReport(args, options.step, *report);
  }
  if (report->ok()) return absl::OkStatus();
  return absl::DataLossError(
      absl::StrCat("verify found damage: ", report->damaged_chunk_count,
                   " damaged chunk(s), ", report->damaged_checkpoints.size(),
                   " damaged checkpoint(s)"));
}

absl::Status RunEvents(client::Client& client, const EventsArgs& args,
                       const OutputOptions& out) {
  if (args.limit < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--limit must be >= 0 (0: every kept event), got ", args.limit));
  }
  CKPT_ASSIGN_OR_RETURN(std::vector<JobEvent> events,
                        client.ListEvents(args.job, args.limit));
  if (out.json) {
    json list = json::array();
    for (const JobEvent& event : events) {
      list.push_back(
          {{"sequence", event.sequence},
           {"time", FormatTimestamp(event.time)},
           {"step", event.step.has_value() ? json(*event.step) : json(nullptr)},
           {"kind", std::string(EventKindName(event.kind))},
           {"detail", event.detail}});
    }
    PrintJson(list);
    return absl::OkStatus();
  }
  std::vector<std::vector<std::string>> rows;
  for (const JobEvent& event : events) {
    rows.push_back(
        {FormatTimestamp(event.time),
         event.step.has_value() ? absl::StrCat(*event.step) : std::string("-"),
         std::string(EventKindName(event.kind)),
         event.detail.empty() ? std::string("-") : event.detail});
  }
  PrintTable(std::cout, {"TIME", "STEP", "KIND", "DETAIL"}, rows);
  return absl::OkStatus();
}

}  // namespace ckpt::cli
