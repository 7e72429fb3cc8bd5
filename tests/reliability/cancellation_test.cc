// T19 (tests/reliability/README.md): uploads cancelled by their clients at
// random points, against the real ckpt-server. After each cancel the
// server's buffered upload bytes (ckpt_upload_buffered_bytes on its metrics
// endpoint) and its open upload streams return to 0 within 1 s; no
// cancelled upload's checkpoint ever commits; once the leases run out every
// one of them is aborted (no pending session left), and the tenant's
// upload-stream slots were all given back (a leaked slot would refuse the
// next trials with RESOURCE_EXHAUSTED).
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ckpt/v1/ckpt.grpc.pb.h"
#include "client/client.h"
#include "common/sha256.h"
#include "gtest/gtest.h"
#include "tests/reliability/reliability_run.h"
#include "tests/testing/logfmt.h"
#include "tests/testing/metrics_scrape.h"
#include "tests/testing/real_server_test.h"
#include "tests/testing/sanitizers.h"
#include "tests/testing/server_process.h"
#include "tests/testing/temp_dir.h"

namespace ckpt::testing {
namespace {

constexpr char kJob[] = "rel/cancel";
constexpr int kLeaseSeconds = 1;
// How long a cancelled call may keep its buffers and stream (T19): 1 s,
// with slack in sanitizer builds, which run several times slower.
#if CKPT_TESTING_SANITIZED
constexpr absl::Duration kReleaseBound = absl::Seconds(3);
#else
constexpr absl::Duration kReleaseBound = absl::Seconds(1);
#endif

// The port of the metrics endpoint, from the server's log.
int MetricsPort(const std::string& log_path) {
  for (const LogLine& line : ParseLog(ReadWholeFile(log_path))) {
    auto event = line.find("event");
    if (event == line.end() || event->second != "metrics_listening") continue;
    const std::string& address = line.at("address");
    int port = 0;
    if (absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &port)) {
      return port;
    }
  }
  return 0;
}

std::string RandomBytes(size_t size, std::mt19937_64& rng) {
  std::string bytes(size, '\0');
  for (size_t i = 0; i + 8 <= size; i += 8) {
    const uint64_t word = rng();
    std::memcpy(&bytes[i], &word, 8);
  }
  return bytes;
}

struct TrialFigures {
  int cancelled = 0;       // calls that ended with a non-OK status
  int finished_first = 0;  // calls that completed before the cancel landed
  double max_release_ms = 0;
  double sum_release_ms = 0;
  double max_buffered_seen = 0;  // the gauge's highest reading mid-upload
};

class CancellationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::Create("ckpt-rel-cancel");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *std::move(dir);
    log_ = dir_->path() + "/server.log";
    auto server = ServerProcess::Start(
        dir_->path() + "/db",
        {"--metrics-listen", "127.0.0.1:0", "--lease-check-interval", "0.2",
         "--gc-interval", "0", "--quota-upload-streams", "2"},
        log_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    port_ = MetricsPort(log_);
    ASSERT_GT(port_, 0) << ReadWholeFile(log_);
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(64 << 20);
    args.SetMaxReceiveMessageSize(64 << 20);
    stub_ = v1::CheckpointService::NewStub(grpc::CreateCustomChannel(
        server_->address(), grpc::InsecureChannelCredentials(), args));
    auto client = client::Client::Connect(
        server_->address(), {.connect_timeout = absl::Seconds(10)});
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }

  void TearDown() override {
    client_.reset();
    stub_.reset();
    if (server_ != nullptr) {
      absl::StatusOr<int> code = server_->Stop();
      ASSERT_TRUE(code.ok()) << code.status();
      if (*code != 0) {
        // A sanitizer report of the server is in its log, which the
        // temporary directory takes with it.
        const std::string log = ReadWholeFile(log_);
        ADD_FAILURE() << "ckpt-server did not shut down cleanly (exit " << *code
                      << "); the end of its log:\n"
                      << log.substr(log.size() > 30000 ? log.size() - 30000
                                                       : 0);
      }
    }
  }

  double Buffered() {
    return Sample(Scrape(port_), "ckpt_upload_buffered_bytes");
  }

  // Polls until no upload bytes are buffered and no upload stream is open;
  // how long that took, or nullopt past `bound` (and a bit, to report it).
  std::optional<absl::Duration> TimeToRelease(absl::Time since,
                                              absl::Duration bound) {
    while (true) {
      const std::string metrics = Scrape(port_);
      const double buffered = Sample(metrics, "ckpt_upload_buffered_bytes");
      const double streams =
          Sample(metrics, "ckpt_streams", {"kind=\"upload\""});
      const absl::Time now = absl::Now();
      if (buffered == 0 && streams <= 0) return now - since;
      if (now - since > bound + absl::Seconds(2)) return std::nullopt;
      absl::SleepFor(absl::Milliseconds(5));
    }
  }

  // Begins step `step` and streams random messages into it, cancelling the
  // call at a random point: before the first message, after some of them,
  // mid-write after a random delay, or after the last one (before Finish).
  void CancelOneUpload(int64_t step, std::mt19937_64& rng,
                       TrialFigures* figures) {
    SCOPED_TRACE(absl::StrCat("step ", step));
    {
      v1::BeginCheckpointRequest begin;
      begin.set_job(kJob);
      begin.set_step(step);
      begin.set_world_size(1);
      begin.set_lease_seconds(kLeaseSeconds);
      v1::BeginCheckpointResponse response;
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() +
                           std::chrono::seconds(30));
      grpc::Status begun = stub_->BeginCheckpoint(&context, begin, &response);
      ASSERT_TRUE(begun.ok()) << begun.error_message();
    }
    const int messages = std::uniform_int_distribution<int>(1, 5)(rng);
    const int cancel_after =
        std::uniform_int_distribution<int>(0, messages)(rng);
    const int delay_us = std::uniform_int_distribution<int>(0, 2000)(rng);
    std::vector<v1::PutChunksRequest> requests(messages);
    for (int m = 0; m < messages; ++m) {
      if (m == 0) {
        requests[m].set_job(kJob);
        requests[m].set_step(step);
      }
      const int chunks = std::uniform_int_distribution<int>(1, 3)(rng);
      for (int c = 0; c < chunks; ++c) {
        const size_t size =
            std::uniform_int_distribution<size_t>(32 << 10, 1 << 20)(rng);
        const std::string data = RandomBytes(size, rng);
        v1::ChunkData* chunk = requests[m].add_chunks();
        chunk->set_sha256(std::string(Sha256(data).bytes()));
        chunk->set_data(data);
      }
    }

    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(60));
    v1::PutChunksResponse response;
    auto writer = stub_->PutChunks(&context, &response);
    // The cancel comes from another thread, after `cancel_after` messages
    // were handed to gRPC and a random delay: anywhere in the server's
    // receive, hash and store of the last ones.
    std::atomic<int> written{0};
    std::atomic<bool> writing_done{false};
    absl::Time cancelled_at;
    std::thread canceller([&] {
      while (written.load() < cancel_after && !writing_done.load()) {
        std::this_thread::yield();
      }
      absl::SleepFor(absl::Microseconds(delay_us));
      cancelled_at = absl::Now();
      context.TryCancel();
    });
    bool all_written = true;
    for (int m = 0; m < messages; ++m) {
      if (m == messages - 1 && written.load() >= 1) {
        figures->max_buffered_seen =
            std::max(figures->max_buffered_seen, Buffered());
      }
      if (!writer->Write(requests[m])) {
        all_written = false;
        break;
      }
      written.fetch_add(1);
    }
    if (all_written) writer->WritesDone();
    writing_done.store(true);
    canceller.join();
    const grpc::Status status = writer->Finish();
    // A leaked stream slot of the tenant (quota 2) would refuse the stream.
    ASSERT_NE(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
        << status.error_message();
    if (status.ok()) {
      ++figures->finished_first;
    } else {
      ++figures->cancelled;
      EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED)
          << status.error_message();
    }
    std::optional<absl::Duration> release =
        TimeToRelease(cancelled_at, kReleaseBound);
    ASSERT_TRUE(release.has_value())
        << "the server still held upload buffers or streams 3 s after the "
           "cancel: "
        << Scrape(port_);
    const double ms = absl::ToDoubleMilliseconds(*release);
    EXPECT_LE(*release, kReleaseBound)
        << "buffers released " << ms << " ms after the cancel";
    figures->max_release_ms = std::max(figures->max_release_ms, ms);
    figures->sum_release_ms += ms;
  }

  std::unique_ptr<TempDir> dir_;
  std::string log_;
  std::unique_ptr<ServerProcess> server_;
  int port_ = 0;
  std::unique_ptr<v1::CheckpointService::Stub> stub_;
  std::unique_ptr<client::Client> client_;
};

TEST_F(CancellationTest, CancelledUploadsFreeTheirBuffersAndNeverCommit) {
  const uint64_t seed = RunSeed();
  const int trials = RunCount("CKPT_TRIALS", 100);
  SCOPED_TRACE(absl::StrCat("CKPT_SEED=", seed, " CKPT_TRIALS=", trials));
  std::mt19937_64 rng(seed);
  TrialFigures figures;
  const absl::Time start = absl::Now();
  for (int trial = 1; trial <= trials; ++trial) {
    ASSERT_NO_FATAL_FAILURE(CancelOneUpload(trial, rng, &figures));
  }
  // Some cancels must land mid-call, or the test shows nothing.
  EXPECT_GT(figures.cancelled, trials / 4);

  // No cancelled upload's checkpoint commits; once the leases have run out
  // (1 s, checked every 0.2 s) none of them is left pending.
  absl::SleepFor(absl::Seconds(kLeaseSeconds) + absl::Milliseconds(600));
  std::vector<CheckpointRecord> records;
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (true) {
    auto listed = client_->ListCheckpoints(kJob, true);
    ASSERT_TRUE(listed.ok()) << listed.status();
    records = *std::move(listed);
    const bool pending = std::any_of(
        records.begin(), records.end(), [](const CheckpointRecord& r) {
          return r.state == CheckpointState::kPending;
        });
    if (!pending || absl::Now() > give_up) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_EQ(records.size(), static_cast<size_t>(trials));
  int aborted = 0;
  for (const CheckpointRecord& record : records) {
    EXPECT_EQ(record.state, CheckpointState::kAborted)
        << "step " << record.step << " was not aborted once its lease ran out";
    if (record.state == CheckpointState::kAborted) ++aborted;
  }
  auto committed = client_->ListCheckpoints(kJob, false);
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_TRUE(committed->empty());
  const std::string metrics = Scrape(port_);
  EXPECT_LE(Sample(metrics, "ckpt_commits_total"), 0) << metrics;
  EXPECT_EQ(Sample(metrics, "ckpt_upload_buffered_bytes"), 0);
  // Every read's reservation and message came back to the budget.
  EXPECT_EQ(Sample(metrics, "ckpt_upload_buffer_reserved_bytes"), 0);

  // The stream slots came back: two uploads at once are still accepted.
  for (int i = 0; i < 2; ++i) {
    const std::string data = absl::StrCat("after the cancels ", i);
    v1::PutChunksRequest request;
    request.set_job(kJob);
    v1::ChunkData* chunk = request.add_chunks();
    chunk->set_sha256(std::string(Sha256(data).bytes()));
    chunk->set_data(data);
    grpc::ClientContext context;
    v1::PutChunksResponse response;
    auto writer = stub_->PutChunks(&context, &response);
    writer->Write(request);
    writer->WritesDone();
    grpc::Status status = writer->Finish();
    EXPECT_TRUE(status.ok()) << status.error_message();
  }

  PrintSummary(absl::StrCat(
      R"({"test":"T19 cancellation","seed":)", seed, R"(,"trials":)", trials,
      R"(,"cancelled_mid_call":)", figures.cancelled,
      R"(,"completed_before_cancel":)", figures.finished_first,
      R"(,"max_release_ms":)", figures.max_release_ms, R"(,"mean_release_ms":)",
      figures.sum_release_ms / trials, R"(,"max_buffered_bytes_seen":)",
      figures.max_buffered_seen, R"(,"aborted_after_lease":)", aborted,
      R"(,"commits":0,"seconds":)", absl::ToDoubleSeconds(absl::Now() - start),
      "}"));
}

}  // namespace
}  // namespace ckpt::testing
