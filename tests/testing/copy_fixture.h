// TwoServersTest: the fixture of the copy tests (tests/integration/
// copy_test.cc and copy_cli_test.cc): two real ckpt-server processes on
// free loopback ports, a connected client for each, a job on the source
// with everything a copy must carry (full and row-delta checkpoints of two
// ranks, a quantized tensor, a pinned one, metrics, tags, writer times and
// a retention policy), the check that a copy restores byte for byte, and
// the `ckpt` CLI run to completion or started in the background. Header-
// only.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "common/manifest.h"
#include "gtest/gtest.h"
#include "tests/testing/client_tensors.h"
#include "tests/testing/real_server_test.h"
#include "tests/testing/server_process.h"
#include "tests/testing/temp_dir.h"

namespace ckpt::testing {

class TwoServersTest : public ::testing::Test {
 protected:
  static constexpr char kJob[] = "team/model";
  static constexpr int64_t kRows = 96;        // per rank
  static constexpr int64_t kRowBytes = 1024;  // one uint8 row
  static constexpr size_t kChunkBytes = 16 << 10;

  void SetUp() override {
    auto dir = TempDir::Create("ckpt-copy-it");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *std::move(dir);
  }

  void TearDown() override {
    source_.reset();
    target_.reset();
    for (std::unique_ptr<ServerProcess>* server :
         {&source_server_, &target_server_}) {
      if (*server == nullptr) continue;
      absl::StatusOr<int> code = (*server)->Stop();
      ASSERT_TRUE(code.ok()) << code.status();
      EXPECT_EQ(*code, 0) << "ckpt-server did not shut down cleanly";
    }
  }

  std::string Path(absl::string_view name) const {
    return absl::StrCat(dir_->path(), "/", name);
  }

  // Starts both servers (each with its extra flags) and connects a client
  // to each (with its options: TLS, a token).
  void StartServers(std::vector<std::string> target_flags = {},
                    client::ConnectOptions target_options = {},
                    std::vector<std::string> source_flags = {},
                    client::ConnectOptions source_options = {}) {
    auto source = ServerProcess::Start(Path("source-db"), source_flags);
    ASSERT_TRUE(source.ok()) << source.status();
    source_server_ = *std::move(source);
    auto target = ServerProcess::Start(Path("target-db"), target_flags);
    ASSERT_TRUE(target.ok()) << target.status();
    target_server_ = *std::move(target);
    source_options.connect_timeout = absl::Seconds(10);
    auto source_client =
        client::Client::Connect(source_server_->address(), source_options);
    ASSERT_TRUE(source_client.ok()) << source_client.status();
    source_ = *std::move(source_client);
    target_options.connect_timeout = absl::Seconds(10);
    auto target_client =
        client::Client::Connect(target_server_->address(), target_options);
    ASSERT_TRUE(target_client.ok()) << target_client.status();
    target_ = *std::move(target_client);
  }

  std::string from() const { return source_server_->address(); }
  std::string to() const { return target_server_->address(); }

  // Rank `rank`'s rows of the sharded table at `step`: a fixed pattern,
  // with rows 3 and 40 changed at each later save.
  static std::string TableRows(int32_t rank, int64_t version) {
    std::string rows = PatternBytes(kRows * kRowBytes, 100 + rank);
    for (int64_t v = 1; v <= version; ++v) {
      for (int64_t row : {int64_t{3}, int64_t{40}}) {
        rows.replace(row * kRowBytes, kRowBytes,
                     PatternBytes(kRowBytes, 1000 * v + 10 * rank + row));
      }
    }
    return rows;
  }

  // One rank's shard: its rows of the table (a row delta on `base` when
  // set), and for rank 0 a quantized float32 tensor.
  void SaveRank(const std::string& job, int64_t step, int64_t version,
                int32_t rank, std::optional<int64_t> base,
                const CheckpointMetadata& metadata) {
    const std::string rows = TableRows(rank, version);
    client::TensorData table;
    table.name = "table";
    table.dtype = DType::kUint8;
    table.global_shape = {2 * kRows, kRowBytes};
    table.box = Box{{rank * kRows, 0}, {kRows, kRowBytes}};
    table.bytes = rows;
    const std::vector<uint64_t> changed = {3, 40};
    if (base.has_value()) {
      table.delta_base_step = base;
      table.delta_rows = changed;
    }
    std::vector<client::TensorData> tensors = {table};
    std::vector<float> values(32 * 64);
    for (size_t i = 0; i < values.size(); ++i) {
      values[i] = static_cast<float>((i * 37 + step) % 101) / 7.0f - 5.0f;
    }
    if (rank == 0) {
      client::TensorData quantized = WholeTensor(
          "embedding", DType::kFloat32, {32, 64},
          absl::string_view(reinterpret_cast<const char*>(values.data()),
                            values.size() * sizeof(float)));
      quantized.quantize_bits = 8;
      tensors.push_back(quantized);
    }
    client::SaveOptions options;
    options.rank = rank;
    options.world_size = 2;
    options.chunk_bytes = kChunkBytes;
    options.metadata = metadata;
    auto saved = source_->SaveShard(job, step, tensors, options);
    ASSERT_TRUE(saved.ok()) << saved.status();
  }

  // The job every copy test copies: 100 full (with a writer time), 200 a
  // delta on 100, 300 full and pinned, 400 a delta on 300; metrics and
  // tags on each, and a retention policy keeping 10.
  void MakeSourceJob(const std::string& job = kJob) {
    const std::pair<int64_t, std::optional<int64_t>> saves[] = {
        {100, std::nullopt}, {200, 100}, {300, std::nullopt}, {400, 300}};
    int64_t version = 0;
    for (const auto& [step, base] : saves) {
      CheckpointMetadata metadata;
      metadata.metrics["loss"] = 1.0 / static_cast<double>(step);
      metadata.tags["run"] = "alpha";
      if (step == 100)
        metadata.writer_time = absl::FromUnixSeconds(1'700'000'000);
      for (int32_t rank = 0; rank < 2; ++rank) {
        SaveRank(job, step, version, rank, base, metadata);
      }
      ++version;
    }
    ASSERT_TRUE(source_->PinCheckpoint(job, 300).ok());
    RetentionPolicy policy;
    policy.max_to_keep = 10;
    ASSERT_TRUE(source_->SetRetentionPolicy(job, policy).ok());
  }

  // Every rank of (target_job, step) on the target restores to the bytes
  // the source's restores to, with the same entries and record.
  void ExpectSameCheckpoint(int64_t step, const std::string& target_job = kJob,
                            const std::string& source_job = kJob) {
    SCOPED_TRACE(absl::StrCat("step ", step));
    auto from_manifest = source_->GetManifest(source_job, step);
    auto to_manifest = target_->GetManifest(target_job, step);
    ASSERT_TRUE(from_manifest.ok()) << from_manifest.status();
    ASSERT_TRUE(to_manifest.ok()) << to_manifest.status();
    const CheckpointRecord& a = from_manifest->record;
    const CheckpointRecord& b = to_manifest->record;
    EXPECT_EQ(b.world_size, a.world_size);
    EXPECT_EQ(b.metadata.metrics, a.metadata.metrics);
    EXPECT_EQ(b.metadata.tags, a.metadata.tags);
    EXPECT_EQ(b.EffectiveTime(), a.EffectiveTime());
    EXPECT_EQ(b.metadata.writer_time, a.EffectiveTime());
    EXPECT_EQ(b.pinned, a.pinned);
    EXPECT_EQ(b.base_steps, a.base_steps);
    EXPECT_EQ(b.logical_bytes, a.logical_bytes);
    EXPECT_EQ(to_manifest->shards, from_manifest->shards);
    for (int32_t rank = 0; rank < a.world_size; ++rank) {
      auto expected = source_->RestoreShard(*from_manifest, rank);
      auto restored = target_->RestoreShard(*to_manifest, rank);
      ASSERT_TRUE(expected.ok()) << expected.status();
      ASSERT_TRUE(restored.ok()) << restored.status();
      ASSERT_EQ(restored->size(), expected->size());
      for (size_t t = 0; t < restored->size(); ++t) {
        const client::RestoredTensor& x = (*expected)[t];
        const client::RestoredTensor& y = (*restored)[t];
        EXPECT_EQ(y.entry, x.entry);
        EXPECT_TRUE(absl::string_view(y.bytes.data(), y.bytes.size()) ==
                    absl::string_view(x.bytes.data(), x.bytes.size()))
            << "rank " << rank << " tensor " << y.entry.name;
      }
    }
  }

  // `ckpt ARGS` run to completion, with `env` (NAME=VALUE ...) added.
  CommandResult Ckpt(const std::string& args, const std::string& env = "") {
    return RunCkpt(dir_->path(), args, env);
  }

  // `ckpt ARGS` started in the background (its output to Path(name).out
  // and .err); its pid, to kill and reap.
  pid_t StartCkpt(const std::string& args, const std::string& name) {
    const std::string command =
        absl::StrCat("exec ", BuiltBinary("client/ckpt"), " ", args, " >",
                     Path(name), ".out 2>", Path(name), ".err");
    const pid_t pid = fork();
    if (pid == 0) {
      execl("/bin/sh", "sh", "-c", command.c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    return pid;
  }

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<ServerProcess> source_server_;
  std::unique_ptr<ServerProcess> target_server_;
  std::unique_ptr<client::Client> source_;
  std::unique_ptr<client::Client> target_;
};

}  // namespace ckpt::testing
