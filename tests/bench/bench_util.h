// Helpers shared by the benchmark programs: synthetic tensor data, its
// tensor views, timing and medians.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/client.h"

namespace ckpt::bench {

// Incompressible, non-repeating data (xorshift), so dedup cannot help.
inline void Fill(std::vector<float>& values, uint64_t seed) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  auto* words = reinterpret_cast<uint64_t*>(values.data());
  const size_t n = values.size() / 2;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    words[i] = x;
  }
}

inline double Seconds(absl::Time start) {
  return absl::ToDoubleSeconds(absl::Now() - start);
}

inline std::vector<client::TensorData> Tensors(const std::vector<float>& shard,
                                               int32_t rank, int32_t ranks) {
  // Each rank holds a row block of one [ranks*rows, 1024] float32 matrix,
  // split into four tensors as a model's layers would be.
  constexpr int64_t kCols = 1024;
  constexpr int kLayers = 4;
  const int64_t rows = static_cast<int64_t>(shard.size()) / kCols / kLayers;
  std::vector<client::TensorData> tensors;
  for (int l = 0; l < kLayers; ++l) {
    const char* base = reinterpret_cast<const char*>(shard.data()) +
                       l * rows * kCols * sizeof(float);
    client::TensorData& tensor = tensors.emplace_back();
    tensor.name = absl::StrCat("layer", l, ".weight");
    tensor.dtype = DType::kFloat32;
    tensor.global_shape = {rows * ranks, kCols};
    tensor.box = Box{{rows * rank, 0}, {rows, kCols}};
    tensor.bytes = absl::string_view(base, rows * kCols * sizeof(float));
  }
  return tensors;
}

// Runs fn(rank) for ranks 0..ranks-1 on a thread each, as the ranks of a
// job would run at once; the first error, after all have ended.
template <typename Fn>
absl::Status ParallelRanks(int32_t ranks, Fn fn) {
  std::vector<absl::Status> status(ranks);
  std::vector<std::thread> threads;
  threads.reserve(status.size());
  for (int32_t r = 0; r < ranks; ++r) {
    threads.emplace_back([&, r] { status[r] = fn(r); });
  }
  for (auto& t : threads) t.join();
  for (auto& s : status) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

inline double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// "0.812-0.975s": the fastest and slowest of `seconds`.
inline std::string Spread(std::vector<double> seconds) {
  std::sort(seconds.begin(), seconds.end());
  return absl::StrFormat("%.3f-%.3fs", seconds.front(), seconds.back());
}

// The flags every benchmark takes: --rounds, --dir (described by
// `dir_help`) and --json.
inline void AddRoundsDirJsonFlags(CLI::App& app, int* rounds, std::string* dir,
                                  bool* json, const std::string& dir_help) {
  app.add_option("--rounds", *rounds, "rounds; medians are reported")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  app.add_option("--dir", *dir, dir_help);
  app.add_flag("--json", *json, "print the medians as JSON");
}

// Where a benchmark puts its files: --dir, else $TMPDIR, else /var/tmp.
inline std::string BenchBaseDir(const std::string& dir) {
  if (!dir.empty()) return dir;
  const char* tmp = std::getenv("TMPDIR");
  return tmp != nullptr ? tmp : "/var/tmp";
}

// The process exit code for `status`, printed as "program: status".
inline int ExitCode(absl::string_view program, const absl::Status& status) {
  if (status.ok()) return 0;
  std::cerr << program << ": " << status << std::endl;
  return 1;
}

}  // namespace ckpt::bench
