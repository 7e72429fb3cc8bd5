// Verify end to end: the real ckpt-server over RocksDB on disk, one byte of
// a stored chunk flipped inside its BlobDB file while the server is down,
// then `verify` (client library and the real `ckpt` CLI) and restores.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/flip_on_disk.h"
#include "tests/testing/real_server_test.h"
#include "tests/testing/server_process.h"

namespace ckpt::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kJob[] = "it/verify";
constexpr size_t kChunkBytes = size_t{1} << 20;

std::string RandomBytes(size_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(rng());
  return bytes;
}

client::TensorData Tensor(const std::string& name, const std::string& bytes) {
  return Uint8Tensor(name, bytes);
}

class VerifyEndToEndTest : public RealServerTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(RealServerTest::SetUp());
    StartServer();
  }

  void Save(int64_t step, const std::vector<client::TensorData>& tensors) {
    client::SaveOptions options;
    options.chunk_bytes = kChunkBytes;
    auto saved = client_->SaveShard(kJob, step, tensors, options);
    ASSERT_TRUE(saved.ok()) << saved.status();
    ASSERT_TRUE(saved->checkpoint_committed);
  }
};

TEST_F(VerifyEndToEndTest, FlippedByteOnDiskIsFoundByReadDataAndFailsRestore) {
  // Three 1 MiB chunks; steps 10 and 20 share them, step 30 does not.
  const std::string weights = RandomBytes(3 * kChunkBytes, 1);
  const std::string other = RandomBytes(kChunkBytes / 2, 2);
  const std::string later = RandomBytes(2 * kChunkBytes, 3);
  Save(10, {Tensor("weights", weights)});
  Save(20, {Tensor("weights", weights), Tensor("other", other)});
  Save(30, {Tensor("later", later)});
  const std::string damaged_chunk = weights.substr(kChunkBytes, kChunkBytes);
  const ChunkId damaged_id = Sha256(damaged_chunk);

  StopServer();
  FlipTheOnlyCopy(db_path(), damaged_chunk.substr(1000, 64));
  StartServer();

  // Presence alone cannot see a flipped byte.
  auto existence = client_->VerifyCheckpoints({});
  ASSERT_TRUE(existence.ok()) << existence.status();
  EXPECT_TRUE(existence->ok());
  EXPECT_EQ(existence->checkpoints_checked, 3);
  EXPECT_EQ(existence->chunks_checked, 3u + 1u + 2u);
  EXPECT_EQ(existence->chunks_read, 0u);

  VerifyOptions read_data;
  read_data.read_data = true;
  std::vector<VerifyProgress> progress;
  auto report = client_->VerifyCheckpoints(
      read_data, [&](const VerifyProgress& now) { progress.push_back(now); });
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_FALSE(report->ok());
  EXPECT_EQ(report->chunks_read, 6u);
  EXPECT_EQ(report->bytes_read,
            3 * kChunkBytes + kChunkBytes / 2 + 2 * kChunkBytes);
  ASSERT_EQ(report->damaged_chunks.size(), 1u);
  const VerifyReport::DamagedChunk& chunk = report->damaged_chunks[0];
  EXPECT_EQ(chunk.id, damaged_id);
  EXPECT_EQ(chunk.tenant, "it");
  EXPECT_EQ(chunk.problem, ChunkProblem::kCorrupt);
  EXPECT_EQ(chunk.checkpoints,
            (std::vector<CheckpointKey>{{kJob, 10}, {kJob, 20}}));
  ASSERT_EQ(report->damaged_checkpoints.size(), 2u);
  EXPECT_EQ(report->damaged_checkpoints[0].corrupt_chunks, 1u);
  ASSERT_FALSE(progress.empty());  // at least the first, with the totals
  EXPECT_EQ(progress.front().chunks_total, 6u);

  // A restore of a damaged checkpoint fails with DATA_LOSS and returns no
  // bytes; the intact one restores exactly.
  for (int64_t step : {10, 20}) {
    auto restored = client_->RestoreShard(kJob, step, 0);
    EXPECT_TRUE(absl::IsDataLoss(restored.status())) << restored.status();
    EXPECT_THAT(restored.status().message(), HasSubstr(damaged_id.ToHex()));
  }
  auto manifest = client_->GetManifest(kJob, 10);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  std::string buffer(weights.size(), '\0');
  EXPECT_TRUE(absl::IsDataLoss(client_->ReadTensor(
      kJob, manifest->shards[0].tensors[0], absl::MakeSpan(buffer))));
  auto intact = client_->RestoreShard(kJob, 30, 0);
  ASSERT_TRUE(intact.ok()) << intact.status();
  ASSERT_EQ(intact->size(), 1u);
  EXPECT_TRUE((*intact)[0].bytes == later);

  // The CLI: --read-data exits non-zero naming the chunk and checkpoints.
  CommandResult verify = Ckpt("verify --read-data");
  EXPECT_EQ(verify.exit_code, 1) << verify.out << verify.err;
  EXPECT_THAT(verify.out, HasSubstr(damaged_id.ShortHex()));
  EXPECT_THAT(verify.out, HasSubstr("corrupt"));
  EXPECT_THAT(verify.out, HasSubstr("it/verify@10, it/verify@20"));
  EXPECT_THAT(verify.out, Not(HasSubstr("it/verify@30")));
  EXPECT_THAT(verify.err, HasSubstr("DATA_LOSS"));
  EXPECT_THAT(verify.err, HasSubstr("1 damaged chunk(s)"));

  CommandResult json = Ckpt("verify it/verify 20 --read-data --json");
  EXPECT_EQ(json.exit_code, 1) << json.err;
  EXPECT_THAT(json.out, HasSubstr(absl::StrCat("\"chunk\": \"",
                                               damaged_id.ShortHex(), "\"")));
  EXPECT_THAT(json.out, HasSubstr("\"ok\": false"));

  CommandResult presence = Ckpt("verify");
  EXPECT_EQ(presence.exit_code, 0) << presence.out << presence.err;
  EXPECT_THAT(presence.out, HasSubstr("no damage found"));
  CommandResult intact_step = Ckpt("verify it/verify 30 --read-data");
  EXPECT_EQ(intact_step.exit_code, 0) << intact_step.out << intact_step.err;

  const std::string out_dir = dir_->path() + "/restored";
  CommandResult get = Ckpt(absl::StrCat("get it/verify 10 ", out_dir));
  EXPECT_NE(get.exit_code, 0);
  EXPECT_THAT(get.err, HasSubstr("DATA_LOSS"));
  EXPECT_FALSE(std::filesystem::exists(out_dir)) << "no bytes were written";
}

TEST_F(VerifyEndToEndTest, StreamsProgressOfALongReadAndRefusesBadScope) {
  // The server sends progress at most every 200 ms, so how many updates
  // arrive depends on the machine; the first, with the totals, always does.
  const std::string weights = RandomBytes(8 * kChunkBytes, 4);
  Save(1, {Tensor("weights", weights)});
  VerifyOptions options;
  options.job = kJob;
  options.read_data_subset = ReadDataSubset{1, 1};
  std::vector<VerifyProgress> progress;
  auto report = client_->VerifyCheckpoints(
      options, [&](const VerifyProgress& now) { progress.push_back(now); });
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok());
  EXPECT_EQ(report->bytes_read, weights.size());
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.front().stage, VerifyStage::kExistence);
  EXPECT_EQ(progress.front().chunks_total, 8u);
  for (size_t i = 1; i < progress.size(); ++i) {
    EXPECT_LE(progress[i - 1].stage, progress[i].stage);
  }

  options.read_data_subset = ReadDataSubset{2, 1};
  EXPECT_TRUE(
      absl::IsInvalidArgument(client_->VerifyCheckpoints(options).status()));
  options.read_data_subset.reset();
  options.job = "it/unknown";
  EXPECT_TRUE(absl::IsNotFound(client_->VerifyCheckpoints(options).status()));
  options.job = kJob;
  options.step = 2;
  EXPECT_TRUE(absl::IsNotFound(client_->VerifyCheckpoints(options).status()));

  CommandResult bad = Ckpt("verify it/verify --read-data-subset 0/4");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, HasSubstr("INVALID_ARGUMENT"));
  CommandResult unknown = Ckpt("verify it/unknown");
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("NOT_FOUND"));
}

}  // namespace
}  // namespace ckpt::testing
