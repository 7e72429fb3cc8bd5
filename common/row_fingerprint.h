// Per-row 64-bit XXH3 fingerprints of a row-major tensor's bytes, and the
// rows whose fingerprints differ between two saves: how an incremental
// (Check-N-Run) checkpoint finds the embedding rows that changed.
// A 64-bit collision would hide a changed row; at about 2^-64 per changed
// row that risk is accepted. XXH3 is not collision-resistant against an
// adversary: fingerprints compare a trainer's own tensors only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace ckpt {

// Which XXH3 build computes the fingerprints. Every path gives the same
// values (XXH3_64bits with seed 0); they differ only in speed.
enum class Xxh3Kernel {
  kAuto,     // AVX2 when the CPU has it, else kGeneric
  kGeneric,  // the baseline x86-64 (SSE2) or scalar build
  kAvx2,     // REQUIRES: Avx2KernelAvailable()
};

// True if this binary has an AVX2 build of XXH3 and the CPU supports it.
bool Avx2KernelAvailable();

// The XXH3_64bits of each `row_bytes`-sized row of `bytes`, in row order.
// `threads` > 1 splits large tables into that many contiguous row ranges
// hashed in parallel (at least 16 MiB per thread, so small tables use
// fewer).
// INVALID_ARGUMENT if row_bytes is 0, bytes.size() is not a multiple of
// row_bytes, threads < 1, or kAvx2 is asked for but unavailable.
// Thread-safe. Empty input gives no fingerprints.
absl::StatusOr<std::vector<uint64_t>> RowFingerprints(
    absl::Span<const char> bytes, size_t row_bytes, int threads = 1,
    Xxh3Kernel kernel = Xxh3Kernel::kAuto);

// The same into `out`, which must hold exactly one entry per row, so a
// caller hashing the same table at every save can reuse one buffer.
// INVALID_ARGUMENT as above, or if out.size() is not the row count.
absl::Status RowFingerprintsInto(absl::Span<const char> bytes, size_t row_bytes,
                                 absl::Span<uint64_t> out, int threads = 1,
                                 Xxh3Kernel kernel = Xxh3Kernel::kAuto);

// Indices (ascending) of the rows whose fingerprints differ. INVALID_ARGUMENT
// if the two have different row counts: a reshaped tensor needs a full save.
absl::StatusOr<std::vector<uint64_t>> ChangedRows(
    absl::Span<const uint64_t> old_fingerprints,
    absl::Span<const uint64_t> new_fingerprints);

}  // namespace ckpt
