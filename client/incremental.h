// IncrementalSaver: decides, per tensor and save, between a full save and a
// row delta (Check-N-Run), and finds the changed rows, for one rank of one
// job. It remembers what it needs between saves (per-row fingerprints of
// the base, rows dirtied since it, the chain length), so one instance lives
// as long as the training job's checkpointing, and it stores the
// fingerprints with each save (common/fingerprint_record.h), so that a
// restarted job picks up where the old one stopped:
//
//   IncrementalSaver saver(options);
//   // After a restart: restore, and make the next save a delta on it.
//   CKPT_ASSIGN_OR_RETURN(auto restored,
//                         RestoreShardAndSeed(client, saver, job, {}, rank));
//   ...
//   CKPT_ASSIGN_OR_RETURN(SaveResult saved,
//                         SaveIncremental(client, saver, job, step, tensors,
//                                         save_options));
//
// SaveIncremental plans, saves and records a save, and falls back to a full
// save when the server no longer has a base. RowsChangedSince finds the
// changed rows of one tensor against a committed base without a saver's
// memory, from the base's stored fingerprints (what `ckpt put
// --delta-against` does).
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
#include "common/row_fingerprint.h"

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
  // Store each tracked tensor's row fingerprints with the save (16 bytes a
  // row for a baseline, 16 more per changed row of a delta): what lets a
  // restarted job (SeedFromCheckpoint) or a client without history
  // (RowsChangedSince) make the next save a delta without reading the
  // base. Default: true.
  bool store_fingerprints = true;
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
  // Per tensor: fingerprints of every row of this save (empty when not
  // computed: a delta planned from dirty rows).
  std::vector<std::vector<RowFingerprint>> fingerprints_;
  // Per tensor saved as a delta: the fingerprints of its rows_ now.
  std::vector<std::vector<RowFingerprint>> delta_fingerprints_;
  // Per tensor: whether the saver keeps its history (false for tensors
  // always saved in full: fewer than min_dims dimensions, no rows, or
  // quantized).
  std::vector<bool> tracked_;
};

// What SeedFromCheckpoint made of each tensor of the restored checkpoint.
struct SeedReport {
  int64_t step = 0;  // the checkpoint seeded from
  struct Tensor {
    std::string name;
    bool seeded = false;  // its next save may be a delta
    // How: "stored fingerprints", "fingerprints of the restored bytes";
    // or why not, e.g. "quantized", "its chain has no stored fingerprints".
    std::string how;
  };
  std::vector<Tensor> tensors;
  uint64_t fingerprint_bytes_read = 0;  // stored records fetched
  uint64_t bytes_fingerprinted = 0;     // restored bytes hashed instead
};

// Not thread-safe: one Plan / Committed / Forget / SeedFromCheckpoint at a
// time.
class IncrementalSaver {
 public:
  explicit IncrementalSaver(IncrementalOptions options = {});
  ~IncrementalSaver();
  IncrementalSaver(IncrementalSaver&&) noexcept;
  IncrementalSaver& operator=(IncrementalSaver&&) noexcept;

  // Plans checkpoint `step` of `tensors` (each one's delta fields must be
  // unset). `dirty_rows`, when it has an entry for a tensor, lists the rows
  // (any order, repeats allowed) the caller changed since its previous
  // save; that tensor is not compared by fingerprints (only the delta's
  // rows are hashed, for the stored record; a full save hashes them all).
  // Tensors without an entry are compared row by row with the base by
  // XXH3-128 fingerprints (on options.fingerprint_threads threads). With
  // store_fingerprints off, a save planned from dirty rows leaves no
  // fingerprints of its rows, so a later save of that tensor without dirty
  // rows is full (and fingerprinted for the next save).
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

  // Forgets, then takes up the history of committed checkpoint `step` of
  // `job` as if this saver had saved it: `entries` are this rank's tensors
  // in it (RestoredTensor::entry of a restore, or its manifest's shard
  // `rank`, whose own delta bases are followed: per-rank state may hold
  // other values on other ranks under the same name and box).
  // Each tracked tensor's next save may then be a delta, as the policy
  // says: for kIntermittent against the chain's full baseline (the
  // checkpoint itself when it is full; its baseline when it is a delta),
  // for kConsecutive against the checkpoint, with the chain's length
  // counted. The fingerprints come from those the checkpoint's writers
  // stored (LoadStoredChain: 16 bytes a row, never the rows); for a chain
  // without them, from `restored` (the restored tensors, matched by name
  // and layout), hashed while in memory, where that suffices (a full
  // entry, or kConsecutive). A tensor that cannot be seeded (or whose
  // stored fingerprints are unreadable: the report says why) gets a full
  // save next, as after Forget: seeding never fails a restore.
  // The next Plan's step must be after `step`.
  SeedReport SeedFromCheckpoint(Client& client, absl::string_view job,
                                int64_t step,
                                absl::Span<const TensorEntry> entries,
                                absl::Span<const RestoredTensor> restored = {},
                                std::optional<int32_t> rank = std::nullopt);

 private:
  struct TensorState;
  // Completes tensor i of `plan` as a full save: its fingerprints, to store
  // (computed now if the plan came from dirty rows).
  absl::Status PlanFull(const TensorData& tensor, uint64_t row_bytes,
                        IncrementalPlan& plan, size_t i);
  // Whether a checkpoint's entry is one the saver keeps a history of (not
  // quantized, at least min_dims dimensions, rows).
  bool Tracks(const TensorEntry& entry) const;
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

// Client::RestoreShard(job, step, rank) (step nullopt: the latest), then
// saver.SeedFromCheckpoint with what it restored, so that the next
// SaveIncremental may be a delta on it. `report`, when set, receives the
// seeding's report.
absl::StatusOr<std::vector<RestoredTensor>> RestoreShardAndSeed(
    Client& client, IncrementalSaver& saver, absl::string_view job,
    std::optional<int64_t> step, int32_t rank, SeedReport* report = nullptr);

// `tensor`'s layout as a TensorEntry (name, dtype, global shape and box; no
// pieces): what common/delta_base's SameTensorLayout and FindDeltaBase
// compare a delta with its base by.
TensorEntry TensorLayout(const TensorData& tensor);

// The rows of `tensor` that differ from `base_entry`, an entry of committed
// checkpoint `base_step` of `job`, and their fingerprints now: what a row
// delta of `tensor` on `base_entry` must hold, found without a saver's
// memory. When the base's chain stored fingerprints, only those are read
// (16 bytes a row of the baseline, and per changed row of each delta on
// the way); otherwise the base is read back (Client::ReadTensor; it needs
// base_entry.ByteSize() bytes on top of the caller's) and fingerprinted.
// Both sides are compared by XXH3-128 row fingerprints on `threads`
// threads. `base_entry` is meant to be what FindDeltaBase
// (common/delta_base.h) returned, which also refuses a quantized base.
// `rank`: the shard the delta will be of, whose own delta bases are
// followed down the chain, as its restore will (FindDeltaBase).
// INVALID_ARGUMENT when `tensor` does not have `base_entry`'s layout
// (SameTensorLayout) or its bytes are not its box's size, checked before
// anything is read; otherwise LoadStoredChain's or ReadTensor's errors.
struct RowsChanged {
  std::vector<uint64_t> rows;                // ascending
  std::vector<RowFingerprint> fingerprints;  // of `rows` in the tensor now
  bool from_stored_fingerprints = false;     // false: the base was read back
  uint64_t base_bytes_read = 0;  // fingerprint records, or the base's bytes
};
absl::StatusOr<RowsChanged> RowsChangedSince(
    Client& client, absl::string_view job, int64_t base_step,
    const TensorEntry& base_entry, const TensorData& tensor, int threads = 2,
    std::optional<int32_t> rank = std::nullopt);

}  // namespace ckpt::client
