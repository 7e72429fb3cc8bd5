// Test helpers for the service layer: shards built from named byte blobs,
// saved the way the client does (begin, put every chunk, commit), and a
// fixture driving a service over a FaultInjectingStore around a MemoryStore,
// with a fake clock.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/chunking.h"
#include "common/clock.h"
#include "common/manifest.h"
#include "common/retention_policy.h"
#include "common/sha256.h"
#include "gtest/gtest.h"
#include "server/service/checkpoint_service.h"
#include "server/storage/fault_injecting_store.h"
#include "server/storage/memory_store.h"

namespace ckpt::server::testing {

// A shard holding one uint8 tensor per blob, each chunked as the client does.
struct ShardBuilder {
  int32_t rank = 0;
  std::vector<std::pair<std::string, std::string>> blobs;  // name, bytes
  size_t chunk_bytes = 8;

  ShardManifest Manifest() const {
    ShardManifest shard;
    shard.rank = rank;
    for (const auto& [name, bytes] : blobs) {
      TensorEntry tensor;
      tensor.name = name;
      tensor.dtype = DType::kUint8;
      const auto size = static_cast<int64_t>(bytes.size());
      tensor.global_shape = {size};
      tensor.box = Box{{0}, {size}};
      for (absl::string_view chunk : SplitIntoChunks(bytes, chunk_bytes)) {
        tensor.pieces.push_back(ChunkRef{Sha256(chunk), chunk.size()});
      }
      shard.tensors.push_back(std::move(tensor));
    }
    return shard;
  }
};

// Begins (job, step), puts every chunk of `builder` and commits its shard,
// as `actor` (begun with `copy`).
inline absl::StatusOr<CommitResult> SaveShard(
    CheckpointService& service, const ShardBuilder& builder, int64_t step,
    int32_t world_size, absl::string_view job,
    const CheckpointMetadata& meta = {}, const Actor& actor = {},
    const CopyOrigin& copy = {}) {
  auto begun =
      service.BeginCheckpoint(job, step, world_size, meta, absl::ZeroDuration(),
                              std::nullopt, actor, copy);
  if (!begun.ok()) return begun.status();
  for (const auto& [name, bytes] : builder.blobs) {
    for (absl::string_view chunk :
         SplitIntoChunks(bytes, builder.chunk_bytes)) {
      auto put = service.PutChunk(job, Sha256(chunk), chunk);
      if (!put.ok()) return put.status();
    }
  }
  return service.CommitShard(job, step, world_size, builder.Manifest(), actor);
}

inline constexpr char kJob[] = "team/model";

class CheckpointServiceTest : public ::testing::Test {
 protected:
  CheckpointServiceTest()
      : faults_(&store_, &store_),
        service_(&faults_, &faults_, &clock_, Options()) {}

  static ServiceOptions Options() {
    ServiceOptions options;
    options.default_lease = absl::Minutes(10);
    return options;
  }

  // Uploads every chunk of `builder` and commits its shard.
  absl::StatusOr<CommitResult> Save(const ShardBuilder& builder, int64_t step,
                                    int32_t world_size,
                                    absl::string_view job = kJob,
                                    const CheckpointMetadata& meta = {}) {
    return SaveShard(service_, builder, step, world_size, job, meta);
  }

  // Saves `step` of kJob from one rank, with a one-byte tensor of its own.
  absl::Status SaveStep(int64_t step, const CheckpointMetadata& meta = {}) {
    return Save(ShardBuilder{0, {{"w", absl::StrCat("s", step)}}}, step, 1,
                kJob, meta)
        .status();
  }

  // The header of `step` of kJob, in any state (a test failure when none).
  CheckpointRecord Record(int64_t step) {
    auto records = service_.ListCheckpoints(kJob, /*include_uncommitted=*/true);
    EXPECT_TRUE(records.ok()) << records.status();
    if (records.ok()) {
      for (const CheckpointRecord& record : *records) {
        if (record.step == step) return record;
      }
    }
    ADD_FAILURE() << "no checkpoint " << step;
    return {};
  }

  std::vector<int64_t> VisibleSteps(absl::string_view job = kJob) {
    std::vector<int64_t> steps;
    auto records = service_.ListCheckpoints(job, false);
    EXPECT_TRUE(records.ok()) << records.status();
    if (!records.ok()) return steps;
    for (const auto& record : *records) steps.push_back(record.step);
    return steps;
  }

  FakeClock clock_;
  MemoryStore store_;
  FaultInjectingStore faults_;
  CheckpointService service_;
};

inline RetentionPolicy MaxToKeep(int n) {
  RetentionPolicy policy;
  policy.max_to_keep = n;
  return policy;
}

inline CheckpointMetadata WithLoss(double loss) {
  CheckpointMetadata meta;
  meta.metrics["loss"] = loss;
  return meta;
}

}  // namespace ckpt::server::testing
