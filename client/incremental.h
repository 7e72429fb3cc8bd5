// IncrementalSaver: decides, per tensor and save, between a full save and a
// row delta (Check-N-Run), and finds the changed rows, for one rank of one
// job. It remembers what it needs between saves (per-row fingerprints of
// the base, rows dirtied since it, the chain length), so one instance lives
// as long as the training job's checkpointing.
//
//   IncrementalSaver saver(options);
//   CKPT_ASSIGN_OR_RETURN(IncrementalPlan plan, saver.Plan(step, tensors));
//   absl::StatusOr<SaveResult> saved =
//       client->SaveShard(job, step, plan.tensors(), save_options);
//   if (saved.ok()) saver.Committed(plan); else saver.Forget();
//
// SaveIncremental (below) does exactly that, and falls back to a full save
// when the server no longer has a base. RowsChangedSince finds the changed
// rows of one tensor against a committed base without a saver's memory, by
// reading the base back (what `ckpt put --delta-against` does).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "client/client.h"
#include "common/delta_policy.h"
#include "common/manifest.h"

namespace ckpt::client {

struct IncrementalOptions {
  // kIntermittent (default): deltas against the last full baseline;
  // kConsecutive: against the previous save, at most max_chain_length deep.
  DeltaPolicyOptions policy;
  // Tensors with fewer dimensions are always saved in full (biases, norms,
  // scalars: small, and mostly all rows change). Default: 2.
  int min_dims = 2;
  // Threads computing row fingerprints of large tensors. Default: 2.
  int fingerprint_threads = 2;
};

// One tensor's decision in a plan.
struct TensorPlan {
  std::string name;
  DeltaDecision decision;
  uint64_t full_bytes = 0;
  uint64_t changed_rows = 0;  // kDelta: rows the delta holds
  uint64_t delta_bytes = 0;   // kDelta: encoded delta size
};

// What Plan decided for one save; valid while the tensors' memory is.
// Move-only: its tensors' delta_rows view rows it owns.
class IncrementalPlan {
 public:
  IncrementalPlan() = default;
  IncrementalPlan(IncrementalPlan&&) = default;
  IncrementalPlan& operator=(IncrementalPlan&&) = default;
  IncrementalPlan(const IncrementalPlan&) = delete;
  IncrementalPlan& operator=(const IncrementalPlan&) = delete;

  // The tensors to pass to SaveShard, in the order given to Plan, with
  // delta_base_step / delta_rows set where a delta was chosen.
  absl::Span<const TensorData> tensors() const { return tensors_; }
  const std::vector<TensorPlan>& decisions() const { return decisions_; }
  int64_t step() const { return step_; }

 private:
  friend class IncrementalSaver;
  int64_t step_ = 0;
  std::vector<TensorData> tensors_;
  std::vector<TensorPlan> decisions_;
  std::vector<std::vector<uint64_t>> rows_;  // backs tensors_[i].delta_rows
  // Per tensor: fingerprints of this save (empty when not computed).
  std::vector<std::vector<uint64_t>> fingerprints_;
  // Per tensor: whether the saver keeps its history (false for tensors
  // always saved in full: fewer than min_dims dimensions, no rows, or
  // quantized).
  std::vector<bool> tracked_;
};

// Not thread-safe: one Plan / Committed / Forget at a time.
class IncrementalSaver {
 public:
  explicit IncrementalSaver(IncrementalOptions options = {});
  ~IncrementalSaver();
  IncrementalSaver(IncrementalSaver&&) noexcept;
  IncrementalSaver& operator=(IncrementalSaver&&) noexcept;

  // Plans checkpoint `step` of `tensors` (each one's delta fields must be
  // unset). `dirty_rows`, when it has an entry for a tensor, lists the rows
  // (any order, repeats allowed) the caller changed since its previous
  // save; no fingerprints are computed for that tensor. Tensors without an
  // entry are compared row by row with the base by XXH3 fingerprints
  // (on options.fingerprint_threads threads). A tensor whose base was saved
  // with dirty rows has no fingerprints to compare with, so when it comes
  // without dirty rows it is saved in full (and fingerprinted for the next
  // save); passing dirty rows for a tensor at every save avoids that.
  // INVALID_ARGUMENT for a row index out of range, dirty rows for a tensor
  // not in `tensors`, delta fields already set, or a step not after the last
  // committed one. A plan that is never committed changes nothing.
  absl::StatusOr<IncrementalPlan> Plan(
      int64_t step, absl::Span<const TensorData> tensors,
      const std::map<std::string, std::vector<uint64_t>>& dirty_rows = {});

  // The plan's save committed: its full tensors become baselines, its
  // deltas extend their chains.
  void Committed(IncrementalPlan& plan);
  // The next save of every tensor is full (e.g. after a failed save, or
  // when the server lost a base).
  void Forget();

 private:
  struct TensorState;
  IncrementalOptions options_;
  absl::flat_hash_map<std::string, std::unique_ptr<TensorState>> tensors_;
  std::optional<int64_t> last_step_;  // of the last committed plan
};

// Plans, saves and records one incremental save of rank options.rank's
// shard; when a plan with deltas fails with FAILED_PRECONDITION (a base is
// gone), forgets and saves everything in full once. On any other failure it
// forgets too (rows the caller marked dirty for the failed save would
// otherwise be missing from the next delta). `plan_out`, when set, receives
// the plan that was saved (decisions per tensor).
absl::StatusOr<SaveResult> SaveIncremental(
    Client& client, IncrementalSaver& saver, absl::string_view job,
    int64_t step, absl::Span<const TensorData> tensors,
    const SaveOptions& options,
    const std::map<std::string, std::vector<uint64_t>>& dirty_rows = {},
    IncrementalPlan* plan_out = nullptr);

// `tensor`'s layout as a TensorEntry (name, dtype, global shape and box; no
// pieces): what common/delta_base's SameTensorLayout and FindDeltaBase
// compare a delta with its base by.
TensorEntry TensorLayout(const TensorData& tensor);

// The rows (ascending) of `tensor` that differ from `base_entry`, an entry of
// a committed checkpoint of `job`: the base is read back with
// Client::ReadTensor (a delta base is rebuilt from its chain) and both are
// compared by XXH3 row fingerprints on `threads` threads, as
// IncrementalSaver compares a tensor with its base. The result is what a
// row delta of `tensor` on `base_entry` must hold; `tensor`'s own delta
// fields are not looked at. `base_entry` is meant to be what FindDeltaBase
// (common/delta_base.h) returned, which also refuses a quantized base.
// INVALID_ARGUMENT when `tensor` does not have `base_entry`'s layout
// (SameTensorLayout) or its bytes are not its box's size, checked before
// anything is read; otherwise ReadTensor's errors (e.g. NOT_FOUND, or
// DATA_LOSS for a broken chain). Reads the base into memory: it needs
// base_entry.ByteSize() bytes on top of the caller's.
absl::StatusOr<std::vector<uint64_t>> RowsChangedSince(
    Client& client, absl::string_view job, const TensorEntry& base_entry,
    const TensorData& tensor, int threads = 2);

}  // namespace ckpt::client
