#include "common/checkpoint_diff.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "common/delta_base.h"
#include "common/row_delta.h"

namespace ckpt {
namespace {

using EntryKey = std::pair<std::string, int32_t>;  // name, rank

// Each (name, rank) once: the first, should a manifest repeat one (a valid
// one never does).
std::map<EntryKey, const TensorEntry*> EntriesOf(const Checkpoint& checkpoint) {
  std::map<EntryKey, const TensorEntry*> entries;
  for (const ShardManifest& shard : checkpoint.shards) {
    for (const TensorEntry& entry : shard.tensors) {
      entries.emplace(EntryKey(entry.name, shard.rank), &entry);
    }
  }
  return entries;
}

absl::flat_hash_set<ChunkId> ChunksOf(const Checkpoint& checkpoint) {
  absl::flat_hash_set<ChunkId> ids;
  for (const ShardManifest& shard : checkpoint.shards) {
    for (const ChunkRef& ref : ReferencedChunks(shard)) ids.insert(ref.id);
  }
  return ids;
}

TensorSide SideOf(const TensorEntry& entry) {
  TensorSide side;
  side.dtype = entry.dtype;
  side.global_shape = entry.global_shape;
  side.box = entry.box;
  side.kind = TensorEntryKind(entry);
  side.delta_base_step = entry.delta_base_step;
  side.bytes = entry.ByteSize();
  side.stored_bytes = entry.StoredBytes();
  side.chunks = entry.pieces.size();
  if (!entry.box.lengths.empty()) {
    side.total_rows =
        static_cast<uint64_t>(std::max<int64_t>(entry.box.lengths[0], 0));
  }
  if (entry.IsDelta()) {
    side.delta_rows =
        RowDeltaRowCount(side.total_rows, entry.RowBytes(), side.stored_bytes);
  }
  return side;
}

// B's distinct chunks in `entry` (its fingerprint pieces too) that A does
// not reference, and their bytes.
uint64_t NewBytes(const TensorEntry& entry,
                  const absl::flat_hash_set<ChunkId>& a_chunks) {
  absl::flat_hash_set<ChunkId> seen;
  uint64_t bytes = 0;
  for (const auto* refs : {&entry.pieces, &entry.fingerprint_pieces}) {
    for (const ChunkRef& piece : *refs) {
      if (!a_chunks.contains(piece.id) && seen.insert(piece.id).second) {
        bytes += piece.size;
      }
    }
  }
  return bytes;
}

uint64_t ChunksDiffering(const TensorEntry& a, const TensorEntry& b,
                         bool laid_out_alike) {
  if (laid_out_alike) {
    const size_t positions = std::max(a.pieces.size(), b.pieces.size());
    uint64_t differing = 0;
    for (size_t i = 0; i < positions; ++i) {
      if (i >= a.pieces.size() || i >= b.pieces.size() ||
          a.pieces[i] != b.pieces[i]) {
        ++differing;
      }
    }
    return differing;
  }
  absl::flat_hash_set<ChunkId> held;
  for (const ChunkRef& piece : a.pieces) held.insert(piece.id);
  uint64_t differing = 0;
  for (const ChunkRef& piece : b.pieces) {
    if (!held.contains(piece.id)) ++differing;
  }
  return differing;
}

void Compare(const Checkpoint& a_checkpoint, const TensorEntry& a,
             const TensorEntry& b, TensorDiff* diff) {
  const TensorSide& b_side = *diff->b;
  diff->dtype_changed = a.dtype != b.dtype;
  diff->shape_changed = a.global_shape != b.global_shape;
  diff->box_changed = a.box != b.box;
  diff->kind_changed = diff->a->kind != b_side.kind;
  if (b.IsDelta() && *b.delta_base_step == a_checkpoint.record.step &&
      b_side.delta_rows.has_value()) {
    // Rows over A only when the entry the delta applies onto (the rule
    // restores follow) is A's entry of this name and rank.
    absl::StatusOr<const TensorEntry*> base =
        FindDeltaBase(a_checkpoint.shards, b, diff->rank);
    if (base.ok() && **base == a) diff->rows_changed = b_side.delta_rows;
  }
  const bool identical = a == b;
  if (identical || diff->rows_changed == uint64_t{0}) {
    // The same values: a zero-row delta is A's entry stored another way,
    // which the sides' kinds show.
    diff->change = TensorChange::kSame;
    diff->dtype_changed = diff->shape_changed = diff->box_changed =
        diff->kind_changed = false;
    return;
  }
  diff->change = TensorChange::kChanged;
  const bool laid_out_alike = !diff->dtype_changed && !diff->box_changed &&
                              !diff->kind_changed && !a.IsDelta() &&
                              !b.IsDelta();
  diff->chunks_differing = ChunksDiffering(a, b, laid_out_alike);
}

bool SameMetric(double a, double b) {
  return a == b || (std::isnan(a) && std::isnan(b));
}

template <typename T, typename Same>
std::map<std::string, ValueChange<T>> MapChanges(
    const std::map<std::string, T>& a, const std::map<std::string, T>& b,
    Same same) {
  std::map<std::string, ValueChange<T>> changes;
  for (const auto& [name, value] : a) {
    auto it = b.find(name);
    if (it == b.end()) {
      changes[name] = {value, std::nullopt};
    } else if (!same(value, it->second)) {
      changes[name] = {value, it->second};
    }
  }
  for (const auto& [name, value] : b) {
    if (!a.contains(name)) changes[name] = {std::nullopt, value};
  }
  return changes;
}

}  // namespace

absl::string_view TensorChangeName(TensorChange change) {
  switch (change) {
    case TensorChange::kSame:
      return "same";
    case TensorChange::kChanged:
      return "changed";
    case TensorChange::kAdded:
      return "added";
    case TensorChange::kRemoved:
      return "removed";
  }
  return "unknown";
}

int CheckpointDiff::Count(TensorChange change) const {
  return static_cast<int>(
      std::count_if(tensors.begin(), tensors.end(),
                    [&](const TensorDiff& t) { return t.change == change; }));
}

CheckpointDiff DiffCheckpoints(const Checkpoint& a, const Checkpoint& b) {
  CheckpointDiff diff;
  diff.a = a.record;
  diff.b = b.record;
  const absl::flat_hash_set<ChunkId> a_chunks = ChunksOf(a);
  const std::map<EntryKey, const TensorEntry*> a_entries = EntriesOf(a);
  const std::map<EntryKey, const TensorEntry*> b_entries = EntriesOf(b);

  auto a_it = a_entries.begin();
  auto b_it = b_entries.begin();
  // A merge of the two ordered maps: every key of either, in order.
  while (a_it != a_entries.end() || b_it != b_entries.end()) {
    const bool take_a = b_it == b_entries.end() ||
                        (a_it != a_entries.end() && a_it->first <= b_it->first);
    const bool take_b = a_it == a_entries.end() ||
                        (b_it != b_entries.end() && b_it->first <= a_it->first);
    const EntryKey& key = take_a ? a_it->first : b_it->first;
    TensorDiff tensor;
    tensor.name = key.first;
    tensor.rank = key.second;
    if (take_a) tensor.a = SideOf(*a_it->second);
    if (take_b) {
      tensor.b = SideOf(*b_it->second);
      tensor.new_bytes = NewBytes(*b_it->second, a_chunks);
    }
    if (take_a && take_b) {
      Compare(a, *a_it->second, *b_it->second, &tensor);
    } else if (take_b) {
      tensor.change = TensorChange::kAdded;
      tensor.chunks_differing = tensor.b->chunks;
    } else {
      tensor.change = TensorChange::kRemoved;
    }
    diff.tensors.push_back(std::move(tensor));
    if (take_a) ++a_it;
    if (take_b) ++b_it;
  }

  diff.metrics = MapChanges(a.record.metadata.metrics,
                            b.record.metadata.metrics, SameMetric);
  diff.tags = MapChanges(
      a.record.metadata.tags, b.record.metadata.tags,
      [](const std::string& x, const std::string& y) { return x == y; });
  if (a.record.metadata.writer_time != b.record.metadata.writer_time) {
    diff.writer_time = ValueChange<absl::Time>{a.record.metadata.writer_time,
                                               b.record.metadata.writer_time};
  }

  absl::flat_hash_set<ChunkId> counted;
  for (const ShardManifest& shard : b.shards) {
    for (const ChunkRef& ref : ReferencedChunks(shard)) {
      if (!a_chunks.contains(ref.id) && counted.insert(ref.id).second) {
        ++diff.chunks_added;
        diff.bytes_added += ref.size;
      }
    }
  }
  return diff;
}

}  // namespace ckpt
