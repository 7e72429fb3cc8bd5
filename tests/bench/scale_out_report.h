// ckpt-bench-scale-out's settings, samples and report (the tables and the
// JSON); the measuring is in scale_out_bench.cc. Header-only, included
// there alone.
#pragma once

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "tests/bench/bench_util.h"

namespace ckpt::bench::scale_out {

struct Flags {
  std::vector<int64_t> sizes_mib = {256, 1024};
  int32_t ranks = 6;
  std::vector<int> rados_servers = {1, 2, 3};
  int rounds = 3;
  int probe_ranks = 60;
  int probe_chunks = 256;
  int pg_num = 8;
  std::string dir;
  bool json = false;
};

enum class Kind { kFloor, kRocksDb, kRados };

struct Config {
  std::string name;
  Kind kind;
  int servers = 0;
};

// CPU seconds a phase cost: this process (the ranks' clients), the
// configuration's ckpt-servers, and the Ceph OSD.
struct CpuUse {
  double clients = 0, servers = 0, osd = 0;
};

// Seconds per round (save, restore, commit_last, wide_serial, wide_last)
// or per call (commit_alone, wide_each), over all rounds.
struct Samples {
  std::vector<double> save, restore, shared_memory_restore;
  std::vector<CpuUse> save_cpu, restore_cpu;  // restore: the streamed one
  std::vector<double> commit_alone, commit_last;
  std::vector<double> wide_serial, wide_each, wide_last;
  size_t real_chunks = 0;        // chunk references of rank 0's shard
  size_t wide_chunks = 0;        // chunk references per wide rank
  size_t wide_record_bytes = 0;  // a wide rank's stored shard record
};

inline double MiB(size_t bytes) {
  return static_cast<double>(bytes) / (1 << 20);
}

// Median of `v`, or 0 when a configuration has no such figure.
inline double MedianOr0(const std::vector<double>& v) {
  return v.empty() ? 0 : Median(v);
}

// Per component, the median over rounds of CPU seconds per GiB moved.
inline CpuUse CpuPerGiB(const std::vector<CpuUse>& uses, size_t bytes) {
  std::vector<double> clients, servers, osd;
  for (const CpuUse& use : uses) {
    clients.push_back(use.clients);
    servers.push_back(use.servers);
    osd.push_back(use.osd);
  }
  const double gib = static_cast<double>(bytes) / (1 << 30);
  return {MedianOr0(clients) / gib, MedianOr0(servers) / gib,
          MedianOr0(osd) / gib};
}

inline nlohmann::json CpuJson(const CpuUse& use) {
  return {{"clients", use.clients}, {"servers", use.servers}, {"osd", use.osd}};
}

inline nlohmann::json ConfigJson(const Config& config, const Samples& s,
                                 const Samples& rocksdb, const Samples& floor,
                                 size_t bytes) {
  const double save = Median(s.save), restore = Median(s.restore);
  nlohmann::json out = {
      {"config", config.name},
      {"servers", config.servers},
      {"save_seconds", save},
      {"save_seconds_all", s.save},
      {"save_mib_per_second", MiB(bytes) / save},
      {"save_vs_rocksdb", save / Median(rocksdb.save)},
      {"save_vs_floor", save / Median(floor.save)},
      {"restore_seconds", restore},
      {"restore_seconds_all", s.restore},
      {"restore_mib_per_second", MiB(bytes) / restore},
      {"restore_vs_rocksdb", restore / Median(rocksdb.restore)},
      {"restore_vs_floor", restore / Median(floor.restore)},
  };
  if (config.servers > 0) {
    out["save_cpu_seconds_per_gib"] = CpuJson(CpuPerGiB(s.save_cpu, bytes));
    out["restore_cpu_seconds_per_gib"] =
        CpuJson(CpuPerGiB(s.restore_cpu, bytes));
    out["save_mib_per_second_per_server"] = MiB(bytes) / save / config.servers;
    out["restore_mib_per_second_per_server"] =
        MiB(bytes) / restore / config.servers;
    out["commit_alone_seconds"] = MedianOr0(s.commit_alone);
    out["commit_last_seconds"] = MedianOr0(s.commit_last);
    out["commit_last_seconds_all"] = s.commit_last;
    out["chunks_per_rank"] = s.real_chunks;
    out["wide_chunks_per_rank"] = s.wide_chunks;
    out["wide_shard_record_bytes"] = s.wide_record_bytes;
    out["wide_in_turn_seconds"] = MedianOr0(s.wide_serial);
    out["wide_in_turn_seconds_all"] = s.wide_serial;
    out["wide_commit_each_seconds"] = MedianOr0(s.wide_each);
    out["wide_commit_last_seconds"] = MedianOr0(s.wide_last);
    out["wide_commit_last_seconds_all"] = s.wide_last;
  }
  if (!s.shared_memory_restore.empty()) {
    out["shared_memory_restore_seconds"] = Median(s.shared_memory_restore);
    out["shared_memory_restore_seconds_all"] = s.shared_memory_restore;
  }
  return out;
}

inline void PrintTable(const std::vector<Config>& configs,
                       const std::map<std::string, Samples>& samples,
                       size_t bytes, const Flags& flags) {
  const Samples& rocksdb = samples.at("rocksdb");
  const Samples& floor = samples.at("floor");
  std::cout << absl::StrFormat(
      "\n%.1f MiB, %d ranks, median of %d rounds; restores streamed over "
      "gRPC; Ceph: one memstore OSD (RAM)\n"
      "%-9s %8s %15s %6s %6s %6s %6s | %8s %15s %6s %6s %6s %6s\n",
      MiB(bytes), flags.ranks, flags.rounds, "config", "save", "range", "MiB/s",
      "/srv", "xrocks", "xfloor", "restore", "range", "MiB/s", "/srv", "xrocks",
      "xfloor");
  for (const Config& config : configs) {
    const Samples& s = samples.at(config.name);
    const double save = Median(s.save), restore = Median(s.restore);
    auto per_server = [&](double mib_per_second) -> std::string {
      if (config.servers == 0) return "-";
      return absl::StrFormat("%.0f", mib_per_second / config.servers);
    };
    std::cout << absl::StrFormat(
        "%-9s %7.3fs %15s %6.0f %6s %6.2f %6.2f | %7.3fs %15s %6.0f %6s "
        "%6.2f %6.2f\n",
        config.name, save, Spread(s.save), MiB(bytes) / save,
        per_server(MiB(bytes) / save), save / Median(rocksdb.save),
        save / Median(floor.save), restore, Spread(s.restore),
        MiB(bytes) / restore, per_server(MiB(bytes) / restore),
        restore / Median(rocksdb.restore), restore / Median(floor.restore));
  }
  const Samples& any = samples.at("rocksdb");
  std::cout << absl::StrFormat(
      "commits (ms), without uploads: the %d ranks' shards (%d chunks "
      "each) in turn (median call) and at once (until the last returned); "
      "%d ranks of %d chunks (%d-byte shard records) in turn (total) and "
      "at once (median call, until the last returned)\n",
      flags.ranks, static_cast<int>(any.real_chunks), flags.probe_ranks,
      static_cast<int>(any.wide_chunks),
      static_cast<int>(any.wide_record_bytes));
  std::cout << absl::StrFormat("%-9s %7s %7s | %8s %7s %8s\n", "config", "each",
                               "last", "total", "each", "last");
  for (const Config& config : configs) {
    if (config.servers == 0) continue;
    const Samples& s = samples.at(config.name);
    std::cout << absl::StrFormat(
        "%-9s %7.1f %7.1f | %8.1f %7.1f %8.1f\n", config.name,
        1e3 * MedianOr0(s.commit_alone), 1e3 * MedianOr0(s.commit_last),
        1e3 * MedianOr0(s.wide_serial), 1e3 * MedianOr0(s.wide_each),
        1e3 * MedianOr0(s.wide_last));
  }
  std::cout << "CPU seconds per GiB (median): save by the ranks' clients, "
               "the servers, the OSD | streamed restore, the same\n";
  for (const Config& config : configs) {
    if (config.servers == 0) continue;
    const Samples& s = samples.at(config.name);
    const CpuUse save = CpuPerGiB(s.save_cpu, bytes);
    const CpuUse restore = CpuPerGiB(s.restore_cpu, bytes);
    std::cout << absl::StrFormat("%-9s %6.2f %6.2f %6.2f | %6.2f %6.2f %6.2f\n",
                                 config.name, save.clients, save.servers,
                                 save.osd, restore.clients, restore.servers,
                                 restore.osd);
  }
  std::cout << absl::StrFormat(
      "rocksdb restore through shared memory (its single-host default): "
      "%.3fs, %.0f MiB/s (range %s)\n",
      Median(rocksdb.shared_memory_restore),
      MiB(bytes) / Median(rocksdb.shared_memory_restore),
      Spread(rocksdb.shared_memory_restore));
}

}  // namespace ckpt::bench::scale_out
