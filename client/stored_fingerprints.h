// Reads the row fingerprints a checkpoint's writers stored with a tensor
// (common/fingerprint_record.h) and rebuilds, down its delta chain, the
// fingerprints of the tensor as that checkpoint holds it and as the chain's
// full baseline holds it: what lets a restarted job (IncrementalSaver::
// SeedFromCheckpoint) or a client without history (RowsChangedSince) make
// a row delta without the rows of the base. Reads 16 bytes per row of the
// baseline and per changed row of each delta, never the rows.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "client/transport.h"
#include "common/manifest.h"
#include "common/row_fingerprint.h"

namespace ckpt::client {

// A tensor's delta chain, from a checkpoint down to its full baseline.
struct StoredChain {
  int64_t baseline_step = 0;
  int chain_length = 0;  // row deltas from the baseline up to the checkpoint
  // Set when every entry of the chain stored its fingerprints (else the
  // chain was written, in part, before they were stored):
  struct Fingerprints {
    std::vector<RowFingerprint> at_checkpoint;  // one per row
    std::vector<RowFingerprint> at_baseline;    // one per row
    // Rows that differ between baseline and checkpoint may be among these
    // (the union of the chain's delta rows, ascending); no other row does.
    std::vector<uint64_t> changed_since_baseline;
  };
  std::optional<Fingerprints> fingerprints;
  uint64_t bytes_read = 0;  // fingerprint record bytes fetched
};

// Walks `entry` (of committed checkpoint `step` of `job`) down its delta
// chain (each base found as a restore finds it, client/fetch_plan.h's
// DeltaChains) and, when every entry on it stored fingerprints, fetches the
// records in one read and rebuilds them. Everything read is checked:
// DATA_LOSS naming the tensor for a record that does not decode, or whose
// rows, row size or kind (dense for a full entry, sparse for a delta of as
// many rows as the delta holds) disagree with its entry, and as a restore
// for a chain that is broken (a base gone) or does not go back in time.
// INVALID_ARGUMENT for a quantized entry or one without rows. `rank`: the
// shard `entry` is of, whose own bases are followed (DeltaChains::Resolve).
// Client::LoadStoredChain is this through the client's transport.
absl::StatusOr<StoredChain> LoadStoredChain(
    Transport& transport, absl::string_view job, int64_t step,
    const TensorEntry& entry, std::optional<int32_t> rank = std::nullopt);

// LoadStoredChain for each of `entries` (a shard's tensors, say) of one
// checkpoint, each base manifest fetched once over all of them; one result
// per entry, in order, so one tensor's broken record fails only its own.
// `rank`: the shard the entries are of.
std::vector<absl::StatusOr<StoredChain>> LoadStoredChains(
    Transport& transport, absl::string_view job, int64_t step,
    absl::Span<const TensorEntry> entries,
    std::optional<int32_t> rank = std::nullopt);

}  // namespace ckpt::client
