// Baseline-or-delta policy for incremental checkpoints (Check-N-Run): for
// the next save of a tensor (or of a whole checkpoint, by summing sizes),
// whether to write a full baseline or a row delta, and against which step.
//
// Pure: the caller passes what it knows of the history and the size the
// delta would have (RowDeltaBytes); the same inputs give the same decision.
//
// Modes:
//  - kIntermittent (Check-N-Run's "intermittent differential"): every delta
//    is taken against the last full baseline, so a restore reads at most the
//    baseline plus one delta, and older deltas can be dropped. The delta
//    against a fixed baseline only grows (it is the union of the rows
//    changed since then), so a new baseline is written once
//        delta_bytes >= max_delta_fraction * full_bytes.
//    Default fraction 0.5, because that is where continuing stops paying:
//    with a delta of d, the next two saves as deltas cost at least 2d (d
//    does not shrink), while a baseline now and a delta after it cost
//    F + d1, with d1 (one interval of changes) small next to F. So once
//    d >= F/2, resetting is no dearer over the next two saves and cheaper
//    over every later one, since the deltas start small again. The same
//    threshold bounds a restore to 1.5x the full size and the storage a
//    baseline plus its latest delta hold to 1.5x.
//  - kConsecutive: each delta is taken against the previous checkpoint, so
//    deltas stay as small as one interval's changes, but a restore applies
//    the whole chain. A baseline is written after max_chain_length deltas
//    (bounding restore reads and the damage of one lost chunk), and also
//    when one interval's delta alone reaches max_delta_fraction of the full
//    size (deltas are then not worth a longer restore).
// In both modes a baseline is written when there is none yet, and when a
// delta would not be smaller than the full tensor.
//
// A tensor whose shape, dtype or row size changed has no usable base: the
// caller passes no baseline for it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ckpt {

enum class DeltaMode { kIntermittent, kConsecutive };

// "intermittent" or "consecutive".
absl::string_view DeltaModeName(DeltaMode mode);

struct DeltaPolicyOptions {
  // Default: kIntermittent (a restore reads at most two objects).
  DeltaMode mode = DeltaMode::kIntermittent;
  // A baseline is written once a delta reaches this fraction of the full
  // size. In (0, 1]. Default: 0.5 (see above).
  double max_delta_fraction = 0.5;
  // kConsecutive only: most deltas in a chain after a baseline; the save
  // after that many deltas is a baseline. >= 1. Default: 8 (a restore reads
  // at most the baseline and 8 small deltas).
  int max_chain_length = 8;
};

// What the caller knows when it is about to save.
struct DeltaHistory {
  // Step of the last full baseline; nullopt if there is none (first save,
  // or the tensor changed layout).
  std::optional<int64_t> baseline_step;
  // Step of the last checkpoint written (baseline or delta) in its chain;
  // the base of a consecutive delta. REQUIRES: >= baseline_step.
  int64_t previous_step = 0;
  // Deltas written since the baseline (0 right after it). REQUIRES: >= 0.
  int chain_length = 0;
  // Size of a full save of the tensor, in bytes.
  uint64_t full_bytes = 0;
  // Size the delta would have against the base the mode uses (the
  // baseline for kIntermittent, previous_step for kConsecutive).
  uint64_t delta_bytes = 0;
};

struct DeltaDecision {
  enum class Kind { kFull, kDelta };
  Kind kind = Kind::kFull;
  // kDelta: the step the delta is taken against. kFull: unset.
  std::optional<int64_t> base_step;
  // Why, for people and event logs, e.g. "delta 600 B >= 0.5 x full 1000 B:
  // new baseline".
  std::string reason;
};

// INVALID_ARGUMENT for options or a history that break the REQUIRES above.
absl::StatusOr<DeltaDecision> DecideDelta(const DeltaHistory& history,
                                          const DeltaPolicyOptions& options);

}  // namespace ckpt
