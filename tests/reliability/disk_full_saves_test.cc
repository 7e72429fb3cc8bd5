// T16 (tests/reliability/README.md), what tests/integration/disk_full_test.cc
// leaves out: the disk (a 64 MiB tmpfs, as root; skipped otherwise) fills
// to a random level (seeded) before each two-rank save of a random size, so
// the save fails at a random write. Each refused save fails
// RESOURCE_EXHAUSTED within its deadline, leaves no checkpoint committed
// (listed, restorable) for its step, and once the disk is freed the next
// save succeeds within 60 s without a restart; every save acknowledged OK,
// before or during the fills, restores byte for byte after every round.
#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "tests/reliability/reliability_run.h"
#include "tests/testing/client_tensors.h"
#include "tests/testing/server_process.h"
#include "tests/testing/tmpfs_volume.h"

namespace ckpt::testing {
namespace {

constexpr char kJob[] = "rel/disk-full";
constexpr absl::Duration kDeadline = absl::Seconds(30);
constexpr absl::Duration kRecoveryBound = absl::Seconds(60);

class DiskFullSavesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto volume = TmpfsVolume::Mount(64 << 20);
    if (!volume.ok()) GTEST_SKIP() << volume.status().message();
    volume_ = *std::move(volume);
    auto server =
        ServerProcess::Start(volume_->path() + "/db", {"--gc-interval", "0"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    auto client = client::Client::Connect(
        server_->address(),
        {.rpc_timeout = kDeadline, .connect_timeout = absl::Seconds(10)});
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }

  void TearDown() override {
    client_.reset();
    if (server_ != nullptr) {
      absl::StatusOr<int> code = server_->Stop();
      ASSERT_TRUE(code.ok()) << code.status();
      EXPECT_EQ(*code, 0) << "ckpt-server did not shut down cleanly";
    }
  }

  // Both ranks of `step` at once; the first failure, else OK.
  absl::Status SaveTwoRanks(int64_t step, const std::string& a,
                            const std::string& b) {
    absl::Status results[2];
    std::thread ranks[2];
    for (int r = 0; r < 2; ++r) {
      ranks[r] = std::thread([&, r] {
        client::SaveOptions options;
        options.rank = r;
        options.world_size = 2;
        options.chunk_bytes = 64 << 10;
        options.lease = absl::Seconds(30);
        std::vector<client::TensorData> tensors = {
            Uint8Tensor(absl::StrCat("r", r), r == 0 ? a : b)};
        results[r] = client_->SaveShard(kJob, step, tensors, options).status();
      });
    }
    for (auto& rank : ranks) rank.join();
    return results[0].ok() ? results[1] : results[0];
  }

  void ExpectRestores(int64_t step, const std::string& a,
                      const std::string& b) {
    for (int r = 0; r < 2; ++r) {
      auto restored = client_->RestoreShard(kJob, step, r);
      ASSERT_TRUE(restored.ok())
          << "step " << step << ": " << restored.status();
      ASSERT_EQ(restored->size(), 1u);
      EXPECT_TRUE((*restored)[0].bytes == (r == 0 ? a : b))
          << "step " << step << " rank " << r;
    }
  }

  std::unique_ptr<TmpfsVolume> volume_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<client::Client> client_;
};

TEST_F(DiskFullSavesTest, RandomFillsRefuseSavesCleanlyAndFreeingRecovers) {
  const uint64_t seed = RunSeed();
  const int rounds = RunCount("CKPT_ROUNDS", 12);
  SCOPED_TRACE(absl::StrCat("CKPT_SEED=", seed, " CKPT_ROUNDS=", rounds));
  std::mt19937_64 rng(seed);
  struct Saved {
    int64_t step;
    std::string a, b;
  };
  std::vector<Saved> saved;
  int refused = 0;
  int accepted_while_filled = 0;
  double max_refusal_ms = 0;
  double max_recovery_ms = 0;
  int64_t step = 0;
  for (int round = 1; round <= rounds; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    // Free space left: from none to about the save's size.
    const uint64_t leave =
        std::uniform_int_distribution<uint64_t>(0, 6 << 20)(rng);
    const size_t size =
        std::uniform_int_distribution<size_t>(256 << 10, 3 << 20)(rng);
    ASSERT_TRUE(volume_->Fill(leave).ok());
    const std::string a = PatternBytes(size, static_cast<uint32_t>(rng()));
    const std::string b = PatternBytes(size, static_cast<uint32_t>(rng()));
    ++step;
    const absl::Time start = absl::Now();
    const absl::Status status = SaveTwoRanks(step, a, b);
    const absl::Duration took = absl::Now() - start;
    if (status.ok()) {
      ++accepted_while_filled;
      saved.push_back({step, a, b});
    } else {
      ++refused;
      EXPECT_TRUE(absl::IsResourceExhausted(status)) << status;
      EXPECT_LE(took, kDeadline) << status;
      max_refusal_ms =
          std::max(max_refusal_ms, absl::ToDoubleMilliseconds(took));
      // Nothing half-committed: the step is not listed, nor restorable.
      // (NOT_FOUND: the first save was refused before the job existed.)
      auto listed = client_->ListCheckpoints(kJob);
      ASSERT_TRUE(listed.ok() || absl::IsNotFound(listed.status()))
          << listed.status();
      for (const CheckpointRecord& record :
           listed.value_or(std::vector<CheckpointRecord>{})) {
        EXPECT_NE(record.step, step) << "a refused save is listed";
      }
      EXPECT_FALSE(client_->RestoreShard(kJob, step, 0).ok());
    }
    // Every acknowledged save restores, on the full disk too.
    for (const Saved& s : saved) ExpectRestores(s.step, s.a, s.b);

    // Freed: a save succeeds within the bound, without a restart.
    ASSERT_TRUE(volume_->Free().ok());
    const absl::Time freed = absl::Now();
    ++step;
    const std::string c = PatternBytes(256 << 10, static_cast<uint32_t>(rng()));
    const std::string d = PatternBytes(256 << 10, static_cast<uint32_t>(rng()));
    absl::Status again = SaveTwoRanks(step, c, d);
    while (!again.ok() && absl::Now() - freed < kRecoveryBound) {
      absl::SleepFor(absl::Milliseconds(200));
      again = SaveTwoRanks(step, c, d);
    }
    ASSERT_TRUE(again.ok()) << "no save within " << kRecoveryBound
                            << " of freeing the disk: " << again;
    max_recovery_ms = std::max(max_recovery_ms,
                               absl::ToDoubleMilliseconds(absl::Now() - freed));
    saved.push_back({step, c, d});
    // The refused saves' chunks and all but the newest 3 checkpoints go,
    // so the small volume lasts the run.
    auto all = client_->ListCheckpoints(kJob, true);
    ASSERT_TRUE(all.ok()) << all.status();
    for (const CheckpointRecord& record : *all) {
      if (record.state == CheckpointState::kPending) {
        ASSERT_TRUE(client_->AbortCheckpoint(kJob, record.step, "test").ok());
      }
    }
    while (saved.size() > 3) {
      ASSERT_TRUE(client_->DeleteCheckpoint(kJob, saved.front().step).ok());
      saved.erase(saved.begin());
    }
    GcOptions options;
    options.hold = absl::ZeroDuration();
    ASSERT_TRUE(client_->CollectGarbage(options).ok());
  }
  for (const Saved& s : saved) ExpectRestores(s.step, s.a, s.b);
  EXPECT_GT(refused, 0) << "no fill refused a save: the test showed nothing";
  PrintSummary(absl::StrCat(
      R"({"test":"T16 disk full","seed":)", seed, R"(,"rounds":)", rounds,
      R"(,"refused":)", refused, R"(,"accepted_while_filled":)",
      accepted_while_filled, R"(,"max_refusal_ms":)", max_refusal_ms,
      R"(,"max_recovery_after_free_ms":)", max_recovery_ms,
      R"(,"checkpoints_restored":)", saved.size(), "}"));
}

}  // namespace
}  // namespace ckpt::testing
