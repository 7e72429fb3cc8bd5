#include "client/incremental.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/delta_base.h"
#include "common/row_delta.h"
#include "common/row_fingerprint.h"
#include "common/status_macros.h"

namespace ckpt::client {

// What the saver remembers of one tensor between saves.
struct IncrementalSaver::TensorState {
  // The layout its history is valid for (TensorLayout of the save that
  // began it), compared by common/delta_base's SameTensorLayout.
  TensorEntry layout;

  int64_t baseline_step = 0;
  int64_t previous_step = 0;  // last save, baseline or delta
  int chain_length = 0;       // deltas since the baseline
  // Fingerprints of the base the next delta is compared with (the baseline
  // for kIntermittent, the previous save for kConsecutive); empty when that
  // save was planned from dirty rows.
  std::vector<uint64_t> fingerprints;
  // kIntermittent: the rows that differ from the baseline as of the last
  // save (what a delta against it must hold at least). kConsecutive: empty.
  std::vector<uint64_t> changed_since_base;
  // A buffer of the right size for the next save's fingerprints.
  std::vector<uint64_t> spare;
};

namespace {

// The XXH3 fingerprint of each `row_bytes`-sized row of `bytes` into `out`,
// resized to the row count (its storage reused), on `threads` threads: how
// the saver and RowsChangedSince see a tensor's rows, which ChangedRows
// then compares with its base's.
absl::Status FingerprintRows(absl::string_view bytes, uint64_t row_bytes,
                             int threads, std::vector<uint64_t>& out) {
  out.resize(row_bytes == 0 ? 0 : bytes.size() / row_bytes);
  return RowFingerprintsInto(absl::MakeConstSpan(bytes.data(), bytes.size()),
                             row_bytes, absl::MakeSpan(out), threads);
}

// Sorted, without repeats.
void SortUnique(std::vector<uint64_t>& rows) {
  std::sort(rows.begin(), rows.end());
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
}

std::vector<uint64_t> SortedUnion(const std::vector<uint64_t>& a,
                                  const std::vector<uint64_t>& b) {
  std::vector<uint64_t> out;
  out.reserve(a.size() + b.size());
  std::set_union(a.begin(), a.end(), b.begin(), b.end(),
                 std::back_inserter(out));
  return out;
}

}  // namespace

IncrementalSaver::IncrementalSaver(IncrementalOptions options)
    : options_(options) {}
IncrementalSaver::~IncrementalSaver() = default;
IncrementalSaver::IncrementalSaver(IncrementalSaver&&) noexcept = default;
IncrementalSaver& IncrementalSaver::operator=(IncrementalSaver&&) noexcept =
    default;

absl::StatusOr<IncrementalPlan> IncrementalSaver::Plan(
    int64_t step, absl::Span<const TensorData> tensors,
    const std::map<std::string, std::vector<uint64_t>>& dirty_rows) {
  if (last_step_.has_value() && step <= *last_step_) {
    return absl::InvalidArgumentError(
        absl::StrCat("incremental save of step ", step,
                     " is not after the last committed step ", *last_step_));
  }
  for (const auto& [name, rows] : dirty_rows) {
    const bool known = std::any_of(
        tensors.begin(), tensors.end(),
        // An init-capture: clang before 16 cannot capture a
        // structured binding (C++20 allows it).
        [&dirty = name](const TensorData& t) { return t.name == dirty; });
    if (!known) {
      return absl::InvalidArgumentError(
          absl::StrCat("dirty rows given for tensor '", name,
                       "', which is not among the tensors saved"));
    }
  }
  IncrementalPlan plan;
  plan.step_ = step;
  plan.tensors_.assign(tensors.begin(), tensors.end());
  plan.decisions_.resize(tensors.size());
  plan.rows_.resize(tensors.size());
  plan.fingerprints_.resize(tensors.size());
  plan.tracked_.assign(tensors.size(), false);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorData& tensor = tensors[i];
    TensorPlan& decided = plan.decisions_[i];
    decided.name = tensor.name;
    if (tensor.delta_base_step.has_value() || !tensor.delta_rows.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", tensor.name,
                       "': its delta fields are the saver's to set"));
    }
    const TensorEntry layout = TensorLayout(tensor);
    decided.full_bytes = layout.ByteSize();
    const uint64_t row_bytes = layout.RowBytes();
    const uint64_t rows =
        tensor.box.lengths.empty() ? 0 : tensor.box.lengths[0];
    if (tensor.bytes.size() != decided.full_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", tensor.name, "': ", tensor.bytes.size(),
                       " bytes given but its box needs ", decided.full_bytes));
    }
    auto dirty = dirty_rows.find(tensor.name);
    if (dirty != dirty_rows.end()) {
      for (uint64_t row : dirty->second) {
        if (row >= rows) {
          return absl::InvalidArgumentError(
              absl::StrCat("tensor '", tensor.name, "': dirty row ", row,
                           " is outside its ", rows, " rows"));
        }
      }
    }
    if (tensor.quantize_bits.has_value()) {
      // Its restored values are not the saved ones: no delta on top.
      decided.decision.reason = "quantized: always full";
      continue;
    }
    if (static_cast<int>(tensor.box.lengths.size()) < options_.min_dims ||
        rows == 0 || row_bytes == 0) {
      decided.decision.reason = absl::StrCat("fewer than ", options_.min_dims,
                                             " dimensions or no rows: full");
      continue;
    }
    plan.tracked_[i] = true;

    auto found = tensors_.find(tensor.name);
    TensorState* state =
        found == tensors_.end() ? nullptr : found->second.get();
    if (state != nullptr && !SameTensorLayout(state->layout, layout)) {
      state = nullptr;
    }
    // The rows changed since the base, when they can be known.
    std::optional<std::vector<uint64_t>> changed;
    if (dirty != dirty_rows.end()) {
      std::vector<uint64_t> given = dirty->second;
      SortUnique(given);
      if (state != nullptr) {
        changed = SortedUnion(given, state->changed_since_base);
      }
    } else {
      std::vector<uint64_t>& fingerprints = plan.fingerprints_[i];
      if (state != nullptr && state->spare.size() == rows) {
        fingerprints = std::move(state->spare);
        state->spare.clear();
      }
      CKPT_RETURN_IF_ERROR(FingerprintRows(
          tensor.bytes, row_bytes, options_.fingerprint_threads, fingerprints));
      if (state != nullptr && state->fingerprints.size() == rows) {
        CKPT_ASSIGN_OR_RETURN(changed,
                              ChangedRows(state->fingerprints, fingerprints));
      }
    }
    if (!changed.has_value()) {
      decided.decision.reason =
          state == nullptr
              ? "no baseline yet (or a new layout): full save"
              : "no fingerprints of the base (it was saved from dirty "
                "rows): full save";
      continue;
    }
    DeltaHistory history;
    history.baseline_step = state->baseline_step;
    history.previous_step = state->previous_step;
    history.chain_length = state->chain_length;
    history.full_bytes = decided.full_bytes;
    history.delta_bytes = RowDeltaBytes(rows, row_bytes, changed->size());
    CKPT_ASSIGN_OR_RETURN(decided.decision,
                          DecideDelta(history, options_.policy));
    if (decided.decision.kind == DeltaDecision::Kind::kDelta) {
      decided.changed_rows = changed->size();
      decided.delta_bytes = history.delta_bytes;
      plan.rows_[i] = *std::move(changed);
      plan.tensors_[i].delta_base_step = decided.decision.base_step;
      plan.tensors_[i].delta_rows = plan.rows_[i];
    }
  }
  return plan;
}

void IncrementalSaver::Committed(IncrementalPlan& plan) {
  last_step_ = plan.step_;
  for (size_t i = 0; i < plan.tensors_.size(); ++i) {
    const TensorData& tensor = plan.tensors_[i];
    if (!plan.tracked_[i]) {
      tensors_.erase(tensor.name);
      continue;
    }
    std::unique_ptr<TensorState>& state = tensors_[tensor.name];
    std::vector<uint64_t>& fingerprints = plan.fingerprints_[i];
    if (!tensor.delta_base_step.has_value()) {
      auto fresh = std::make_unique<TensorState>();
      fresh->layout = TensorLayout(tensor);
      fresh->baseline_step = plan.step_;
      fresh->previous_step = plan.step_;
      fresh->fingerprints = std::move(fingerprints);
      if (state != nullptr) fresh->spare = std::move(state->fingerprints);
      state = std::move(fresh);
      continue;
    }
    state->previous_step = plan.step_;
    ++state->chain_length;
    if (options_.policy.mode == DeltaMode::kIntermittent) {
      // The baseline's fingerprints stay the reference.
      state->changed_since_base = plan.rows_[i];
      state->spare = std::move(fingerprints);
    } else {
      state->changed_since_base.clear();
      state->spare = std::move(state->fingerprints);
      state->fingerprints = std::move(fingerprints);
    }
  }
}

void IncrementalSaver::Forget() {
  tensors_.clear();
  last_step_.reset();
}

TensorEntry TensorLayout(const TensorData& tensor) {
  TensorEntry layout;
  layout.name = tensor.name;
  layout.dtype = tensor.dtype;
  layout.global_shape = tensor.global_shape;
  layout.box = tensor.box;
  return layout;
}

absl::StatusOr<std::vector<uint64_t>> RowsChangedSince(
    Client& client, absl::string_view job, const TensorEntry& base_entry,
    const TensorData& tensor, int threads) {
  const TensorEntry layout = TensorLayout(tensor);
  if (!SameTensorLayout(base_entry, layout)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", tensor.name, "' as ", TensorLayoutText(layout),
                     " cannot be compared with its base entry '",
                     base_entry.name, "' as ", TensorLayoutText(base_entry)));
  }
  if (tensor.bytes.size() != layout.ByteSize()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", tensor.name, "': ", tensor.bytes.size(),
                     " bytes given but its box needs ", layout.ByteSize()));
  }
  std::string base_bytes(base_entry.ByteSize(), '\0');
  CKPT_RETURN_IF_ERROR(
      client.ReadTensor(job, base_entry, absl::MakeSpan(base_bytes)));
  const uint64_t row_bytes = base_entry.RowBytes();
  std::vector<uint64_t> base_fingerprints;
  CKPT_RETURN_IF_ERROR(
      FingerprintRows(base_bytes, row_bytes, threads, base_fingerprints));
  std::vector<uint64_t> fingerprints;
  CKPT_RETURN_IF_ERROR(
      FingerprintRows(tensor.bytes, row_bytes, threads, fingerprints));
  return ChangedRows(base_fingerprints, fingerprints);
}

absl::StatusOr<SaveResult> SaveIncremental(
    Client& client, IncrementalSaver& saver, absl::string_view job,
    int64_t step, absl::Span<const TensorData> tensors,
    const SaveOptions& options,
    const std::map<std::string, std::vector<uint64_t>>& dirty_rows,
    IncrementalPlan* plan_out) {
  absl::StatusOr<IncrementalPlan> plan = saver.Plan(step, tensors, dirty_rows);
  if (!plan.ok()) {
    saver.Forget();
    return plan.status();
  }
  absl::StatusOr<SaveResult> saved =
      client.SaveShard(job, step, plan->tensors(), options);
  const bool has_delta =
      std::any_of(plan->decisions().begin(), plan->decisions().end(),
                  [](const TensorPlan& p) {
                    return p.decision.kind == DeltaDecision::Kind::kDelta;
                  });
  if (has_delta && absl::IsFailedPrecondition(saved.status())) {
    // A base is gone (retention, a deletion): start over from full saves.
    // (A plan without deltas has no base to lose: its error stands.)
    saver.Forget();
    plan = saver.Plan(step, tensors, dirty_rows);
    if (!plan.ok()) return plan.status();
    saved = client.SaveShard(job, step, plan->tensors(), options);
  }
  if (!saved.ok()) {
    saver.Forget();
    return saved.status();
  }
  saver.Committed(*plan);
  if (plan_out != nullptr) *plan_out = *std::move(plan);
  return saved;
}

}  // namespace ckpt::client
