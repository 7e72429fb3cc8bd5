// Observability of the real ckpt-server binary: its stderr is logfmt, one
// parseable line per event; every failed request is one rpc_failed line
// with its code, method, tenant, principal and peer, whatever hostile names
// it carried; --log-level filters; a port in use is one clear line.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ckpt/v1/ckpt.grpc.pb.h"
#include "common/sha256.h"
#include "common/wire_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/logfmt.h"
#include "tests/testing/metrics_scrape.h"
#include "tests/testing/raw_calls.h"
#include "tests/testing/real_server_test.h"
#include "tests/testing/sanitizers.h"
#include "tests/testing/server_process.h"
#include "tests/testing/temp_dir.h"

namespace ckpt::testing {
namespace {

using ::testing::HasSubstr;
using Stub = v1::CheckpointService::Stub;

std::unique_ptr<Stub> Connect(const std::string& address) {
  return v1::CheckpointService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
}

// The lines of `log` whose event is `event`.
std::vector<LogLine> Events(const std::vector<LogLine>& lines,
                            absl::string_view event) {
  std::vector<LogLine> found;
  for (const LogLine& line : lines) {
    auto it = line.find("event");
    if (it != line.end() && it->second == event) found.push_back(line);
  }
  return found;
}

// Every line parses, with ts, level and event first-class fields.
void ExpectAllLogfmt(const std::vector<LogLine>& lines) {
  for (const LogLine& line : lines) {
    ASSERT_EQ(line.count("unparsed"), 0u) << line.at("unparsed");
    EXPECT_EQ(line.count("ts"), 1u);
    EXPECT_EQ(line.count("level"), 1u);
    EXPECT_EQ(line.count("event"), 1u);
  }
}

// Polls `done` every 50 ms for up to 15 s.
template <typename Done>
bool Eventually(Done done) {
  const absl::Time deadline = absl::Now() + absl::Seconds(15);
  while (absl::Now() < deadline) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return done();
}

class ObservabilityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::Create("ckpt-obs-it");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *std::move(dir);
  }
  std::string Path(absl::string_view name) const {
    return absl::StrCat(dir_->path(), "/", name);
  }
  std::unique_ptr<ServerProcess> Start(std::vector<std::string> args,
                                       const std::string& log) {
    auto server = ServerProcess::Start(Path("db"), std::move(args), Path(log));
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }
  std::vector<LogLine> StopAndReadLog(ServerProcess& server,
                                      const std::string& log) {
    absl::StatusOr<int> code = server.Stop();
    EXPECT_TRUE(code.ok()) << code.status();
    if (code.ok()) {
      EXPECT_EQ(*code, 0);
    }
    return ParseLog(ReadWholeFile(Path(log)));
  }
  // The port of the metrics endpoint, from the server's log.
  int MetricsPort(const std::string& log) {
    for (const LogLine& line :
         Events(ParseLog(ReadWholeFile(Path(log))), "metrics_listening")) {
      const std::string& address = line.at("address");
      int port = 0;
      if (absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &port)) {
        return port;
      }
    }
    return 0;
  }
  std::unique_ptr<TempDir> dir_;
};

TEST_F(ObservabilityTest, EveryFailedRequestIsOneParseableLine) {
  const TestToken writer{"tok-writer-5e1d", "trainer", "writer", "alice/"};
  WriteTokenFile(Path("tokens"), {writer});
  auto server = Start({"--auth-tokens", Path("tokens")}, "server.log");
  ASSERT_NE(server, nullptr);
  auto stub = Connect(server->address());
  const RawCaller caller(stub.get(), writer.token);

  // A chunk whose bytes do not match its claimed hash.
  {
    v1::PutChunksRequest request;
    request.set_job("alice/model");
    v1::ChunkData* chunk = request.add_chunks();
    chunk->set_sha256(std::string(Sha256("other bytes").bytes()));
    chunk->set_data("these bytes");
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + writer.token);
    v1::PutChunksResponse response;
    auto stream = stub->PutChunks(&context, &response);
    stream->Write(request);
    stream->WritesDone();
    EXPECT_EQ(stream->Finish().error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  // A hostile job name that tries to forge fields and a second line.
  const std::string hostile =
      "alice/x\" principal=root code=OK\nts=0 level=info event=rpc_failed";
  v1::GetManifestRequest get;
  get.set_job(hostile);
  get.set_latest(true);
  EXPECT_EQ(caller.Call(&Stub::GetManifest, get).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // No token, a wrong token, and a job outside the token's scope.
  EXPECT_EQ(RawCaller(stub.get(), "")
                .Call(&Stub::ListJobs, v1::ListJobsRequest())
                .error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(RawCaller(stub.get(), "tok-wrong")
                .Call(&Stub::ListJobs, v1::ListJobsRequest())
                .error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  v1::ListCheckpointsRequest other;
  other.set_job("bob/model");
  EXPECT_EQ(caller.Call(&Stub::ListCheckpoints, other).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // A ReadChunks stream refused by auth.
  std::vector<v1::ReadChunksResponse> chunks;
  EXPECT_EQ(RawCaller(stub.get(), "")
                .Read("alice/model", {Sha256("x")}, &chunks)
                .error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // And a call that succeeds, which leaves no rpc_failed line.
  EXPECT_TRUE(caller.Call(&Stub::ListJobs, v1::ListJobsRequest()).ok());

  const std::vector<LogLine> lines = StopAndReadLog(*server, "server.log");
  ExpectAllLogfmt(lines);
  const std::vector<LogLine> failed = Events(lines, "rpc_failed");
  ASSERT_EQ(failed.size(), 6u) << ReadWholeFile(Path("server.log"));
  for (const LogLine& line : failed) {
    EXPECT_EQ(line.at("level"), "warning");
    EXPECT_THAT(line.at("peer"), HasSubstr("127.0.0.1"));
    EXPECT_FALSE(line.at("msg").empty());
    EXPECT_EQ(line.count("millis"), 1u);
  }
  // code, method, tenant, job, principal of each line, in call order.
  const std::vector<std::vector<std::string>> expected = {
      {"INVALID_ARGUMENT", "PutChunks", "alice", "alice/model", "trainer"},
      {"INVALID_ARGUMENT", "GetManifest", "alice", hostile, "trainer"},
      {"UNAUTHENTICATED", "ListJobs", "-", "-", "-"},
      {"UNAUTHENTICATED", "ListJobs", "-", "-", "-"},
      {"PERMISSION_DENIED", "ListCheckpoints", "bob", "bob/model", "trainer"},
      {"UNAUTHENTICATED", "ReadChunks", "alice", "alice/model", "-"},
  };
  for (size_t i = 0; i < expected.size(); ++i) {
    const std::vector<std::string> got = {
        failed[i].at("code"), failed[i].at("method"), failed[i].at("tenant"),
        failed[i].at("job"), failed[i].at("principal")};
    EXPECT_EQ(got, expected[i]) << "line " << i;
  }

  // Lifecycle events, as fields.
  EXPECT_EQ(Events(lines, "starting").size(), 1u);
  ASSERT_EQ(Events(lines, "listening").size(), 1u);
  EXPECT_EQ(Events(lines, "listening")[0].at("address"), server->address());
  ASSERT_EQ(Events(lines, "signal").size(), 1u);
  EXPECT_EQ(Events(lines, "signal")[0].at("signal"), "SIGTERM");
  ASSERT_EQ(Events(lines, "shutdown").size(), 1u);
  // No token ever reaches the log.
  EXPECT_THAT(ReadWholeFile(Path("server.log")),
              ::testing::Not(HasSubstr(writer.token)));
}

TEST_F(ObservabilityTest, LogLevelFilters) {
  // error: no info lines, and client errors (warnings) are dropped.
  auto quiet = Start({"--log-level", "error"}, "error.log");
  ASSERT_NE(quiet, nullptr);
  auto stub = Connect(quiet->address());
  v1::ListCheckpointsRequest unknown;
  unknown.set_job("alice/none");
  EXPECT_EQ(RawCaller(stub.get(), "")
                .Call(&Stub::ListCheckpoints, unknown)
                .error_code(),
            grpc::StatusCode::NOT_FOUND);
  const std::vector<LogLine> quiet_lines = StopAndReadLog(*quiet, "error.log");
  ExpectAllLogfmt(quiet_lines);
  for (const LogLine& line : quiet_lines) {
    EXPECT_EQ(line.at("level"), "error") << line.at("event");
  }

  // debug: a line for every call, failed or not.
  auto verbose = Start({"--log-level", "debug"}, "debug.log");
  ASSERT_NE(verbose, nullptr);
  stub = Connect(verbose->address());
  EXPECT_TRUE(RawCaller(stub.get(), "")
                  .Call(&Stub::ListJobs, v1::ListJobsRequest())
                  .ok());
  EXPECT_EQ(RawCaller(stub.get(), "")
                .Call(&Stub::ListCheckpoints, unknown)
                .error_code(),
            grpc::StatusCode::NOT_FOUND);
  const std::vector<LogLine> lines = StopAndReadLog(*verbose, "debug.log");
  ExpectAllLogfmt(lines);
  const std::vector<LogLine> calls = Events(lines, "rpc");
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].at("level"), "debug");
  EXPECT_EQ(calls[0].at("method"), "ListJobs");
  EXPECT_EQ(calls[0].at("code"), "OK");
  ASSERT_EQ(Events(lines, "rpc_failed").size(), 1u);
  EXPECT_EQ(Events(lines, "rpc_failed")[0].at("code"), "NOT_FOUND");
  EXPECT_EQ(Events(lines, "listening").size(), 1u);

  // A level that does not exist is refused before anything starts.
  const int status = std::system(
      absl::StrCat(BuiltBinary("server/rpc/ckpt-server"), " --data-dir ",
                   Path("db"), " --log-level loud >/dev/null 2>&1")
          .c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
}

TEST_F(ObservabilityTest, APortInUseGivesOneClearLine) {
  auto first = Start({}, "first.log");
  ASSERT_NE(first, nullptr);
  const std::string log = Path("second.log");
  const int status = std::system(
      absl::StrCat(BuiltBinary("server/rpc/ckpt-server"), " --data-dir ",
                   Path("db2"), " --listen ", first->address(),
                   " --log-level warning >/dev/null 2>", log)
          .c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  const std::string text = ReadWholeFile(log);
  const std::vector<LogLine> lines = ParseLog(text);
  ASSERT_EQ(lines.size(), 1u) << text;
  ExpectAllLogfmt(lines);
  EXPECT_EQ(lines[0].at("level"), "error");
  EXPECT_EQ(lines[0].at("event"), "start_failed");
  EXPECT_THAT(lines[0].at("msg"),
              HasSubstr(absl::StrCat("--listen ", first->address())));
  EXPECT_THAT(lines[0].at("msg"), HasSubstr("in use"));

  // The same for the metrics port: one line naming --metrics-listen.
  const int metrics_status = std::system(
      absl::StrCat(BuiltBinary("server/rpc/ckpt-server"), " --data-dir ",
                   Path("db3"), " --metrics-listen ", first->address(),
                   " --log-level warning >/dev/null 2>", log)
          .c_str());
  ASSERT_TRUE(WIFEXITED(metrics_status));
  EXPECT_EQ(WEXITSTATUS(metrics_status), 1);
  const std::vector<LogLine> metrics_lines = ParseLog(ReadWholeFile(log));
  ASSERT_EQ(metrics_lines.size(), 1u) << ReadWholeFile(log);
  EXPECT_EQ(metrics_lines[0].at("event"), "start_failed");
  EXPECT_THAT(metrics_lines[0].at("msg"),
              HasSubstr(absl::StrCat("--metrics-listen ", first->address())));
  ASSERT_TRUE(first->Stop().ok());
}

// Commits `bytes` as the same one-tensor shard of every rank of a
// `world`-rank checkpoint, rank 0 first: the last rank is the slowest.
grpc::Status SaveRanks(Stub* stub, const std::string& job, int64_t step,
                       int world, const std::string& bytes) {
  const RawCaller caller(stub, "");
  v1::BeginCheckpointRequest begin;
  begin.set_job(job);
  begin.set_step(step);
  begin.set_world_size(world);
  grpc::Status status = caller.Call(&Stub::BeginCheckpoint, begin);
  if (!status.ok()) return status;
  status = caller.Put(job, {bytes});
  if (!status.ok()) return status;
  for (int rank = 0; rank < world; ++rank) {
    ShardManifest shard = ShardOf({ChunkRef{Sha256(bytes), bytes.size()}});
    shard.rank = rank;
    v1::CommitShardRequest commit;
    commit.set_job(job);
    commit.set_step(step);
    commit.set_world_size(world);
    ToProto(shard, commit.mutable_shard());
    status = caller.Call(&Stub::CommitShard, commit);
    if (!status.ok()) return status;
  }
  return grpc::Status::OK;
}

TEST_F(ObservabilityTest, MetricsMoveWithSavesRestoresRefusalsGcAndLeases) {
  auto server =
      Start({"--metrics-listen", "127.0.0.1:0", "--lease-check-interval", "0.2",
             "--gc-interval", "0", "--chunk-hold-seconds", "0"},
            "server.log");
  ASSERT_NE(server, nullptr);
  const int port = MetricsPort("server.log");
  ASSERT_GT(port, 0) << ReadWholeFile(Path("server.log"));
  auto stub = Connect(server->address());
  const RawCaller caller(stub.get(), "");

  std::string metrics = Scrape(port);
  EXPECT_GT(Sample(metrics, "ckpt_data_dir_total_bytes"), 0) << metrics;
  EXPECT_GT(Sample(metrics, "ckpt_data_dir_free_bytes"), 0);
  EXPECT_GT(Sample(metrics, "ckpt_process_resident_bytes"), 1 << 20);
#if !CKPT_TESTING_SANITIZED
  // glibc's count: a sanitizer's allocator replaces glibc's, which reads 0.
  EXPECT_GT(Sample(metrics, "ckpt_process_heap_bytes"), 0);
#endif
  EXPECT_EQ(Sample(metrics, "ckpt_rocksdb_write_stopped"), 0);
  EXPECT_EQ(Sample(metrics, "ckpt_rocksdb_background_errors"), 0);
  EXPECT_EQ(Sample(metrics, "ckpt_commits_total"), -1);

  // A save of 3 ranks (rank 2 commits last), then the same bytes again.
  const std::string bytes(100000, 'x');
  ASSERT_TRUE(SaveRanks(stub.get(), "alice/model", 1, 3, bytes).ok());
  ASSERT_TRUE(SaveRanks(stub.get(), "alice/model", 2, 1, bytes).ok());
  // A restore.
  std::vector<v1::ReadChunksResponse> chunks;
  ASSERT_TRUE(caller.Read("alice/model", {Sha256(bytes)}, &chunks).ok());
  // A refusal.
  v1::GetManifestRequest bad;
  bad.set_job("no tenant");
  bad.set_latest(true);
  EXPECT_FALSE(caller.Call(&Stub::GetManifest, bad).ok());

  metrics = Scrape(port);
  const std::string alice = "tenant=\"alice\"";
  EXPECT_EQ(Sample(metrics, "ckpt_commits_total", {alice}), 2) << metrics;
  EXPECT_EQ(Sample(metrics, "ckpt_received_bytes_total", {alice}), 200000);
  EXPECT_EQ(Sample(metrics, "ckpt_stored_bytes_total", {alice}), 100000);
  EXPECT_EQ(Sample(metrics, "ckpt_deduplicated_bytes_total", {alice}), 100000);
  EXPECT_EQ(Sample(metrics, "ckpt_commit_slowest_rank", {alice}), 0);
  EXPECT_EQ(Sample(metrics, "ckpt_commit_slowest_rank_wait_seconds_count"), 2);
  EXPECT_EQ(Sample(metrics, "ckpt_rpcs_total",
                   {"method=\"CommitShard\"", "code=\"OK\""}),
            4);
  EXPECT_EQ(Sample(metrics, "ckpt_rpcs_total",
                   {"method=\"ReadChunks\"", "code=\"OK\""}),
            1);
  EXPECT_EQ(Sample(metrics, "ckpt_rpcs_total",
                   {"method=\"GetManifest\"", "code=\"INVALID_ARGUMENT\""}),
            1);
  EXPECT_EQ(Sample(metrics, "ckpt_rpc_duration_seconds_count",
                   {"method=\"PutChunks\""}),
            2);
  EXPECT_EQ(Sample(metrics, "ckpt_streams", {"kind=\"upload\""}), 0);

  // The slowest rank of a 3-rank save, on its own: rank 2.
  ASSERT_TRUE(SaveRanks(stub.get(), "alice/model", 3, 3, "other").ok());
  metrics = Scrape(port);
  EXPECT_EQ(Sample(metrics, "ckpt_commit_slowest_rank", {alice}), 2);

  // An upload stream held open is counted while open.
  {
    grpc::ClientContext context;
    v1::PutChunksResponse response;
    auto stream = stub->PutChunks(&context, &response);
    v1::PutChunksRequest request;
    request.set_job("alice/model");
    ASSERT_TRUE(stream->Write(request));
    EXPECT_TRUE(Eventually([&] {
      return Sample(Scrape(port), "ckpt_streams", {"kind=\"upload\""}) == 1;
    }));
    stream->WritesDone();
    EXPECT_TRUE(stream->Finish().ok());
  }
  EXPECT_TRUE(Eventually([&] {
    return Sample(Scrape(port), "ckpt_streams", {"kind=\"upload\""}) == 0;
  }));

  // An abort, and a lease that expires.
  v1::BeginCheckpointRequest begin;
  begin.set_job("alice/model");
  begin.set_step(4);
  begin.set_world_size(2);
  ASSERT_TRUE(caller.Call(&Stub::BeginCheckpoint, begin).ok());
  v1::AbortCheckpointRequest abort;
  abort.set_job("alice/model");
  abort.set_step(4);
  ASSERT_TRUE(caller.Call(&Stub::AbortCheckpoint, abort).ok());
  begin.set_step(5);
  begin.set_lease_seconds(1);
  ASSERT_TRUE(caller.Call(&Stub::BeginCheckpoint, begin).ok());
  EXPECT_TRUE(Eventually(
      [&] { return Sample(Scrape(port), "ckpt_lease_expiries_total") == 1; }));
  metrics = Scrape(port);
  EXPECT_EQ(Sample(metrics, "ckpt_aborts_total", {alice, "cause=\"client\""}),
            1);

  // Deleting two checkpoints lets GC reclaim the 100000 bytes.
  for (int64_t step : {1, 2}) {
    v1::DeleteCheckpointRequest remove;
    remove.set_job("alice/model");
    remove.set_step(step);
    ASSERT_TRUE(caller.Call(&Stub::DeleteCheckpoint, remove).ok());
  }
  v1::CollectGarbageResponse gc;
  ASSERT_TRUE(
      caller.Call(&Stub::CollectGarbage, v1::CollectGarbageRequest(), &gc)
          .ok());
  metrics = Scrape(port);
  EXPECT_EQ(Sample(metrics, "ckpt_gc_runs_total", {"result=\"ok\""}), 1);
  EXPECT_EQ(Sample(metrics, "ckpt_gc_reclaimed_bytes_total"), 100000)
      << gc.ShortDebugString();
  EXPECT_EQ(Sample(metrics, "ckpt_gc_deleted_chunks_total"), 1);

  // A verify reports its progress.
  v1::VerifyResponse last;
  ASSERT_TRUE(caller.Verify(v1::VerifyRequest(), &last).ok());
  metrics = Scrape(port);
  EXPECT_GE(Sample(metrics, "ckpt_verify_progress", {"what=\"chunks_total\""}),
            0);
  ASSERT_TRUE(server->Stop().ok());
}

TEST_F(ObservabilityTest, SigtermExitsPromptlyWithTheMetricsEndpointScraped) {
  auto server = Start({"--metrics-listen", "127.0.0.1:0"}, "server.log");
  ASSERT_NE(server, nullptr);
  const int port = MetricsPort("server.log");
  ASSERT_GT(port, 0);
  for (int i = 0; i < 3; ++i) {
    EXPECT_GT(Sample(Scrape(port), "ckpt_process_resident_bytes"), 0);
  }
  // A scraper's connection left open and idle.
  const int idle = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(
      ::connect(idle, reinterpret_cast<sockaddr*>(&address), sizeof(address)),
      0);
  const absl::Time start = absl::Now();
  absl::StatusOr<int> code = server->Stop();
  const absl::Time exited = absl::Now();
  ::close(idle);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
  EXPECT_LT(exited - start, absl::Seconds(10));
  // The process is gone soon after it logged its last line (the old
  // server's exposer lingered over 1.5 s there).
  const std::vector<LogLine> shutdown =
      Events(ParseLog(ReadWholeFile(Path("server.log"))), "shutdown");
  ASSERT_EQ(shutdown.size(), 1u);
  absl::Time logged;
  std::string error;
  ASSERT_TRUE(absl::ParseTime("%Y-%m-%dT%H:%M:%E*SZ", shutdown[0].at("ts"),
                              &logged, &error))
      << error;
  EXPECT_LT(exited - logged, absl::Seconds(1))
      << ReadWholeFile(Path("server.log"));
}

}  // namespace
}  // namespace ckpt::testing
