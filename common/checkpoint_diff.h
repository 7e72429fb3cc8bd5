// What checkpoint B changed relative to checkpoint A (`ckpt diff`), from
// their manifests alone: no chunk is read. Per tensor entry, keyed by name
// and rank (a sharded tensor is compared box by box, as each rank holds
// it): same, changed (which of dtype, shape, box and kind; how many chunks
// differ; for a row delta the rows it holds), added or removed; then the
// metrics, tags and writer time that differ, and the bytes B added over A.
// Pure: the caller fetched both manifests.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/manifest.h"

namespace ckpt {

enum class TensorChange : uint8_t { kSame, kChanged, kAdded, kRemoved };
// "same", "changed", "added", "removed".
absl::string_view TensorChangeName(TensorChange change);

// One side's entry of a tensor.
struct TensorSide {
  DType dtype = DType::kUint8;
  std::vector<int64_t> global_shape;
  Box box;
  std::string kind;  // TensorEntryKind: "full", "delta", "quantized Nb"
  std::optional<int64_t> delta_base_step;
  uint64_t bytes = 0;         // TensorEntry::ByteSize (restored size)
  uint64_t stored_bytes = 0;  // what its pieces hold
  uint64_t chunks = 0;        // its pieces
  // A row delta's rows, read off its pieces' total size (RowDeltaRowCount:
  // the encoding's size is a function of its row count), and the rows of
  // its box. nullopt for other entries.
  std::optional<uint64_t> delta_rows;
  uint64_t total_rows = 0;  // box.lengths[0]; 0 for a scalar
};

struct TensorDiff {
  std::string name;
  int32_t rank = 0;
  TensorChange change = TensorChange::kSame;
  std::optional<TensorSide> a;  // nullopt when added
  std::optional<TensorSide> b;  // nullopt when removed
  // Changed entries only: what differs between the sides.
  bool dtype_changed = false;
  bool shape_changed = false;  // the global shape
  bool box_changed = false;
  bool kind_changed = false;  // full, delta or quantized (or its width)
  // Entries laid out alike (same dtype, box and kind, neither a delta):
  // the chunk positions whose chunk differs or that one side lacks, i.e.
  // which parts of the bytes changed. Otherwise (a delta, a new layout):
  // B's pieces whose chunk A's entry does not hold. Added: B's pieces.
  uint64_t chunks_differing = 0;
  // B's entry is a row delta taken against A itself: the rows it replaces
  // over A (its delta_rows), the rows of the tensor that changed. Unknown
  // (nullopt) otherwise: a delta against another step says how its rows
  // differ from that step, and plain entries have no row record.
  std::optional<uint64_t> rows_changed;
  // Bytes of the distinct chunks of B's entry (data and stored row
  // fingerprints) that checkpoint A references nowhere (its share of
  // CheckpointDiff::bytes_added; a chunk two entries share counts in both).
  uint64_t new_bytes = 0;
};

// One value on each side; nullopt where a side lacks it.
template <typename T>
struct ValueChange {
  std::optional<T> a;
  std::optional<T> b;
  friend bool operator==(const ValueChange&, const ValueChange&) = default;
};

struct CheckpointDiff {
  CheckpointRecord a;
  CheckpointRecord b;
  // Every tensor entry of either side, ascending name then rank.
  std::vector<TensorDiff> tensors;
  // Only what differs (a NaN equals a NaN here).
  std::map<std::string, ValueChange<double>> metrics;
  std::map<std::string, ValueChange<std::string>> tags;
  std::optional<ValueChange<absl::Time>> writer_time;  // set when different
  // B's distinct chunks that A does not reference: what B added over A
  // (not the same as B's bytes_added, which is what saving B added to the
  // whole store).
  uint64_t chunks_added = 0;
  uint64_t bytes_added = 0;

  int Count(TensorChange change) const;
};

// Compares checkpoint `b` with checkpoint `a` (usually the older one). An
// entry is same when it is identical to A's (same chunks, kind and layout),
// or when B's is a row delta of zero rows against A itself.
CheckpointDiff DiffCheckpoints(const Checkpoint& a, const Checkpoint& b);

}  // namespace ckpt
