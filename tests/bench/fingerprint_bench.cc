// ckpt-bench-fingerprint: how fast per-row XXH3 fingerprints (the change
// detection of incremental checkpoints) run next to memcpy of the same
// bytes, for the generic and AVX2 builds, with threads, and against a
// per-row call into Debian's shared libxxhash. Prints GiB/s (medians) and
// the ratio to memcpy. Default: 1 GiB as 4,194,304 rows of 256 bytes.
#include <xxhash.h>  // the shared library's XXH3, for comparison

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/row_fingerprint.h"

namespace ckpt::bench {
namespace {

struct Flags {
  int64_t rows = 4194304;
  int64_t row_bytes = 256;
  int rounds = 5;
  int threads = 2;
};

// Incompressible, non-repeating bytes (xorshift).
void Fill(std::vector<char>& bytes) {
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (size_t i = 0; i + 8 <= bytes.size(); i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(bytes.data() + i, &x, 8);
  }
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median seconds of `rounds` runs of `fn`, after one untimed warm-up run.
template <typename Fn>
double MedianSeconds(int rounds, Fn fn) {
  fn();
  std::vector<double> seconds;
  for (int r = 0; r < rounds; ++r) {
    const absl::Time start = absl::Now();
    fn();
    seconds.push_back(absl::ToDoubleSeconds(absl::Now() - start));
  }
  return Median(seconds);
}

int Run(const Flags& flags) {
  const size_t row_bytes = flags.row_bytes;
  const size_t rows = flags.rows;
  std::vector<char> table(rows * row_bytes);
  std::vector<char> copy(table.size());
  Fill(table);
  std::memset(copy.data(), 1, copy.size());  // fault the pages in
  const absl::Span<const char> bytes(table.data(), table.size());
  const double gib = static_cast<double>(table.size()) / (1 << 30);

  std::vector<RowFingerprint> reference(rows);
  const double memcpy_s = MedianSeconds(flags.rounds, [&] {
    std::memcpy(copy.data(), table.data(), table.size());
  });
  const double library_s = MedianSeconds(flags.rounds, [&] {
    for (size_t i = 0; i < rows; ++i) {
      const XXH128_hash_t hash =
          XXH3_128bits(table.data() + i * row_bytes, row_bytes);
      reference[i] = RowFingerprint{hash.low64, hash.high64};
    }
  });

  absl::PrintF("%d rows x %d B = %.2f GiB, median of %d rounds\n", flags.rows,
               flags.row_bytes, gib, flags.rounds);
  absl::PrintF("  %-26s %6.2f GiB/s\n", "memcpy", gib / memcpy_s);
  absl::PrintF("  %-26s %6.2f GiB/s  %.2fx memcpy\n", "libxxhash.so per row",
               gib / library_s, memcpy_s / library_s);

  struct Variant {
    std::string name;
    Xxh3Kernel kernel;
    int threads;
  };
  std::vector<Variant> variants = {
      {"generic (SSE2), 1 thread", Xxh3Kernel::kGeneric, 1}};
  if (Avx2KernelAvailable()) {
    variants.push_back({"AVX2, 1 thread", Xxh3Kernel::kAvx2, 1});
  }
  if (flags.threads > 1) {
    variants.push_back({absl::StrFormat("auto, %d threads", flags.threads),
                        Xxh3Kernel::kAuto, flags.threads});
  }
  std::vector<RowFingerprint> fingerprints(rows);
  for (const Variant& v : variants) {
    absl::Status status = absl::OkStatus();
    const double s = MedianSeconds(flags.rounds, [&] {
      status.Update(RowFingerprintsInto(
          bytes, row_bytes, absl::MakeSpan(fingerprints), v.threads, v.kernel));
    });
    // Checked against the library, so a broken kernel cannot look fast.
    if (!status.ok() || fingerprints != reference) {
      std::cerr << v.name << ": fingerprints differ from libxxhash: " << status
                << std::endl;
      return 1;
    }
    absl::PrintF("  %-26s %6.2f GiB/s  %.2fx memcpy  %.2fx libxxhash\n", v.name,
                 gib / s, memcpy_s / s, library_s / s);
    std::fill(fingerprints.begin(), fingerprints.end(), RowFingerprint{});
  }
  return 0;
}

}  // namespace
}  // namespace ckpt::bench

int main(int argc, char** argv) {
  ckpt::bench::Flags flags;
  CLI::App app{
      "Per-row XXH3 fingerprints vs memcpy and the shared libxxhash (not a "
      "test; run by hand)."};
  app.add_option("--rows", flags.rows, "rows in the table")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 32));
  app.add_option("--row-bytes", flags.row_bytes, "bytes per row")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--rounds", flags.rounds, "rounds; medians are reported")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  app.add_option("--threads", flags.threads,
                 "threads for the multi-threaded run (1: skip it)")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  CLI11_PARSE(app, argc, argv);
  return ckpt::bench::Run(flags);
}
