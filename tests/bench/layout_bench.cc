// ckpt-bench-layout: what CommitShard's layout check of sharded tensors
// (common/shard_layout.h) costs a save of many ranks, over a RocksDbStore on
// disk. Every rank commits a shard of --tensors entries, one after the
// other, in two layouts of the same sizes: FSDP-style, each rank holding a
// flat slice of every tensor (each slice checked against the others), and
// per-rank whole tensors (nothing to compare: the cost of a commit without
// sharding). Prints, per layout, the whole save's commit time and the last
// commits' times (the last one also checks that the slices cover).
#include <algorithm>
#include <cstdint>
#include <iostream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "server/service/checkpoint_service.h"
#include "server/storage/rocksdb_store.h"
#include "tests/testing/temp_dir.h"

namespace ckpt::bench {
namespace {

constexpr char kJob[] = "bench/layout";
constexpr int64_t kSliceBytes = 64;  // per rank and tensor: one tiny chunk

// Rank `rank`'s shard: a slice of each tensor (sharded) or each tensor
// whole (per-rank), all naming one chunk of kSliceBytes.
ShardManifest Shard(int32_t rank, int32_t ranks, int tensors, bool sharded,
                    const ChunkRef& chunk) {
  ShardManifest shard;
  shard.rank = rank;
  for (int t = 0; t < tensors; ++t) {
    TensorEntry entry;
    entry.name = absl::StrCat("model/layers.", t, ".weight");
    entry.dtype = DType::kUint8;
    if (sharded) {
      entry.global_shape = {ranks * kSliceBytes};
      entry.box = Box{{rank * kSliceBytes}, {kSliceBytes}};
    } else {
      entry.global_shape = {kSliceBytes};
      entry.box = Box{{0}, {kSliceBytes}};
    }
    entry.pieces.push_back(chunk);
    shard.tensors.push_back(std::move(entry));
  }
  return shard;
}

absl::Status Run(int32_t ranks, int tensors, const std::string& base) {
  CKPT_ASSIGN_OR_RETURN(auto dir,
                        testing::TempDir::Create(base + "/ckpt-layout"));
  CKPT_ASSIGN_OR_RETURN(auto store,
                        server::RocksDbStore::Open(dir->path() + "/db"));
  server::ServiceOptions options;
  options.default_lease = absl::Hours(1);
  server::CheckpointService service(store.get(), store.get(), RealClock::Get(),
                                    options);
  const std::string bytes(kSliceBytes, 'x');
  const ChunkRef chunk{Sha256(bytes), bytes.size()};
  CKPT_RETURN_IF_ERROR(service.PutChunk(kJob, chunk.id, bytes).status());
  CKPT_RETURN_IF_ERROR(store->Sync());
  int64_t step = 0;
  for (bool sharded : {false, true}) {
    ++step;
    CKPT_RETURN_IF_ERROR(
        service.BeginCheckpoint(kJob, step, ranks, {}, absl::ZeroDuration())
            .status());
    std::vector<double> seconds;
    for (int32_t rank = 0; rank < ranks; ++rank) {
      const ShardManifest shard = Shard(rank, ranks, tensors, sharded, chunk);
      const absl::Time start = absl::Now();
      CKPT_RETURN_IF_ERROR(
          service.CommitShard(kJob, step, ranks, shard).status());
      seconds.push_back(absl::ToDoubleSeconds(absl::Now() - start));
    }
    double total = 0;
    for (double s : seconds) total += s;
    const double last_but_one = seconds[seconds.size() > 1 ? ranks - 2 : 0];
    std::cout << absl::StrFormat(
        "%-22s %4d ranks x %5d tensors: all commits %.2f s, the last but one "
        "%.1f ms, the last %.1f ms\n",
        sharded ? "sharded (FSDP slices)" : "per-rank (whole)", ranks, tensors,
        total, 1e3 * last_but_one, 1e3 * seconds.back());
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace ckpt::bench

int main(int argc, char** argv) {
  int32_t ranks = 64;
  int tensors = 1000;
  std::string dir = "/tmp";
  CLI::App app{
      "ckpt-bench-layout: the cost of CommitShard's layout check for a save "
      "of many ranks, over RocksDB"};
  app.add_option("--ranks", ranks, "Ranks committing one after the other")
      ->capture_default_str()
      ->check(CLI::Range(2, 65536));
  app.add_option("--tensors", tensors, "Tensors per shard")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--dir", dir, "Where the temporary database goes")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  absl::Status status = ckpt::bench::Run(ranks, tensors, dir);
  if (!status.ok()) {
    std::cerr << status << "\n";
    return 1;
  }
  return 0;
}
