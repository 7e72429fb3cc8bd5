// Per-row 128-bit XXH3 fingerprints of a row-major tensor's bytes, and the
// rows whose fingerprints differ between two saves: how an incremental
// (Check-N-Run) checkpoint finds the embedding rows that changed.
// A collision would hide a changed row (it would restore with its base's
// value). XXH3-128 of two different inputs collides with probability about
// 2^-128; a job comparing 2^22 rows at each of 2^20 saves makes 2^42
// comparisons, so the chance that any changed row is ever missed is below
// 2^-86. 128 bits rather than 64 because the fingerprints are now stored
// and compared across processes and machines for the life of a job (and
// 2^-22 for the same job with 64 bits is not negligible at fleet scale).
// XXH3 is not collision-resistant against an adversary: fingerprints
// compare a trainer's own tensors only, and the stored ones are trusted
// as far as the checkpoint's manifest is (common/fingerprint_record.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/row_fingerprint_value.h"

namespace ckpt {

// Which XXH3 build computes the fingerprints. Every path gives the same
// values (XXH3_128bits with seed 0); they differ only in speed.
enum class Xxh3Kernel {
  kAuto,     // AVX2 when the CPU has it, else kGeneric
  kGeneric,  // the baseline x86-64 (SSE2) or scalar build
  kAvx2,     // REQUIRES: Avx2KernelAvailable()
};

// True if this binary has an AVX2 build of XXH3 and the CPU supports it.
bool Avx2KernelAvailable();

// The XXH3_128bits of each `row_bytes`-sized row of `bytes`, in row order.
// `threads` > 1 splits large tables into that many contiguous row ranges
// hashed in parallel (at least 16 MiB per thread, so small tables use
// fewer).
// INVALID_ARGUMENT if row_bytes is 0, bytes.size() is not a multiple of
// row_bytes, threads < 1, or kAvx2 is asked for but unavailable.
// Thread-safe. Empty input gives no fingerprints.
absl::StatusOr<std::vector<RowFingerprint>> RowFingerprints(
    absl::Span<const char> bytes, size_t row_bytes, int threads = 1,
    Xxh3Kernel kernel = Xxh3Kernel::kAuto);

// The same into `out`, which must hold exactly one entry per row, so a
// caller hashing the same table at every save can reuse one buffer.
// INVALID_ARGUMENT as above, or if out.size() is not the row count.
absl::Status RowFingerprintsInto(absl::Span<const char> bytes, size_t row_bytes,
                                 absl::Span<RowFingerprint> out,
                                 int threads = 1,
                                 Xxh3Kernel kernel = Xxh3Kernel::kAuto);

// The fingerprints of rows `rows` (any order) of `bytes`, one per entry:
// for a save that knows which rows it changed and fingerprints only
// those. INVALID_ARGUMENT as above, or for a row past the last.
absl::StatusOr<std::vector<RowFingerprint>> SelectedRowFingerprints(
    absl::Span<const char> bytes, size_t row_bytes,
    absl::Span<const uint64_t> rows);

// Indices (ascending) of the rows whose fingerprints differ. INVALID_ARGUMENT
// if the two have different row counts: a reshaped tensor needs a full save.
absl::StatusOr<std::vector<uint64_t>> ChangedRows(
    absl::Span<const RowFingerprint> old_fingerprints,
    absl::Span<const RowFingerprint> new_fingerprints);

}  // namespace ckpt
