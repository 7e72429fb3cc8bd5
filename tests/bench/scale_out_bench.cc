// ckpt-bench-scale-out: save and restore of a dense float32 state from R
// ranks (default 6, so that 1, 2 and 3 servers divide them) through 1, 2
// and 3 ckpt-servers sharing one Ceph pool (rank r talks to server r % N),
// through one server on the RocksDB default, and the disk's floor
// (disk_floor.h), at each size of --sizes-mib, in one run. Run it inside a
// throwaway cluster:
//   /usr/bin/python3 tests/ceph/ceph_cluster.py --run --
//       build/release/tests/ckpt-bench-scale-out    (one line)
// Each round runs every configuration once, in an order rotated per round,
// so that machine noise hits all alike. Each Ceph configuration gets a fresh
// pool and fresh servers, and drops the pool afterwards: memstore keeps a
// pool in the OSD's RAM. Restores stream every byte over gRPC (a remote
// server has no shared memory); the RocksDB server is also timed restoring
// through shared memory, its single-host default.
// After each save, commit probes time CommitShard alone (no chunk upload):
// the R ranks' manifests committed again one after another (the call
// uncontended) and all at once, and a wide checkpoint of --probe-ranks
// ranks of --probe-chunks stored chunks each, in turn and at once. "last"
// is the time until the last rank's commit returned: the commit tail when
// a job's lock serializes its ranks. The CPU time of the clients (this
// process), the servers and the test cluster's OSD is taken around each
// save and streamed restore: where the time went.
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "client/transport.h"
#include "client/transport/grpc_transport.h"
#include "common/status_macros.h"
#include "common/wire_format.h"
#include "nlohmann/json.hpp"
#include "tests/bench/bench_util.h"
#include "tests/bench/ceph_pools.h"
#include "tests/bench/disk_floor.h"
#include "tests/bench/process_cpu.h"
#include "tests/bench/scale_out_report.h"
#include "tests/testing/server_process.h"

namespace ckpt::bench::scale_out {
namespace {

constexpr char kJob[] = "bench/scale-out";
// Rows of kCols floats in four layers (Tensors in bench_util.h): a rank's
// float count is a multiple of this, so every byte is in a tensor.
constexpr size_t kFloatsPerRow = 4 * 1024;

// The servers of one configuration and each rank's connections to its
// server (rank r: server r % N).
struct Deployment {
  pid_t osd_pid = 0;  // 0: unknown
  std::vector<std::unique_ptr<testing::ServerProcess>> servers;
  std::vector<std::unique_ptr<client::Client>> streamed;
  std::vector<std::unique_ptr<client::Client>> shared_memory;  // RocksDB only
  std::vector<std::unique_ptr<client::Transport>> transports;  // probes

  CpuUse Cpu() const {
    CpuUse use{SelfCpuSeconds(), 0, ProcessCpuSeconds(osd_pid)};
    for (const auto& server : servers) {
      use.servers += ProcessCpuSeconds(server->pid());
    }
    return use;
  }

  // What `fn` cost: its seconds, and the CPU each side spent meanwhile.
  template <typename Fn>
  absl::StatusOr<double> Timed(Fn fn, std::vector<double>* seconds,
                               std::vector<CpuUse>* cpu) const {
    const CpuUse before = Cpu();
    CKPT_ASSIGN_OR_RETURN(double s, fn());
    const CpuUse after = Cpu();
    seconds->push_back(s);
    cpu->push_back({after.clients - before.clients,
                    after.servers - before.servers, after.osd - before.osd});
    return s;
  }

  absl::Status Stop() {
    streamed.clear();
    shared_memory.clear();
    transports.clear();
    for (auto& server : servers) {
      CKPT_ASSIGN_OR_RETURN(int code, server->Stop());
      if (code != 0) {
        return absl::InternalError(
            absl::StrCat("ckpt-server exited with status ", code));
      }
    }
    servers.clear();
    return absl::OkStatus();
  }
};

absl::Status Connect(int32_t ranks, bool with_shared_memory,
                     Deployment* deployment) {
  // Connected before the first call: a lazy channel whose first attempt
  // fails (a busy CI machine) fails that call at once with UNAVAILABLE,
  // while waiting here retries the connection.
  client::ConnectOptions shared_memory;
  shared_memory.connect_timeout = absl::Seconds(30);
  client::ConnectOptions streamed = shared_memory;
  streamed.shared_memory_restore = false;
  for (int32_t r = 0; r < ranks; ++r) {
    const std::string address =
        deployment->servers[r % deployment->servers.size()]->address();
    CKPT_ASSIGN_OR_RETURN(auto c, client::Client::Connect(address, streamed));
    deployment->streamed.push_back(std::move(c));
    CKPT_ASSIGN_OR_RETURN(auto t,
                          client::ConnectGrpcTransport(address, streamed));
    deployment->transports.push_back(std::move(t));
    if (with_shared_memory) {
      CKPT_ASSIGN_OR_RETURN(auto s,
                            client::Client::Connect(address, shared_memory));
      deployment->shared_memory.push_back(std::move(s));
    }
  }
  return absl::OkStatus();
}

// A small save through every server, so that connections are up and a
// fresh pool's placement groups have peered before anything is timed.
absl::Status WarmUp(Deployment& deployment, int64_t step) {
  std::vector<float> state(kFloatsPerRow * 16);
  Fill(state, static_cast<uint64_t>(step));
  for (size_t s = 0; s < deployment.servers.size(); ++s) {
    CKPT_RETURN_IF_ERROR(
        deployment.streamed[s]
            ->SaveShard("bench/warm-up", step + s, Tensors(state, 0, 1), {})
            .status());
  }
  return absl::OkStatus();
}

absl::StatusOr<double> SaveAll(Deployment& deployment,
                               const std::vector<std::vector<float>>& data,
                               int64_t step) {
  const int32_t ranks = static_cast<int32_t>(data.size());
  const absl::Time start = absl::Now();
  CKPT_RETURN_IF_ERROR(ParallelRanks(ranks, [&](int32_t r) {
    client::SaveOptions options;
    options.rank = r;
    options.world_size = ranks;
    return deployment.streamed[r]
        ->SaveShard(kJob, step, Tensors(data[r], r, ranks), options)
        .status();
  }));
  return Seconds(start);
}

// Every rank restores its shard through `by`; the bytes are compared.
absl::StatusOr<double> RestoreAll(
    std::vector<std::unique_ptr<client::Client>>& by,
    const std::vector<std::vector<float>>& data, int64_t step) {
  const int32_t ranks = static_cast<int32_t>(data.size());
  std::vector<std::vector<client::RestoredTensor>> restored(ranks);
  const absl::Time start = absl::Now();
  CKPT_RETURN_IF_ERROR(ParallelRanks(ranks, [&](int32_t r) {
    CKPT_ASSIGN_OR_RETURN(restored[r], by[r]->RestoreShard(kJob, step, r));
    return absl::OkStatus();
  }));
  const double seconds = Seconds(start);
  for (int32_t r = 0; r < ranks; ++r) {
    auto expected = Tensors(data[r], r, ranks);
    for (size_t i = 0; i < expected.size(); ++i) {
      if (restored[r][i].bytes != expected[i].bytes) {
        return absl::DataLossError(
            absl::StrCat("restored bytes differ, rank ", r, " tensor ", i));
      }
    }
  }
  return seconds;
}

// Begins checkpoint `step` with one rank per shard and commits shards[k]
// as rank k through transport k % transports, in turn or all at once
// (a thread each), each call timed into `each`; the seconds until the last
// commit returned. Exactly one commit must report the checkpoint complete.
absl::StatusOr<double> CommitProbe(Deployment& deployment, int64_t step,
                                   const std::vector<ShardManifest>& shards,
                                   bool at_once, std::vector<double>* each) {
  const int32_t world = static_cast<int32_t>(shards.size());
  client::BeginOptions begin;
  begin.world_size = world;
  CKPT_RETURN_IF_ERROR(
      deployment.transports[0]->BeginCheckpoint(kJob, step, begin).status());
  std::vector<double> seconds(world);
  std::vector<int> completed(world);
  auto commit = [&](int32_t k) -> absl::Status {
    client::Transport& transport =
        *deployment.transports[k % deployment.transports.size()];
    const absl::Time call = absl::Now();
    CKPT_ASSIGN_OR_RETURN(auto result,
                          transport.CommitShard(kJob, step, world, shards[k]));
    seconds[k] = Seconds(call);
    completed[k] = result.checkpoint_committed ? 1 : 0;
    return absl::OkStatus();
  };
  const absl::Time start = absl::Now();
  if (at_once) {
    CKPT_RETURN_IF_ERROR(ParallelRanks(world, commit));
  } else {
    for (int32_t k = 0; k < world; ++k) CKPT_RETURN_IF_ERROR(commit(k));
  }
  const double last = Seconds(start);
  const int committers = std::count(completed.begin(), completed.end(), 1);
  if (committers != 1) {
    return absl::InternalError(
        absl::StrCat(committers, " of ", world,
                     " commits reported completing checkpoint ", step));
  }
  each->insert(each->end(), seconds.begin(), seconds.end());
  return last;
}

// `ranks` shards of one uint8 tensor, each a slice of `per_rank` distinct
// chunks taken in turn from `saved` (stored already): the commit path
// (lock, marks, reads, write) without uploads, at a width no thread per
// rank of real data could reach here.
std::vector<ShardManifest> WideShards(const std::vector<ShardManifest>& saved,
                                      int ranks, int per_rank) {
  std::vector<ChunkRef> stored;
  for (const ShardManifest& shard : saved) {
    for (const TensorEntry& tensor : shard.tensors) {
      stored.insert(stored.end(), tensor.pieces.begin(), tensor.pieces.end());
    }
  }
  per_rank = std::min<int>(per_rank, stored.size());
  std::vector<ShardManifest> wide(ranks);
  int64_t offset = 0;
  for (int k = 0; k < ranks; ++k) {
    TensorEntry tensor;
    tensor.name = "probe";
    tensor.dtype = DType::kUint8;
    int64_t size = 0;
    for (int i = 0; i < per_rank; ++i) {
      const ChunkRef& ref = stored[(k * per_rank + i) % stored.size()];
      tensor.pieces.push_back(ref);
      size += static_cast<int64_t>(ref.size);
    }
    tensor.box = Box{{offset}, {size}};
    offset += size;
    wide[k].rank = k;
    wide[k].tensors.push_back(std::move(tensor));
  }
  for (ShardManifest& shard : wide) shard.tensors[0].global_shape = {offset};
  return wide;
}

// The commit probes of the file comment, on checkpoint `step` (saved):
// steps step+1..step+4 are committed from its chunks.
absl::Status ProbeCommits(Deployment& deployment, int64_t step,
                          const Flags& flags, Samples* samples) {
  CKPT_ASSIGN_OR_RETURN(Checkpoint saved, deployment.transports[0]->GetManifest(
                                              kJob, step, std::nullopt));
  std::vector<ShardManifest> shards(flags.ranks);
  for (ShardManifest& shard : saved.shards) {
    if (shard.rank < 0 || shard.rank >= flags.ranks) {
      return absl::InternalError(absl::StrCat("shard of rank ", shard.rank));
    }
    shards[shard.rank] = std::move(shard);
  }
  CKPT_RETURN_IF_ERROR(
      CommitProbe(deployment, step + 1, shards, false, &samples->commit_alone)
          .status());
  std::vector<double> ignored;
  CKPT_ASSIGN_OR_RETURN(
      double last, CommitProbe(deployment, step + 2, shards, true, &ignored));
  samples->commit_last.push_back(last);

  const std::vector<ShardManifest> wide =
      WideShards(shards, flags.probe_ranks, flags.probe_chunks);
  samples->real_chunks = 0;
  for (const TensorEntry& tensor : shards[0].tensors) {
    samples->real_chunks += tensor.pieces.size();
  }
  samples->wide_chunks = wide[0].tensors[0].pieces.size();
  samples->wide_record_bytes = EncodeShard(wide[0]).size();
  CKPT_ASSIGN_OR_RETURN(
      double total, CommitProbe(deployment, step + 3, wide, false, &ignored));
  samples->wide_serial.push_back(total);
  CKPT_ASSIGN_OR_RETURN(
      last, CommitProbe(deployment, step + 4, wide, true, &samples->wide_each));
  samples->wide_last.push_back(last);
  return absl::OkStatus();
}

// One round of one server configuration: save, restore(s), probes.
absl::Status Measure(Deployment& deployment,
                     const std::vector<std::vector<float>>& data, int64_t step,
                     int round, const Flags& flags, Samples* samples) {
  CKPT_RETURN_IF_ERROR(
      deployment
          .Timed([&] { return SaveAll(deployment, data, step); },
                 &samples->save, &samples->save_cpu)
          .status());
  auto streamed = [&]() -> absl::Status {
    return deployment
        .Timed([&] { return RestoreAll(deployment.streamed, data, step); },
               &samples->restore, &samples->restore_cpu)
        .status();
  };
  auto shared = [&]() -> absl::Status {
    if (deployment.shared_memory.empty()) return absl::OkStatus();
    CKPT_ASSIGN_OR_RETURN(double s,
                          RestoreAll(deployment.shared_memory, data, step));
    samples->shared_memory_restore.push_back(s);
    return absl::OkStatus();
  };
  CKPT_RETURN_IF_ERROR(round % 2 == 0 ? streamed() : shared());
  CKPT_RETURN_IF_ERROR(round % 2 == 0 ? shared() : streamed());
  return ProbeCommits(deployment, step, flags, samples);
}

// A fresh pool with `servers` fresh ckpt-servers on it, measured once, then
// stopped and the pool dropped.
absl::Status MeasureRados(const CephAccess& ceph, const std::string& dir,
                          const std::string& pool, int servers,
                          const std::vector<std::vector<float>>& data,
                          int64_t step, int round, const Flags& flags,
                          Samples* samples) {
  const std::string ceph_log = dir + "/ceph-cli.log";
  CKPT_RETURN_IF_ERROR(ceph.CreatePool(pool, flags.pg_num, ceph_log));
  Deployment deployment;
  deployment.osd_pid = ceph.TestOsdPid();
  for (int s = 0; s < servers; ++s) {
    const std::string log = absl::StrCat(dir, "/", pool, "-server", s, ".log");
    auto server =
        testing::ServerProcess::Start("", ceph.ServerFlags(pool), log);
    if (!server.ok()) {
      // The log goes with the temporary directory: keep its end.
      std::stringstream text;
      text << std::ifstream(log).rdbuf();
      const std::string all = text.str();
      return absl::Status(
          server.status().code(),
          absl::StrCat(server.status().message(), "; the end of its log:\n",
                       all.substr(all.size() > 1500 ? all.size() - 1500 : 0)));
    }
    deployment.servers.push_back(*std::move(server));
  }
  CKPT_RETURN_IF_ERROR(Connect(flags.ranks, false, &deployment));
  CKPT_RETURN_IF_ERROR(WarmUp(deployment, step));
  CKPT_RETURN_IF_ERROR(Measure(deployment, data, step, round, flags, samples));
  CKPT_RETURN_IF_ERROR(deployment.Stop());
  return ceph.DeletePool(pool, ceph_log);
}

absl::Status Run(const Flags& flags) {
  CKPT_ASSIGN_OR_RETURN(CephAccess ceph, CephAccess::FromEnv());
  CKPT_ASSIGN_OR_RETURN(auto dir,
                        testing::TempDir::Create(BenchBaseDir(flags.dir) +
                                                 "/ckpt-bench-scale-out"));
  std::vector<Config> configs = {{"floor", Kind::kFloor, 0},
                                 {"rocksdb", Kind::kRocksDb, 1}};
  for (int n : flags.rados_servers) {
    configs.push_back({absl::StrCat("rados-", n), Kind::kRados, n});
  }
  Deployment rocksdb;
  rocksdb.osd_pid = ceph.TestOsdPid();
  {
    CKPT_ASSIGN_OR_RETURN(auto server, testing::ServerProcess::Start(
                                           dir->path() + "/rocksdb", {},
                                           dir->path() + "/rocksdb.log"));
    rocksdb.servers.push_back(std::move(server));
  }
  CKPT_RETURN_IF_ERROR(Connect(flags.ranks, true, &rocksdb));
  CKPT_RETURN_IF_ERROR(WarmUp(rocksdb, 0));

  nlohmann::json sizes_json = nlohmann::json::array();
  for (size_t si = 0; si < flags.sizes_mib.size(); ++si) {
    const size_t floats_per_rank = static_cast<size_t>(flags.sizes_mib[si]) *
                                   (1 << 20) / 4 / flags.ranks / kFloatsPerRow *
                                   kFloatsPerRow;
    if (floats_per_rank == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(flags.sizes_mib[si], " MiB is too small for ",
                       flags.ranks, " ranks (each needs at least 16 KiB)"));
    }
    const size_t bytes = floats_per_rank * sizeof(float) * flags.ranks;
    std::vector<std::vector<float>> data(flags.ranks,
                                         std::vector<float>(floats_per_rank));
    std::map<std::string, Samples> samples;
    std::vector<std::string> floor_files;
    for (int round = 0; round < flags.rounds; ++round) {
      std::string line =
          absl::StrFormat("%.0f MiB round %d:", MiB(bytes), round);
      for (size_t k = 0; k < configs.size(); ++k) {
        const size_t c = (k + round) % configs.size();
        const Config& config = configs[c];
        // Fresh bytes for every save, so that nothing deduplicates.
        const uint64_t seed = ((si * 64 + round) * 16 + c) * 1024;
        for (int32_t r = 0; r < flags.ranks; ++r) Fill(data[r], seed + r);
        const int64_t step = static_cast<int64_t>(si) * 100000 + round * 100;
        Samples& s = samples[config.name];
        switch (config.kind) {
          case Kind::kFloor: {
            const std::string file =
                absl::StrCat(dir->path(), "/floor-", si, "-", round, ".bin");
            floor_files.push_back(file);
            CKPT_ASSIGN_OR_RETURN(double save, BaselineSave(file, data));
            CKPT_ASSIGN_OR_RETURN(double restore, BaselineRestore(file, bytes));
            s.save.push_back(save);
            s.restore.push_back(restore);
            break;
          }
          case Kind::kRocksDb:
            CKPT_RETURN_IF_ERROR(
                Measure(rocksdb, data, step, round, flags, &s));
            break;
          case Kind::kRados:
            CKPT_RETURN_IF_ERROR(MeasureRados(
                ceph, dir->path(),
                absl::StrCat("bench", si, "r", round, "s", config.servers),
                config.servers, data, step, round, flags, &s));
            break;
        }
        absl::StrAppendFormat(&line, "  %s %.2f/%.2fs", config.name,
                              s.save.back(), s.restore.back());
      }
      if (!flags.json) std::cout << line << " (save/restore)" << std::endl;
    }
    for (const auto& file : floor_files) ::unlink(file.c_str());
    if (flags.json) {
      nlohmann::json rows = nlohmann::json::array();
      for (const Config& config : configs) {
        rows.push_back(ConfigJson(config, samples.at(config.name),
                                  samples.at("rocksdb"), samples.at("floor"),
                                  bytes));
      }
      sizes_json.push_back({{"bytes", bytes},
                            {"mib", MiB(bytes)},
                            {"ranks", flags.ranks},
                            {"rounds", flags.rounds},
                            {"probe_ranks", flags.probe_ranks},
                            {"configs", rows}});
    } else {
      PrintTable(configs, samples, bytes, flags);
    }
  }
  CKPT_RETURN_IF_ERROR(rocksdb.Stop());
  if (flags.json) {
    nlohmann::json out = {
        {"restore_path",
         "streamed over gRPC (shared_memory_restore = false); the rocksdb "
         "row also gives shared_memory_restore_seconds"},
        {"ceph", "one mon and one memstore OSD on loopback, pool size 1"},
        {"sizes", sizes_json}};
    std::cout << out.dump(2) << std::endl;
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace ckpt::bench::scale_out

int main(int argc, char** argv) {
  ckpt::bench::scale_out::Flags flags;
  CLI::App app{
      "Save and restore through 1, 2 and 3 ckpt-servers sharing one Ceph "
      "pool, one RocksDB server and the disk's floor, side by side. Needs "
      "CKPT_CEPH_CONF etc.: run it as /usr/bin/python3 "
      "tests/ceph/ceph_cluster.py --run -- ckpt-bench-scale-out ARGS"};
  app.add_option("--sizes-mib", flags.sizes_mib,
                 "state sizes over all ranks, in MiB (float32), each run")
      ->capture_default_str()
      ->delimiter(',')
      ->check(CLI::Range(1, 1 << 16));
  app.add_option("--ranks", flags.ranks,
                 "ranks saving concurrently, spread round-robin over the "
                 "servers")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--rados-servers", flags.rados_servers,
                 "server counts to run on the one Ceph pool")
      ->capture_default_str()
      ->delimiter(',')
      ->check(CLI::Range(1, 16));
  app.add_option("--probe-ranks", flags.probe_ranks,
                 "ranks of the wide commit probe (one chunk each)")
      ->capture_default_str()
      ->check(CLI::Range(2, 1000));
  app.add_option("--probe-chunks", flags.probe_chunks,
                 "distinct chunks each rank of the wide probe references "
                 "(at most the saved state's)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--pg-num", flags.pg_num, "placement groups per fresh pool")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  ckpt::bench::AddRoundsDirJsonFlags(
      app, &flags.rounds, &flags.dir, &flags.json,
      "directory for the RocksDB server's data, the floor's files and the "
      "logs (default: $TMPDIR or /var/tmp)");
  CLI11_PARSE(app, argc, argv);
  return ckpt::bench::ExitCode("ckpt-bench-scale-out",
                               ckpt::bench::scale_out::Run(flags));
}
