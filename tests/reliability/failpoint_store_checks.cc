#include "tests/reliability/failpoint_store_checks.h"

#include <algorithm>
#include <atomic>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/client_tensors.h"

namespace ckpt::testing {
namespace {

std::atomic<int64_t> restored_count{0};

}  // namespace

Tensors TensorsOf(int64_t step) {
  return {{"own", PatternBytes(kOwnChunks * kFailpointChunkBytes,
                               static_cast<uint32_t>(step))},
          {"shared", PatternBytes(4 * kFailpointChunkBytes, 7)}};
}

absl::StatusOr<client::SaveResult> SaveStep(client::Client& client,
                                            int64_t step, int32_t world_size,
                                            int32_t rank,
                                            absl::Duration lease) {
  const Tensors tensors = TensorsOf(step);
  std::vector<client::TensorData> views;
  for (const auto& [name, bytes] : tensors) {
    views.push_back(Uint8Tensor(name, bytes));
  }
  client::SaveOptions options;
  options.rank = rank;
  options.world_size = world_size;
  options.chunk_bytes = kFailpointChunkBytes;
  options.lease = lease;
  return client.SaveShard(kFailpointJob, step, views, options);
}

Steps With(Steps steps, int64_t step) {
  if (std::find(steps.begin(), steps.end(), step) != steps.end()) return steps;
  steps.push_back(step);
  std::sort(steps.begin(), steps.end());
  return steps;
}

Steps CommittedRestoringExactly(client::Client& client) {
  Steps steps;
  auto listed = client.ListCheckpoints(kFailpointJob);
  EXPECT_TRUE(listed.ok()) << listed.status();
  if (!listed.ok()) return steps;
  for (const CheckpointRecord& record : *listed) {
    steps.push_back(record.step);
    auto restored = client.RestoreShard(kFailpointJob, record.step, 0);
    EXPECT_TRUE(restored.ok())
        << "step " << record.step << ": " << restored.status();
    if (!restored.ok()) continue;
    ++restored_count;
    Tensors got;
    for (const client::RestoredTensor& tensor : *restored) {
      got[tensor.entry.name] =
          std::string(tensor.bytes.data(), tensor.bytes.size());
    }
    EXPECT_TRUE(got == TensorsOf(record.step))
        << "step " << record.step << " restores other bytes";
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

Steps CheckAfterRestart(client::Client& client,
                        const std::vector<Steps>& allowed) {
  const Steps before_gc = CommittedRestoringExactly(client);
  EXPECT_THAT(allowed, ::testing::Contains(before_gc))
      << "committed steps after the crash: "
      << ::testing::PrintToString(before_gc);
  VerifyOptions verify;
  verify.read_data = true;
  auto report = client.VerifyCheckpoints(verify);
  EXPECT_TRUE(report.ok()) << report.status();
  if (!report.ok()) return before_gc;
  EXPECT_TRUE(report->ok()) << "verify found damage after the crash";
  EXPECT_EQ(report->checkpoints_checked,
            static_cast<int64_t>(before_gc.size()));
  GcOptions gc;
  gc.hold = absl::ZeroDuration();
  auto collected = client.CollectGarbage(gc);
  EXPECT_TRUE(collected.ok()) << collected.status();
  if (!collected.ok()) return before_gc;
  EXPECT_TRUE(collected->damaged.empty());
  // Nothing referenced went: all still restore, verify still clean.
  EXPECT_EQ(CommittedRestoringExactly(client), before_gc);
  auto again = client.VerifyCheckpoints(verify);
  EXPECT_TRUE(again.ok()) << again.status();
  if (again.ok()) {
    EXPECT_TRUE(again->ok()) << "verify found damage after GC";
  }
  return before_gc;
}

void CollectAndRecheck(client::Client& client, const Steps& committed) {
  GcOptions gc;
  gc.hold = absl::ZeroDuration();
  auto collected = client.CollectGarbage(gc);
  ASSERT_TRUE(collected.ok()) << collected.status();
  EXPECT_TRUE(collected->skipped_tenants.empty())
      << "the collection skipped a tenant: "
      << collected->skipped_tenants.front().second;
  EXPECT_TRUE(collected->damaged.empty());
  EXPECT_EQ(CommittedRestoringExactly(client), committed);
  VerifyOptions verify;
  verify.read_data = true;
  auto report = client.VerifyCheckpoints(verify);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok()) << "verify found damage after a sweeping GC";
}

int64_t CheckpointsRestored() { return restored_count.load(); }

std::optional<CheckpointRecord> RecordOf(client::Client& client, int64_t step) {
  auto listed =
      client.ListCheckpoints(kFailpointJob, /*include_uncommitted=*/true);
  EXPECT_TRUE(listed.ok()) << listed.status();
  if (!listed.ok()) return std::nullopt;
  for (const CheckpointRecord& record : *listed) {
    if (record.step == step) return record;
  }
  return std::nullopt;
}

void AbortPending(client::Client& client) {
  auto listed =
      client.ListCheckpoints(kFailpointJob, /*include_uncommitted=*/true);
  ASSERT_TRUE(listed.ok()) << listed.status();
  for (const CheckpointRecord& record : *listed) {
    if (record.state != CheckpointState::kPending) continue;
    const absl::Status aborted =
        client.AbortCheckpoint(kFailpointJob, record.step, "left by a crash");
    ASSERT_TRUE(aborted.ok()) << aborted;
  }
}

}  // namespace ckpt::testing
