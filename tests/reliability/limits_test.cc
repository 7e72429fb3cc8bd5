// T18 (tests/reliability/README.md), the parts tests/python/test_limits.py
// does not cover, against the real ckpt-server:
// (a) one message of the server's maximum (64 MiB) plus one byte is refused
//     RESOURCE_EXHAUSTED, on a stream and on a unary call, while one of
//     exactly the maximum passes the transport; the server serves on;
// (b) many streams pushing at once, each past --max-upload-stream-bytes:
//     each is refused RESOURCE_EXHAUSTED at its own cap or, past gRPC's
//     memory quota, shed by gRPC; the chunk past a cap is never stored, and
//     the server's peak RSS stays within idle + --grpc-memory-quota +
//     --upload-buffer-bytes (+ slack).
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ckpt/v1/ckpt.grpc.pb.h"
#include "common/sha256.h"
#include "gtest/gtest.h"
#include "tests/reliability/reliability_run.h"
#include "tests/testing/real_server_test.h"
#include "tests/testing/sanitizers.h"

namespace ckpt::testing {
namespace {

constexpr int kMaxMessage = 64 << 20;  // server/rpc/server.h's default

// The process's peak resident set (VmHWM), in MiB; -1 when unreadable.
double PeakRssMib(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) != 0) continue;
    int64_t kib = 0;
    absl::string_view value =
        absl::StripAsciiWhitespace(absl::string_view(line).substr(6));
    value = value.substr(0, value.find(' '));
    if (absl::SimpleAtoi(value, &kib)) return static_cast<double>(kib) / 1024;
  }
  return -1;
}

std::string RandomBytes(size_t size, std::mt19937_64& rng) {
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(rng());
  return bytes;
}

class LimitsTest : public RealServerTest {
 protected:
  std::unique_ptr<v1::CheckpointService::Stub> Stub() {
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(2 * kMaxMessage);
    args.SetMaxReceiveMessageSize(2 * kMaxMessage);
    // A connection of its own per stub.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto channel = grpc::CreateCustomChannel(
        server_->address(), grpc::InsecureChannelCredentials(), args);
    // Connected before the test's calls: gRPC 1.51 can fail a good
    // connect() (it reads errno after calls that may change it; fixed
    // upstream in 2024), and a call on that channel fails UNAVAILABLE, which
    // the stream tests would count as shed by the server. Waiting rides out
    // the reconnect.
    EXPECT_TRUE(channel->WaitForConnected(In(30)))
        << "no connection to " << server_->address();
    return v1::CheckpointService::NewStub(channel);
  }

  static std::chrono::system_clock::time_point In(int seconds) {
    return std::chrono::system_clock::now() + std::chrono::seconds(seconds);
  }
};

// A PutChunks message of exactly `size` serialized bytes: one chunk whose
// data fills it (its hash is not checked before the size).
v1::PutChunksRequest MessageOfSize(size_t size) {
  v1::PutChunksRequest request;
  request.set_job("rel/limits");
  v1::ChunkData* chunk = request.add_chunks();
  chunk->set_sha256(std::string(32, 'h'));
  size_t data = size;
  chunk->set_data(std::string(data, 'x'));
  for (int i = 0; i < 10 && request.ByteSizeLong() != size; ++i) {
    data = data + size - request.ByteSizeLong();
    chunk->set_data(std::string(data, 'x'));
  }
  return request;
}

TEST_F(LimitsTest, AMessageOneByteOverTheMaximumIsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartServer({"--gc-interval", "0"}));
  auto stub = Stub();
  for (const size_t size : {size_t{kMaxMessage} + 1, size_t{kMaxMessage}}) {
    SCOPED_TRACE(absl::StrCat("message of ", size, " bytes"));
    const v1::PutChunksRequest request = MessageOfSize(size);
    ASSERT_EQ(request.ByteSizeLong(), size);
    grpc::ClientContext context;
    context.set_deadline(In(60));
    v1::PutChunksResponse response;
    auto writer = stub->PutChunks(&context, &response);
    writer->Write(request);
    writer->WritesDone();
    const grpc::Status status = writer->Finish();
    if (size > size_t{kMaxMessage}) {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
          << status.error_message();
    } else {
      // Through the transport: refused by the service (the chunk is over
      // kMaxChunkBytes), not for its size on the wire.
      EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
          << status.error_message();
    }
  }
  // A unary call too: a begin whose metadata makes it max + 1 bytes.
  v1::BeginCheckpointRequest begin;
  begin.set_job("rel/limits");
  begin.set_step(1);
  begin.set_world_size(1);
  (*begin.mutable_metadata()->mutable_tags())["t"] =
      std::string(kMaxMessage, 'x');
  ASSERT_GT(begin.ByteSizeLong(), size_t{kMaxMessage});
  {
    grpc::ClientContext context;
    context.set_deadline(In(60));
    v1::BeginCheckpointResponse response;
    const grpc::Status status =
        stub->BeginCheckpoint(&context, begin, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
        << status.error_message();
  }
  // The server serves on: a save and its restore.
  const std::string bytes(1 << 20, 'k');
  client::SaveOptions options;
  ASSERT_TRUE(
      client_->SaveShard("rel/limits", 2, {Uint8Tensor("w", bytes)}, options)
          .ok());
  auto restored = client_->RestoreShard("rel/limits", 2, 0);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_TRUE((*restored)[0].bytes == bytes);
}

// Large messages on many streams at once: every upload completes, and the
// messages the server holds stay within --upload-buffer-bytes, so its peak
// RSS stays within idle + both bounds. Without the budget each stream keeps
// a read of 8 MiB pending beside the message processed, and gRPC, past its
// quota of 64 MiB, resets streams (RST_STREAM ENHANCE_YOUR_CALM): 7 of 16
// failed so when this test was written.
TEST_F(LimitsTest, LargeMessagesOnManyStreamsStayWithinTheUploadBudget) {
  const uint64_t seed = RunSeed();
  SCOPED_TRACE(absl::StrCat("CKPT_SEED=", seed));
  constexpr int kStreams = 16;
  constexpr int kMessages = 6;
  constexpr size_t kChunk = 8 << 20;
  constexpr int kGrpcQuotaMib = 64;
  constexpr int upload_buffer_mib = 16;
  ASSERT_NO_FATAL_FAILURE(
      StartServer({"--gc-interval", "0", "--grpc-memory-quota",
                   absl::StrCat(kGrpcQuotaMib, "MiB"), "--upload-buffer-bytes",
                   absl::StrCat(upload_buffer_mib, "MiB")}));
  std::mt19937_64 rng(seed);
  // One tenant: the chunks are stored once, so the disk stays out of it.
  std::vector<v1::PutChunksRequest> messages(kMessages);
  for (auto& message : messages) {
    const std::string bytes = RandomBytes(kChunk, rng);
    v1::ChunkData* chunk = message.add_chunks();
    chunk->set_sha256(std::string(Sha256(bytes).bytes()));
    chunk->set_data(bytes);
  }
  const double rss_before = PeakRssMib(server_->pid());
  std::vector<grpc::Status> results(kStreams);
  std::vector<uint64_t> received(kStreams, 0);
  std::vector<std::unique_ptr<v1::CheckpointService::Stub>> stubs;
  for (int s = 0; s < kStreams; ++s) stubs.push_back(Stub());
  std::vector<std::thread> threads;
  for (int s = 0; s < kStreams; ++s) {
    threads.emplace_back([&, s] {
      grpc::ClientContext context;
      context.set_deadline(In(300));
      v1::PutChunksResponse response;
      auto writer = stubs[s]->PutChunks(&context, &response);
      for (int m = 0; m < kMessages; ++m) {
        v1::PutChunksRequest request = messages[(s + m) % kMessages];
        if (m == 0) request.set_job(absl::StrCat("big/stream", s));
        if (!writer->Write(request)) break;
      }
      writer->WritesDone();
      results[s] = writer->Finish();
      received[s] = response.chunks_received();
    });
  }
  for (auto& thread : threads) thread.join();
  for (int s = 0; s < kStreams; ++s) {
    EXPECT_TRUE(results[s].ok())
        << "stream " << s << ": " << results[s].error_message();
    EXPECT_EQ(received[s], uint64_t{kMessages}) << "stream " << s;
  }
  const double peak = PeakRssMib(server_->pid());
#if CKPT_TESTING_SANITIZED
  const double bound =
      2 * (rss_before + kGrpcQuotaMib + upload_buffer_mib) + 128;
#else
  const double bound = rss_before + kGrpcQuotaMib + upload_buffer_mib + 96;
#endif
  EXPECT_LT(peak, bound) << "peak RSS " << peak << " MiB";
  PrintSummary(
      absl::StrCat(R"({"test":"T18 upload buffer budget","seed":)", seed,
                   R"(,"streams":)", kStreams, R"(,"message_bytes":)", kChunk,
                   R"(,"upload_buffer_mib":)", upload_buffer_mib,
                   R"(,"rss_bound_mib":)", bound, R"(,"rss_peak_mib_before":)",
                   rss_before, R"(,"rss_peak_mib":)", peak, "}"));
}

TEST_F(LimitsTest, ManyStreamsPushingAtOnceAreEachCappedAndRssStaysBounded) {
  const uint64_t seed = RunSeed();
  const int streams = RunCount("CKPT_STREAMS", 32);
  SCOPED_TRACE(absl::StrCat("CKPT_SEED=", seed, " CKPT_STREAMS=", streams));
  constexpr size_t kCap = 2 << 20;
  constexpr size_t kChunk = 512 << 10;
  // What bounds the server's memory: gRPC's buffers, then the messages read.
  constexpr int kGrpcQuotaMib = 256;
  constexpr int kUploadBufferMib = 64;
  ASSERT_NO_FATAL_FAILURE(StartServer(
      {"--gc-interval", "0", "--max-upload-stream-bytes", absl::StrCat(kCap),
       "--max-concurrent-streams", "1000", "--upload-idle-timeout-seconds",
       "60", "--grpc-memory-quota", absl::StrCat(kGrpcQuotaMib, "MiB"),
       "--upload-buffer-bytes", absl::StrCat(kUploadBufferMib, "MiB")}));
  std::mt19937_64 rng(seed);
  // The chunks under the cap are shared (the streams are one tenant's, so
  // they are stored once and the store stays out of it); the one past it is
  // each stream's own.
  std::vector<std::string> shared;
  for (size_t i = 0; i < kCap / kChunk; ++i) {
    shared.push_back(RandomBytes(kChunk, rng));
  }
  std::vector<std::string> over(streams);
  for (auto& bytes : over) bytes = RandomBytes(kChunk, rng);
  const double rss_before = PeakRssMib(server_->pid());

  std::vector<grpc::Status> results(streams);
  std::vector<absl::Duration> took(streams);
  std::vector<std::unique_ptr<v1::CheckpointService::Stub>> stubs;
  for (int s = 0; s < streams; ++s) stubs.push_back(Stub());
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int s = 0; s < streams; ++s) {
    threads.emplace_back([&, s] {
      ready.fetch_add(1);
      while (ready.load() < streams) std::this_thread::yield();
      const absl::Time start = absl::Now();
      grpc::ClientContext context;
      context.set_deadline(In(120));
      v1::PutChunksResponse response;
      auto writer = stubs[s]->PutChunks(&context, &response);
      // The cap's worth, then the stream's own chunk, then more: the
      // server must refuse at the cap whatever follows.
      for (size_t i = 0; i < shared.size() + 3; ++i) {
        const std::string& bytes =
            i < shared.size() ? shared[i]
                              : (i == shared.size() ? over[s] : shared[0]);
        v1::PutChunksRequest request;
        if (i == 0) request.set_job(absl::StrCat("rel/stream", s));
        v1::ChunkData* chunk = request.add_chunks();
        chunk->set_sha256(std::string(Sha256(bytes).bytes()));
        chunk->set_data(bytes);
        if (!writer->Write(request)) break;
      }
      writer->WritesDone();
      results[s] = writer->Finish();
      took[s] = absl::Now() - start;
    });
  }
  for (auto& thread : threads) thread.join();
  // Each stream is refused at its cap, naming it, or, once gRPC's buffers
  // reach its quota, shed by gRPC (GOAWAY, or RST_STREAM ENHANCE_YOUR_CALM):
  // the quota bounding memory by closing connections rather than growing.
  double slowest_ms = 0;
  std::vector<bool> shed(streams, false);
  int shed_count = 0;
  for (int s = 0; s < streams; ++s) {
    SCOPED_TRACE(absl::StrCat("stream ", s));
    const std::string& message = results[s].error_message();
    shed[s] =
        results[s].error_code() == grpc::StatusCode::UNAVAILABLE ||
        (results[s].error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
         message.find("RST_STREAM") != std::string::npos);
    slowest_ms = std::max(slowest_ms, absl::ToDoubleMilliseconds(took[s]));
    if (shed[s]) {
      ++shed_count;
      continue;
    }
    EXPECT_EQ(results[s].error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
        << message;
    EXPECT_NE(message.find("max_upload_stream_bytes"), std::string::npos)
        << message;
  }
  // Well under the quota, nothing is shed.
  if (streams * 2 < kGrpcQuotaMib) {
    std::string shed_statuses;
    for (int s = 0; s < streams; ++s) {
      if (shed[s]) {
        absl::StrAppend(&shed_statuses, "\nstream ", s, ": code ",
                        static_cast<int>(results[s].error_code()), " ",
                        results[s].error_message());
      }
    }
    EXPECT_EQ(shed_count, 0) << shed_statuses;
  }
  EXPECT_GT(streams - shed_count, 0) << "every stream was shed";
  // Under the cap stored, the chunk past it never (shed streams may have
  // stored any part under the cap).
  auto stub = Stub();
  int over_stored = 0;
  for (int s = 0; s < streams; ++s) {
    v1::FindMissingChunksRequest request;
    request.set_job(absl::StrCat("rel/stream", s));
    request.add_sha256(std::string(Sha256(shared.back()).bytes()));
    request.add_sha256(std::string(Sha256(over[s]).bytes()));
    v1::FindMissingChunksResponse response;
    grpc::ClientContext context;
    context.set_deadline(In(30));
    ASSERT_TRUE(stub->FindMissingChunks(&context, request, &response).ok());
    bool over_missing = false;
    for (const std::string& missing : response.missing_sha256()) {
      if (missing == Sha256(over[s]).bytes()) over_missing = true;
    }
    if (!over_missing) ++over_stored;
    if (!shed[s]) {
      EXPECT_EQ(response.missing_sha256_size(), 1) << "stream " << s;
    }
  }
  EXPECT_EQ(over_stored, 0) << "chunks past a stream's cap were stored";
  const double peak = PeakRssMib(server_->pid());
  // Idle, plus the two bounds, plus what neither counts: RocksDB (the
  // streams are one tenant's, so their chunks under the cap are stored
  // once: with a tenant each, 1,000 streams store 2 GB of 512 KiB chunks in
  // memtables, which added 600-650 MiB), threads, the transient copies of
  // a message being decoded. Sanitizers double allocations and keep freed
  // memory quarantined.
  const double outside = 128;
#if CKPT_TESTING_SANITIZED
  const double bound =
      2 * (rss_before + kGrpcQuotaMib + kUploadBufferMib + outside);
#else
  const double bound = rss_before + kGrpcQuotaMib + kUploadBufferMib + outside;
#endif
  EXPECT_LT(peak, bound) << "peak RSS " << peak << " MiB";
  PrintSummary(absl::StrCat(
      R"({"test":"T18 concurrent stream caps","seed":)", seed, R"(,"streams":)",
      streams, R"(,"cap_bytes":)", kCap, R"(,"refused_at_cap":)",
      streams - shed_count, R"(,"shed_by_grpc_quota":)", shed_count,
      R"(,"over_cap_stored":)", over_stored, R"(,"rss_bound_mib":)", bound,
      R"(,"rss_peak_mib_before":)", rss_before, R"(,"rss_peak_mib":)", peak,
      R"(,"slowest_stream_ms":)", slowest_ms, "}"));
}

}  // namespace
}  // namespace ckpt::testing
