// T23: the stored fingerprint record decoder (common/fingerprint_record.h)
// on hostile bytes. A decoded record must keep its invariants (a dense one
// covers every row in order; a sparse one's indices ascend below
// total_rows), overlay onto fingerprints of its tensor's row count (when
// small enough to allocate here) and refuse another count, and, the format
// being canonical, re-encode to exactly the input.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/fingerprint_record.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view encoded(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<ckpt::FingerprintRecordView> record =
      ckpt::DecodeFingerprintRecord(encoded);
  if (!record.ok()) {
    FUZZ_CHECK(record.status().code() == absl::StatusCode::kDataLoss,
               "a refused record is DATA_LOSS");
    return 0;
  }
  FUZZ_CHECK(record->row_count() <= record->total_rows(), "row count");
  FUZZ_CHECK(!record->dense() || record->row_count() == record->total_rows(),
             "a dense record covers every row");
  std::vector<uint64_t> rows;
  std::vector<ckpt::RowFingerprint> fingerprints;
  rows.reserve(record->row_count());
  fingerprints.reserve(record->row_count());
  for (uint64_t i = 0; i < record->row_count(); ++i) {
    const uint64_t row = record->RowIndex(i);
    FUZZ_CHECK(row < record->total_rows(), "index in range");
    FUZZ_CHECK(!record->dense() || row == i, "a dense record is in order");
    FUZZ_CHECK(rows.empty() || row > rows.back(), "indices ascending");
    rows.push_back(row);
    fingerprints.push_back(record->Fingerprint(i));
  }
  const absl::StatusOr<std::string> again =
      record->dense()
          ? ckpt::EncodeDenseFingerprints(record->row_bytes(), fingerprints)
          : ckpt::EncodeSparseFingerprints(
                record->row_bytes(), record->total_rows(), rows, fingerprints);
  FUZZ_CHECK(again.ok() && *again == encoded, "re-encoding gives the input");
  if (record->total_rows() > (uint64_t{1} << 16)) return 0;
  std::vector<ckpt::RowFingerprint> all(record->total_rows());
  FUZZ_CHECK(ckpt::OverlayFingerprints(*record, absl::MakeSpan(all)).ok(),
             "a record overlays fingerprints of its row count");
  for (size_t i = 0; i < rows.size(); ++i) {
    FUZZ_CHECK(all[rows[i]] == fingerprints[i], "overlay writes each row's");
  }
  std::vector<ckpt::RowFingerprint> other(record->total_rows() + 1);
  FUZZ_CHECK(!ckpt::OverlayFingerprints(*record, absl::MakeSpan(other)).ok(),
             "another row count is refused");
  return 0;
}
