// End-to-end tests of the gRPC edge's side of copies between servers
// (`ckpt copy`): BeginCheckpoint's copied_from and pin, CheckpointInfo's
// copied_from and ReportCopy, through the client's gRPC transport and,
// for what the client never sends, the raw stub. Part of grpc_service_test.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ckpt/v1/ckpt.grpc.pb.h"
#include "client/transport/grpc_transport.h"
#include "common/sha256.h"
#include "common/wire_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/event_lines.h"
#include "tests/testing/raw_calls.h"
#include "tests/testing/rpc_test_fixture.h"

namespace ckpt::server {
namespace {

using ::ckpt::testing::RawCaller;
using Stub = v1::CheckpointService::Stub;
using ::testing::ElementsAre;
using testing::GrpcServiceTest;
using ::testing::HasSubstr;
using testing::kJob;

const CopyPeer kSource{"a.example:7000", "old/model", 40};

class GrpcCopyTest : public GrpcServiceTest {
 protected:
  std::unique_ptr<client::Transport> Transport() {
    auto transport = client::ConnectGrpcTransport(address_, {});
    EXPECT_TRUE(transport.ok()) << transport.status();
    return transport.ok() ? *std::move(transport) : nullptr;
  }

  // The job's history as "kind@step: detail"; none for an unknown job.
  std::vector<std::string> History(absl::string_view job = kJob) {
    auto events = client_->ListEvents(job);
    if (absl::IsNotFound(events.status())) return {};
    EXPECT_TRUE(events.ok()) << events.status();
    return events.ok() ? ::ckpt::testing::EventLines(*events)
                       : std::vector<std::string>();
  }

  // Everything a refused call must not change.
  std::string State() {
    const RawCaller caller(stub_.get(), "");
    v1::ListJobsResponse jobs;
    EXPECT_TRUE(
        caller.Call(&Stub::ListJobs, v1::ListJobsRequest(), &jobs).ok());
    std::string state = jobs.ShortDebugString();
    for (const v1::JobInfo& job : jobs.jobs()) {
      v1::ListCheckpointsRequest list;
      list.set_job(job.name());
      list.set_include_uncommitted(true);
      v1::ListCheckpointsResponse checkpoints;
      EXPECT_TRUE(caller.Call(&Stub::ListCheckpoints, list, &checkpoints).ok());
      absl::StrAppend(&state, "\n", checkpoints.ShortDebugString(), "\n",
                      absl::StrJoin(History(job.name()), "\n"));
    }
    return state;
  }

  static v1::BeginCheckpointRequest Begin(int64_t step, const CopyPeer& from) {
    v1::BeginCheckpointRequest begin;
    begin.set_job(kJob);
    begin.set_step(step);
    begin.set_world_size(1);
    ToProto(from, begin.mutable_copied_from());
    begin.set_pin(true);
    return begin;
  }
};

TEST_F(GrpcCopyTest, ACopyCommitsWithItsProvenanceAndPinThroughTheTransport) {
  std::unique_ptr<client::Transport> transport = Transport();
  ASSERT_NE(transport, nullptr);
  client::BeginOptions options;
  options.pin = true;
  options.copied_from = kSource;
  ASSERT_TRUE(transport->BeginCheckpoint(kJob, 40, options).ok());
  const RawCaller caller(stub_.get(), "");
  ASSERT_TRUE(caller.Put(kJob, {"copied bytes"}).ok());
  ASSERT_TRUE(
      caller.Commit(kJob, 40, {ChunkRef{Sha256("copied bytes"), 12}}).ok());

  auto manifest = client_->GetManifest(kJob, 40);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->record.copied_from, kSource);
  EXPECT_TRUE(manifest->record.pinned);
  EXPECT_THAT(History(),
              ElementsAre("committed@40: 1 rank, 12 bytes",
                          "copied@40: from a.example:7000 old/model@40",
                          "pinned@40: at commit"));

  // The source side: where it went.
  const CopyPeer target{"b.example:7001", "new/model", 41};
  ASSERT_TRUE(transport->ReportCopy(kJob, 40, target).ok());
  EXPECT_EQ(History().back(), "copied@40: to b.example:7001 new/model@41");
  EXPECT_TRUE(absl::IsNotFound(transport->ReportCopy(kJob, 39, target)));
}

// An older client's Begin carries neither field: the checkpoint is what it
// always was.
TEST_F(GrpcCopyTest, ABeginWithoutTheFieldsBehavesAsBefore) {
  v1::BeginCheckpointRequest begin;
  begin.set_job(kJob);
  begin.set_step(1);
  begin.set_world_size(1);
  v1::BeginCheckpointResponse begun;
  const RawCaller caller(stub_.get(), "");
  ASSERT_TRUE(caller.Call(&Stub::BeginCheckpoint, begin, &begun).ok());
  EXPECT_FALSE(begun.checkpoint().has_copied_from());
  EXPECT_FALSE(begun.checkpoint().pinned());
  ASSERT_TRUE(caller.Put(kJob, {"abc"}).ok());
  v1::CommitShardResponse committed;
  ASSERT_TRUE(
      caller.Commit(kJob, 1, {ChunkRef{Sha256("abc"), 3}}, &committed).ok());
  EXPECT_TRUE(committed.checkpoint_committed());
  EXPECT_FALSE(committed.checkpoint().has_copied_from());
  EXPECT_FALSE(committed.checkpoint().pinned());
  EXPECT_THAT(History(), ElementsAre("committed@1: 1 rank, 3 bytes"));
}

// What the client never sends: every bad copied_from is INVALID_ARGUMENT
// naming the call and the field, with a bounded message, and begins
// nothing (not even the job).
TEST_F(GrpcCopyTest, BadCopiedFromIsRefusedAndBeginsNothing) {
  const std::string before = State();
  struct Case {
    CopyPeer peer;
    std::string message_part;
  };
  const std::vector<Case> cases = {
      {{"", "t/m", 1}, "BeginCheckpoint: copied_from.server must be 1-256"},
      {{std::string(257, 's'), "t/m", 1}, "copied_from.server must be"},
      {{std::string(1 << 20, 'h'), "t/m", 1}, "(1048576 bytes)"},
      {{"a\nforged log line", "t/m", 1}, "copied_from.server must be"},
      {{"\x1b[2Jclear", "t/m", 1}, "copied_from.server must be"},
      {{"nel\xc2\x85", "t/m", 1}, "copied_from.server must be"},
      {{std::string("nul\0x", 5), "t/m", 1}, "copied_from.server must be"},
      {{"a", "no-tenant", 1}, "BeginCheckpoint: copied_from.job: invalid"},
      {{"a", std::string(300, 'j'), 1}, "copied_from.job: invalid"},
      {{"a", "t/m", -1}, "BeginCheckpoint: copied_from.step must be >= 0"},
  };
  const RawCaller caller(stub_.get(), "");
  for (const Case& c : cases) {
    const grpc::Status status =
        caller.Call(&Stub::BeginCheckpoint, Begin(1, c.peer));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(c.message_part));
    EXPECT_LT(status.error_message().size(), 1000u);
  }
  // Not UTF-8 at all: refused (protobuf or the check), nothing begun.
  EXPECT_FALSE(
      caller.Call(&Stub::BeginCheckpoint, Begin(1, {"\xff", "t/m", 1})).ok());
  EXPECT_EQ(State(), before);
}

TEST_F(GrpcCopyTest, ReportCopyIsRefusedUnlessCommittedAndWellFormed) {
  const RawCaller caller(stub_.get(), "");
  auto report = [&](int64_t step, const CopyPeer* destination,
                    absl::string_view job = kJob) {
    v1::ReportCopyRequest request;
    request.set_job(std::string(job));
    request.set_step(step);
    if (destination != nullptr) {
      ToProto(*destination, request.mutable_destination());
    }
    return caller.Call(&Stub::ReportCopy, request);
  };
  const CopyPeer target{"b:1", "new/model", 2};
  // Absent job, then a pending checkpoint.
  EXPECT_EQ(report(2, &target).error_code(), grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(caller.Call(&Stub::BeginCheckpoint, Begin(2, kSource)).ok());
  const grpc::Status pending = report(2, &target);
  EXPECT_EQ(pending.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(pending.error_message(), HasSubstr("pending"));
  ASSERT_TRUE(caller.Save(kJob, 3, "committed").ok());
  const std::string before = State();

  EXPECT_EQ(report(4, &target).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(report(3, &target, "team/other").error_code(),
            grpc::StatusCode::NOT_FOUND);
  const grpc::Status none = report(3, nullptr);
  EXPECT_EQ(none.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(none.error_message(), "ReportCopy: destination is required");
  for (const CopyPeer& bad :
       std::vector<CopyPeer>{{"", "new/model", 2},
                             {"b\r\n", "new/model", 2},
                             {std::string(100000, 'b'), "new/model", 2},
                             {"b", "nope", 2},
                             {"b", "new/model", -2}}) {
    const grpc::Status status = report(3, &bad);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("ReportCopy: destination."));
    EXPECT_LT(status.error_message().size(), 1000u);
  }
  EXPECT_EQ(report(-3, &target).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(report(3, &target, "bad").error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(State(), before);

  ASSERT_TRUE(report(3, &target).ok());
  EXPECT_EQ(History().back(), "copied@3: to b:1 new/model@2");
}

}  // namespace
}  // namespace ckpt::server
