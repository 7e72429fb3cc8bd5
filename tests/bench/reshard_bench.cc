// ckpt-bench-reshard: a resharded restore (the job restarts with another
// world size) against a restore with the layout it was saved with, through
// a real ckpt-server on loopback, in one run.
//
// Workload, per size of --sizes-mib: --saved-ranks ranks (4) save, at once,
// FSDP-style dim-0 slices of --tensors float32 tensors of [rows, 1024]
// (each rank a contiguous block of every tensor's rows), in chunks of
// --chunk-kib. Then each round restores it three ways, the ranks running
// as concurrent threads, each with its own Client, each fetching its
// manifest first:
//   same-shard    --saved-ranks ranks, RestoreShard (today's whole-shard
//                 restore: the baseline)
//   same-regions  --saved-ranks ranks, RestoreRegions of their own boxes
//   reshard       --restore-ranks ranks (3), RestoreRegions of an even
//                 split of every tensor's rows
// in an order that rotates from round to round, and checks every restored
// byte afterwards (untimed). Reported: the median and range of each way's
// aggregate wall time (first rank starting to last rank done), the ratio
// reshard / same-shard, and for the reshard the bytes fetched over the
// bytes needed (a chunk that a new region boundary cuts is fetched by both
// regions: about --tensors x (cuts inside saved boxes) x --chunk-kib of
// extra reads). Goals (issue 14): ratio <= 1.2, fetched / needed <= 1.05.
#include <algorithm>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "tests/bench/bench_util.h"
#include "tests/testing/server_process.h"

namespace ckpt::bench {
namespace {

constexpr int64_t kCols = 1024;
constexpr uint64_t kRowBytes = kCols * sizeof(float);

struct Flags {
  std::vector<int64_t> sizes_mib = {256, 1024};
  int32_t saved_ranks = 4;
  int32_t restore_ranks = 3;
  int tensors = 4;
  int64_t chunk_kib = 4096;
  int rounds = 5;
  std::string server;
  std::string dir;
  bool json = false;
  bool shared_memory_restore = true;
};

// One size's state: per saving rank, its rows of every tensor, tensor
// after tensor.
struct State {
  int64_t rows_per_rank = 0;  // of each tensor
  std::vector<std::vector<float>> ranks;
  uint64_t TensorBytesPerRank() const { return rows_per_rank * kRowBytes; }
  int64_t GlobalRows(int32_t saved_ranks) const {
    return rows_per_rank * saved_ranks;
  }
  // Rank r's rows of tensor t.
  const char* Block(int32_t r, int t) const {
    return reinterpret_cast<const char*>(ranks[r].data()) +
           t * TensorBytesPerRank();
  }
};

std::string TensorName(int t) { return absl::StrCat("layer", t, ".flat"); }

std::vector<client::TensorData> SavedTensors(const State& state, int tensors,
                                             int32_t rank, int32_t ranks) {
  std::vector<client::TensorData> out;
  for (int t = 0; t < tensors; ++t) {
    client::TensorData& tensor = out.emplace_back();
    tensor.name = TensorName(t);
    tensor.dtype = DType::kFloat32;
    tensor.global_shape = {state.GlobalRows(ranks), kCols};
    tensor.box =
        Box{{state.rows_per_rank * rank, 0}, {state.rows_per_rank, kCols}};
    tensor.bytes =
        absl::string_view(state.Block(rank, t), state.TensorBytesPerRank());
  }
  return out;
}

// The rows [begin, end) of new rank `rank` of `ranks` (an even split).
std::pair<int64_t, int64_t> NewRows(int64_t global_rows, int32_t rank,
                                    int32_t ranks) {
  return {global_rows * rank / ranks, global_rows * (rank + 1) / ranks};
}

// Whether `bytes` are rows [begin, end) of tensor t.
bool SameAsSaved(const State& state, int t, int64_t begin, int64_t end,
                 absl::Span<const char> bytes) {
  for (int64_t row = begin; row < end;) {
    const int32_t owner = static_cast<int32_t>(row / state.rows_per_rank);
    const int64_t owner_end = (owner + 1) * state.rows_per_rank;
    const int64_t stop = std::min(end, owner_end);
    const char* saved =
        state.Block(owner, t) + (row - owner * state.rows_per_rank) * kRowBytes;
    if (std::memcmp(bytes.data() + (row - begin) * kRowBytes, saved,
                    (stop - row) * kRowBytes) != 0) {
      return false;
    }
    row = stop;
  }
  return true;
}

struct Measured {
  double seconds = 0;
  uint64_t bytes_fetched = 0;
  uint64_t bytes_used = 0;
};

class Bench {
 public:
  Bench(const Flags& flags, std::string address)
      : flags_(flags), address_(std::move(address)) {}

  absl::Status Connect() {
    client::ConnectOptions options;
    options.shared_memory_restore = flags_.shared_memory_restore;
    options.connect_timeout = absl::Seconds(10);
    const int32_t most = std::max(flags_.saved_ranks, flags_.restore_ranks);
    for (int32_t r = 0; r < most; ++r) {
      CKPT_ASSIGN_OR_RETURN(auto c, client::Client::Connect(address_, options));
      clients_.push_back(std::move(c));
    }
    return absl::OkStatus();
  }

  absl::Status Save(const std::string& job, const State& state) {
    return ParallelRanks(flags_.saved_ranks, [&](int32_t r) {
      client::SaveOptions options;
      options.rank = r;
      options.world_size = flags_.saved_ranks;
      options.chunk_bytes = static_cast<size_t>(flags_.chunk_kib) << 10;
      const auto tensors =
          SavedTensors(state, flags_.tensors, r, flags_.saved_ranks);
      return clients_[r]->SaveShard(job, 1, tensors, options).status();
    });
  }

  // Every saving rank restores its shard whole, as today.
  absl::StatusOr<Measured> SameShard(const std::string& job,
                                     const State& state) {
    std::vector<std::vector<client::RestoredTensor>> restored(
        flags_.saved_ranks);
    const absl::Time start = absl::Now();
    CKPT_RETURN_IF_ERROR(ParallelRanks(flags_.saved_ranks, [&](int32_t r) {
      CKPT_ASSIGN_OR_RETURN(restored[r], clients_[r]->RestoreShard(job, 1, r));
      return absl::OkStatus();
    }));
    Measured measured{Seconds(start), 0, 0};
    for (int32_t r = 0; r < flags_.saved_ranks; ++r) {
      for (int t = 0; t < flags_.tensors; ++t) {
        const auto& bytes = restored[r][t].bytes;
        measured.bytes_used += bytes.size();
        const int64_t begin = state.rows_per_rank * r;
        if (!SameAsSaved(state, t, begin, begin + state.rows_per_rank, bytes)) {
          return absl::DataLossError(
              absl::StrCat("same-shard: rank ", r, " tensor ", t, " differs"));
        }
      }
    }
    measured.bytes_fetched = measured.bytes_used;  // whole chunks, no waste
    return measured;
  }

  // `ranks` ranks restore an even split of every tensor's rows.
  absl::StatusOr<Measured> Regions(const std::string& job, const State& state,
                                   int32_t ranks) {
    const int64_t global_rows = state.GlobalRows(flags_.saved_ranks);
    std::vector<client::RestoredRegions> restored(ranks);
    const absl::Time start = absl::Now();
    CKPT_RETURN_IF_ERROR(ParallelRanks(ranks, [&](int32_t r) {
      CKPT_ASSIGN_OR_RETURN(Checkpoint checkpoint,
                            clients_[r]->GetManifest(job, 1));
      const auto [begin, end] = NewRows(global_rows, r, ranks);
      std::vector<client::RegionRequest> requests;
      for (int t = 0; t < flags_.tensors; ++t) {
        requests.push_back(
            client::RegionRequest{TensorName(t),
                                  DType::kFloat32,
                                  {global_rows, kCols},
                                  Box{{begin, 0}, {end - begin, kCols}},
                                  std::nullopt});
      }
      CKPT_ASSIGN_OR_RETURN(restored[r],
                            clients_[r]->RestoreRegions(checkpoint, requests));
      return absl::OkStatus();
    }));
    Measured measured{Seconds(start), 0, 0};
    for (int32_t r = 0; r < ranks; ++r) {
      measured.bytes_fetched += restored[r].stats.bytes_fetched;
      measured.bytes_used += restored[r].stats.bytes_used;
      const auto [begin, end] = NewRows(global_rows, r, ranks);
      for (int t = 0; t < flags_.tensors; ++t) {
        if (!SameAsSaved(state, t, begin, end, restored[r].tensors[t].bytes)) {
          return absl::DataLossError(absl::StrCat(
              "regions by ", ranks, ": rank ", r, " tensor ", t, " differs"));
        }
      }
    }
    return measured;
  }

 private:
  const Flags& flags_;
  const std::string address_;
  std::vector<std::unique_ptr<client::Client>> clients_;
};

absl::StatusOr<nlohmann::json> RunSize(Bench& bench, const Flags& flags,
                                       int64_t size_mib,
                                       const std::string& job) {
  State state;
  const uint64_t bytes = static_cast<uint64_t>(size_mib) << 20;
  state.rows_per_rank = static_cast<int64_t>(bytes / kRowBytes / flags.tensors /
                                             flags.saved_ranks);
  if (state.rows_per_rank < 1) {
    return absl::InvalidArgumentError("size too small for the layout");
  }
  for (int32_t r = 0; r < flags.saved_ranks; ++r) {
    std::vector<float>& values = state.ranks.emplace_back(
        static_cast<size_t>(state.rows_per_rank) * kCols * flags.tensors);
    Fill(values, static_cast<uint64_t>(size_mib) * 100 + r);
  }
  const absl::Time save_start = absl::Now();
  CKPT_RETURN_IF_ERROR(bench.Save(job, state));
  const double save_seconds = Seconds(save_start);

  const std::vector<std::string> ways = {"same-shard", "same-regions",
                                         "reshard"};
  std::map<std::string, std::vector<double>> seconds;
  Measured reshard;
  for (int round = 0; round < flags.rounds; ++round) {
    for (size_t i = 0; i < ways.size(); ++i) {
      const std::string& way = ways[(i + round) % ways.size()];
      Measured m;
      if (way == "same-shard") {
        CKPT_ASSIGN_OR_RETURN(m, bench.SameShard(job, state));
      } else if (way == "same-regions") {
        CKPT_ASSIGN_OR_RETURN(m, bench.Regions(job, state, flags.saved_ranks));
      } else {
        CKPT_ASSIGN_OR_RETURN(m,
                              bench.Regions(job, state, flags.restore_ranks));
        reshard = m;
      }
      seconds[way].push_back(m.seconds);
    }
    if (!flags.json) {
      std::cout << absl::StrFormat(
                       "%d MiB round %d: same-shard %.3fs  same-regions "
                       "%.3fs  reshard %.3fs",
                       size_mib, round, seconds["same-shard"].back(),
                       seconds["same-regions"].back(),
                       seconds["reshard"].back())
                << std::endl;
    }
  }
  const double same = Median(seconds["same-shard"]);
  const double same_regions = Median(seconds["same-regions"]);
  const double resharded = Median(seconds["reshard"]);
  const double fetched_ratio = static_cast<double>(reshard.bytes_fetched) /
                               static_cast<double>(reshard.bytes_used);
  if (!flags.json) {
    const double gib = static_cast<double>(bytes) / (1 << 30);
    std::cout << absl::StrFormat(
        "\n%d MiB (%d tensors of %d x %d float32, %d KiB chunks), saved by "
        "%d ranks in %.3fs; median of %d rounds:\n"
        "  %d -> %d same shard     %.3fs  %.2f GiB/s  (range %s)\n"
        "  %d -> %d same regions   %.3fs  %.2f GiB/s  (range %s)  "
        "%.2fx same-shard\n"
        "  %d -> %d reshard        %.3fs  %.2f GiB/s  (range %s)  "
        "%.2fx same-shard  (goal <= 1.2)\n"
        "  reshard fetched %d of %d bytes needed: %.4fx  (goal <= 1.05)\n\n",
        size_mib, flags.tensors, state.GlobalRows(flags.saved_ranks), kCols,
        flags.chunk_kib, flags.saved_ranks, save_seconds, flags.rounds,
        flags.saved_ranks, flags.saved_ranks, same, gib / same,
        Spread(seconds["same-shard"]), flags.saved_ranks, flags.saved_ranks,
        same_regions, gib / same_regions, Spread(seconds["same-regions"]),
        same_regions / same, flags.saved_ranks, flags.restore_ranks, resharded,
        gib / resharded, Spread(seconds["reshard"]), resharded / same,
        reshard.bytes_fetched, reshard.bytes_used, fetched_ratio);
  }
  return nlohmann::json{
      {"size_mib", size_mib},
      {"tensors", flags.tensors},
      {"chunk_kib", flags.chunk_kib},
      {"saved_ranks", flags.saved_ranks},
      {"restore_ranks", flags.restore_ranks},
      {"rounds", flags.rounds},
      {"save_seconds", save_seconds},
      {"same_shard_seconds", same},
      {"same_shard_seconds_all", seconds["same-shard"]},
      {"same_regions_seconds", same_regions},
      {"same_regions_seconds_all", seconds["same-regions"]},
      {"reshard_seconds", resharded},
      {"reshard_seconds_all", seconds["reshard"]},
      {"reshard_ratio", resharded / same},
      {"reshard_bytes_fetched", reshard.bytes_fetched},
      {"reshard_bytes_needed", reshard.bytes_used},
      {"reshard_fetched_ratio", fetched_ratio},
  };
}

absl::Status Run(const Flags& flags) {
  std::unique_ptr<testing::TempDir> dir;
  std::unique_ptr<testing::ServerProcess> server;
  std::string address = flags.server;
  if (address.empty()) {
    CKPT_ASSIGN_OR_RETURN(
        dir, testing::TempDir::Create(BenchBaseDir(flags.dir) + "/ckpt-bench"));
    CKPT_ASSIGN_OR_RETURN(server,
                          testing::ServerProcess::Start(dir->path() + "/db"));
    address = server->address();
  }
  Bench bench(flags, address);
  CKPT_RETURN_IF_ERROR(bench.Connect());
  // A job of its own per run and size, so that a server taken with
  // --server keeps nothing of an earlier run in the way.
  const std::string run = absl::StrCat(absl::ToUnixMillis(absl::Now()));
  nlohmann::json results = nlohmann::json::array();
  for (int64_t size_mib : flags.sizes_mib) {
    const std::string job = absl::StrCat("bench/reshard-", run, "-", size_mib);
    CKPT_ASSIGN_OR_RETURN(nlohmann::json result,
                          RunSize(bench, flags, size_mib, job));
    results.push_back(std::move(result));
  }
  if (flags.json) std::cout << results.dump(2) << std::endl;
  if (server != nullptr) CKPT_RETURN_IF_ERROR(server->Stop().status());
  return absl::OkStatus();
}

}  // namespace
}  // namespace ckpt::bench

int main(int argc, char** argv) {
  ckpt::bench::Flags flags;
  CLI::App app{
      "A resharded restore (4 saving ranks, 3 restoring) against a restore "
      "with the saved layout, through ckpt-server, in one run."};
  app.add_option("--sizes-mib", flags.sizes_mib,
                 "state sizes to measure, in MiB (each saved once)")
      ->capture_default_str()
      ->delimiter(',')
      ->check(CLI::Range(1, 1 << 16));
  app.add_option("--saved-ranks", flags.saved_ranks, "ranks that save")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--restore-ranks", flags.restore_ranks,
                 "ranks of the resharded restore")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--tensors", flags.tensors,
                 "tensors (flat parameters and optimizer states) per rank")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  app.add_option("--chunk-kib", flags.chunk_kib, "chunk size of the save")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{4}, int64_t{16} << 10));
  app.add_option("--server", flags.server,
                 "HOST:PORT of a running ckpt-server (default: start one)");
  app.add_option("--shared-memory-restore", flags.shared_memory_restore,
                 "restore through shared memory when the server offers it")
      ->capture_default_str();
  ckpt::bench::AddRoundsDirJsonFlags(
      app, &flags.rounds, &flags.dir, &flags.json,
      "directory for the started server's data (default: $TMPDIR or "
      "/var/tmp)");
  CLI11_PARSE(app, argc, argv);
  return ckpt::bench::ExitCode("ckpt-bench-reshard", ckpt::bench::Run(flags));
}
