#include "common/verify.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

namespace ckpt {

bool ReadDataSubset::Contains(const ChunkId& id) const {
  uint64_t prefix = 0;
  for (size_t i = 0; i < 8; ++i) {
    prefix = (prefix << 8) | static_cast<uint8_t>(id.bytes()[i]);
  }
  return prefix % t == n - 1;
}

std::string ReadDataSubset::ToString() const { return absl::StrCat(n, "/", t); }

absl::Status ValidateReadDataSubset(const ReadDataSubset& subset) {
  if (subset.t < 1 || subset.n < 1 || subset.n > subset.t) {
    return absl::InvalidArgumentError(absl::StrCat(
        "read-data subset ", subset.ToString(),
        " is invalid: it must be n/t with 1 <= n <= t (part n of t)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ReadDataSubset> ParseReadDataSubset(absl::string_view text) {
  std::pair<absl::string_view, absl::string_view> parts =
      absl::StrSplit(text, absl::MaxSplits('/', 1));
  ReadDataSubset subset;
  if (text.find('/') == absl::string_view::npos ||
      !absl::SimpleAtoi(parts.first, &subset.n) ||
      !absl::SimpleAtoi(parts.second, &subset.t)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "read-data subset '", text, "' is not n/t (e.g. 1/5: part 1 of 5)"));
  }
  CKPT_RETURN_IF_ERROR(ValidateReadDataSubset(subset));
  return subset;
}

absl::string_view ChunkProblemName(ChunkProblem problem) {
  switch (problem) {
    case ChunkProblem::kMissing:
      return "missing";
    case ChunkProblem::kCorrupt:
      return "corrupt";
    case ChunkProblem::kSizeMismatch:
      return "size-mismatch";
  }
  return "unknown";
}

}  // namespace ckpt
