// ckpt-bench-commit: the latency of CheckpointService::CommitShard for one
// shard referencing many chunks, over a RocksDbStore on disk. The chunks are
// uploaded and synced once; each round then begins a new step and times the
// commit of a manifest naming all of them (so the time is the chunk lookup,
// the metadata batch and its synced write, not chunk flushes). Prints the
// median and fastest commit.
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

constexpr char kJob[] = "bench/commit";
constexpr size_t kChunkBytes = 64;  // small: the lookup is what is timed

absl::Status Run(int64_t chunks, int rounds, const std::string& base) {
  CKPT_ASSIGN_OR_RETURN(auto dir,
                        testing::TempDir::Create(base + "/ckpt-commit"));
  CKPT_ASSIGN_OR_RETURN(auto store,
                        server::RocksDbStore::Open(dir->path() + "/db"));
  server::CheckpointService service(store.get(), store.get(), RealClock::Get());
  TensorEntry tensor;
  tensor.name = "w";
  tensor.dtype = DType::kUint8;
  tensor.global_shape = {chunks * static_cast<int64_t>(kChunkBytes)};
  tensor.box = Box{{0}, tensor.global_shape};
  for (int64_t i = 0; i < chunks; ++i) {
    std::string bytes = absl::StrFormat("%063d", i) + "\n";
    const ChunkId id = Sha256(bytes);
    CKPT_RETURN_IF_ERROR(service.PutChunk(kJob, id, bytes).status());
    tensor.pieces.push_back(ChunkRef{id, bytes.size()});
  }
  ShardManifest shard;
  shard.tensors.push_back(tensor);
  CKPT_RETURN_IF_ERROR(store->Sync());

  std::vector<double> seconds;
  for (int round = 0; round < rounds; ++round) {
    CKPT_RETURN_IF_ERROR(
        service.BeginCheckpoint(kJob, round, 1, {}, absl::ZeroDuration())
            .status());
    const absl::Time start = absl::Now();
    CKPT_RETURN_IF_ERROR(service.CommitShard(kJob, round, 1, shard).status());
    seconds.push_back(absl::ToDoubleSeconds(absl::Now() - start));
  }
  std::sort(seconds.begin(), seconds.end());
  std::cout << absl::StrFormat(
      "commit of %d chunk references: median %.2f ms, fastest %.2f ms (%d "
      "rounds)\n",
      chunks, 1e3 * seconds[seconds.size() / 2], 1e3 * seconds.front(), rounds);
  return absl::OkStatus();
}

}  // namespace
}  // namespace ckpt::bench

int main(int argc, char** argv) {
  int64_t chunks = 100000;
  int rounds = 15;
  std::string dir = "/tmp";
  CLI::App app{
      "ckpt-bench-commit: CommitShard latency for a shard of many "
      "chunks, over RocksDB"};
  app.add_option("--chunks", chunks, "Chunks the shard references")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--rounds", rounds, "Commits timed")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--dir", dir, "Where the temporary database goes")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  absl::Status status = ckpt::bench::Run(chunks, rounds, dir);
  if (!status.ok()) {
    std::cerr << status << "\n";
    return 1;
  }
  return 0;
}
