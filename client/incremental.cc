#include "client/incremental.h"

#include <algorithm>
#include <iterator>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/stored_fingerprints.h"
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
  // for kIntermittent, the previous save for kConsecutive); empty when a
  // save planned from dirty rows computed none (store_fingerprints off).
  std::vector<RowFingerprint> fingerprints;
  // kIntermittent: the rows that differ from the baseline as of the last
  // save (what a delta against it must hold at least). kConsecutive: empty.
  std::vector<uint64_t> changed_since_base;
  // A buffer of the right size for the next save's fingerprints.
  std::vector<RowFingerprint> spare;
};

namespace {

// The XXH3-128 fingerprint of each `row_bytes`-sized row of `bytes` into
// `out`, resized to the row count (its storage reused), on `threads`
// threads: how the saver and RowsChangedSince see a tensor's rows, which
// ChangedRows then compares with its base's.
absl::Status FingerprintRows(absl::string_view bytes, uint64_t row_bytes,
                             int threads, std::vector<RowFingerprint>& out) {
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

// fingerprints[rows[i]] for each i: a delta's rows' fingerprints, picked
// from a full set.
std::vector<RowFingerprint> Gather(const std::vector<RowFingerprint>& all,
                                   const std::vector<uint64_t>& rows) {
  std::vector<RowFingerprint> out;
  out.reserve(rows.size());
  for (uint64_t row : rows) out.push_back(all[row]);
  return out;
}

// The rows' fingerprints of `tensor`: from `all` when computed, else
// hashed for those rows alone.
absl::StatusOr<std::vector<RowFingerprint>> DeltaFingerprints(
    const TensorData& tensor, uint64_t row_bytes,
    const std::vector<RowFingerprint>& all, const std::vector<uint64_t>& rows) {
  if (!all.empty()) return Gather(all, rows);
  return SelectedRowFingerprints(
      absl::MakeConstSpan(tensor.bytes.data(), tensor.bytes.size()), row_bytes,
      rows);
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
  plan.delta_fingerprints_.resize(tensors.size());
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
    std::vector<RowFingerprint>& fingerprints = plan.fingerprints_[i];
    if (dirty != dirty_rows.end()) {
      std::vector<uint64_t> given = dirty->second;
      SortUnique(given);
      if (state != nullptr) {
        changed = SortedUnion(given, state->changed_since_base);
      }
    } else {
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
      CKPT_RETURN_IF_ERROR(PlanFull(tensor, row_bytes, plan, i));
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
    if (decided.decision.kind == DeltaDecision::Kind::kFull) {
      CKPT_RETURN_IF_ERROR(PlanFull(tensor, row_bytes, plan, i));
      continue;
    }
    decided.changed_rows = changed->size();
    decided.delta_bytes = history.delta_bytes;
    plan.rows_[i] = *std::move(changed);
    // Wanted to store them, or to keep a consecutive base's up to date.
    if (options_.store_fingerprints ||
        options_.policy.mode == DeltaMode::kConsecutive) {
      CKPT_ASSIGN_OR_RETURN(
          plan.delta_fingerprints_[i],
          DeltaFingerprints(tensor, row_bytes, fingerprints, plan.rows_[i]));
    }
    plan.tensors_[i].delta_base_step = decided.decision.base_step;
    plan.tensors_[i].delta_rows = plan.rows_[i];
    if (options_.store_fingerprints) {
      plan.tensors_[i].row_fingerprints =
          absl::MakeConstSpan(plan.delta_fingerprints_[i]);
    }
  }
  return plan;
}

bool IncrementalSaver::Tracks(const TensorEntry& entry) const {
  return !entry.IsQuantized() &&
         static_cast<int>(entry.box.lengths.size()) >= options_.min_dims &&
         !entry.box.lengths.empty() && entry.box.lengths[0] > 0 &&
         entry.RowBytes() > 0;
}

absl::Status IncrementalSaver::PlanFull(const TensorData& tensor,
                                        uint64_t row_bytes,
                                        IncrementalPlan& plan, size_t i) {
  std::vector<RowFingerprint>& fingerprints = plan.fingerprints_[i];
  if (!options_.store_fingerprints) return absl::OkStatus();
  if (fingerprints.empty()) {
    // Planned from dirty rows: the baseline's fingerprints are still
    // needed, for the record and for later saves without dirty rows.
    CKPT_RETURN_IF_ERROR(FingerprintRows(
        tensor.bytes, row_bytes, options_.fingerprint_threads, fingerprints));
  }
  plan.tensors_[i].row_fingerprints = absl::MakeConstSpan(fingerprints);
  return absl::OkStatus();
}

void IncrementalSaver::Committed(IncrementalPlan& plan) {
  last_step_ = plan.step_;
  for (size_t i = 0; i < plan.tensors_.size(); ++i) {
    const TensorData& tensor = plan.tensors_[i];
    // Its fingerprints move into the saver's state (and are reused later):
    // the plan's view of them ends here.
    plan.tensors_[i].row_fingerprints.reset();
    if (!plan.tracked_[i]) {
      tensors_.erase(tensor.name);
      continue;
    }
    std::unique_ptr<TensorState>& state = tensors_[tensor.name];
    std::vector<RowFingerprint>& fingerprints = plan.fingerprints_[i];
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
      if (!fingerprints.empty()) state->spare = std::move(fingerprints);
    } else if (!fingerprints.empty()) {
      state->changed_since_base.clear();
      state->spare = std::move(state->fingerprints);
      state->fingerprints = std::move(fingerprints);
    } else {
      // Planned from dirty rows: the previous save's fingerprints with
      // this delta's rows laid over them are this save's.
      state->changed_since_base.clear();
      if (!state->fingerprints.empty()) {
        const std::vector<RowFingerprint>& now = plan.delta_fingerprints_[i];
        for (size_t r = 0; r < plan.rows_[i].size(); ++r) {
          state->fingerprints[plan.rows_[i][r]] = now[r];
        }
      }
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

absl::StatusOr<RowsChanged> RowsChangedSince(
    Client& client, absl::string_view job, int64_t base_step,
    const TensorEntry& base_entry, const TensorData& tensor, int threads,
    std::optional<int32_t> rank) {
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
  const uint64_t row_bytes = base_entry.RowBytes();
  RowsChanged result;
  std::vector<RowFingerprint> base_fingerprints;
  CKPT_ASSIGN_OR_RETURN(
      StoredChain chain,
      client.LoadStoredChain(job, base_step, base_entry, rank));
  result.base_bytes_read = chain.bytes_read;
  if (chain.fingerprints.has_value()) {
    result.from_stored_fingerprints = true;
    base_fingerprints = std::move(chain.fingerprints->at_checkpoint);
  } else {
    std::string base_bytes(base_entry.ByteSize(), '\0');
    CKPT_RETURN_IF_ERROR(
        client.ReadTensor(job, base_entry, absl::MakeSpan(base_bytes), rank));
    result.base_bytes_read += base_bytes.size();
    CKPT_RETURN_IF_ERROR(
        FingerprintRows(base_bytes, row_bytes, threads, base_fingerprints));
  }
  std::vector<RowFingerprint> fingerprints;
  CKPT_RETURN_IF_ERROR(
      FingerprintRows(tensor.bytes, row_bytes, threads, fingerprints));
  CKPT_ASSIGN_OR_RETURN(result.rows,
                        ChangedRows(base_fingerprints, fingerprints));
  result.fingerprints = Gather(fingerprints, result.rows);
  return result;
}

SeedReport IncrementalSaver::SeedFromCheckpoint(
    Client& client, absl::string_view job, int64_t step,
    absl::Span<const TensorEntry> entries,
    absl::Span<const RestoredTensor> restored, std::optional<int32_t> rank) {
  Forget();
  last_step_ = step;
  SeedReport report;
  report.step = step;
  const bool intermittent = options_.policy.mode == DeltaMode::kIntermittent;
  // The chains of the tensors this saver tracks, loaded together.
  std::vector<TensorEntry> tracked;
  for (const TensorEntry& entry : entries) {
    if (Tracks(entry)) tracked.push_back(entry);
  }
  std::vector<absl::StatusOr<StoredChain>> chains =
      client.LoadStoredChains(job, step, tracked, rank);
  size_t next_chain = 0;
  for (const TensorEntry& entry : entries) {
    SeedReport::Tensor& seeded = report.tensors.emplace_back();
    seeded.name = entry.name;
    if (entry.IsQuantized()) {
      seeded.how = "quantized: always saved in full";
      continue;
    }
    if (!Tracks(entry)) {
      seeded.how = absl::StrCat("fewer than ", options_.min_dims,
                                " dimensions or no rows: always saved in full");
      continue;
    }
    absl::StatusOr<StoredChain>& chain = chains[next_chain++];
    if (!chain.ok()) {
      // The restore itself succeeded; the next save is full, and says why.
      seeded.how = absl::StrCat("its stored fingerprints cannot be used (",
                                chain.status().ToString(), ")");
      continue;
    }
    report.fingerprint_bytes_read += chain->bytes_read;
    auto state = std::make_unique<TensorState>();
    state->layout = entry;
    state->layout.pieces.clear();
    state->layout.fingerprint_pieces.clear();
    state->layout.delta_base_step.reset();
    state->baseline_step = chain->baseline_step;
    state->previous_step = step;
    state->chain_length = chain->chain_length;
    if (chain->fingerprints.has_value()) {
      StoredChain::Fingerprints& stored = *chain->fingerprints;
      if (intermittent) {
        state->fingerprints = std::move(stored.at_baseline);
        state->changed_since_base = std::move(stored.changed_since_baseline);
      } else {
        state->fingerprints = std::move(stored.at_checkpoint);
      }
      seeded.how = "stored fingerprints";
    } else {
      // Written (in part) before fingerprints were stored: hash the
      // restored bytes, which are the checkpoint's tensor. That gives the
      // base of a kConsecutive delta, or of any delta on a full entry, but
      // not a delta's baseline.
      if (intermittent && entry.IsDelta()) {
        seeded.how =
            "a delta whose chain has no stored fingerprints, and the "
            "intermittent policy needs its baseline's";
        continue;
      }
      auto match = std::find_if(restored.begin(), restored.end(),
                                [&](const RestoredTensor& t) {
                                  return SameTensorLayout(t.entry, entry) &&
                                         t.bytes.size() == entry.ByteSize();
                                });
      if (match == restored.end()) {
        seeded.how =
            "no stored fingerprints, and its restored bytes were not given";
        continue;
      }
      absl::Status hashed = FingerprintRows(
          absl::string_view(match->bytes.data(), match->bytes.size()),
          entry.RowBytes(), options_.fingerprint_threads, state->fingerprints);
      if (!hashed.ok()) {
        seeded.how =
            absl::StrCat("its restored bytes cannot be fingerprinted (",
                         hashed.ToString(), ")");
        continue;
      }
      report.bytes_fingerprinted += match->bytes.size();
      seeded.how = "fingerprints of the restored bytes";
    }
    seeded.seeded = true;
    tensors_[entry.name] = std::move(state);
  }
  return report;
}

absl::StatusOr<std::vector<RestoredTensor>> RestoreShardAndSeed(
    Client& client, IncrementalSaver& saver, absl::string_view job,
    std::optional<int64_t> step, int32_t rank, SeedReport* report) {
  int64_t restored_step = 0;
  CKPT_ASSIGN_OR_RETURN(std::vector<RestoredTensor> restored,
                        client.RestoreShard(job, step, rank, &restored_step));
  std::vector<TensorEntry> entries;
  entries.reserve(restored.size());
  for (const RestoredTensor& tensor : restored) entries.push_back(tensor.entry);
  SeedReport seeded = saver.SeedFromCheckpoint(client, job, restored_step,
                                               entries, restored, rank);
  if (report != nullptr) *report = std::move(seeded);
  return restored;
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
