#include "client/python/best_checkpoint_binding.h"

#include <pybind11/stl.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "client/python/status_exception.h"
#include "common/best_checkpoint.h"
#include "common/manifest.h"
#include "common/quote.h"
#include "common/retention.h"

namespace py = pybind11;

namespace ckpt::client {
namespace {

MetricMode ParseMetricMode(const std::string& mode) {
  if (mode == "min") return MetricMode::kMin;
  if (mode == "max") return MetricMode::kMax;
  if (mode == "auto") return MetricMode::kAuto;
  ThrowStatus(absl::InvalidArgumentError(absl::StrCat(
      "mode must be 'min', 'max' or 'auto', not ", QuoteTruncated(mode))));
}

MetricMode ResolvedMode(const std::string& metric, const std::string& mode) {
  absl::StatusOr<MetricMode> resolved =
      ResolveMetricMode(metric, ParseMetricMode(mode));
  if (!resolved.ok()) ThrowStatus(resolved.status());
  return *resolved;
}

// The record the ranking reads of a dict as Client.list_checkpoints returns
// it: "step", "metrics" and "state" (absent: committed).
CheckpointRecord RankedRecord(const py::dict& checkpoint) {
  CheckpointRecord record;
  try {
    record.step = py::cast<int64_t>(checkpoint["step"]);
    record.metadata.metrics =
        py::cast<std::map<std::string, double>>(checkpoint["metrics"]);
    record.state = !checkpoint.contains("state") ||
                           py::cast<std::string>(checkpoint["state"]) ==
                               CheckpointStateName(CheckpointState::kCommitted)
                       ? CheckpointState::kCommitted
                       : CheckpointState::kPending;
  } catch (const py::cast_error&) {
    ThrowStatus(absl::InvalidArgumentError(
        "best_checkpoint: each checkpoint needs an int \"step\", a "
        "\"metrics\" dict of str to float and optionally a str \"state\""));
  }
  return record;
}

// The element of `checkpoints` that BestCheckpoint picks.
py::dict BestOf(const std::vector<py::dict>& checkpoints,
                const std::string& metric, const std::string& mode) {
  std::vector<CheckpointRecord> records;
  records.reserve(checkpoints.size());
  absl::flat_hash_set<int64_t> steps;
  for (const py::dict& checkpoint : checkpoints) {
    records.push_back(RankedRecord(checkpoint));
    // The best is found again by its step.
    if (!steps.insert(records.back().step).second) {
      ThrowStatus(absl::InvalidArgumentError(absl::StrCat(
          "best_checkpoint: step ", records.back().step, " is given twice")));
    }
  }
  absl::StatusOr<CheckpointRecord> best =
      BestCheckpoint(records, metric, ParseMetricMode(mode));
  if (!best.ok()) ThrowStatus(best.status());
  for (size_t i = 0; i < records.size(); ++i) {
    if (records[i].step == best->step) return checkpoints[i];
  }
  ThrowStatus(absl::InternalError("best_checkpoint: lost the best record"));
}

}  // namespace

void RegisterBestCheckpoint(py::module_& module) {
  module.def("best_checkpoint", &BestOf, py::arg("checkpoints"),
             py::arg("metric"), py::arg("mode") = "auto",
             "The committed checkpoint (one of the dicts given, as "
             "Client.list_checkpoints returns them) that is best by `metric`: "
             "mode 'min', 'max' or 'auto' (as keep_best), a NaN value never "
             "best, ties to the lower step. KeyError (NOT_FOUND) when none has "
             "a non-NaN value of it; ValueError when auto cannot tell the "
             "direction.");
  module.def(
      "improves_on",
      [](double candidate, std::optional<double> best,
         const std::string& metric, const std::string& mode) {
        return ImprovesOn(candidate, best, ResolvedMode(metric, mode));
      },
      py::arg("candidate"), py::arg("best"), py::arg("metric"), py::arg("mode"),
      "Whether `candidate` is strictly better than `best` (None: no best "
      "yet) for `metric` under `mode`; NaN never improves.");
  module.def(
      "resolve_metric_mode",
      [](const std::string& metric, const std::string& mode) {
        return std::string(MetricModeName(ResolvedMode(metric, mode)));
      },
      py::arg("metric"), py::arg("mode"),
      "'min' or 'max': the direction `mode` means for `metric` (auto: by "
      "the name, as Keras); ValueError when auto cannot tell.");
}

}  // namespace ckpt::client
