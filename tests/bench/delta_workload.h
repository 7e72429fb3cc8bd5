// The workload of ckpt-bench-delta's modes: an embedding table initialised
// as a trained one looks (uniform values), rows chosen with a Zipf-like
// skew and nudged as a training step nudges them, and the bytes a tenant
// stores. Header-only.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "client/client.h"
#include "common/status_macros.h"
#include "tests/bench/bench_util.h"

namespace ckpt::bench {

// Random values in [-0.5, 0.5), as an initialised embedding table holds
// (random bits alone would include NaNs, which quantization rejects).
inline void FillUniform(std::vector<float>& values, uint64_t seed) {
  Fill(values, seed);
  for (float& value : values) {
    uint32_t bits;
    std::memcpy(&bits, &value, sizeof(bits));
    value = static_cast<float>(bits >> 8) * 0x1p-24f - 0.5f;
  }
}

// `count` distinct rows of `rows`, ascending: ranks drawn with density
// falling as rank^(-2/3) (rank = rows * u^3), mapped through a fixed random
// permutation so hot rows are scattered over the table.
inline std::vector<uint64_t> ZipfRows(uint64_t rows, uint64_t count,
                                      std::mt19937_64& random) {
  std::vector<uint64_t> permutation(rows);
  for (uint64_t i = 0; i < rows; ++i) permutation[i] = i;
  std::shuffle(permutation.begin(), permutation.end(), random);
  std::vector<bool> taken(rows, false);
  std::vector<uint64_t> chosen;
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  while (chosen.size() < count) {
    const double u = uniform(random);
    const auto rank = std::min<uint64_t>(
        rows - 1, static_cast<uint64_t>(static_cast<double>(rows) * u * u * u));
    const uint64_t row = permutation[rank];
    if (!taken[row]) {
      taken[row] = true;
      chosen.push_back(row);
    }
  }
  std::sort(chosen.begin(), chosen.end());
  return chosen;
}

// A training step's update of `rows` of a table of `cols` columns: small
// noise added to each value, so every chosen row's bytes change.
inline void NudgeRows(std::vector<float>& table, int64_t cols,
                      absl::Span<const uint64_t> rows,
                      std::mt19937_64& random) {
  std::normal_distribution<float> noise(0.0f, 1e-3f);
  for (uint64_t row : rows) {
    float* values = table.data() + row * cols;
    for (int64_t c = 0; c < cols; ++c) values[c] += noise(random);
  }
}

// The chunk bytes `job`'s tenant holds; 0 before its first save.
inline absl::StatusOr<uint64_t> StoredBytes(client::Client& client,
                                            const std::string& job) {
  absl::StatusOr<Stats> stats = client.GetStats(job);
  if (absl::IsNotFound(stats.status())) return 0;
  CKPT_RETURN_IF_ERROR(stats.status());
  return stats->stored_bytes;
}

// What a row delta of `rows` rows of `row_bytes` must store at least: the
// rows and a 4-byte index each.
inline uint64_t ChangedBytes(uint64_t rows, uint64_t row_bytes) {
  return rows * (row_bytes + 4);
}

inline double Ratio(double a, double b) { return b == 0 ? 0 : a / b; }

}  // namespace ckpt::bench
