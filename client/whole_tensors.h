// How each tensor name of a committed checkpoint is read whole, whatever
// boxes its ranks saved: the plan behind `ckpt get --full` and `ckpt
// export` (client/portable/export.h). Pure: it only reads the manifest.
//
// A name some rank saved only part of (a box other than its global shape)
// is sharded: one copy, the whole global tensor assembled from every
// rank's box. A name every holder saved whole is per-rank state (or
// replicated): one copy per distinct entry, each read from a rank that
// saved it. Identical entries (same dtype, shape, box and chunks) hold
// identical bytes and are read once; different entries may still hold
// equal bytes (e.g. one saved as a row delta), which only reading them
// tells.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "client/types.h"
#include "common/manifest.h"

namespace ckpt::client {

struct WholeTensor {
  std::string name;
  bool sharded = false;
  // One region request per copy: for a sharded name the whole global
  // tensor (source_rank unset); for a per-rank one each distinct entry's
  // box (whole) from the first rank that saved it.
  std::vector<RegionRequest> copies;
  // Per copy, the ranks whose entry it is (ascending); for a sharded name,
  // every rank holding a box of it.
  std::vector<std::vector<int32_t>> ranks;
  // Every rank's entry of this name, ascending rank. The pointers are into
  // the checkpoint planned, valid while it lives.
  std::vector<std::pair<int32_t, const TensorEntry*>> saved;
};

// One WholeTensor per name of `checkpoint`, in the order names first
// appear (rank by rank, each rank's entries in order).
std::vector<WholeTensor> PlanWholeTensors(const Checkpoint& checkpoint);

}  // namespace ckpt::client
