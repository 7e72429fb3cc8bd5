#include "common/row_fingerprint.h"

#include <algorithm>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/row_fingerprint_kernels.h"
#include "common/status_macros.h"

namespace ckpt {
namespace {

using RowKernel = void (*)(const char*, size_t, size_t, RowFingerprint*);

// Below this many bytes per thread, starting a thread costs more than the
// hashing it takes over (~10 GiB/s: 16 MiB is ~1.5 ms).
constexpr size_t kMinBytesPerThread = size_t{16} << 20;

}  // namespace

bool Avx2KernelAvailable() {
#if defined(CKPT_HAVE_AVX2_KERNEL)
  return __builtin_cpu_supports("avx2");
#else
  return false;
#endif
}

absl::Status RowFingerprintsInto(absl::Span<const char> bytes, size_t row_bytes,
                                 absl::Span<RowFingerprint> out, int threads,
                                 Xxh3Kernel kernel) {
  if (row_bytes == 0) {
    return absl::InvalidArgumentError("row fingerprints: row_bytes is 0");
  }
  if (bytes.size() % row_bytes != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("row fingerprints: ", bytes.size(),
                     " bytes is not a multiple of row_bytes ", row_bytes));
  }
  const size_t rows = bytes.size() / row_bytes;
  if (out.size() != rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("row fingerprints: output has room for ", out.size(),
                     " fingerprints, the table has ", rows, " rows"));
  }
  if (threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("row fingerprints: threads is ", threads));
  }
  if (kernel == Xxh3Kernel::kAvx2 && !Avx2KernelAvailable()) {
    return absl::InvalidArgumentError(
        "row fingerprints: the AVX2 kernel is not available on this CPU or "
        "build");
  }
  RowKernel row_kernel = internal::FingerprintRowsGeneric;
#if defined(CKPT_HAVE_AVX2_KERNEL)
  if (kernel != Xxh3Kernel::kGeneric && Avx2KernelAvailable()) {
    row_kernel = internal::FingerprintRowsAvx2;
  }
#endif

  const size_t useful_threads =
      std::max<size_t>(1, bytes.size() / kMinBytesPerThread);
  const size_t thread_count =
      std::min({static_cast<size_t>(threads), useful_threads, rows});
  if (thread_count <= 1) {
    row_kernel(bytes.data(), row_bytes, rows, out.data());
    return absl::OkStatus();
  }
  // Contiguous row ranges, the first `rows % thread_count` one row longer;
  // the calling thread takes the last range.
  std::vector<std::jthread> workers;
  workers.reserve(thread_count - 1);
  size_t first_row = 0;
  for (size_t t = 0; t < thread_count; ++t) {
    const size_t count = rows / thread_count + (t < rows % thread_count);
    const char* data = bytes.data() + first_row * row_bytes;
    RowFingerprint* range_out = out.data() + first_row;
    if (t + 1 == thread_count) {
      row_kernel(data, row_bytes, count, range_out);
    } else {
      workers.emplace_back(row_kernel, data, row_bytes, count, range_out);
    }
    first_row += count;
  }
  workers.clear();  // joins
  return absl::OkStatus();
}

absl::StatusOr<std::vector<RowFingerprint>> RowFingerprints(
    absl::Span<const char> bytes, size_t row_bytes, int threads,
    Xxh3Kernel kernel) {
  std::vector<RowFingerprint> fingerprints(
      row_bytes == 0 ? 0 : bytes.size() / row_bytes);
  CKPT_RETURN_IF_ERROR(RowFingerprintsInto(
      bytes, row_bytes, absl::MakeSpan(fingerprints), threads, kernel));
  return fingerprints;
}

absl::StatusOr<std::vector<RowFingerprint>> SelectedRowFingerprints(
    absl::Span<const char> bytes, size_t row_bytes,
    absl::Span<const uint64_t> rows) {
  if (row_bytes == 0 || bytes.size() % row_bytes != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "row fingerprints: ", bytes.size(), " bytes is not a whole number of ",
        row_bytes, "-byte rows"));
  }
  const uint64_t total_rows = bytes.size() / row_bytes;
  RowKernel row_kernel = internal::FingerprintRowsGeneric;
#if defined(CKPT_HAVE_AVX2_KERNEL)
  if (Avx2KernelAvailable()) row_kernel = internal::FingerprintRowsAvx2;
#endif
  std::vector<RowFingerprint> out(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] >= total_rows) {
      return absl::InvalidArgumentError(
          absl::StrCat("row fingerprints: row ", rows[i], " is past the last ",
                       "of ", total_rows, " rows"));
    }
    row_kernel(bytes.data() + rows[i] * row_bytes, row_bytes, 1, &out[i]);
  }
  return out;
}

absl::StatusOr<std::vector<uint64_t>> ChangedRows(
    absl::Span<const RowFingerprint> old_fingerprints,
    absl::Span<const RowFingerprint> new_fingerprints) {
  if (old_fingerprints.size() != new_fingerprints.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "changed rows: the old fingerprints cover ", old_fingerprints.size(),
        " rows, the new ones ", new_fingerprints.size()));
  }
  std::vector<uint64_t> changed;
  for (size_t i = 0; i < new_fingerprints.size(); ++i) {
    if (old_fingerprints[i] != new_fingerprints[i]) changed.push_back(i);
  }
  return changed;
}

}  // namespace ckpt
