// ckpt._ckpt: a thin, typed pybind11 layer over ckpt::client::Client. The
// Python package (client/python/ckpt/) builds the user-facing API on it.
//
// Contract kept here:
// - Tensor bytes are never copied on the way in (SaveShard reads the
//   callers' buffers through Py_buffer views held for the whole call) nor on
//   the way out (a restored tensor's bytes are moved into the numpy array's
//   owner, or read straight into caller-provided writable buffers).
// - The GIL is released around every network call.
// - A non-OK absl::Status becomes ValueError (INVALID_ARGUMENT), KeyError
//   (NOT_FOUND) or ckpt.Error (everything else); each carries `.code`, the
//   status code's name, and `.message`.
// Past 600 lines because it is one job, the binding of the Client facade:
// each method's argument and result conversion sits next to its def().
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "client/incremental.h"
#include "client/python/best_checkpoint_binding.h"
#include "client/python/exit_status.h"
#include "client/python/portable_binding.h"
#include "client/python/py_common.h"
#include "client/python/region_binding.h"
#include "client/python/staging_binding.h"
#include "client/security_settings.h"
#include "common/duration_text.h"
#include "common/manifest.h"
#include "common/quantize.h"
#include "common/retention.h"
#include "common/retention_policy.h"

namespace py = pybind11;

namespace ckpt::client {
namespace {

RetentionPolicy::KeepBest::Mode ParseMode(const std::string& mode) {
  if (mode == "min") return RetentionPolicy::KeepBest::Mode::kMin;
  if (mode == "max") return RetentionPolicy::KeepBest::Mode::kMax;
  if (mode == "auto") return RetentionPolicy::KeepBest::Mode::kAuto;
  ThrowValueError(absl::StrCat("keep_best mode must be min, max or auto, not '",
                               mode, "'"));
}

// {"max_to_keep": int|None, "keep_checkpoint_every_n_hours": float|None,
//  "keep_best": (k, metric, mode)|None}; absent keys are None.
RetentionPolicy PolicyFromDict(const py::dict& dict) {
  RetentionPolicy policy;
  for (const auto& [key_handle, value] : dict) {
    const std::string key = py::cast<std::string>(key_handle);
    if (value.is_none()) continue;
    if (key == "max_to_keep") {
      policy.max_to_keep = py::cast<int>(value);
    } else if (key == "keep_checkpoint_every_n_hours") {
      const double hours = py::cast<double>(value);
      policy.keep_every = absl::Seconds(hours * 3600.0);
    } else if (key == "keep_best") {
      auto [k, metric, mode] =
          py::cast<std::tuple<int, std::string, std::string>>(value);
      policy.keep_best = RetentionPolicy::KeepBest{
          .k = k, .metric = std::move(metric), .mode = ParseMode(mode)};
    } else if (key == "keep_within") {
      policy.keep_within = absl::Seconds(py::cast<double>(value));
    } else if (key == "keep_hourly") {
      policy.keep_hourly = py::cast<int>(value);
    } else if (key == "keep_daily") {
      policy.keep_daily = py::cast<int>(value);
    } else if (key == "keep_weekly") {
      policy.keep_weekly = py::cast<int>(value);
    } else if (key == "keep_monthly") {
      policy.keep_monthly = py::cast<int>(value);
    } else if (key == "keep_tags") {
      policy.keep_tags = py::cast<std::vector<std::string>>(value);
    } else {
      ThrowValueError(absl::StrCat("unknown retention policy key '", key, "'"));
    }
  }
  return policy;
}

py::dict PolicyToDict(const RetentionPolicy& policy) {
  py::dict dict;
  dict["max_to_keep"] = policy.max_to_keep.has_value()
                            ? py::object(py::int_(*policy.max_to_keep))
                            : py::object(py::none());
  dict["keep_checkpoint_every_n_hours"] =
      policy.keep_every.has_value()
          ? py::object(py::float_(absl::ToDoubleHours(*policy.keep_every)))
          : py::object(py::none());
  if (policy.keep_best.has_value()) {
    dict["keep_best"] =
        py::make_tuple(policy.keep_best->k, policy.keep_best->metric,
                       std::string(MetricModeName(policy.keep_best->mode)));
  } else {
    dict["keep_best"] = py::none();
  }
  auto optional = [](const auto& value) {
    return value.has_value() ? py::cast(*value) : py::object(py::none());
  };
  dict["keep_within"] =
      policy.keep_within.has_value()
          ? py::object(py::float_(absl::ToDoubleSeconds(*policy.keep_within)))
          : py::object(py::none());
  dict["keep_hourly"] = optional(policy.keep_hourly);
  dict["keep_daily"] = optional(policy.keep_daily);
  dict["keep_weekly"] = optional(policy.keep_weekly);
  dict["keep_monthly"] = optional(policy.keep_monthly);
  dict["keep_tags"] = policy.keep_tags;
  return dict;
}

// (name, dtype, global_shape, offsets, lengths, array): the Python shape of
// a restored tensor region.
py::tuple RestoredTuple(const TensorEntry& entry, const py::object& array) {
  return py::make_tuple(entry.name, std::string(DTypeName(entry.dtype)),
                        entry.global_shape, entry.box.offsets,
                        entry.box.lengths, array);
}

// A save's arguments converted from Python: its options and tensors, and
// the buffer views that keep the tensors' bytes readable meanwhile.
struct PreparedSave {
  PreparedSave(const std::vector<PyTensor>& tensors, int32_t rank,
               int32_t world_size, const std::map<std::string, double>& metrics,
               const std::map<std::string, std::string>& tags,
               std::optional<double> writer_time,
               const std::optional<py::dict>& retention_policy,
               std::optional<size_t> chunk_bytes,
               const std::map<std::string, int>& quantize) {
    options.rank = rank;
    options.world_size = world_size;
    options.metadata.metrics = metrics;
    options.metadata.tags = tags;
    if (writer_time.has_value()) {
      options.metadata.writer_time = TimeOfUnixSeconds(*writer_time);
    }
    if (retention_policy.has_value()) {
      options.retention_policy = PolicyFromDict(*retention_policy);
    }
    if (chunk_bytes.has_value()) options.chunk_bytes = *chunk_bytes;
    views.reserve(tensors.size());
    data.reserve(tensors.size());
    for (const PyTensor& given : tensors) {
      TensorData tensor = TensorFromPython(given, &views);
      if (auto bits = quantize.find(tensor.name); bits != quantize.end()) {
        tensor.quantize_bits = bits->second;
      }
      data.push_back(std::move(tensor));
    }
    for (const auto& [name, bits] : quantize) {
      const bool known =
          std::any_of(data.begin(), data.end(),
                      // An init-capture: clang before 16 cannot capture a
                      // structured binding (C++20 allows it).
                      [&quantized = name](const TensorData& t) {
                        return t.name == quantized;
                      });
      if (!known) {
        ThrowValueError(absl::StrCat("quantize names tensor '", name,
                                     "', which is not among those saved"));
      }
    }
  }

  SaveOptions options;
  std::vector<std::unique_ptr<BufferView>> views;
  std::vector<TensorData> data;
};

// An IncrementalSaver (client/incremental.h) for one rank of one job, as
// CheckpointManager(incremental=True) owns it.
class PySaver {
 public:
  PySaver(const std::string& delta_mode, double max_delta_fraction,
          int max_chain_length, int min_dims, int fingerprint_threads) {
    IncrementalOptions options;
    if (delta_mode == "intermittent") {
      options.policy.mode = DeltaMode::kIntermittent;
    } else if (delta_mode == "consecutive") {
      options.policy.mode = DeltaMode::kConsecutive;
    } else {
      ThrowValueError(absl::StrCat(
          "delta_mode must be 'intermittent' or 'consecutive', not '",
          delta_mode, "'"));
    }
    if (!(max_delta_fraction > 0 && max_delta_fraction <= 1)) {
      ThrowValueError(absl::StrCat("max_delta_fraction must be in (0, 1], not ",
                                   max_delta_fraction));
    }
    if (max_chain_length < 1) {
      ThrowValueError(absl::StrCat("max_chain_length must be >= 1, not ",
                                   max_chain_length));
    }
    if (fingerprint_threads < 1) {
      ThrowValueError(absl::StrCat("fingerprint_threads must be >= 1, not ",
                                   fingerprint_threads));
    }
    options.policy.max_delta_fraction = max_delta_fraction;
    options.policy.max_chain_length = max_chain_length;
    options.min_dims = min_dims;
    options.fingerprint_threads = fingerprint_threads;
    saver_ = std::make_unique<IncrementalSaver>(options);
  }

  // SaveIncremental with this saver, one at a time.
  absl::StatusOr<SaveResult> Save(
      Client& client, const std::string& job, int64_t step,
      absl::Span<const TensorData> tensors, const SaveOptions& options,
      const std::map<std::string, std::vector<uint64_t>>& dirty_rows,
      IncrementalPlan* plan) {
    absl::MutexLock lock(&mu_);
    return SaveIncremental(client, *saver_, job, step, tensors, options,
                           dirty_rows, plan);
  }

  // The next save of every tensor is full.
  void Forget() {
    absl::MutexLock lock(&mu_);
    saver_->Forget();
  }

  // IncrementalSaver::SeedFromCheckpoint, one at a time with saves.
  SeedReport Seed(Client& client, const std::string& job, int64_t step,
                  absl::Span<const TensorEntry> entries, int32_t rank) {
    absl::MutexLock lock(&mu_);
    return saver_->SeedFromCheckpoint(client, job, step, entries, {}, rank);
  }

 private:
  absl::Mutex mu_;  // one save at a time
  std::unique_ptr<IncrementalSaver> saver_ ABSL_GUARDED_BY(mu_);
};
// A Client argument that falls back to an environment variable: None reads
// `env` (unset: empty), anything else is a str, bytes or os.PathLike (an empty
// string turns the setting off despite the variable).
std::string ArgumentOrEnv(const py::object& value, const char* env) {
  if (value.is_none()) {
    const char* from_env = std::getenv(env);
    return from_env != nullptr ? from_env : "";
  }
  // str, bytes or os.PathLike, decoded as the file system does.
  return py::str(py::module_::import("os").attr("fsdecode")(value));
}

class PyClient {
 public:
  PyClient(const std::string& address, double connect_timeout_seconds,
           bool shared_memory_restore, const py::object& tls_ca,
           const py::object& tls_cert, const py::object& tls_key,
           const py::object& tls_server_name, const py::object& token,
           double stream_stall_timeout_seconds) {
    ConnectOptions options;
    options.connect_timeout = absl::Seconds(connect_timeout_seconds);
    // absl::Seconds(inf) is absl::InfiniteDuration(): no bound. Connect
    // refuses a bound that is not positive.
    options.stream_stall_timeout = absl::Seconds(stream_stall_timeout_seconds);
    options.shared_memory_restore = shared_memory_restore;
    SecuritySettings security;
    security.tls_ca_file = ArgumentOrEnv(tls_ca, kTlsCaEnv);
    security.tls_cert_file = ArgumentOrEnv(tls_cert, kTlsCertEnv);
    security.tls_key_file = ArgumentOrEnv(tls_key, kTlsKeyEnv);
    security.tls_server_name =
        ArgumentOrEnv(tls_server_name, kTlsServerNameEnv);
    security.token = ArgumentOrEnv(token, kTokenEnv);
    CheckOk(ApplySecuritySettings(
        security,
        {.tls_ca = "tls_ca (or $CKPT_TLS_CA)",
         .tls_cert = "tls_cert (or $CKPT_TLS_CERT)",
         .tls_key = "tls_key (or $CKPT_TLS_KEY)",
         .tls_server_name = "tls_server_name (or $CKPT_TLS_SERVER_NAME)",
         .token_file = ""},
        &options));
    absl::StatusOr<std::unique_ptr<Client>> client;
    {
      py::gil_scoped_release release;
      client = Client::Connect(address, options);
    }
    client_ = ValueOrThrow(std::move(client));
  }

  // With `saver`, saves through SaveIncremental: `dirty_rows` maps tensor
  // names to 1-D integer arrays of the rows changed since the previous
  // save, and the result has "plan": a list of (name, "full"|"delta",
  // base_step, changed_rows, reason) per tensor.
  py::dict SaveShard(
      const std::string& job, int64_t step,
      const std::vector<PyTensor>& tensors, int32_t rank, int32_t world_size,
      const std::map<std::string, double>& metrics,
      const std::map<std::string, std::string>& tags,
      std::optional<double> writer_time,
      const std::optional<py::dict>& retention_policy,
      std::optional<size_t> chunk_bytes, PySaver* saver,
      const std::map<std::string, py::array_t<int64_t>>& dirty_rows,
      const std::map<std::string, int>& quantize) {
    PreparedSave save(tensors, rank, world_size, metrics, tags, writer_time,
                      retention_policy, chunk_bytes, quantize);
    if (saver == nullptr && !dirty_rows.empty()) {
      ThrowValueError("dirty_rows need an IncrementalSaver");
    }
    std::map<std::string, std::vector<uint64_t>> dirty;
    for (const auto& [name, rows] : dirty_rows) {
      if (rows.ndim() != 1) {
        ThrowValueError(absl::StrCat("dirty rows of '", name,
                                     "' must be a 1-D array of row indices"));
      }
      std::vector<uint64_t>& out = dirty[name];
      out.reserve(rows.shape(0));
      auto view = rows.unchecked<1>();
      for (py::ssize_t i = 0; i < rows.shape(0); ++i) {
        if (view(i) < 0) {
          ThrowValueError(absl::StrCat("dirty row ", view(i), " of '", name,
                                       "' is negative"));
        }
        out.push_back(static_cast<uint64_t>(view(i)));
      }
    }
    IncrementalPlan plan;
    absl::StatusOr<SaveResult> result;
    {
      py::gil_scoped_release release;
      result = saver == nullptr
                   ? client_->SaveShard(job, step, save.data, save.options)
                   : saver->Save(*client_, job, step, save.data, save.options,
                                 dirty, &plan);
    }
    py::dict dict = SaveResultToDict(ValueOrThrow(std::move(result)));
    if (saver != nullptr) {
      py::list decisions;
      for (const TensorPlan& decided : plan.decisions()) {
        const bool delta = decided.decision.kind == DeltaDecision::Kind::kDelta;
        decisions.append(py::make_tuple(
            decided.name, delta ? "delta" : "full",
            decided.decision.base_step.has_value()
                ? py::object(py::int_(*decided.decision.base_step))
                : py::object(py::none()),
            decided.changed_rows, decided.decision.reason));
      }
      dict["plan"] = decisions;
    }
    return dict;
  }

  // Makes `saver`'s next save a delta on committed checkpoint `step` (as
  // restored by rank `rank`), from the fingerprints stored with it:
  // IncrementalSaver::SeedFromCheckpoint. Returns its report as a dict
  // (step, fingerprint_bytes_read, tensors: [(name, seeded, how)]). When
  // its manifest cannot be read (e.g. the checkpoint is gone since the
  // restore) nothing is seeded, the next save is full, and "error" says
  // why.
  py::dict SeedSaver(PySaver& saver, const std::string& job, int64_t step,
                     int32_t rank) {
    SeedReport report;
    absl::Status manifest_status;
    {
      py::gil_scoped_release release;
      absl::StatusOr<Checkpoint> checkpoint = client_->GetManifest(job, step);
      if (checkpoint.ok()) {
        std::vector<TensorEntry> entries;
        for (const ShardManifest& shard : checkpoint->shards) {
          if (shard.rank == rank) entries = shard.tensors;
        }
        report = saver.Seed(*client_, job, step, entries, rank);
      } else {
        saver.Forget();
        report.step = step;
        manifest_status = checkpoint.status();
      }
    }
    py::list tensors;
    for (const SeedReport::Tensor& tensor : report.tensors) {
      tensors.append(py::make_tuple(tensor.name, tensor.seeded, tensor.how));
    }
    py::dict out;
    out["step"] = report.step;
    out["fingerprint_bytes_read"] = report.fingerprint_bytes_read;
    out["tensors"] = tensors;
    if (!manifest_status.ok()) {
      // Nothing seeded: the next save is full. Why, for the caller.
      out["error"] = manifest_status.ToString();
    }
    return out;
  }

  // New numpy arrays over the memory the client restored into (no copy).
  py::list RestoreShard(const std::string& job, std::optional<int64_t> step,
                        int32_t rank) {
    absl::StatusOr<std::vector<RestoredTensor>> result;
    {
      py::gil_scoped_release release;
      result = client_->RestoreShard(job, step, rank);
    }
    std::vector<RestoredTensor> restored = ValueOrThrow(std::move(result));
    py::list out;
    for (RestoredTensor& tensor : restored) {
      py::array array = ArrayOwning(tensor);
      out.append(RestoredTuple(tensor.entry, array));
    }
    return out;
  }

  // Reads each tensor rank `rank` wrote straight into into[name], a writable
  // C-contiguous buffer of exactly the tensor's byte size. Every tensor of
  // the shard must have a destination (INVALID_ARGUMENT otherwise); returns
  // the same tuples as RestoreShard, with the destinations as arrays.
  py::list RestoreShardInto(const std::string& job, std::optional<int64_t> step,
                            int32_t rank, const py::dict& into) {
    absl::StatusOr<Checkpoint> manifest;
    {
      py::gil_scoped_release release;
      manifest = client_->GetManifest(job, step, rank);
    }
    const Checkpoint checkpoint = ValueOrThrow(std::move(manifest));
    const ShardManifest* shard = nullptr;
    for (const ShardManifest& candidate : checkpoint.shards) {
      if (candidate.rank == rank) shard = &candidate;
    }
    if (shard == nullptr) {
      ThrowValueError(absl::StrCat("checkpoint ", checkpoint.record.step,
                                   " of ", job, " has no shard of rank ",
                                   rank));
    }
    std::vector<std::unique_ptr<BufferView>> views;
    std::vector<py::object> destinations;
    for (const TensorEntry& entry : shard->tensors) {
      const py::str key(entry.name);
      if (!into.contains(key)) {
        ThrowValueError(
            absl::StrCat("no destination for tensor '", entry.name, "'"));
      }
      destinations.push_back(into[key]);
      views.push_back(std::make_unique<BufferView>(
          destinations.back(), /*writable=*/true,
          absl::StrCat("destination of tensor '", entry.name, "'")));
      if (views.back()->size() != entry.ByteSize()) {
        ThrowValueError(absl::StrCat("destination of tensor '", entry.name,
                                     "' has ", views.back()->size(),
                                     " bytes, the tensor ", entry.ByteSize()));
      }
    }
    absl::Status status;
    {
      py::gil_scoped_release release;
      std::vector<absl::Span<char>> outs;
      outs.reserve(views.size());
      for (const std::unique_ptr<BufferView>& view : views) {
        outs.emplace_back(view->data(), view->size());
      }
      status = client_->ReadTensors(job, shard->tensors, outs, shard->rank);
    }
    CheckOk(status);
    py::list out;
    for (size_t i = 0; i < shard->tensors.size(); ++i) {
      out.append(RestoredTuple(shard->tensors[i], destinations[i]));
    }
    return out;
  }

  py::list ListCheckpoints(const std::string& job, bool include_uncommitted) {
    absl::StatusOr<std::vector<CheckpointRecord>> result;
    {
      py::gil_scoped_release release;
      result = client_->ListCheckpoints(job, include_uncommitted);
    }
    py::list out;
    for (const CheckpointRecord& record : ValueOrThrow(std::move(result))) {
      out.append(RecordToDict(record));
    }
    return out;
  }

  // None for a job without committed checkpoints or unknown to the server.
  std::optional<int64_t> LatestStep(const std::string& job) {
    absl::StatusOr<std::vector<CheckpointRecord>> result;
    {
      py::gil_scoped_release release;
      result = client_->ListCheckpoints(job);
    }
    if (absl::IsNotFound(result.status())) return std::nullopt;
    std::vector<CheckpointRecord> records = ValueOrThrow(std::move(result));
    if (records.empty()) return std::nullopt;
    return records.back().step;
  }

  // (steps deleted, the server's warnings): the Python wrapper warns them.
  std::pair<std::vector<int64_t>, std::vector<std::string>> SetRetentionPolicy(
      const std::string& job, const py::dict& policy_dict) {
    const RetentionPolicy policy = PolicyFromDict(policy_dict);
    std::vector<std::string> warnings;
    absl::StatusOr<std::vector<int64_t>> result;
    {
      py::gil_scoped_release release;
      result = client_->SetRetentionPolicy(job, policy, &warnings);
    }
    return {ValueOrThrow(std::move(result)), std::move(warnings)};
  }

  py::object GetRetentionPolicy(const std::string& job) {
    absl::StatusOr<std::optional<RetentionPolicy>> result;
    {
      py::gil_scoped_release release;
      result = client_->GetRetentionPolicy(job);
    }
    std::optional<RetentionPolicy> policy = ValueOrThrow(std::move(result));
    if (!policy.has_value()) return py::none();
    return PolicyToDict(*policy);
  }

  // {"policy": dict or None, "origin": {"source", "principal", "time"
  // (Unix seconds or None), "inferred"} or None (a server that predates
  // origins)}.
  py::dict GetRetentionPolicyInfo(const std::string& job) {
    absl::StatusOr<PolicyInfo> result;
    {
      py::gil_scoped_release release;
      result = client_->GetRetentionPolicyInfo(job);
    }
    const PolicyInfo info = ValueOrThrow(std::move(result));
    py::dict out;
    out["policy"] = info.policy.has_value()
                        ? py::object(PolicyToDict(*info.policy))
                        : py::none();
    if (!info.origin.has_value()) {
      out["origin"] = py::none();
      return out;
    }
    py::dict origin;
    origin["source"] = std::string(PolicySourceName(info.origin->source));
    origin["principal"] = info.origin->principal;
    origin["time"] =
        info.origin->time.has_value()
            ? py::object(py::float_(UnixSecondsOf(*info.origin->time)))
            : py::none();
    origin["inferred"] = info.origin->inferred;
    out["origin"] = origin;
    return out;
  }

  void DeleteCheckpoint(const std::string& job, int64_t step, bool force) {
    absl::Status status;
    {
      py::gil_scoped_release release;
      status = client_->DeleteCheckpoint(job, step, force);
    }
    CheckOk(status);
  }

  void AbortCheckpoint(const std::string& job, int64_t step,
                       const std::string& reason) {
    absl::Status status;
    {
      py::gil_scoped_release release;
      status = client_->AbortCheckpoint(job, step, reason);
    }
    CheckOk(status);
  }

  Client& client() { return *client_; }

 private:
  std::unique_ptr<Client> client_;
};

}  // namespace
}  // namespace ckpt::client

PYBIND11_MODULE(_ckpt, m) {
  using ckpt::client::PyClient;
  using ckpt::client::PySaver;
  m.doc() = "Low-level binding of the ckpt C++ client; use ckpt instead.";

  PyObject* error_type = PyErr_NewExceptionWithDoc(
      "ckpt.Error",
      "A ckpt server or transport error other than INVALID_ARGUMENT "
      "(ValueError) and NOT_FOUND (KeyError). `.code` is the status code's "
      "name (e.g. 'ALREADY_EXISTS'), `.message` the server's message.",
      PyExc_Exception, nullptr);
  ckpt::client::SetErrorType(error_type);
  m.attr("Error") = py::reinterpret_borrow<py::object>(error_type);
  ckpt::client::RegisterManifestType(m);

  py::class_<PyClient>(m, "Client")
      .def(py::init<const std::string&, double, bool, const py::object&,
                    const py::object&, const py::object&, const py::object&,
                    const py::object&, double>(),
           py::arg("address"), py::arg("connect_timeout") = 0.0, py::kw_only(),
           py::arg("shared_memory_restore") = true,
           py::arg("tls_ca") = py::none(), py::arg("tls_cert") = py::none(),
           py::arg("tls_key") = py::none(),
           py::arg("tls_server_name") = py::none(),
           py::arg("token") = py::none(),
           py::arg("stream_stall_timeout") = 120.0,
           "Connects to the ckpt-server at address (HOST:PORT). TLS: tls_ca "
           "(PEM CA file; plaintext without it), tls_cert and tls_key (PEM "
           "client certificate and key, for mutual TLS), tls_server_name "
           "(the name the server certificate must carry, when not the "
           "address's host). token: a bearer token sent on every call, only "
           "over TLS or to a loopback address. Each defaults to its "
           "environment variable (CKPT_TLS_CA, CKPT_TLS_CERT, CKPT_TLS_KEY, "
           "CKPT_TLS_SERVER_NAME, CKPT_TOKEN); pass '' to ignore the "
           "variable. stream_stall_timeout: seconds a stream (save upload, "
           "restore read, verify) may wait on the server without progress "
           "before it fails with DEADLINE_EXCEEDED (default 120; inf: no "
           "bound).")
      .def(
          "save_shard", &PyClient::SaveShard, py::arg("job"), py::arg("step"),
          py::arg("tensors"), py::kw_only(), py::arg("rank") = 0,
          py::arg("world_size") = 1,
          py::arg("metrics") = std::map<std::string, double>{},
          py::arg("tags") = std::map<std::string, std::string>{},
          py::arg("writer_time") = py::none(),
          py::arg("retention_policy") = py::none(),
          py::arg("chunk_bytes") = py::none(), py::arg("saver") = py::none(),
          py::arg("dirty_rows") = std::map<std::string, py::array_t<int64_t>>{},
          py::arg("quantize") = std::map<std::string, int>{})
      .def("seed_saver", &PyClient::SeedSaver, py::arg("saver"), py::arg("job"),
           py::arg("step"), py::kw_only(), py::arg("rank"))
      .def("restore_shard", &PyClient::RestoreShard, py::arg("job"),
           py::arg("step") = py::none(), py::kw_only(), py::arg("rank") = 0)
      .def("restore_shard_into", &PyClient::RestoreShardInto, py::arg("job"),
           py::arg("step"), py::kw_only(), py::arg("rank"), py::arg("into"))
      .def(
          "get_manifest",
          [](PyClient& self, const std::string& job,
             std::optional<int64_t> step) {
            return ckpt::client::GetManifest(self.client(), job, step);
          },
          py::arg("job"), py::arg("step") = py::none(),
          "The Manifest of committed checkpoint `step` (the latest when "
          "None): header and every rank's entries. Records no restore event "
          "(report_restore does, after the restore).")
      .def(
          "read_regions",
          [](PyClient& self, const py::handle& manifest,
             const std::vector<ckpt::client::PyRegion>& requests,
             const py::list& outs) {
            return ckpt::client::ReadRegions(self.client(), manifest, requests,
                                             outs);
          },
          py::arg("manifest"), py::arg("requests"), py::arg("outs"),
          "Reads each request (name, dtype, global_shape, offsets, lengths, "
          "source_rank or None) of `manifest` into outs[i], a writable "
          "C-contiguous buffer of the region's bytes; only the chunks "
          "covering the regions are fetched. Returns {chunks_fetched, "
          "bytes_fetched, bytes_used}. Everything is checked before anything "
          "is fetched (ValueError naming the tensor); on a later error the "
          "outs hold unspecified bytes.")
      .def(
          "restore_regions",
          [](PyClient& self, const py::handle& manifest,
             const std::vector<ckpt::client::PyRegion>& requests) {
            return ckpt::client::RestoreRegions(self.client(), manifest,
                                                requests);
          },
          py::arg("manifest"), py::arg("requests"),
          "As read_regions, into new numpy arrays shaped as the regions "
          "(bfloat16 as uint16): returns (arrays, stats).")
      .def(
          "resolve_chains",
          [](PyClient& self, const py::handle& manifest) {
            ckpt::client::ResolveChains(self.client(), manifest);
          },
          py::arg("manifest"),
          "Makes the content keys of the manifest's row deltas compare their "
          "whole delta chains (each rank's own bases), not only their own "
          "chunks: two ranks' equal deltas on bases that differ then have "
          "different keys. Fetches the base manifests of the deltas that "
          "need it. ckpt.Error (DATA_LOSS) for a broken chain.")
      .def(
          "report_restore",
          [](PyClient& self, const std::string& job, int64_t step,
             int32_t rank) {
            ckpt::client::ReportRestore(self.client(), job, step, rank);
          },
          py::arg("job"), py::arg("step"), py::arg("rank"),
          "Records in the job's history that `rank` restored checkpoint "
          "`step` (call it once the restore succeeded).")
      .def(
          "export_checkpoint",
          [](PyClient& self, const py::handle& manifest, const std::string& dir,
             bool full, int32_t rank, int32_t world_size,
             std::optional<uint64_t> max_file_bytes,
             const std::string& objects_json,
             const std::vector<std::string>& exclude_tensors) {
            return ckpt::client::ExportCheckpointBinding(
                self.client(), manifest, dir, full, rank, world_size,
                max_file_bytes, objects_json, exclude_tensors);
          },
          py::arg("manifest"), py::arg("dir"), py::kw_only(),
          py::arg("full") = true, py::arg("rank") = 0,
          py::arg("world_size") = 1, py::arg("max_file_bytes") = py::none(),
          py::arg("objects_json") = "",
          py::arg("exclude_tensors") = std::vector<std::string>{},
          "Writes the checkpoint of `manifest` into directory `dir` as "
          "safetensors files and ckpt_checkpoint.json (client/portable/"
          "export.h; `objects_json`, a JSON text, goes under \"objects\"; "
          "`exclude_tensors` are not exported). Returns {job, step, files, "
          "tensors, tensor_bytes, tensor_names}.")
      .def(
          "import_directory",
          [](PyClient& self, const std::string& dir, const std::string& job,
             int64_t step, std::optional<int32_t> rank,
             std::optional<int32_t> world_size,
             const std::map<std::string, double>& metrics,
             const std::map<std::string, std::string>& tags,
             const std::vector<ckpt::client::PyTensor>& extra_tensors) {
            return ckpt::client::ImportDirectoryBinding(
                self.client(), dir, job, step, rank, world_size, metrics, tags,
                extra_tensors);
          },
          py::arg("dir"), py::arg("job"), py::arg("step"), py::kw_only(),
          py::arg("rank") = py::none(), py::arg("world_size") = py::none(),
          py::arg("metrics") = std::map<std::string, double>{},
          py::arg("tags") = std::map<std::string, std::string>{},
          py::arg("extra_tensors") = std::vector<ckpt::client::PyTensor>{},
          "Checks every safetensors file of directory `dir`, then saves "
          "them, with `extra_tensors` (as save_shard's tensors), as one "
          "rank's shard of checkpoint (job, step) (client/portable/"
          "import.h). Returns {job, step, files, tensors, tensor_bytes, "
          "rank, world_size, metadata_from_json, objects_json, saved}.")
      .def("list_checkpoints", &PyClient::ListCheckpoints, py::arg("job"),
           py::kw_only(), py::arg("include_uncommitted") = false)
      .def("latest_step", &PyClient::LatestStep, py::arg("job"))
      .def("set_retention_policy", &PyClient::SetRetentionPolicy,
           py::arg("job"), py::arg("policy"))
      .def("get_retention_policy", &PyClient::GetRetentionPolicy,
           py::arg("job"))
      .def("get_retention_policy_info", &PyClient::GetRetentionPolicyInfo,
           py::arg("job"))
      .def("delete_checkpoint", &PyClient::DeleteCheckpoint, py::arg("job"),
           py::arg("step"), py::arg("force") = false)
      .def("abort_checkpoint", &PyClient::AbortCheckpoint, py::arg("job"),
           py::arg("step"), py::arg("reason") = "");

  m.def(
      "parse_duration_seconds",
      [](const std::string& text) {
        return absl::ToDoubleSeconds(
            ckpt::client::ValueOrThrow(ckpt::ParseDurationText(text)));
      },
      py::arg("text"),
      "A duration as the ckpt CLI reads it (30m, 6h, 1d, 2w, 1h30m; "
      "common/duration_text.h), in seconds; ValueError otherwise.");

  m.def(
      "bits_for_expected_restores",
      [](double expected_restores) {
        return ckpt::BitsForExpectedRestores(expected_restores);
      },
      py::arg("expected_restores"),
      "The quantization width (2, 3, 4 or 8) for a tensor expected to be "
      "restored this many times, or None to stay lossless (common/"
      "quantize.h).");

  m.def(
      "read_token_file",
      [](const std::string& path, const std::string& what) {
        return ckpt::client::ValueOrThrow(
            ckpt::client::ReadTokenFile(path, what));
      },
      py::arg("path"), py::arg("what"),
      "The bearer token in the file at `path` (trailing whitespace "
      "dropped), as the ckpt CLI reads --token-file; ValueError naming "
      "`what` when it cannot be read or holds no token.");

  ckpt::client::RegisterBestCheckpoint(m);
  ckpt::client::RegisterPortable(m);
  ckpt::client::RegisterStaging(m);

  ckpt::client::RegisterExitStatusHook();
  m.def("set_exit_status_at_finalize", &ckpt::client::SetExitStatusAtFinalize,
        py::arg("status"),
        "Makes the process exit with `status` once Python has finalised "
        "(client/python/exit_status.h); False when that is not possible.");

  py::class_<PySaver>(m, "IncrementalSaver")
      .def(py::init<const std::string&, double, int, int, int>(), py::kw_only(),
           py::arg("delta_mode") = "intermittent",
           py::arg("max_delta_fraction") = 0.5, py::arg("max_chain_length") = 8,
           py::arg("min_dims") = 2, py::arg("fingerprint_threads") = 2)
      .def("forget", &PySaver::Forget);
}
