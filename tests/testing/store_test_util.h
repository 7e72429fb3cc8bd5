// Helpers shared by the storage tests (header-only, test code only).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/event.h"
#include "common/manifest.h"
#include "common/sha256.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace ckpt::server::testing {

using ::ckpt::testing::TempDir;

// A fresh temporary directory; fails the calling test if none can be made.
inline std::unique_ptr<TempDir> MakeTempDir() {
  auto dir = TempDir::Create("ckpt_storage");
  EXPECT_TRUE(dir.ok()) << dir.status();
  return dir.ok() ? std::move(dir).value()
                  : std::make_unique<TempDir>("/nonexistent");
}

inline ChunkId IdOf(absl::string_view bytes) { return Sha256(bytes); }

inline JobRecord MakeJob(std::string name) {
  return MakeJobRecord(std::move(name), absl::FromUnixSeconds(1700000000));
}

inline CheckpointRecord MakeRecord(std::string job, int64_t step,
                                   CheckpointState state) {
  CheckpointRecord record;
  record.job = std::move(job);
  record.step = step;
  record.state = state;
  record.world_size = 2;
  record.metadata.metrics["val_loss"] = 0.5 + static_cast<double>(step);
  record.metadata.tags["run"] = "a";
  record.create_time = absl::FromUnixSeconds(1700000000 + step);
  record.lease_expiry = absl::FromUnixSeconds(1700000600 + step);
  if (state == CheckpointState::kCommitted) {
    record.commit_time = absl::FromUnixSeconds(1700000100 + step);
    record.committed_ranks = {0, 1};
    record.logical_bytes = 8;
  }
  return record;
}

// An event of `job` about `step` whose detail is `detail`.
inline JobEvent MakeEvent(std::string job, std::optional<int64_t> step,
                          std::string detail,
                          EventKind kind = EventKind::kCommitted) {
  JobEvent event;
  event.job = std::move(job);
  event.time = absl::FromUnixSeconds(1700000000 + step.value_or(0));
  event.kind = kind;
  event.step = step;
  event.detail = std::move(detail);
  event.principal = "tester";  // persisted like every other field
  return event;
}

// A one-tensor shard whose bytes are `bytes` (float32, 1-D).
inline ShardManifest MakeShard(int32_t rank, absl::string_view bytes) {
  ShardManifest shard;
  shard.rank = rank;
  TensorEntry tensor;
  tensor.name = absl::StrCat("w", rank);
  tensor.dtype = DType::kFloat32;
  const auto elements = static_cast<int64_t>(bytes.size() / 4);
  tensor.global_shape = {elements};
  tensor.box = Box{{0}, {elements}};
  tensor.pieces = {ChunkRef{IdOf(bytes), bytes.size()}};
  shard.tensors.push_back(std::move(tensor));
  return shard;
}

}  // namespace ckpt::server::testing
