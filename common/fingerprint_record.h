// Stored row fingerprints: the per-row XXH3-128 fingerprints
// (common/row_fingerprint.h) of a tensor saved with row deltas, encoded as
// one byte string that is chunked, deduplicated, garbage-collected and
// verified like any piece, and referenced from the tensor's manifest entry
// (TensorEntry::fingerprint_pieces). With them a restarted job, or a client
// without history (`ckpt put --delta-against`), finds the rows changed
// since a checkpoint without reading the checkpoint's rows back: 16 bytes
// per row instead of the row.
//
// A full entry stores a dense record: every row's fingerprint, in order. A
// row delta stores a sparse record of exactly its rows: their fingerprints
// after the save. The fingerprints of a delta's tensor are therefore its
// base's with the sparse record laid over them (OverlayFingerprints), down
// the chain to the full baseline.
//
// Format, version 1, all integers little-endian:
//   offset  0  magic "CKFP"
//           4  u16 format version (1)
//           6  u8  index width: 0 for a dense record (no indices); for a
//                  sparse one 4 if total_rows <= 2^32, else 8
//           7  u8  algorithm: 1 = XXH3_128bits, seed 0
//           8  u64 row_bytes of the tensor (> 0)
//          16  u64 total_rows of the tensor
//          24  u64 row_count (dense: total_rows; sparse: <= total_rows)
//          32  sparse only: row_count indices, strictly ascending,
//              < total_rows
//              then row_count fingerprints, 16 bytes each: low 64 bits,
//              then high 64 bits
// No checksum of its own: like every piece it is stored as a
// content-addressed (SHA-256) chunk, verified when read.
//
// Trust: the fingerprints are what the writer of the checkpoint said its
// rows were. A delta computed against them is exactly right only if they
// match the base's rows, so a client uses them only from a checkpoint of
// its own job (written by the job's writers). Nothing recomputes them from
// the rows: `ckpt verify --read-data` checks each chunk, records included,
// against its SHA-256 only, so a well-formed record that lies goes unseen
// (tests/python/test_hostile_fingerprints.py).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/row_fingerprint.h"

namespace ckpt {

inline constexpr uint16_t kFingerprintRecordVersion = 1;
inline constexpr size_t kFingerprintRecordHeaderBytes = 32;
inline constexpr size_t kFingerprintBytes = 16;

// Encoded sizes; saturate at UINT64_MAX instead of wrapping.
uint64_t DenseFingerprintRecordBytes(uint64_t total_rows);
uint64_t SparseFingerprintRecordBytes(uint64_t total_rows, uint64_t row_count);

// A dense record of `fingerprints`, one per row of a tensor of `row_bytes`
// rows. INVALID_ARGUMENT if row_bytes is 0.
absl::StatusOr<std::string> EncodeDenseFingerprints(
    uint64_t row_bytes, absl::Span<const RowFingerprint> fingerprints);

// A sparse record: fingerprints[i] is row rows[i]'s, of a tensor of
// `total_rows` rows of `row_bytes`. INVALID_ARGUMENT if row_bytes is 0, the
// spans differ in length, or rows are not strictly ascending below
// total_rows.
absl::StatusOr<std::string> EncodeSparseFingerprints(
    uint64_t row_bytes, uint64_t total_rows, absl::Span<const uint64_t> rows,
    absl::Span<const RowFingerprint> fingerprints);

// A decoded record: views into the encoded bytes, which must outlive it.
// Only DecodeFingerprintRecord makes one, so its invariants hold.
class FingerprintRecordView {
 public:
  bool dense() const { return index_width_ == 0; }
  uint64_t row_bytes() const { return row_bytes_; }
  uint64_t total_rows() const { return total_rows_; }
  uint64_t row_count() const { return row_count_; }
  // REQUIRES: i < row_count(). A dense record's row i is row i.
  uint64_t RowIndex(uint64_t i) const;
  RowFingerprint Fingerprint(uint64_t i) const;

 private:
  friend absl::StatusOr<FingerprintRecordView> DecodeFingerprintRecord(
      absl::string_view);
  friend absl::Status OverlayFingerprints(const FingerprintRecordView&,
                                          absl::Span<RowFingerprint>);
  FingerprintRecordView() = default;

  uint64_t row_bytes_ = 0;
  uint64_t total_rows_ = 0;
  uint64_t row_count_ = 0;
  int index_width_ = 0;
  const char* indices_ = nullptr;
  const char* fingerprints_ = nullptr;
};

// Parses and checks all of `encoded`: DATA_LOSS naming the problem for a
// truncated or oversized buffer, bad magic, an unknown version or
// algorithm, a non-canonical index width, zero row_bytes, a dense record
// whose row count is not its total, and indices out of range, repeated or
// out of order. Never reads out of bounds.
absl::StatusOr<FingerprintRecordView> DecodeFingerprintRecord(
    absl::string_view encoded);

// Lays `record` over `fingerprints` (one per row of the tensor): a dense
// record replaces them all, a sparse one its rows'. INVALID_ARGUMENT (and
// nothing written) if fingerprints.size() is not record.total_rows().
absl::Status OverlayFingerprints(const FingerprintRecordView& record,
                                 absl::Span<RowFingerprint> fingerprints);

}  // namespace ckpt
