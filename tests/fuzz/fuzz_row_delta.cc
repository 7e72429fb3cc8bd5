// T23: the row delta decoder (common/row_delta.h) on hostile bytes. A
// decoded delta must keep its invariants (indices strictly ascending and in
// range, every row row_bytes long), apply onto a base of its tensor's size
// (when small enough to allocate here), and, the format being canonical,
// re-encode from the applied rows to exactly the input.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/row_delta.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view encoded(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<ckpt::RowDeltaView> delta = ckpt::DecodeRowDelta(encoded);
  if (!delta.ok()) {
    FUZZ_CHECK(delta.status().code() == absl::StatusCode::kDataLoss,
               "a refused delta is DATA_LOSS");
    return 0;
  }
  FUZZ_CHECK(delta->row_count() <= delta->total_rows(), "row count");
  std::vector<uint64_t> rows;
  rows.reserve(delta->row_count());
  for (uint64_t i = 0; i < delta->row_count(); ++i) {
    const uint64_t row = delta->RowIndex(i);
    FUZZ_CHECK(row < delta->total_rows(), "index in range");
    FUZZ_CHECK(rows.empty() || row > rows.back(), "indices ascending");
    FUZZ_CHECK(delta->RowData(i).size() == delta->row_bytes(), "row size");
    rows.push_back(row);
  }
  if (delta->tensor_bytes() > (uint64_t{1} << 20)) return 0;
  std::string base(delta->tensor_bytes(), '\0');
  FUZZ_CHECK(ckpt::ApplyRowDelta(*delta, absl::MakeSpan(base)).ok(),
             "a decoded delta applies to a base of its size");
  std::string bigger(base.size() + 1, '\0');
  FUZZ_CHECK(!ckpt::ApplyRowDelta(*delta, absl::MakeSpan(bigger)).ok(),
             "a base of another size is refused");
  absl::StatusOr<std::string> again =
      ckpt::EncodeRowDelta(base, delta->row_bytes(), rows);
  FUZZ_CHECK(again.ok() && *again == encoded,
             "re-encoding the applied rows gives the input back");
  return 0;
}
