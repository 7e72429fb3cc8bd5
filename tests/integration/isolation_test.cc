// Tenant isolation against the real ckpt-server binary (RocksDB on disk):
// tenant B (a valid admin token scoped to bob/) probes tenant A's data over
// every RPC, more than 10,000 times: A's real job names against names that
// do not exist (same length), A's real chunk digests against random ones,
// A's real steps against guessed ones. Each probe of A's real thing is
// paired with one of a thing that does not exist, and the two answers must
// match: the same status code, the same message (digests and numbers
// aside, of the same length), the same response size. B sees A's chunks as
// missing, cannot read them, cannot commit a manifest naming them, and can
// reference one only after uploading its full bytes. Nothing of A changes.

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ckpt/v1/ckpt.grpc.pb.h"
#include "common/sha256.h"
#include "common/wire_format.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "gtest/gtest.h"
#include "tests/testing/raw_calls.h"
#include "tests/testing/server_process.h"
#include "tests/testing/temp_dir.h"

namespace ckpt::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Stub = v1::CheckpointService::Stub;

constexpr char kAliceToken[] = "tok-alice-admin-5d1e";
constexpr char kBobToken[] = "tok-bob-admin-09ac";
constexpr char kBobJob[] = "bob/probe";
constexpr int kChunksPerCheckpoint = 160;
constexpr size_t kChunkBytes = 200;
const int64_t kAliceSteps[] = {100, 200};

// What a probe got back.
struct Answer {
  grpc::StatusCode code = grpc::StatusCode::OK;
  std::string message;
  size_t bytes = 0;  // serialized size of every response message
};

template <typename Response>
Answer AnswerOf(const grpc::Status& status, const Response& response) {
  return Answer{status.error_code(), status.error_message(),
                response.ByteSizeLong()};
}

// The message with digests (full or short hex) and numbers blanked.
std::string Normalized(const std::string& message) {
  static const std::regex hex("[0-9a-f]{8,64}");
  static const std::regex number("[0-9]+");
  return std::regex_replace(std::regex_replace(message, hex, "<hex>"), number,
                            "#");
}

std::string Random(std::mt19937& rng, size_t size) {
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(rng() & 0xff);
  return bytes;
}

// A name of the same length as `real` that no tenant uses, in `tenant`.
std::string FakeName(std::mt19937& rng, const std::string& real,
                     const std::string& tenant) {
  std::string name = tenant + "/";
  while (name.size() < real.size()) name += static_cast<char>('a' + rng() % 26);
  return name;
}

enum class Rpc {
  kBegin,
  kFindMissing,
  kPut,
  kCommit,
  kAbort,
  kListCheckpoints,
  kGetManifestStep,
  kGetManifestLatest,
  kReportRestore,
  kReportCopy,
  kReadChunks,
  kReadChunksIntoFile,
  kDelete,
  kGetStats,
  kSetPolicy,
  kGetPolicy,
  kSetTenantDefault,  // the job's tenant's default policy
  kGetTenantDefault,
  kPin,
  kUnpin,
  kTag,
  kUntag,
  kPruneDryRun,
  kPrune,
  kVerify,
  kListEvents,
  kLast,
};

// The service's method each probe calls, so that a test can check that
// every method of the service descriptor is probed.
const char* MethodOf(Rpc rpc) {
  switch (rpc) {
    case Rpc::kBegin:
      return "BeginCheckpoint";
    case Rpc::kFindMissing:
      return "FindMissingChunks";
    case Rpc::kPut:
      return "PutChunks";
    case Rpc::kCommit:
      return "CommitShard";
    case Rpc::kAbort:
      return "AbortCheckpoint";
    case Rpc::kListCheckpoints:
      return "ListCheckpoints";
    case Rpc::kGetManifestStep:
    case Rpc::kGetManifestLatest:
      return "GetManifest";
    case Rpc::kReportRestore:
      return "ReportRestore";
    case Rpc::kReportCopy:
      return "ReportCopy";
    case Rpc::kReadChunks:
      return "ReadChunks";
    case Rpc::kReadChunksIntoFile:
      return "ReadChunksIntoFile";
    case Rpc::kDelete:
      return "DeleteCheckpoint";
    case Rpc::kGetStats:
      return "GetStats";
    case Rpc::kSetPolicy:
    case Rpc::kSetTenantDefault:
      return "SetRetentionPolicy";
    case Rpc::kGetPolicy:
    case Rpc::kGetTenantDefault:
      return "GetRetentionPolicy";
    case Rpc::kPin:
    case Rpc::kUnpin:
      return "PinCheckpoint";
    case Rpc::kTag:
    case Rpc::kUntag:
      return "SetCheckpointTags";
    case Rpc::kPruneDryRun:
    case Rpc::kPrune:
      return "PruneCheckpoints";
    case Rpc::kVerify:
      return "VerifyCheckpoints";
    case Rpc::kListEvents:
      return "ListEvents";
    case Rpc::kLast:
      break;
  }
  return "";
}

class IsolationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::Create("ckpt-isolation");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *std::move(dir);
    const std::string tokens = dir_->path() + "/tokens";
    WriteTokenFile(tokens, {{kAliceToken, "alice-admin", "admin", "alice/"},
                            {kBobToken, "bob-admin", "admin", "bob/"}});
    auto server =
        ServerProcess::Start(dir_->path() + "/db", {"--auth-tokens", tokens});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    stub_ = v1::CheckpointService::NewStub(grpc::CreateCustomChannel(
        server_->address(), grpc::InsecureChannelCredentials(), args));
  }

  void TearDown() override {
    if (server_ != nullptr) {
      absl::StatusOr<int> code = server_->Stop();
      ASSERT_TRUE(code.ok()) << code.status();
      EXPECT_EQ(*code, 0);
    }
  }

  RawCaller Alice() const { return RawCaller(stub_.get(), kAliceToken); }
  RawCaller Bob() const { return RawCaller(stub_.get(), kBobToken); }

  // A's jobs, listings, events and stats, as A sees them.
  std::string AliceState() const {
    std::string state;
    v1::ListJobsResponse jobs;
    EXPECT_TRUE(
        Alice().Call(&Stub::ListJobs, v1::ListJobsRequest(), &jobs).ok());
    absl::StrAppend(&state, jobs.ShortDebugString());
    for (const v1::JobInfo& job : jobs.jobs()) {
      v1::ListCheckpointsRequest list;
      list.set_job(job.name());
      list.set_include_uncommitted(true);
      v1::ListCheckpointsResponse checkpoints;
      EXPECT_TRUE(
          Alice().Call(&Stub::ListCheckpoints, list, &checkpoints).ok());
      v1::ListEventsRequest events_request;
      events_request.set_job(job.name());
      v1::ListEventsResponse events;
      EXPECT_TRUE(
          Alice().Call(&Stub::ListEvents, events_request, &events).ok());
      absl::StrAppend(&state, checkpoints.ShortDebugString(),
                      events.ShortDebugString());
    }
    v1::GetStatsResponse stats;
    EXPECT_TRUE(
        Alice().Call(&Stub::GetStats, v1::GetStatsRequest(), &stats).ok());
    v1::GetRetentionPolicyRequest tenant;
    tenant.set_tenant("alice");
    v1::GetRetentionPolicyResponse tenant_default;
    EXPECT_TRUE(
        Alice().Call(&Stub::GetRetentionPolicy, tenant, &tenant_default).ok());
    return absl::StrCat(state, stats.ShortDebugString(),
                        tenant_default.ShortDebugString());
  }

  // One call of `rpc` by B naming `job` (and `step`, `id` where it takes
  // them).
  Answer Probe(Rpc rpc, const std::string& job, int64_t step,
               const ChunkId& id) const {
    const RawCaller bob = Bob();
    const std::string raw_id(id.bytes());
    switch (rpc) {
      case Rpc::kBegin: {
        v1::BeginCheckpointRequest r;
        r.set_job(job);
        r.set_step(step);
        r.set_world_size(1);
        v1::BeginCheckpointResponse out;
        return AnswerOf(bob.Call(&Stub::BeginCheckpoint, r, &out), out);
      }
      case Rpc::kFindMissing: {
        v1::FindMissingChunksRequest r;
        r.set_job(job);
        r.add_sha256(raw_id);
        v1::FindMissingChunksResponse out;
        return AnswerOf(bob.Call(&Stub::FindMissingChunks, r, &out), out);
      }
      case Rpc::kPut: {
        v1::PutChunksResponse out;
        return AnswerOf(bob.Put(job, {"probe bytes"}, &out), out);
      }
      case Rpc::kCommit: {
        v1::CommitShardResponse out;
        return AnswerOf(
            bob.Commit(job, step, {ChunkRef{id, kChunkBytes}}, &out), out);
      }
      case Rpc::kAbort: {
        v1::AbortCheckpointRequest r;
        r.set_job(job);
        r.set_step(step);
        v1::AbortCheckpointResponse out;
        return AnswerOf(bob.Call(&Stub::AbortCheckpoint, r, &out), out);
      }
      case Rpc::kListCheckpoints: {
        v1::ListCheckpointsRequest r;
        r.set_job(job);
        r.set_include_uncommitted(true);
        r.set_with_unique_bytes(true);
        v1::ListCheckpointsResponse out;
        return AnswerOf(bob.Call(&Stub::ListCheckpoints, r, &out), out);
      }
      case Rpc::kGetManifestStep:
      case Rpc::kGetManifestLatest: {
        v1::GetManifestRequest r;
        r.set_job(job);
        if (rpc == Rpc::kGetManifestStep) {
          r.set_step(step);
        } else {
          r.set_latest(true);
        }
        r.set_restoring_rank(0);
        v1::GetManifestResponse out;
        return AnswerOf(bob.Call(&Stub::GetManifest, r, &out), out);
      }
      case Rpc::kReportRestore: {
        v1::ReportRestoreRequest r;
        r.set_job(job);
        r.set_step(step);
        r.set_rank(0);
        v1::ReportRestoreResponse out;
        return AnswerOf(bob.Call(&Stub::ReportRestore, r, &out), out);
      }
      case Rpc::kReportCopy: {
        v1::ReportCopyRequest r;
        r.set_job(job);
        r.set_step(step);
        ToProto(CopyPeer{"b:1", kBobJob, 1}, r.mutable_destination());
        v1::ReportCopyResponse out;
        return AnswerOf(bob.Call(&Stub::ReportCopy, r, &out), out);
      }
      case Rpc::kReadChunks: {
        std::vector<v1::ReadChunksResponse> chunks;
        Answer answer;
        grpc::Status status = bob.Read(job, {id}, &chunks);
        answer.code = status.error_code();
        answer.message = status.error_message();
        for (const auto& chunk : chunks) answer.bytes += chunk.ByteSizeLong();
        return answer;
      }
      case Rpc::kReadChunksIntoFile: {
        v1::ReadChunksIntoFileRequest r;
        r.set_job(job);
        v1::ChunkPlacement* placement = r.add_chunks();
        placement->set_sha256(raw_id);
        placement->set_size(kChunkBytes);
        placement->add_offsets(64);
        v1::ReadChunksIntoFileResponse out;
        return AnswerOf(bob.Call(&Stub::ReadChunksIntoFile, r, &out), out);
      }
      case Rpc::kDelete: {
        v1::DeleteCheckpointRequest r;
        r.set_job(job);
        r.set_step(step);
        v1::DeleteCheckpointResponse out;
        return AnswerOf(bob.Call(&Stub::DeleteCheckpoint, r, &out), out);
      }
      case Rpc::kGetStats: {
        v1::GetStatsRequest r;
        r.set_job(job);
        v1::GetStatsResponse out;
        return AnswerOf(bob.Call(&Stub::GetStats, r, &out), out);
      }
      case Rpc::kSetPolicy: {
        v1::SetRetentionPolicyRequest r;
        r.set_job(job);
        r.mutable_policy()->set_max_to_keep(1);
        v1::SetRetentionPolicyResponse out;
        return AnswerOf(bob.Call(&Stub::SetRetentionPolicy, r, &out), out);
      }
      case Rpc::kGetPolicy: {
        v1::GetRetentionPolicyRequest r;
        r.set_job(job);
        v1::GetRetentionPolicyResponse out;
        return AnswerOf(bob.Call(&Stub::GetRetentionPolicy, r, &out), out);
      }
      case Rpc::kSetTenantDefault: {
        v1::SetRetentionPolicyRequest r;
        r.set_tenant(job.substr(0, job.find('/')));
        r.mutable_policy()->set_max_to_keep(1);
        v1::SetRetentionPolicyResponse out;
        return AnswerOf(bob.Call(&Stub::SetRetentionPolicy, r, &out), out);
      }
      case Rpc::kGetTenantDefault: {
        v1::GetRetentionPolicyRequest r;
        r.set_tenant(job.substr(0, job.find('/')));
        v1::GetRetentionPolicyResponse out;
        return AnswerOf(bob.Call(&Stub::GetRetentionPolicy, r, &out), out);
      }
      case Rpc::kPin:
      case Rpc::kUnpin: {
        v1::PinCheckpointRequest r;
        r.set_job(job);
        r.set_step(step);
        r.set_pinned(rpc == Rpc::kPin);
        v1::PinCheckpointResponse out;
        return AnswerOf(bob.Call(&Stub::PinCheckpoint, r, &out), out);
      }
      case Rpc::kTag:
      case Rpc::kUntag: {
        v1::SetCheckpointTagsRequest r;
        r.set_job(job);
        r.set_step(step);
        if (rpc == Rpc::kTag) {
          (*r.mutable_set())["release"] = "v1";
        } else {
          r.add_remove("release");
        }
        v1::SetCheckpointTagsResponse out;
        return AnswerOf(bob.Call(&Stub::SetCheckpointTags, r, &out), out);
      }
      case Rpc::kPruneDryRun:
      case Rpc::kPrune: {
        v1::PruneCheckpointsRequest r;
        r.set_job(job);
        r.mutable_policy()->set_max_to_keep(1);
        r.set_dry_run(rpc == Rpc::kPruneDryRun);
        v1::PruneCheckpointsResponse out;
        return AnswerOf(bob.Call(&Stub::PruneCheckpoints, r, &out), out);
      }
      case Rpc::kVerify: {
        v1::VerifyRequest r;
        r.set_job(job);
        r.set_step(step);
        r.set_read_data(true);
        v1::VerifyResponse last;
        grpc::Status status = bob.Verify(r, &last);
        return AnswerOf(status, last);
      }
      case Rpc::kListEvents: {
        v1::ListEventsRequest r;
        r.set_job(job);
        v1::ListEventsResponse out;
        return AnswerOf(bob.Call(&Stub::ListEvents, r, &out), out);
      }
      case Rpc::kLast:
        break;
    }
    return Answer{grpc::StatusCode::INTERNAL, "no such probe", 0};
  }

  // The answers for A's real thing and for a thing that does not exist
  // must not differ. Counts both probes.
  void ExpectSame(const Answer& real, const Answer& fake,
                  const std::string& what) {
    probes_ += 2;
    EXPECT_EQ(real.code, fake.code)
        << what << ": " << real.message << " | " << fake.message;
    EXPECT_EQ(real.message.size(), fake.message.size())
        << what << ": " << real.message << " | " << fake.message;
    EXPECT_EQ(Normalized(real.message), Normalized(fake.message)) << what;
    EXPECT_EQ(real.bytes, fake.bytes) << what;
    EXPECT_THAT(real.message, Not(HasSubstr("alice"))) << what;
  }

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<Stub> stub_;
  int probes_ = 0;
};

// A new RPC must join the probes: this fails until it does.
TEST(IsolationCoverageTest, EveryRpcOfTheServiceIsProbed) {
  // Methods that name no job, each checked in TenantBLearnsNothingOfTenantA
  // (step 7) or needing the operator role B lacks: ListJobs (B's jobs
  // only), GetSharedFileEndpoint (a socket path, the same for every
  // tenant), CollectGarbage (the operator's only).
  std::set<std::string> covered = {"ListJobs", "GetSharedFileEndpoint",
                                   "CollectGarbage"};
  for (int r = 0; r < static_cast<int>(Rpc::kLast); ++r) {
    covered.insert(MethodOf(static_cast<Rpc>(r)));
  }
  const google::protobuf::ServiceDescriptor* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          v1::CheckpointService::service_full_name());
  ASSERT_NE(service, nullptr);
  std::set<std::string> methods;
  for (int i = 0; i < service->method_count(); ++i) {
    methods.insert(service->method(i)->name());
  }
  for (const std::string& method : methods) {
    EXPECT_TRUE(covered.contains(method))
        << method << " is not probed: add it to Rpc and Probe";
  }
  for (const std::string& name : covered) {
    EXPECT_TRUE(methods.contains(name)) << name << " is no method any more";
  }
}

TEST_F(IsolationTest, TenantBLearnsNothingOfTenantA) {
  std::mt19937 rng(20261202);
  // Tenant A: four jobs, two committed checkpoints each, 160 chunks each.
  const std::vector<std::string> alice_jobs = {
      "alice/llama-7b", "alice/resnet", "alice/secret-project", "alice/x1"};
  std::vector<std::string> alice_chunks;  // bytes
  std::vector<ChunkId> alice_ids;
  for (const std::string& job : alice_jobs) {
    for (int64_t step : kAliceSteps) {
      v1::BeginCheckpointRequest begin;
      begin.set_job(job);
      begin.set_step(step);
      begin.set_world_size(1);
      ASSERT_TRUE(Alice().Call(&Stub::BeginCheckpoint, begin).ok());
      std::vector<std::string> chunks;
      std::vector<ChunkRef> refs;
      for (int i = 0; i < kChunksPerCheckpoint; ++i) {
        chunks.push_back(Random(rng, kChunkBytes));
        refs.push_back(ChunkRef{Sha256(chunks.back()), kChunkBytes});
        alice_chunks.push_back(chunks.back());
        alice_ids.push_back(refs.back().id);
      }
      ASSERT_TRUE(Alice().Put(job, chunks).ok());
      ASSERT_TRUE(Alice().Commit(job, step, refs).ok());
    }
  }
  std::vector<ChunkId> random_ids;
  for (size_t i = 0; i < alice_ids.size(); ++i) {
    random_ids.push_back(Sha256(Random(rng, kChunkBytes)));
  }
  // Tenant A has a default policy too.
  v1::SetRetentionPolicyRequest tenant_default;
  tenant_default.set_tenant("alice");
  tenant_default.mutable_policy()->set_max_to_keep(50);
  ASSERT_TRUE(Alice().Call(&Stub::SetRetentionPolicy, tenant_default).ok());
  // Tenant B: a pending checkpoint to commit against.
  v1::BeginCheckpointRequest begin;
  begin.set_job(kBobJob);
  begin.set_step(1);
  begin.set_world_size(1);
  ASSERT_TRUE(Bob().Call(&Stub::BeginCheckpoint, begin).ok());
  const std::string alice_before = AliceState();

  // 1. A's job names against names nobody uses, of the same length (in A's
  // tenant and in a tenant that does not exist), over every RPC that names
  // a job, with A's real steps and guessed ones.
  for (const std::string& real : alice_jobs) {
    const std::string fakes[] = {FakeName(rng, real, "alice"),
                                 FakeName(rng, real, "carol")};
    for (int64_t step :
         {int64_t{100}, int64_t{200}, int64_t{150}, int64_t{300}, int64_t{0}}) {
      for (int r = 0; r < static_cast<int>(Rpc::kLast); ++r) {
        const Rpc rpc = static_cast<Rpc>(r);
        const Answer answer = Probe(rpc, real, step, alice_ids[0]);
        EXPECT_EQ(answer.code, grpc::StatusCode::PERMISSION_DENIED)
            << real << " rpc " << r << ": " << answer.message;
        for (const std::string& fake : fakes) {
          ExpectSame(
              answer, Probe(rpc, fake, step, alice_ids[0]),
              absl::StrCat(real, " vs ", fake, " rpc ", r, " step ", step));
        }
      }
    }
  }

  // 2. FindMissingChunks in B's own job: A's digests are missing for B,
  // exactly as random ones are. Batched.
  constexpr size_t kBatch = 256;
  for (size_t start = 0; start < alice_ids.size(); start += kBatch) {
    v1::FindMissingChunksRequest real_request, fake_request;
    real_request.set_job(kBobJob);
    fake_request.set_job(kBobJob);
    for (size_t i = start; i < std::min(start + kBatch, alice_ids.size());
         ++i) {
      real_request.add_sha256(std::string(alice_ids[i].bytes()));
      fake_request.add_sha256(std::string(random_ids[i].bytes()));
    }
    v1::FindMissingChunksResponse real_out, fake_out;
    const Answer real =
        AnswerOf(Bob().Call(&Stub::FindMissingChunks, real_request, &real_out),
                 real_out);
    const Answer fake =
        AnswerOf(Bob().Call(&Stub::FindMissingChunks, fake_request, &fake_out),
                 fake_out);
    EXPECT_EQ(real.code, grpc::StatusCode::OK) << real.message;
    EXPECT_EQ(real_out.missing_sha256_size(), real_request.sha256_size());
    ExpectSame(real, fake, "FindMissingChunks batch");
    probes_ += 2 * (real_request.sha256_size() - 1);
  }

  // 3. Reading A's chunks through B's job: NOT_FOUND, as for random ones.
  for (size_t i = 0; i < alice_ids.size(); ++i) {
    const Answer real = Probe(Rpc::kReadChunks, kBobJob, 1, alice_ids[i]);
    EXPECT_EQ(real.code, grpc::StatusCode::NOT_FOUND) << real.message;
    EXPECT_EQ(real.bytes, 0u);
    ExpectSame(real, Probe(Rpc::kReadChunks, kBobJob, 1, random_ids[i]),
               "ReadChunks");
  }

  // 4. A manifest naming A's chunks fails to commit, as one naming random
  // ones does.
  constexpr size_t kCommitBatch = 64;
  for (size_t start = 0; start < alice_ids.size(); start += kCommitBatch) {
    std::vector<ChunkRef> real_refs, fake_refs;
    for (size_t i = start; i < std::min(start + kCommitBatch, alice_ids.size());
         ++i) {
      real_refs.push_back(ChunkRef{alice_ids[i], kChunkBytes});
      fake_refs.push_back(ChunkRef{random_ids[i], kChunkBytes});
    }
    v1::CommitShardResponse real_out, fake_out;
    const Answer real =
        AnswerOf(Bob().Commit(kBobJob, 1, real_refs, &real_out), real_out);
    const Answer fake =
        AnswerOf(Bob().Commit(kBobJob, 1, fake_refs, &fake_out), fake_out);
    EXPECT_EQ(real.code, grpc::StatusCode::FAILED_PRECONDITION) << real.message;
    ExpectSame(real, fake, "CommitShard naming A's chunks");
    probes_ += 2 * (static_cast<int>(real_refs.size()) - 1);
  }

  // 5. Claiming A's digests for other bytes: the same hash mismatch as for
  // random digests.
  const std::string wrong = Random(rng, kChunkBytes);
  for (size_t i = 0; i < alice_ids.size(); ++i) {
    Answer answers[2];
    const ChunkId* claimed[2] = {&alice_ids[i], &random_ids[i]};
    for (int k = 0; k < 2; ++k) {
      v1::PutChunksRequest request;
      request.set_job(kBobJob);
      v1::ChunkData* chunk = request.add_chunks();
      chunk->set_sha256(std::string(claimed[k]->bytes()));
      chunk->set_data(wrong);
      grpc::ClientContext context;
      context.AddMetadata("authorization", absl::StrCat("Bearer ", kBobToken));
      v1::PutChunksResponse out;
      auto writer = stub_->PutChunks(&context, &out);
      writer->Write(request);
      writer->WritesDone();
      answers[k] = AnswerOf(writer->Finish(), out);
    }
    EXPECT_EQ(answers[0].code, grpc::StatusCode::INVALID_ARGUMENT);
    ExpectSame(answers[0], answers[1], "PutChunks claiming A's digest");
  }

  // 6. Uploading the full bytes of A's chunks stores them for B as new
  // (A's copies do not count), exactly as bytes nobody had; only then can
  // B's manifest name them, and B reads them back.
  std::vector<std::string> alice_sample(alice_chunks.begin(),
                                        alice_chunks.begin() + 64);
  std::vector<std::string> fresh;
  for (int i = 0; i < 64; ++i) fresh.push_back(Random(rng, kChunkBytes));
  v1::PutChunksResponse real_put, fresh_put;
  ASSERT_TRUE(Bob().Put(kBobJob, alice_sample, &real_put).ok());
  ASSERT_TRUE(Bob().Put(kBobJob, fresh, &fresh_put).ok());
  EXPECT_EQ(real_put.chunks_stored(), 64u);
  EXPECT_EQ(real_put.ShortDebugString(), fresh_put.ShortDebugString());
  probes_ += 128;
  std::vector<ChunkRef> uploaded;
  for (const std::string& bytes : alice_sample) {
    uploaded.push_back(ChunkRef{Sha256(bytes), kChunkBytes});
  }
  ASSERT_TRUE(Bob().Commit(kBobJob, 1, uploaded).ok());
  std::vector<v1::ReadChunksResponse> read;
  ASSERT_TRUE(Bob().Read(kBobJob, {uploaded[0].id}, &read).ok());
  ASSERT_EQ(read.size(), 1u);
  EXPECT_EQ(read[0].chunk().data(), alice_sample[0]);

  // 7. What B lists, counts and verifies without naming a job is B's only.
  v1::ListJobsResponse jobs;
  ASSERT_TRUE(Bob().Call(&Stub::ListJobs, v1::ListJobsRequest(), &jobs).ok());
  ASSERT_EQ(jobs.jobs_size(), 1);
  EXPECT_EQ(jobs.jobs(0).name(), kBobJob);
  v1::GetStatsResponse stats;
  ASSERT_TRUE(Bob().Call(&Stub::GetStats, v1::GetStatsRequest(), &stats).ok());
  EXPECT_THAT(stats.ShortDebugString(), Not(HasSubstr("alice")));
  EXPECT_EQ(stats.chunk_count(), 128u);  // B's own uploads
  v1::VerifyRequest verify;
  verify.set_read_data(true);
  v1::VerifyResponse report;
  ASSERT_TRUE(Bob().Verify(verify, &report).ok());
  EXPECT_EQ(report.report().checkpoints_checked(), 1);
  EXPECT_EQ(report.report().chunks_read(), 64u);

  // Nothing of A changed, and A's chunks are A's still.
  EXPECT_EQ(AliceState(), alice_before);
  std::vector<v1::ReadChunksResponse> alice_read;
  ASSERT_TRUE(
      Alice().Read(alice_jobs[3], {alice_ids.back()}, &alice_read).ok());
  EXPECT_EQ(probes_ >= 10000, true) << probes_ << " probes";
  RecordProperty("probes", probes_);
  std::cout << "isolation probes: " << probes_ << std::endl;
}

}  // namespace
}  // namespace ckpt::testing
