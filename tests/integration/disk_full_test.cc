// A full disk under the real ckpt-server: each test mounts its own small
// tmpfs (as root; skipped with the reason otherwise), fills it with a file,
// and checks that saves fail with RESOURCE_EXHAUSTED, that every committed
// checkpoint still restores byte for byte, and that once the file is
// deleted saves work again without a restart; that the gRPC health
// service follows (NOT_SERVING while full, SERVING once freed); and that a
// shutdown on a full disk ends in time and keeps every commit.
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/client_tensors.h"
#include "tests/testing/health_check.h"
#include "tests/testing/server_process.h"
#include "tests/testing/tmpfs_volume.h"

namespace ckpt::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kJob[] = "it/disk-full";
constexpr char kService[] = "ckpt.v1.CheckpointService";

std::string RandomBytes(size_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(rng());
  return bytes;
}

class DiskFullTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto volume = TmpfsVolume::Mount(64 << 20);
    if (!volume.ok()) GTEST_SKIP() << volume.status().message();
    volume_ = *std::move(volume);
    ASSERT_NO_FATAL_FAILURE(StartServer());
  }

  // Starts the server on the volume's data directory (again, after a stop)
  // and connects the client.
  void StartServer() {
    // Refused saves leave chunks behind; with no hold, a collection after
    // each round takes them back, so 50 rounds fit in 64 MiB.
    auto server = ServerProcess::Start(
        volume_->path() + "/db",
        {"--gc-interval", "0", "--chunk-hold-seconds", "0",
         "--health-check-interval-seconds", "0.2", "--shutdown-grace-seconds",
         absl::StrCat(absl::ToInt64Seconds(kGrace))});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    auto client = client::Client::Connect(
        server_->address(), {.connect_timeout = absl::Seconds(10)});
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }

  static constexpr absl::Duration kGrace = absl::Seconds(2);

  void TearDown() override {
    client_.reset();
    if (server_ != nullptr) {
      absl::StatusOr<int> code = server_->Stop();
      ASSERT_TRUE(code.ok()) << code.status();
      EXPECT_EQ(*code, 0) << "ckpt-server did not shut down cleanly";
    }
  }

  absl::Status Save(int64_t step, const std::string& bytes) {
    client::SaveOptions options;
    options.chunk_bytes = 64 << 10;
    std::vector<client::TensorData> tensors = {Uint8Tensor("state", bytes)};
    return client_->SaveShard(kJob, step, tensors, options).status();
  }

  void ExpectRestores(int64_t step, const std::string& bytes) {
    auto restored = client_->RestoreShard(kJob, step, 0);
    ASSERT_TRUE(restored.ok()) << "step " << step << ": " << restored.status();
    ASSERT_EQ(restored->size(), 1u);
    EXPECT_TRUE((*restored)[0].bytes == bytes) << "step " << step;
  }

  // Polls the health service until `service` reports `want` (10 s at most).
  bool HealthBecomes(const std::string& service, ServingStatus want) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (absl::Now() < deadline) {
      absl::StatusOr<ServingStatus> status =
          CheckHealth(server_->address(), service);
      if (status.ok() && *status == want) return true;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  }

  std::unique_ptr<TmpfsVolume> volume_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<client::Client> client_;
};

// Odd rounds fill the disk to the last byte (the server refuses the save's
// first write); even rounds leave 2.5 MiB, so the save begins and its
// chunks are refused once RocksDB would have no room to flush them.
TEST_F(DiskFullTest, FillFreeAndSaveFiftyTimes) {
  std::vector<std::string> saved;
  for (int round = 1; round <= 50; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    const uint64_t leave = round % 2 == 1 ? 0 : (5 << 20) / 2;
    ASSERT_TRUE(volume_->Fill(leave).ok());
    absl::Status refused = Save(1000 + round, RandomBytes(3 << 20, round));
    ASSERT_TRUE(absl::IsResourceExhausted(refused)) << refused;
    EXPECT_THAT(refused.message(), HasSubstr("disk is full"));
    // Reads keep working on the full disk.
    if (!saved.empty()) ExpectRestores(saved.size(), saved.back());

    ASSERT_TRUE(volume_->Free().ok());
    saved.push_back(RandomBytes(256 << 10, 10000 + round));
    absl::Status ok = Save(saved.size(), saved.back());
    ASSERT_TRUE(ok.ok()) << ok;
    for (size_t step = 1; step <= saved.size(); ++step) {
      ExpectRestores(step, saved[step - 1]);
    }
    auto gc = client_->CollectGarbage(false);
    ASSERT_TRUE(gc.ok()) << gc.status();
  }
}

TEST_F(DiskFullTest, HealthIsNotServingWhileFullAndServingOnceFreed) {
  ASSERT_TRUE(HealthBecomes(kService, ServingStatus::kServing));
  ASSERT_TRUE(Save(1, RandomBytes(256 << 10, 1)).ok());

  ASSERT_TRUE(volume_->Fill().ok());
  EXPECT_TRUE(HealthBecomes(kService, ServingStatus::kNotServing));
  // The process itself is fine: restarting it would not free the disk.
  EXPECT_TRUE(HealthBecomes("", ServingStatus::kServing));
  ASSERT_TRUE(volume_->Free().ok());
  EXPECT_TRUE(HealthBecomes(kService, ServingStatus::kServing));

  ASSERT_TRUE(Save(3, RandomBytes(256 << 10, 3)).ok());
}

// A SIGTERM while the disk is full (and RocksDB may hold memtables it cannot
// flush) ends the process within the grace plus the watchdog's 10 s, either
// cleanly or with the watchdog's exit code 75, and every checkpoint
// committed before it restores after a restart on the freed disk.
TEST_F(DiskFullTest, ShutdownOnAFullDiskEndsInTimeAndKeepsEveryCommit) {
  std::vector<std::string> saved;
  for (int step = 1; step <= 3; ++step) {
    saved.push_back(RandomBytes(256 << 10, step));
    ASSERT_TRUE(Save(step, saved.back()).ok());
  }
  // As in the even rounds above: the save begins, some chunks reach the
  // memtables, the rest are refused.
  ASSERT_TRUE(volume_->Fill((5 << 20) / 2).ok());
  absl::Status refused = Save(100, RandomBytes(3 << 20, 100));
  ASSERT_TRUE(absl::IsResourceExhausted(refused)) << refused;

  client_.reset();
  const absl::Time stop_start = absl::Now();
  absl::StatusOr<int> code = server_->Stop();
  const absl::Duration took = absl::Now() - stop_start;
  server_.reset();
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_THAT(*code, ::testing::AnyOf(0, 75)) << "exit code";
  // The watchdog's bound, with slack for a loaded machine.
  EXPECT_LT(took, kGrace + absl::Seconds(10) + absl::Seconds(5));

  ASSERT_TRUE(volume_->Free().ok());
  ASSERT_NO_FATAL_FAILURE(StartServer());
  for (size_t step = 1; step <= saved.size(); ++step) {
    ExpectRestores(step, saved[step - 1]);
  }
  ASSERT_TRUE(Save(4, RandomBytes(256 << 10, 4)).ok());
}

}  // namespace
}  // namespace ckpt::testing
