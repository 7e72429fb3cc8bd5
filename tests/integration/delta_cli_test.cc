// Row deltas end to end: the real ckpt-server over RocksDB takes a delta
// checkpoint committed through the raw gRPC stub (as a client writing
// deltas does), and the real `ckpt` CLI shows it (ls, show, --json),
// refuses to delete its base and says why prune keeps it.
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ckpt/v1/ckpt.grpc.pb.h"
#include "common/manifest.h"
#include "common/row_delta.h"
#include "common/sha256.h"
#include "common/wire_format.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/real_server_test.h"

namespace ckpt::testing {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

constexpr char kJob[] = "it/delta";

class DeltaCliTest : public RealServerTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(RealServerTest::SetUp());
    ASSERT_NO_FATAL_FAILURE(StartServer());
    stub_ = v1::CheckpointService::NewStub(grpc::CreateChannel(
        server_->address(), grpc::InsecureChannelCredentials()));
  }

  // Saves `step` (one rank) holding `entry`, whose pieces are made of
  // `bytes`, uploaded for that step.
  void SaveRaw(int64_t step, TensorEntry entry, const std::string& bytes) {
    {
      v1::BeginCheckpointRequest request;
      request.set_job(kJob);
      request.set_step(step);
      request.set_world_size(1);
      v1::BeginCheckpointResponse response;
      grpc::ClientContext context;
      grpc::Status status =
          stub_->BeginCheckpoint(&context, request, &response);
      ASSERT_TRUE(status.ok()) << status.error_message();
    }
    {
      v1::PutChunksRequest request;
      request.set_job(kJob);
      request.set_step(step);
      v1::ChunkData* chunk = request.add_chunks();
      chunk->set_sha256(std::string(Sha256(bytes).bytes()));
      chunk->set_data(bytes);
      v1::PutChunksResponse response;
      grpc::ClientContext context;
      auto writer = stub_->PutChunks(&context, &response);
      writer->Write(request);
      writer->WritesDone();
      grpc::Status status = writer->Finish();
      ASSERT_TRUE(status.ok()) << status.error_message();
    }
    entry.pieces = {ChunkRef{Sha256(bytes), bytes.size()}};
    ShardManifest shard;
    shard.tensors.push_back(std::move(entry));
    v1::CommitShardRequest request;
    request.set_job(kJob);
    request.set_step(step);
    request.set_world_size(1);
    ToProto(shard, request.mutable_shard());
    v1::CommitShardResponse response;
    grpc::ClientContext context;
    grpc::Status status = stub_->CommitShard(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  // Runs the CLI with `args`, expecting success and JSON on stdout.
  json CkptJson(const std::string& args) {
    CommandResult result = Ckpt(absl::StrCat(args, " --json"));
    EXPECT_EQ(result.exit_code, 0) << result.err;
    return json::parse(result.out, nullptr, /*allow_exceptions=*/false);
  }

  std::unique_ptr<v1::CheckpointService::Stub> stub_;
};

TEST_F(DeltaCliTest, LsShowRmAndPruneExplainADeltaAndItsBase) {
  // float32 [4, 2]: 8-byte rows. Step 2 changes row 1 of step 1.
  TensorEntry entry;
  entry.name = "emb";
  entry.dtype = DType::kFloat32;
  entry.global_shape = {4, 2};
  entry.box = Box{{0, 0}, {4, 2}};
  const std::string full(32, 'a');
  ASSERT_NO_FATAL_FAILURE(SaveRaw(1, entry, full));
  const uint64_t changed[] = {1};
  absl::StatusOr<std::string> delta =
      EncodeRowDelta(std::string(32, 'b'), entry.RowBytes(), changed);
  ASSERT_TRUE(delta.ok()) << delta.status();
  entry.delta_base_step = 1;
  ASSERT_NO_FATAL_FAILURE(SaveRaw(2, entry, *delta));

  const json listed = CkptJson(absl::StrCat("ls ", kJob));
  ASSERT_TRUE(listed.is_array() && listed.size() == 2) << listed.dump();
  EXPECT_EQ(listed[0]["kind"], "full");
  EXPECT_TRUE(listed[0]["base_step"].is_null());
  EXPECT_EQ(listed[0]["base_steps"], json::array());
  EXPECT_EQ(listed[0]["bytes_added"], full.size());
  EXPECT_EQ(listed[1]["kind"], "delta");
  EXPECT_EQ(listed[1]["base_step"], 1);
  EXPECT_EQ(listed[1]["base_steps"], json::array({1}));
  EXPECT_EQ(listed[1]["bytes_added"], delta->size());

  const json shown = CkptJson(absl::StrCat("show ", kJob, " 2"));
  ASSERT_TRUE(shown.is_object()) << shown.dump();
  EXPECT_EQ(shown["kind"], "delta");
  const json& tensor = shown["shards"][0]["tensors"][0];
  EXPECT_EQ(tensor["delta"], true);
  EXPECT_EQ(tensor["base_step"], 1);
  EXPECT_EQ(tensor["bytes"], 32);
  EXPECT_EQ(tensor["stored_bytes"], delta->size());

  CommandResult table = Ckpt(absl::StrCat("ls ", kJob));
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, HasSubstr("KIND"));
  EXPECT_THAT(table.out, HasSubstr(" delta "));
  CommandResult show = Ckpt(absl::StrCat("show ", kJob, " 2"));
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr("kind delta (deltas against step(s) 1)"));
  EXPECT_THAT(show.out, HasSubstr("STORED"));

  CommandResult rm = Ckpt(absl::StrCat("rm ", kJob, " 1"));
  EXPECT_NE(rm.exit_code, 0);
  EXPECT_THAT(rm.err, HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(rm.err, HasSubstr("is the base of step 2"));

  CommandResult prune =
      Ckpt(absl::StrCat("prune ", kJob, " --keep-last 1 --dry-run"));
  ASSERT_EQ(prune.exit_code, 0) << prune.err;
  EXPECT_THAT(prune.out, HasSubstr("base of step 2"));
}

// `ckpt put --row-bytes N --delta-against S` finds the changed rows by
// reading step S back, stores only them, and `ckpt get` restores the file.
TEST_F(DeltaCliTest, PutDeltaAgainstAnOlderCheckpointAndGetItBack) {
  constexpr int kRowBytes = 64;
  constexpr int kRows = 1024;
  std::string table(kRows * kRowBytes, '\0');
  for (size_t i = 0; i < table.size(); ++i) {
    table[i] = static_cast<char>((i * 2654435761u) >> 13);
  }
  const std::string path = dir_->path() + "/table.bin";
  const std::string other = dir_->path() + "/notes.bin";
  auto write = [](const std::string& where, const std::string& bytes) {
    std::ofstream(where, std::ios::binary) << bytes;
  };
  write(path, table);
  auto put = [&](int step) {
    return absl::StrCat("put ", kJob, " ", step, " ", path, " --row-bytes ",
                        kRowBytes);
  };
  json first = CkptJson(put(1));
  EXPECT_EQ(first["deltas"], json::array());

  for (int row : {3, 500, 1023}) table[row * kRowBytes + 7] ^= 0x5a;
  write(path, table);
  write(other, std::string(kRowBytes, 'n'));  // step 1 has no notes.bin
  json second =
      CkptJson(absl::StrCat(put(2), " ", other, " --delta-against 1"));
  ASSERT_EQ(second["deltas"].size(), 1u) << second.dump();
  EXPECT_EQ(second["deltas"][0]["name"], "table.bin");
  EXPECT_EQ(second["deltas"][0]["base_step"], 1);
  EXPECT_EQ(second["deltas"][0]["rows"], 3);
  EXPECT_EQ(second["deltas"][0]["total_rows"], kRows);

  const json shown = CkptJson(absl::StrCat("show ", kJob, " 2"));
  EXPECT_EQ(shown["kind"], "delta");
  // 3 rows of 64 bytes, 4-byte indices, a 32-byte header; and notes.bin.
  const json listed = CkptJson(absl::StrCat("ls ", kJob));
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[1]["bytes_added"], 32 + 3 * (4 + kRowBytes) + 64);

  CommandResult got =
      Ckpt(absl::StrCat("get ", kJob, " 2 ", dir_->path(), "/restored"));
  ASSERT_EQ(got.exit_code, 0) << got.err;
  EXPECT_TRUE(ReadWholeFile(dir_->path() + "/restored/table.bin") == table);

  // Wrong use is refused before anything is saved.
  CommandResult no_rows =
      Ckpt(absl::StrCat("put ", kJob, " 3 ", path, " --delta-against 2"));
  EXPECT_NE(no_rows.exit_code, 0);
  EXPECT_THAT(no_rows.err, HasSubstr("--row-bytes"));
  CommandResult not_older = Ckpt(absl::StrCat(
      "put ", kJob, " 3 ", path, " --row-bytes 64 --delta-against 3"));
  EXPECT_NE(not_older.exit_code, 0);
  EXPECT_THAT(not_older.err, HasSubstr("older"));
  CommandResult ragged =
      Ckpt(absl::StrCat("put ", kJob, " 3 ", path, " --row-bytes 1000"));
  EXPECT_NE(ragged.exit_code, 0);
  EXPECT_THAT(ragged.err, HasSubstr("not a multiple"));
  EXPECT_EQ(CkptJson(absl::StrCat("ls ", kJob)).size(), 2u);
}

}  // namespace
}  // namespace ckpt::testing
