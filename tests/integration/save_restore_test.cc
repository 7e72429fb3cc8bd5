// End to end through the real ckpt-server binary on a loopback port with
// RocksDB in a temporary directory, driven by the C++ client library.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ckpt/v1/ckpt.grpc.pb.h"
#include "client/client.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/testing/real_server_test.h"
#include "tests/testing/server_process.h"

namespace ckpt::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kJob[] = "it/model";

std::string RandomBytes(size_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string bytes(size, '\0');
  for (size_t i = 0; i + 8 <= size; i += 8) {
    uint64_t v = rng();
    std::memcpy(&bytes[i], &v, 8);
  }
  for (size_t i = size - size % 8; i < size; ++i) bytes[i] = char(rng());
  return bytes;
}

// A rank's state: tensors of awkward sizes (not chunk multiples), a tensor
// sharded across ranks and one replicated on all of them.
struct RankShard {
  int32_t rank;
  int32_t world_size;
  std::string sharded;     // float32 [world_size*rows, 96], rows of this rank
  std::string replicated;  // same bytes on every rank
  std::string own;         // uint8, this rank only

  static RankShard Make(int32_t rank, int32_t world_size, uint64_t seed,
                        int64_t rows = 3000) {
    return RankShard{
        rank, world_size, RandomBytes(rows * 96 * 4, seed * 131 + rank),
        RandomBytes(5 << 20, seed), RandomBytes(12345, seed + rank)};
  }
  int64_t rows() const { return sharded.size() / (size_t{96} * 4); }

  std::vector<client::TensorData> Tensors() const {
    client::TensorData weight;
    weight.name = "layer.weight";
    weight.dtype = DType::kFloat32;
    weight.global_shape = {rows() * world_size, 96};
    weight.box = Box{{rows() * rank, 0}, {rows(), 96}};
    weight.bytes = sharded;
    return {weight, Uint8Tensor("embedding", replicated),
            Uint8Tensor("rank_local", own)};
  }
};

class SaveRestoreTest : public RealServerTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(RealServerTest::SetUp());
    StartServer();
  }

  // Saves every rank concurrently, one Client per rank as separate
  // processes would.
  std::vector<client::SaveResult> SaveAll(const std::vector<RankShard>& ranks,
                                          int64_t step,
                                          client::SaveOptions base = {}) {
    std::vector<absl::StatusOr<client::SaveResult>> results(
        ranks.size(), absl::UnknownError("not run"));
    std::vector<std::thread> threads;
    for (size_t r = 0; r < ranks.size(); ++r) {
      threads.emplace_back([&, r] {
        auto client = client::Client::Connect(server_->address());
        if (!client.ok()) {
          results[r] = client.status();
          return;
        }
        client::SaveOptions options = base;
        options.rank = ranks[r].rank;
        options.world_size = ranks[r].world_size;
        auto tensors = ranks[r].Tensors();
        results[r] = (*client)->SaveShard(kJob, step, tensors, options);
      });
    }
    for (auto& t : threads) t.join();
    std::vector<client::SaveResult> out;
    for (auto& result : results) {
      EXPECT_TRUE(result.ok()) << result.status();
      if (result.ok()) out.push_back(*result);
    }
    return out;
  }

  void ExpectRestores(const std::vector<RankShard>& ranks,
                      std::optional<int64_t> step) {
    for (const auto& rank : ranks) {
      auto restored = client_->RestoreShard(kJob, step, rank.rank);
      ASSERT_TRUE(restored.ok()) << restored.status();
      ASSERT_EQ(restored->size(), 3u);
      auto expected = rank.Tensors();
      for (size_t i = 0; i < expected.size(); ++i) {
        EXPECT_EQ((*restored)[i].entry.name, expected[i].name);
        EXPECT_EQ((*restored)[i].entry.box, expected[i].box);
        EXPECT_EQ((*restored)[i].entry.global_shape, expected[i].global_shape);
        EXPECT_TRUE((*restored)[i].bytes == expected[i].bytes)
            << "tensor " << expected[i].name << " of rank " << rank.rank
            << " differs";
      }
    }
  }

  std::vector<int64_t> Steps() {
    auto records = client_->ListCheckpoints(kJob);
    EXPECT_TRUE(records.ok()) << records.status();
    std::vector<int64_t> steps;
    if (records.ok()) {
      for (const auto& r : *records) steps.push_back(r.step);
    }
    return steps;
  }
};

TEST_F(SaveRestoreTest, MultiRankSaveRestoresByteIdentical) {
  std::vector<RankShard> ranks = {RankShard::Make(0, 2, 1),
                                  RankShard::Make(1, 2, 1)};
  auto saved = SaveAll(ranks, 100);
  ASSERT_EQ(saved.size(), 2u);
  EXPECT_EQ(saved[0].checkpoint_committed + saved[1].checkpoint_committed, 1);
  EXPECT_THAT(Steps(), ElementsAre(100));
  ExpectRestores(ranks, 100);
  ExpectRestores(ranks, std::nullopt);

  auto manifest = client_->GetManifest(kJob, std::nullopt);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->record.world_size, 2);
  uint64_t logical = 0;
  for (const auto& rank : ranks) {
    for (const auto& t : rank.Tensors()) logical += t.bytes.size();
  }
  EXPECT_EQ(manifest->record.logical_bytes, logical);
}

TEST_F(SaveRestoreTest, ReplicatedStateIsStoredOnceAndResaveSendsNothing) {
  std::vector<RankShard> ranks = {RankShard::Make(0, 2, 2),
                                  RankShard::Make(1, 2, 2)};
  SaveAll(ranks, 1);
  auto after_first = client_->GetStats(kJob);
  ASSERT_TRUE(after_first.ok()) << after_first.status();
  // The 5 MiB replicated tensor is stored once for both ranks.
  uint64_t distinct = 0;
  for (const auto& rank : ranks) {
    distinct += rank.sharded.size() + rank.own.size();
  }
  distinct += ranks[0].replicated.size();
  EXPECT_EQ(after_first->stored_bytes, distinct);

  auto resaved = SaveAll(ranks, 2);
  ASSERT_EQ(resaved.size(), 2u);
  for (const auto& result : resaved) {
    EXPECT_EQ(result.bytes_sent, 0u);
    EXPECT_EQ(result.chunks_sent, 0u);
    EXPECT_GT(result.chunks_total, 0u);
  }
  auto after_second = client_->GetStats(kJob);
  ASSERT_TRUE(after_second.ok());
  EXPECT_EQ(after_second->stored_bytes, after_first->stored_bytes);
  EXPECT_EQ(after_second->logical_bytes, 2 * after_first->logical_bytes);
  EXPECT_THAT(Steps(), ElementsAre(1, 2));
  ExpectRestores(ranks, 2);
}

TEST_F(SaveRestoreTest, ChunkWithWrongHashIsRefusedAndNothingStored) {
  auto channel = grpc::CreateChannel(server_->address(),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::CheckpointService::NewStub(channel);
  const std::string bytes = "these bytes are honest";
  const ChunkId lie = Sha256("but the hash is of something else");
  grpc::ClientContext context;
  v1::PutChunksResponse response;
  auto writer = stub->PutChunks(&context, &response);
  v1::PutChunksRequest request;
  request.set_job(kJob);
  v1::ChunkData* chunk = request.add_chunks();
  chunk->set_sha256(std::string(lie.bytes()));
  chunk->set_data(bytes);
  writer->Write(request);
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("mismatch"));

  grpc::ClientContext find_context;
  v1::FindMissingChunksRequest find;
  find.set_job(kJob);
  find.add_sha256(std::string(lie.bytes()));
  find.add_sha256(std::string(Sha256(bytes).bytes()));
  v1::FindMissingChunksResponse missing;
  ASSERT_TRUE(stub->FindMissingChunks(&find_context, find, &missing).ok());
  EXPECT_EQ(missing.missing_sha256_size(), 2);
  auto stats = client_->GetStats("");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->chunk_count, 0u);
}

TEST_F(SaveRestoreTest, MissingRankKeepsCheckpointInvisibleUntilLeaseAborts) {
  server_->Kill();
  StartServer({"--lease-check-interval", "1"});
  std::vector<RankShard> ranks = {RankShard::Make(0, 2, 3)};
  client::SaveOptions options;
  options.lease = absl::Seconds(2);
  auto saved = SaveAll(ranks, 7, options);
  ASSERT_EQ(saved.size(), 1u);
  EXPECT_FALSE(saved[0].checkpoint_committed);
  EXPECT_THAT(Steps(), IsEmpty());
  EXPECT_TRUE(
      absl::IsNotFound(client_->GetManifest(kJob, std::nullopt).status()));
  EXPECT_TRUE(absl::IsNotFound(client_->GetManifest(kJob, 7).status()));

  // The server's lease reaper aborts it; poll its state, bounded.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  CheckpointState state = CheckpointState::kPending;
  while (absl::Now() < deadline) {
    auto all = client_->ListCheckpoints(kJob, /*include_uncommitted=*/true);
    ASSERT_TRUE(all.ok()) << all.status();
    ASSERT_EQ(all->size(), 1u);
    state = (*all)[0].state;
    if (state == CheckpointState::kAborted) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(state, CheckpointState::kAborted);
  EXPECT_THAT(Steps(), IsEmpty());
}

TEST_F(SaveRestoreTest, RestartKeepsEveryCommittedCheckpoint) {
  std::vector<std::vector<RankShard>> saves;
  for (int64_t step = 1; step <= 3; ++step) {
    saves.push_back({RankShard::Make(0, 2, 10 + step, 700),
                     RankShard::Make(1, 2, 10 + step, 700)});
    SaveAll(saves.back(), step * 10);
  }
  auto exit_code = server_->Stop();
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
  StartServer();
  EXPECT_THAT(Steps(), ElementsAre(10, 20, 30));
  for (int64_t step = 1; step <= 3; ++step) {
    ExpectRestores(saves[step - 1], step * 10);
  }
}

TEST_F(SaveRestoreTest, KillDuringUploadsLeavesNoPartialCheckpoint) {
  std::vector<RankShard> committed = {RankShard::Make(0, 2, 20),
                                      RankShard::Make(1, 2, 20)};
  SaveAll(committed, 1);

  // Step 2: rank 0 commits its shard, then rank 1 streams a large shard
  // while the server is killed with SIGKILL.
  std::vector<RankShard> second = {RankShard::Make(0, 2, 21, 60000),
                                   RankShard::Make(1, 2, 21, 60000)};
  SaveAll({second[0]}, 2);
  std::atomic<bool> upload_done = false;
  absl::Status upload_status;
  std::thread uploader([&] {
    auto client = client::Client::Connect(server_->address());
    if (!client.ok()) return;
    client::SaveOptions options;
    options.rank = 1;
    options.world_size = 2;
    auto tensors = second[1].Tensors();
    upload_status = (*client)->SaveShard(kJob, 2, tensors, options).status();
    upload_done = true;
  });
  // Kill once the server has received part of rank 1's chunks.
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (absl::Now() < deadline && !upload_done) {
    auto stats = client_->GetStats("");
    if (stats.ok() && stats->stored_bytes > second[0].sharded.size() +
                                                committed[0].sharded.size() +
                                                (16u << 20)) {
      break;
    }
  }
  server_->Kill();
  uploader.join();
  EXPECT_FALSE(upload_done && upload_status.ok())
      << "the upload finished before the kill; the test proved nothing";

  StartServer();
  EXPECT_THAT(Steps(), ElementsAre(1));
  auto latest = client_->GetManifest(kJob, std::nullopt);
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->record.step, 1);
  ExpectRestores(committed, 1);
  auto all = client_->ListCheckpoints(kJob, true);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_NE((*all)[1].state, CheckpointState::kCommitted);

  // The job can finish step 2 after the restart.
  SaveAll(second, 2);
  EXPECT_THAT(Steps(), ElementsAre(1, 2));
  ExpectRestores(second, 2);
}

// A frozen server (SIGSTOP: its sockets stay open, nothing answers) fails
// calls long before the 5-minute default call deadline; after SIGCONT the
// same data restores. Usually a keepalive ping goes unanswered and the call
// fails with UNAVAILABLE within seconds. But gRPC 1.51 arms its keepalive
// watchdog only for a ping it sends itself: when the server froze with a
// flow-control (BDP) ping of the client in flight, later keepalive pings
// join that one and no watchdog ever fires (seen under load, about 1 run in
// 3 with 4 busy cores). The call deadline and the stream stall bound are
// then what end the call, so the test sets both short and accepts either
// code: what matters is that the call ends, in bounded time.
TEST_F(SaveRestoreTest, FrozenServerFailsCallsInsteadOfHangingThem) {
  std::vector<RankShard> ranks = {RankShard::Make(0, 1, 30)};
  SaveAll(ranks, 1);
  client::ConnectOptions options;
  options.keepalive_time = absl::Seconds(1);
  options.keepalive_timeout = absl::Seconds(1);
  options.rpc_timeout = absl::Seconds(15);
  options.stream_stall_timeout = absl::Seconds(15);
  auto client = client::Client::Connect(server_->address(), options);
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE((*client)->ListJobs().ok());  // connected before the freeze

  ASSERT_TRUE(server_->Freeze().ok());
  const absl::Time start = absl::Now();
  auto restored = (*client)->RestoreShard(kJob, 1, 0);
  const absl::Duration waited = absl::Now() - start;
  server_->Thaw();
  EXPECT_TRUE(absl::IsUnavailable(restored.status()) ||
              absl::IsDeadlineExceeded(restored.status()))
      << restored.status();
  EXPECT_LT(waited, absl::Seconds(35));
  ExpectRestores(ranks, 1);
}

// Holds 127.0.0.1:`port` without listening on it, so that no other test
// binds it while the test's server is down: connects to it are refused, and
// a server (gRPC sets SO_REUSEADDR too) may still bind it and listen.
class HeldPort {
 public:
  explicit HeldPort(int port) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    const int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    held_ = bind(fd_, reinterpret_cast<const sockaddr*>(&address),
                 sizeof(address)) == 0;
  }
  ~HeldPort() { close(fd_); }
  bool held() const { return held_; }

 private:
  const int fd_;
  bool held_ = false;
};

// A call made while the client is not connected waits up to 2 s for the
// connection: gRPC 1.51 can fail a connect() that succeeded
// (client/transport/grpc_transport.cc, CallSetup), and a save must not fail
// on it, neither the job's first nor one after a reconnect. Shown with a
// server that starts 100 ms after the call, first for a new client and then
// after a restart; without the wait the call fails at once with
// "connection refused". A server that is not there still fails the call,
// with UNAVAILABLE, after the wait.
TEST_F(SaveRestoreTest, ACallWaitsBrieflyForTheConnection) {
  const std::string address = server_->address();
  const int port = server_->port();
  StopServer();
  const HeldPort held(port);
  ASSERT_TRUE(held.held()) << "port " << port;

  auto client = client::Client::Connect(address, {});
  ASSERT_TRUE(client.ok()) << client.status();
  absl::Time start = absl::Now();
  auto jobs = (*client)->ListJobs();
  const absl::Duration waited = absl::Now() - start;
  EXPECT_TRUE(absl::IsUnavailable(jobs.status())) << jobs.status();
  EXPECT_GE(waited, absl::Milliseconds(1900));
  EXPECT_LT(waited, absl::Seconds(10));

  // A server starting while the call waits; the client is new, and again
  // connected after a restart.
  for (const char* when : {"first", "after a restart"}) {
    SCOPED_TRACE(when);
    if (server_ != nullptr) {
      server_->Kill();
      // Until the client sees its connection closed (it polls it only
      // during calls), a call goes out on it and fails, as a call in flight
      // when the server died would; the next one connects anew.
      EXPECT_TRUE(absl::IsUnavailable((*client)->ListJobs().status()));
    }
    absl::StatusOr<std::unique_ptr<ServerProcess>> started;
    std::thread starter([&] {
      absl::SleepFor(absl::Milliseconds(100));
      started = ServerProcess::Start(
          db_path(), {"--listen", absl::StrCat("127.0.0.1:", port)});
    });
    start = absl::Now();
    jobs = (*client)->ListJobs();
    starter.join();
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = *std::move(started);
    EXPECT_TRUE(jobs.ok()) << jobs.status() << " after "
                           << absl::FormatDuration(absl::Now() - start);
  }
}

TEST_F(SaveRestoreTest, ClearErrorsForBadRequests) {
  EXPECT_TRUE(absl::IsNotFound(client_->ListCheckpoints("no/such").status()));
  std::vector<RankShard> ranks = {RankShard::Make(0, 1, 30)};
  SaveAll(ranks, 5);
  auto missing_step = client_->GetManifest(kJob, 6);
  EXPECT_TRUE(absl::IsNotFound(missing_step.status()));
  EXPECT_THAT(missing_step.status().message(), HasSubstr("6"));
  auto bad_job = client_->GetManifest("no-tenant", std::nullopt);
  EXPECT_TRUE(absl::IsInvalidArgument(bad_job.status())) << bad_job.status();
  client::SaveOptions outside;
  outside.rank = 3;
  outside.world_size = 2;
  auto tensors = ranks[0].Tensors();
  auto refused = client_->SaveShard(kJob, 9, tensors, outside);
  EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << refused.status();
  EXPECT_TRUE(
      absl::IsAlreadyExists(client_->SaveShard(kJob, 5, tensors, {}).status()));
}

// Retention end to end (policy set by the writer, enforced at each commit,
// pins, prune) over the same real server.
class RetentionTest : public SaveRestoreTest {
 protected:
  static std::string Bytes(int64_t step) {
    return absl::StrCat("weights of step ", step);
  }

  // One rank saves a small tensor for `step` with the writer's time `time`.
  absl::Status Save(int64_t step, absl::Time time,
                    std::optional<RetentionPolicy> policy = std::nullopt) {
    const std::string bytes = Bytes(step);
    client::TensorData tensors[] = {Uint8Tensor("w", bytes)};
    client::SaveOptions options;
    options.metadata.writer_time = time;
    options.retention_policy = std::move(policy);
    return client_->SaveShard(kJob, step, tensors, options).status();
  }
};

// What tf.train.CheckpointManager(max_to_keep, keep_checkpoint_every_n_hours)
// created at `start` keeps after these saves, written independently of
// common/retention.cc from checkpoint_management.py's save() and _sweep().
std::set<int64_t> TfManagerKeeps(
    const std::vector<std::pair<int64_t, absl::Time>>& saves,
    size_t max_to_keep, absl::Duration keep_every, absl::Time start) {
  std::deque<std::pair<int64_t, absl::Time>> active;
  std::set<int64_t> preserved;
  absl::Time last_preserved = start;
  for (const auto& save : saves) {
    active.push_back(save);
    while (active.size() > max_to_keep) {
      auto [step, time] = active.front();
      active.pop_front();
      if (time - keep_every >= last_preserved) {
        preserved.insert(step);
        last_preserved = time;
      }
    }
  }
  for (const auto& [step, time] : active) preserved.insert(step);
  return preserved;
}

TEST_F(RetentionTest, TwentySavesOverTwoDaysKeepTheTfManagerSet) {
  RetentionPolicy policy;
  policy.max_to_keep = 3;
  policy.keep_every = absl::Hours(6);
  // Irregular gaps summing to about two days, as a real job's would.
  const int gap_minutes[] = {0,  95,  170, 40,  210, 150, 60,  185, 130, 200,
                             45, 240, 110, 160, 75,  190, 220, 35,  180, 140};
  const absl::Time t0 = absl::FromUnixSeconds(1767225600);  // 2026-01-01
  std::vector<std::pair<int64_t, absl::Time>> saves;
  absl::Time t = t0;
  for (int i = 0; i < 20; ++i) {
    t += absl::Minutes(gap_minutes[i]);
    saves.emplace_back(100 * (i + 1), t);
  }
  ASSERT_GE(saves.back().second - t0, absl::Hours(40));
  ASSERT_LE(saves.back().second - t0, absl::Hours(48));

  // The policy is set by the writer as the first checkpoint begins, so it
  // is in force for every save.
  for (size_t i = 0; i < saves.size(); ++i) {
    ASSERT_TRUE(
        Save(saves[i].first, saves[i].second,
             i == 0 ? std::optional<RetentionPolicy>(policy) : std::nullopt)
            .ok())
        << "step " << saves[i].first;
  }
  const std::set<int64_t> expected =
      TfManagerKeeps(saves, 3, absl::Hours(6), saves.front().second);
  const std::vector<int64_t> want(expected.begin(), expected.end());
  EXPECT_EQ(Steps(), want);
  // Several preserved by time, besides the 3 most recent.
  EXPECT_GE(want.size(), 7u);

  // The policy and every decision survive a restart; nothing more goes.
  auto code = server_->Stop();
  ASSERT_TRUE(code.ok()) << code.status();
  StartServer();
  EXPECT_EQ(Steps(), want);
  auto stored = client_->GetRetentionPolicy(kJob);
  ASSERT_TRUE(stored.ok()) << stored.status();
  ASSERT_TRUE(stored->has_value());
  EXPECT_EQ(**stored, policy);
  auto dry = client_->PruneCheckpoints(kJob, std::nullopt, /*dry_run=*/true);
  ASSERT_TRUE(dry.ok()) << dry.status();
  for (const auto& decision : *dry) {
    EXPECT_TRUE(decision.keep) << decision.step;
  }
  for (int64_t step : want) {
    auto restored = client_->RestoreShard(kJob, step, 0);
    ASSERT_TRUE(restored.ok()) << restored.status();
    ASSERT_EQ(restored->size(), 1u);
    EXPECT_EQ((*restored)[0].bytes, Bytes(step));
  }
}

TEST_F(RetentionTest, PinnedCheckpointsSurvivePruneAndRestart) {
  const absl::Time t0 = absl::FromUnixSeconds(1767225600);
  for (int64_t step = 1; step <= 6; ++step) {
    ASSERT_TRUE(Save(step, t0 + absl::Hours(step)).ok());
  }
  ASSERT_TRUE(client_->PinCheckpoint(kJob, 2).ok());
  ASSERT_TRUE(client_->PinCheckpoint(kJob, 4).ok());
  auto code = server_->Stop();
  ASSERT_TRUE(code.ok()) << code.status();
  StartServer();  // pins are persisted

  RetentionPolicy last;
  last.max_to_keep = 1;
  auto dry = client_->PruneCheckpoints(kJob, last, /*dry_run=*/true);
  ASSERT_TRUE(dry.ok()) << dry.status();
  std::vector<int64_t> kept;
  for (const auto& decision : *dry) {
    if (decision.keep) kept.push_back(decision.step);
  }
  EXPECT_THAT(kept, ElementsAre(2, 4, 6));
  EXPECT_THAT(Steps(), ElementsAre(1, 2, 3, 4, 5, 6));
  ASSERT_TRUE(client_->PruneCheckpoints(kJob, last, /*dry_run=*/false).ok());
  EXPECT_EQ(Steps(), kept);

  // A stored policy enforced at commit spares them too.
  ASSERT_TRUE(client_->SetRetentionPolicy(kJob, last).ok());
  ASSERT_TRUE(Save(7, t0 + absl::Hours(7)).ok());
  EXPECT_THAT(Steps(), ElementsAre(2, 4, 7));
  for (int64_t step : {2, 4}) {
    auto restored = client_->RestoreShard(kJob, step, 0);
    ASSERT_TRUE(restored.ok()) << restored.status();
    EXPECT_EQ((*restored)[0].bytes, Bytes(step));
  }
}

}  // namespace
}  // namespace ckpt::testing
