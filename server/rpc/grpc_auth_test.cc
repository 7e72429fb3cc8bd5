// Authentication and roles at the gRPC edge: a CheckpointServer on
// 127.0.0.1:0 with a token file, driven through the raw stub with bearer
// tokens. Every refusal must have the right code and change nothing: the
// listings, policies and event histories are compared before and after.
// Past 600 lines because it is one job: the role and scope rules of every
// RPC, tried against one server and one token file.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ckpt/v1/ckpt.grpc.pb.h"
#include "common/sha256.h"
#include "common/wire_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/auth/authenticator.h"
#include "tests/testing/raw_calls.h"
#include "tests/testing/rpc_test_fixture.h"
#include "tests/testing/temp_dir.h"

namespace ckpt::server {
namespace {

using ::ckpt::testing::RawCaller;
using ::ckpt::testing::TestToken;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Stub = v1::CheckpointService::Stub;

constexpr char kAlice[] = "alice/model";
constexpr char kBob[] = "bob/model";

const std::vector<TestToken>& Tokens() {
  static const auto* tokens = new std::vector<TestToken>{
      {"tok-alice-admin", "alice-admin", "admin", "alice/"},
      {"tok-alice-writer", "alice-trainer", "writer", "alice/"},
      {"tok-alice-reader", "alice-viewer", "reader", "alice/"},
      {"tok-alice-exp", "alice-exp", "writer", "alice/exp"},
      {"tok-alice-exp-admin", "alice-exp-admin", "admin", "alice/exp"},
      {"tok-bob-admin", "bob-admin", "admin", "bob/"},
      {"tok-operator", "ops", "operator", "*"},
  };
  return *tokens;
}

class GrpcAuthTest : public testing::GrpcServiceTest {
 protected:
  void SetUp() override {
    auto dir = ::ckpt::testing::TempDir::Create("ckpt-auth");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *std::move(dir);
    const std::string path = dir_->path() + "/tokens";
    ::ckpt::testing::WriteTokenFile(path, Tokens());
    auto authenticator = Authenticator::FromTokenFile(path);
    ASSERT_TRUE(authenticator.ok()) << authenticator.status();
    authenticator_ = *std::move(authenticator);
    ServerOptions options;
    options.authenticator = authenticator_.get();
    StartServer(options);
    // Each tenant has a committed checkpoint at step 1 and 2.
    for (int64_t step : {1, 2}) {
      ASSERT_TRUE(As("tok-alice-writer").Save(kAlice, step, Bytes(step)).ok());
      ASSERT_TRUE(As("tok-bob-admin").Save(kBob, step, Bytes(10 + step)).ok());
    }
  }

  static std::string Bytes(int64_t seed) {
    return testing::RandomBytes(1000, static_cast<uint32_t>(seed));
  }

  RawCaller As(const std::string& token) {
    return RawCaller(stub_.get(), token);
  }

  // Everything a refused call must not change, as the operator sees it.
  std::string State() {
    const RawCaller op = As("tok-operator");
    std::string state;
    v1::ListJobsResponse jobs;
    EXPECT_TRUE(op.Call(&Stub::ListJobs, v1::ListJobsRequest(), &jobs).ok());
    absl::StrAppend(&state, jobs.ShortDebugString(), "\n");
    for (const v1::JobInfo& job : jobs.jobs()) {
      v1::ListCheckpointsRequest list;
      list.set_job(job.name());
      list.set_include_uncommitted(true);
      v1::ListCheckpointsResponse checkpoints;
      EXPECT_TRUE(op.Call(&Stub::ListCheckpoints, list, &checkpoints).ok());
      v1::ListEventsRequest events_request;
      events_request.set_job(job.name());
      v1::ListEventsResponse events;
      EXPECT_TRUE(op.Call(&Stub::ListEvents, events_request, &events).ok());
      absl::StrAppend(&state, checkpoints.ShortDebugString(), "\n",
                      events.ShortDebugString(), "\n");
    }
    v1::GetStatsResponse stats;
    EXPECT_TRUE(op.Call(&Stub::GetStats, v1::GetStatsRequest(), &stats).ok());
    absl::StrAppend(&state, stats.ShortDebugString());
    for (const char* tenant : {"alice", "bob"}) {
      v1::GetRetentionPolicyRequest get;
      get.set_tenant(tenant);
      v1::GetRetentionPolicyResponse got;
      EXPECT_TRUE(op.Call(&Stub::GetRetentionPolicy, get, &got).ok());
      absl::StrAppend(&state, "\n", tenant, ": ", got.ShortDebugString());
    }
    return state;
  }

  std::unique_ptr<::ckpt::testing::TempDir> dir_;
  std::unique_ptr<Authenticator> authenticator_;
};

void ExpectCode(const grpc::Status& status, grpc::StatusCode code,
                const std::string& message_part = "") {
  EXPECT_EQ(status.error_code(), code) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr(message_part));
}

// ------------------------------------------------------- authentication

TEST_F(GrpcAuthTest, BadCredentialsAreUnauthenticatedAlikeAndChangeNothing) {
  const std::string before = State();
  const std::vector<RawCaller> callers = {
      RawCaller(stub_.get(), ""),                              // no token
      RawCaller(stub_.get(), "tok-nobody"),                    // unknown
      RawCaller(stub_.get(), Sha256("tok-operator").ToHex()),  // the hash
      RawCaller::WithHeader(stub_.get(), "tok-operator"),      // no scheme
      RawCaller::WithHeader(stub_.get(), "Basic tok-operator"),
      RawCaller::WithHeader(stub_.get(), "Bearer"),
      RawCaller::WithHeader(stub_.get(), "Bearer  tok-operator"),
  };
  for (const RawCaller& caller : callers) {
    auto expect = [](const grpc::Status& status, absl::string_view rpc) {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
      EXPECT_EQ(status.error_message(),
                absl::StrCat(rpc, ": ", kInvalidCredentials));
    };
    expect(caller.Call(&Stub::ListJobs, v1::ListJobsRequest()), "ListJobs");
    v1::DeleteCheckpointRequest del;
    del.set_job(kAlice);
    del.set_step(1);
    expect(caller.Call(&Stub::DeleteCheckpoint, del), "DeleteCheckpoint");
    expect(caller.Call(&Stub::CollectGarbage, v1::CollectGarbageRequest()),
           "CollectGarbage");
    v1::SetRetentionPolicyRequest policy;
    policy.set_job(kAlice);
    policy.mutable_policy()->set_max_to_keep(1);
    expect(caller.Call(&Stub::SetRetentionPolicy, policy),
           "SetRetentionPolicy");
    expect(caller.Save(kAlice, 3, "new bytes"), "BeginCheckpoint");
    expect(caller.Put(kAlice, {"new bytes"}), "PutChunks");
    std::vector<v1::ReadChunksResponse> chunks;
    expect(caller.Read(kAlice, {Sha256(Bytes(1))}, &chunks), "ReadChunks");
    EXPECT_TRUE(chunks.empty());
    v1::VerifyResponse report;
    expect(caller.Verify(v1::VerifyRequest(), &report), "VerifyCheckpoints");
    v1::ReportRestoreRequest restored;
    restored.set_job(kAlice);
    restored.set_step(1);
    expect(caller.Call(&Stub::ReportRestore, restored), "ReportRestore");
    v1::ReportCopyRequest copied;
    copied.set_job(kAlice);
    copied.set_step(1);
    ToProto(CopyPeer{"b:1", kAlice, 1}, copied.mutable_destination());
    expect(caller.Call(&Stub::ReportCopy, copied), "ReportCopy");
  }
  // Two authorization headers, even both valid, are refused too.
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer tok-operator");
  context.AddMetadata("authorization", "Bearer tok-operator");
  v1::ListJobsResponse jobs;
  ExpectCode(stub_->ListJobs(&context, v1::ListJobsRequest(), &jobs),
             grpc::StatusCode::UNAUTHENTICATED, "missing or invalid");
  EXPECT_EQ(State(), before);
}

// ------------------------------------------------------------------ roles

TEST_F(GrpcAuthTest, WriterIsAppendOnly) {
  // An admin set the policy; a writer's save may pass it again.
  v1::SetRetentionPolicyRequest set;
  set.set_job(kAlice);
  set.mutable_policy()->set_max_to_keep(5);
  ASSERT_TRUE(As("tok-alice-admin").Call(&Stub::SetRetentionPolicy, set).ok());
  const RawCaller writer = As("tok-alice-writer");
  const std::string before = State();

  v1::DeleteCheckpointRequest del;
  del.set_job(kAlice);
  del.set_step(1);
  ExpectCode(writer.Call(&Stub::DeleteCheckpoint, del),
             grpc::StatusCode::PERMISSION_DENIED,
             "DeleteCheckpoint: principal 'alice-trainer' has role writer; "
             "this call needs role admin or above");
  v1::PruneCheckpointsRequest prune;
  prune.set_job(kAlice);
  prune.mutable_policy()->set_max_to_keep(1);
  ExpectCode(writer.Call(&Stub::PruneCheckpoints, prune),
             grpc::StatusCode::PERMISSION_DENIED, "needs role admin");
  ExpectCode(writer.Call(&Stub::CollectGarbage, v1::CollectGarbageRequest()),
             grpc::StatusCode::PERMISSION_DENIED, "needs role operator");
  v1::SetRetentionPolicyRequest policy;
  policy.set_job(kAlice);
  policy.mutable_policy()->set_max_to_keep(1);
  ExpectCode(writer.Call(&Stub::SetRetentionPolicy, policy),
             grpc::StatusCode::PERMISSION_DENIED, "needs role admin");
  v1::VerifyResponse report;
  ExpectCode(writer.Verify(v1::VerifyRequest(), &report),
             grpc::StatusCode::PERMISSION_DENIED, "needs role admin");
  EXPECT_EQ(State(), before);
  // Pinning keeps history: allowed. Unpinning is not.
  v1::PinCheckpointRequest pin;
  pin.set_job(kAlice);
  pin.set_step(1);
  pin.set_pinned(true);
  ASSERT_TRUE(As("tok-alice-admin").Call(&Stub::PinCheckpoint, pin).ok());
  const std::string pinned = State();
  pin.set_pinned(false);
  ExpectCode(writer.Call(&Stub::PinCheckpoint, pin),
             grpc::StatusCode::PERMISSION_DENIED, "needs role admin");
  // A policy at Begin other than the stored one: ignored, the response
  // saying why, the checkpoint begun, the admin's policy kept and nothing
  // deleted; for a new job too (a writer never sets the first policy).
  v1::BeginCheckpointRequest begin;
  begin.set_job(kAlice);
  begin.set_step(3);
  begin.set_world_size(1);
  begin.mutable_retention_policy()->set_max_to_keep(1);
  v1::BeginCheckpointResponse begun;
  ASSERT_TRUE(writer.Call(&Stub::BeginCheckpoint, begin, &begun).ok());
  EXPECT_THAT(begun.retention_policy_ignored(),
              HasSubstr("the job's policy is an operator's (max_to_keep=5; "
                        "set by operator alice-admin "));
  begin.mutable_retention_policy()->Clear();  // keep everything: also other
  ASSERT_TRUE(writer.Call(&Stub::BeginCheckpoint, begin, &begun).ok());
  EXPECT_THAT(begun.retention_policy_ignored(), HasSubstr("was ignored"));
  v1::GetRetentionPolicyRequest get;
  get.set_job(kAlice);
  v1::GetRetentionPolicyResponse got;
  ASSERT_TRUE(writer.Call(&Stub::GetRetentionPolicy, get, &got).ok());
  EXPECT_EQ(got.policy().max_to_keep(), 5);
  EXPECT_EQ(got.origin().source(), v1::POLICY_SOURCE_OPERATOR);
  EXPECT_EQ(got.origin().principal(), "alice-admin");
  begin.set_job("alice/new-job");
  begin.mutable_retention_policy()->set_max_to_keep(5);
  ASSERT_TRUE(writer.Call(&Stub::BeginCheckpoint, begin, &begun).ok());
  EXPECT_THAT(begun.retention_policy_ignored(),
              HasSubstr("principal 'alice-trainer' is append-only"));
  get.set_job("alice/new-job");
  ASSERT_TRUE(writer.Call(&Stub::GetRetentionPolicy, get, &got).ok());
  EXPECT_FALSE(got.has_policy());
  EXPECT_FALSE(got.has_origin());

  // What a writer may do: a dry-run prune, saves with the stored policy or
  // none, an abort.
  prune.set_dry_run(true);
  EXPECT_TRUE(writer.Call(&Stub::PruneCheckpoints, prune).ok());
  begin.set_job(kAlice);
  EXPECT_TRUE(writer.Call(&Stub::BeginCheckpoint, begin).ok());
  begin.set_step(4);
  begin.clear_retention_policy();
  EXPECT_TRUE(writer.Call(&Stub::BeginCheckpoint, begin).ok());
  v1::AbortCheckpointRequest abort;
  abort.set_job(kAlice);
  abort.set_step(4);
  EXPECT_TRUE(writer.Call(&Stub::AbortCheckpoint, abort).ok());
}

// Retention reads what the writer sends (steps, times, metrics), so a
// writer's commits must not apply it: a stolen job token could otherwise
// rotate every real checkpoint out with a few commits at huge steps.
TEST_F(GrpcAuthTest, AWritersCommitsDeleteNothingUntilAnAdminPrunes) {
  v1::SetRetentionPolicyRequest set;
  set.set_job(kAlice);
  set.mutable_policy()->set_max_to_keep(2);
  ASSERT_TRUE(As("tok-alice-admin").Call(&Stub::SetRetentionPolicy, set).ok());
  const RawCaller writer = As("tok-alice-writer");
  for (int64_t step : {int64_t{1} << 62, (int64_t{1} << 62) + 1, int64_t{3}}) {
    ASSERT_TRUE(writer.Save(kAlice, step, Bytes(step)).ok()) << step;
  }
  auto steps = [&] {
    v1::ListCheckpointsRequest list;
    list.set_job(kAlice);
    v1::ListCheckpointsResponse response;
    EXPECT_TRUE(As("tok-alice-reader")
                    .Call(&Stub::ListCheckpoints, list, &response)
                    .ok());
    std::vector<int64_t> result;
    for (const v1::CheckpointInfo& info : response.checkpoints()) {
      result.push_back(info.step());
    }
    return result;
  };
  EXPECT_THAT(steps(),
              ElementsAre(1, 2, 3, int64_t{1} << 62, (int64_t{1} << 62) + 1));
  // The admin's prune applies the stored policy (after a dry run shows it).
  v1::PruneCheckpointsRequest prune;
  prune.set_job(kAlice);
  ASSERT_TRUE(As("tok-alice-admin").Call(&Stub::PruneCheckpoints, prune).ok());
  EXPECT_THAT(steps(), ElementsAre(int64_t{1} << 62, (int64_t{1} << 62) + 1));
  // An admin's own commit applies it at once, as without authentication.
  ASSERT_TRUE(As("tok-alice-admin").Save(kAlice, int64_t{1} << 61, "x").ok());
  EXPECT_THAT(steps(), ElementsAre(int64_t{1} << 62, (int64_t{1} << 62) + 1));
}

TEST_F(GrpcAuthTest, ReaderReadsOnly) {
  const RawCaller reader = As("tok-alice-reader");
  const std::string before = State();
  ExpectCode(reader.Save(kAlice, 3, "x"), grpc::StatusCode::PERMISSION_DENIED,
             "BeginCheckpoint: principal 'alice-viewer' has role reader");
  ExpectCode(reader.Put(kAlice, {"x"}), grpc::StatusCode::PERMISSION_DENIED,
             "PutChunks");
  v1::FindMissingChunksRequest find;
  find.set_job(kAlice);
  find.add_sha256(std::string(Sha256(Bytes(1)).bytes()));
  ExpectCode(reader.Call(&Stub::FindMissingChunks, find),
             grpc::StatusCode::PERMISSION_DENIED, "FindMissingChunks");
  ExpectCode(reader.Commit(kAlice, 1, {}), grpc::StatusCode::PERMISSION_DENIED,
             "CommitShard");
  v1::PinCheckpointRequest pin;
  pin.set_job(kAlice);
  pin.set_step(1);
  pin.set_pinned(true);
  ExpectCode(reader.Call(&Stub::PinCheckpoint, pin),
             grpc::StatusCode::PERMISSION_DENIED, "needs role writer");
  EXPECT_EQ(State(), before);

  v1::GetManifestRequest get;
  get.set_job(kAlice);
  get.set_latest(true);
  v1::GetManifestResponse manifest;
  ASSERT_TRUE(reader.Call(&Stub::GetManifest, get, &manifest).ok());
  EXPECT_EQ(manifest.checkpoint().step(), 2);
  std::vector<v1::ReadChunksResponse> chunks;
  ASSERT_TRUE(reader.Read(kAlice, {Sha256(Bytes(2))}, &chunks).ok());
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].chunk().data(), Bytes(2));
}

TEST_F(GrpcAuthTest, GarbageCollectionIsTheOperatorsAlone) {
  ExpectCode(As("tok-alice-admin")
                 .Call(&Stub::CollectGarbage, v1::CollectGarbageRequest()),
             grpc::StatusCode::PERMISSION_DENIED, "needs role operator");
  v1::CollectGarbageResponse report;
  EXPECT_TRUE(
      As("tok-operator")
          .Call(&Stub::CollectGarbage, v1::CollectGarbageRequest(), &report)
          .ok());
  EXPECT_EQ(report.chunks_referenced(), 4u);
}

// ------------------------------------------------------------------ scope

TEST_F(GrpcAuthTest, AnotherTenantsJobIsRefusedAsIfAbsent) {
  const RawCaller bob = As("tok-bob-admin");
  const std::string before = State();
  // alice/model exists, alice/mod3l does not: the same answer, byte for byte.
  for (const char* job : {kAlice, "alice/mod3l"}) {
    v1::DeleteCheckpointRequest del;
    del.set_job(job);
    del.set_step(1);
    ExpectCode(bob.Call(&Stub::DeleteCheckpoint, del),
               grpc::StatusCode::PERMISSION_DENIED,
               "DeleteCheckpoint: the job is outside the scope of principal "
               "'bob-admin' (bob/)");
    v1::ListCheckpointsRequest list;
    list.set_job(job);
    grpc::Status status = bob.Call(&Stub::ListCheckpoints, list);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_EQ(status.error_message(),
              "ListCheckpoints: the job is outside the scope of principal "
              "'bob-admin' (bob/)");
    v1::ListEventsRequest events;
    events.set_job(job);
    ExpectCode(bob.Call(&Stub::ListEvents, events),
               grpc::StatusCode::PERMISSION_DENIED, "outside the scope");
    ExpectCode(bob.Save(job, 7, "planted"), grpc::StatusCode::PERMISSION_DENIED,
               "outside the scope");
    ExpectCode(bob.Put(job, {"planted"}), grpc::StatusCode::PERMISSION_DENIED,
               "PutChunks: the job is outside the scope");
    v1::ReportRestoreRequest restored;
    restored.set_job(job);
    restored.set_step(1);
    ExpectCode(bob.Call(&Stub::ReportRestore, restored),
               grpc::StatusCode::PERMISSION_DENIED,
               "ReportRestore: the job is outside the scope of principal "
               "'bob-admin' (bob/)");
    v1::ReportCopyRequest copied;
    copied.set_job(job);
    copied.set_step(1);
    ToProto(CopyPeer{"b:1", kBob, 1}, copied.mutable_destination());
    ExpectCode(bob.Call(&Stub::ReportCopy, copied),
               grpc::StatusCode::PERMISSION_DENIED,
               "ReportCopy: the job is outside the scope of principal "
               "'bob-admin' (bob/)");
  }
  EXPECT_EQ(State(), before);
}

TEST_F(GrpcAuthTest, APrefixScopeCoversItsJobsOnly) {
  const RawCaller exp = As("tok-alice-exp");
  EXPECT_TRUE(exp.Save("alice/exp1", 1, "e").ok());
  EXPECT_TRUE(exp.Save("alice/exp2/run", 1, "f").ok());
  ExpectCode(exp.Save(kAlice, 9, "g"), grpc::StatusCode::PERMISSION_DENIED,
             "(alice/exp)");
  v1::ListJobsResponse jobs;
  ASSERT_TRUE(exp.Call(&Stub::ListJobs, v1::ListJobsRequest(), &jobs).ok());
  std::vector<std::string> names;
  for (const auto& job : jobs.jobs()) names.push_back(job.name());
  EXPECT_THAT(names, ElementsAre("alice/exp1", "alice/exp2/run"));
}

TEST_F(GrpcAuthTest, ATenantDefaultNeedsAnAdminOverTheWholeTenant) {
  const std::string before = State();
  v1::SetRetentionPolicyRequest set;
  set.set_tenant("alice");
  set.mutable_policy()->set_max_to_keep(3);
  ExpectCode(As("tok-alice-writer").Call(&Stub::SetRetentionPolicy, set),
             grpc::StatusCode::PERMISSION_DENIED,
             "SetRetentionPolicy: principal 'alice-trainer' has role writer");
  ExpectCode(As("tok-alice-exp-admin").Call(&Stub::SetRetentionPolicy, set),
             grpc::StatusCode::PERMISSION_DENIED,
             "needs a scope covering the whole tenant");
  // Another tenant's, existing or not: the same answer, byte for byte.
  const grpc::Status to_alice =
      As("tok-bob-admin").Call(&Stub::SetRetentionPolicy, set);
  set.set_tenant("nobody");
  const grpc::Status to_nobody =
      As("tok-bob-admin").Call(&Stub::SetRetentionPolicy, set);
  EXPECT_EQ(to_alice.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(to_alice.error_message(), to_nobody.error_message());
  v1::GetRetentionPolicyRequest get;
  get.set_tenant("alice");
  ExpectCode(As("tok-bob-admin").Call(&Stub::GetRetentionPolicy, get),
             grpc::StatusCode::PERMISSION_DENIED, "may not read");
  // Hostile requests: refused, nothing stored.
  const RawCaller op = As("tok-operator");
  set.set_tenant("bad tenant");
  ExpectCode(op.Call(&Stub::SetRetentionPolicy, set),
             grpc::StatusCode::INVALID_ARGUMENT, "invalid tenant name");
  set.set_tenant("alice/x");
  ExpectCode(op.Call(&Stub::SetRetentionPolicy, set),
             grpc::StatusCode::INVALID_ARGUMENT, "invalid tenant name");
  set.set_tenant(std::string(100000, 'a'));
  ExpectCode(op.Call(&Stub::SetRetentionPolicy, set),
             grpc::StatusCode::INVALID_ARGUMENT, "invalid tenant name");
  set.set_tenant("alice");
  set.set_job(kAlice);
  ExpectCode(op.Call(&Stub::SetRetentionPolicy, set),
             grpc::StatusCode::INVALID_ARGUMENT, "not both");
  set.clear_job();
  set.set_clear(true);
  ExpectCode(op.Call(&Stub::SetRetentionPolicy, set),
             grpc::StatusCode::INVALID_ARGUMENT, "send it without one");
  set.set_clear(false);
  set.mutable_policy()->set_max_to_keep(0);
  ExpectCode(op.Call(&Stub::SetRetentionPolicy, set),
             grpc::StatusCode::INVALID_ARGUMENT, "max_to_keep");
  get.set_tenant("");
  get.set_job("");
  ExpectCode(op.Call(&Stub::GetRetentionPolicy, get),
             grpc::StatusCode::INVALID_ARGUMENT, "invalid job name");
  EXPECT_EQ(State(), before);

  // The tenant's admin sets it; the tenant's readers (a prefix scope too)
  // see it, as the default and on the jobs without a policy of their own.
  set.mutable_policy()->set_max_to_keep(3);
  ASSERT_TRUE(As("tok-alice-admin").Call(&Stub::SetRetentionPolicy, set).ok());
  get.set_tenant("alice");
  v1::GetRetentionPolicyResponse got;
  ASSERT_TRUE(
      As("tok-alice-exp").Call(&Stub::GetRetentionPolicy, get, &got).ok());
  EXPECT_EQ(got.policy().max_to_keep(), 3);
  EXPECT_EQ(got.origin().source(), v1::POLICY_SOURCE_TENANT_DEFAULT);
  EXPECT_EQ(got.origin().principal(), "alice-admin");
  EXPECT_GT(got.origin().time_micros(), 0);
  v1::ListJobsResponse jobs;
  ASSERT_TRUE(As("tok-alice-reader")
                  .Call(&Stub::ListJobs, v1::ListJobsRequest(), &jobs)
                  .ok());
  ASSERT_EQ(jobs.jobs_size(), 1);
  EXPECT_EQ(jobs.jobs(0).retention_policy().max_to_keep(), 3);
  EXPECT_EQ(jobs.jobs(0).policy_origin().source(),
            v1::POLICY_SOURCE_TENANT_DEFAULT);
  EXPECT_EQ(jobs.jobs(0).policy_origin().ignored_policy_digests_size(), 0);
  // Bob's jobs are untouched.
  get.set_tenant("bob");
  ASSERT_TRUE(op.Call(&Stub::GetRetentionPolicy, get, &got).ok());
  EXPECT_FALSE(got.has_policy());
}

TEST_F(GrpcAuthTest, ListingsStatsAndVerifyCoverTheCallersScope) {
  v1::ListJobsResponse jobs;
  ASSERT_TRUE(As("tok-bob-admin")
                  .Call(&Stub::ListJobs, v1::ListJobsRequest(), &jobs)
                  .ok());
  ASSERT_EQ(jobs.jobs_size(), 1);
  EXPECT_EQ(jobs.jobs(0).name(), kBob);

  v1::GetStatsResponse bob_stats;
  ASSERT_TRUE(As("tok-bob-admin")
                  .Call(&Stub::GetStats, v1::GetStatsRequest(), &bob_stats)
                  .ok());
  EXPECT_EQ(bob_stats.job_count(), 1);
  EXPECT_EQ(bob_stats.checkpoint_count(), 2);
  EXPECT_EQ(bob_stats.chunk_count(), 2u);
  ASSERT_EQ(bob_stats.tenants_size(), 1);
  EXPECT_EQ(bob_stats.tenants(0).tenant(), "bob");
  v1::GetStatsResponse all;
  ASSERT_TRUE(As("tok-operator")
                  .Call(&Stub::GetStats, v1::GetStatsRequest(), &all)
                  .ok());
  EXPECT_EQ(all.job_count(), 2);
  EXPECT_EQ(all.chunk_count(), 4u);
  EXPECT_EQ(all.tenants_size(), 2);

  v1::VerifyResponse report;
  ASSERT_TRUE(As("tok-alice-admin").Verify(v1::VerifyRequest(), &report).ok());
  EXPECT_EQ(report.report().checkpoints_checked(), 2);
  ASSERT_TRUE(As("tok-operator").Verify(v1::VerifyRequest(), &report).ok());
  EXPECT_EQ(report.report().checkpoints_checked(), 4);
}

// A copy (`ckpt copy`) reads its source as a reader and reports it there
// (ReportCopy, a reader's call), and writes its target as a writer, who may
// have it commit pinned.
TEST_F(GrpcAuthTest, CopiesNeedAReaderAtTheSourceAndAWriterAtTheTarget) {
  v1::ReportCopyRequest copied;
  copied.set_job(kAlice);
  copied.set_step(2);
  ToProto(CopyPeer{"b.example:7001", "alice/copy", 2},
          copied.mutable_destination());
  ASSERT_TRUE(As("tok-alice-reader").Call(&Stub::ReportCopy, copied).ok());

  v1::BeginCheckpointRequest begin;
  begin.set_job("alice/copy");
  begin.set_step(2);
  begin.set_world_size(1);
  ToProto(CopyPeer{"a.example:7000", kAlice, 2}, begin.mutable_copied_from());
  begin.set_pin(true);
  const std::string before = State();
  ExpectCode(As("tok-alice-reader").Call(&Stub::BeginCheckpoint, begin),
             grpc::StatusCode::PERMISSION_DENIED, "needs role writer");
  EXPECT_EQ(State(), before);
  const RawCaller writer = As("tok-alice-writer");
  ASSERT_TRUE(writer.Call(&Stub::BeginCheckpoint, begin).ok());
  ASSERT_TRUE(writer.Put("alice/copy", {"copied"}).ok());
  ASSERT_TRUE(
      writer.Commit("alice/copy", 2, {ChunkRef{Sha256("copied"), 6}}).ok());

  std::vector<std::string> got;
  for (const char* job : {kAlice, "alice/copy"}) {
    v1::ListEventsRequest request;
    request.set_job(job);
    v1::ListEventsResponse events;
    ASSERT_TRUE(
        As("tok-alice-reader").Call(&Stub::ListEvents, request, &events).ok());
    for (const v1::JobEvent& event : events.events()) {
      if (event.kind() == v1::EVENT_KIND_COMMITTED) continue;
      got.push_back(absl::StrCat(job, " ", v1::EventKind_Name(event.kind()),
                                 " ", event.principal(), " ", event.detail()));
    }
  }
  EXPECT_THAT(
      got, ElementsAre(
               "alice/model EVENT_KIND_COPIED alice-viewer to b.example:7001 "
               "alice/copy@2",
               "alice/copy EVENT_KIND_COPIED alice-trainer from a.example:7000 "
               "alice/model@2",
               "alice/copy EVENT_KIND_PINNED alice-trainer at commit"));
}

// -------------------------------------------------------------- principal

TEST_F(GrpcAuthTest, EventsNameThePrincipalBehindEachChange) {
  const RawCaller admin = As("tok-alice-admin");
  v1::PinCheckpointRequest pin;
  pin.set_job(kAlice);
  pin.set_step(2);
  pin.set_pinned(true);
  ASSERT_TRUE(As("tok-alice-writer").Call(&Stub::PinCheckpoint, pin).ok());
  pin.set_pinned(false);
  ASSERT_TRUE(admin.Call(&Stub::PinCheckpoint, pin).ok());
  v1::DeleteCheckpointRequest del;
  del.set_job(kAlice);
  del.set_step(1);
  ASSERT_TRUE(admin.Call(&Stub::DeleteCheckpoint, del).ok());
  v1::SetRetentionPolicyRequest policy;
  policy.set_job(kAlice);
  policy.mutable_policy()->set_max_to_keep(1);
  ASSERT_TRUE(admin.Call(&Stub::SetRetentionPolicy, policy).ok());
  ASSERT_TRUE(As("tok-alice-writer").Save(kAlice, 3, "three").ok());
  v1::PruneCheckpointsRequest prune;
  prune.set_job(kAlice);
  ASSERT_TRUE(admin.Call(&Stub::PruneCheckpoints, prune).ok());
  v1::GetManifestRequest get;
  get.set_job(kAlice);
  get.set_latest(true);
  get.set_restoring_rank(0);  // an older client's way
  ASSERT_TRUE(As("tok-alice-reader").Call(&Stub::GetManifest, get).ok());
  v1::ReportRestoreRequest restored;
  restored.set_job(kAlice);
  restored.set_step(3);
  restored.set_rank(1);
  ASSERT_TRUE(As("tok-alice-reader").Call(&Stub::ReportRestore, restored).ok());

  v1::ListEventsRequest request;
  request.set_job(kAlice);
  v1::ListEventsResponse events;
  ASSERT_TRUE(
      As("tok-alice-reader").Call(&Stub::ListEvents, request, &events).ok());
  std::vector<std::string> got;
  for (const v1::JobEvent& event : events.events()) {
    got.push_back(absl::StrCat(v1::EventKind_Name(event.kind()), " ",
                               event.has_step() ? event.step() : -1, " ",
                               event.principal()));
  }
  EXPECT_THAT(got, ElementsAre("EVENT_KIND_COMMITTED 1 alice-trainer",
                               "EVENT_KIND_COMMITTED 2 alice-trainer",
                               "EVENT_KIND_PINNED 2 alice-trainer",
                               "EVENT_KIND_UNPINNED 2 alice-admin",
                               "EVENT_KIND_DELETED 1 alice-admin",
                               "EVENT_KIND_POLICY_SET -1 alice-admin",
                               "EVENT_KIND_COMMITTED 3 alice-trainer",
                               // A writer's commit applies no retention:
                               // the admin's prune does.
                               "EVENT_KIND_PRUNED 2 alice-admin",
                               "EVENT_KIND_RESTORED 3 alice-viewer",
                               "EVENT_KIND_RESTORED 3 alice-viewer"));
}

}  // namespace
}  // namespace ckpt::server
