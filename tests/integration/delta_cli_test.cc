// Row deltas end to end: the real ckpt-server over RocksDB takes a delta
// checkpoint committed through the raw gRPC stub (as a client writing
// deltas does), and the real `ckpt` CLI shows it (ls, show, --json),
// refuses to delete its base and says why prune keeps it; and `ckpt put`
// saving row deltas (--delta-against, --dirty-rows) and quantized float32
// files (--quantize-bits) that `ckpt get` restores.
#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <tuple>
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
#include "tests/testing/real_server_test.h"

namespace ckpt::testing {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

constexpr char kJob[] = "it/delta";
// The tables `ckpt put --row-bytes` stores: kRows rows of kRowBytes.
constexpr int kRowBytes = 64;
constexpr int kRows = 1024;

// A .npy file (format 1.0) of little-endian int64 `values`, as
// numpy.save writes one: the header padded to 64 bytes.
std::string NpyInt64(const std::vector<uint64_t>& values) {
  std::string header =
      absl::StrCat("{'descr': '<i8', 'fortran_order': False, 'shape': (",
                   values.size(), ",), }");
  header.append(63 - (10 + header.size()) % 64, ' ');
  header += '\n';
  std::string npy = absl::StrCat("\x93NUMPY\x01", std::string(1, '\0'));
  npy += static_cast<char>(header.size() & 0xff);
  npy += static_cast<char>(header.size() >> 8);
  npy += header;
  for (const uint64_t value : values) {
    for (int byte = 0; byte < 8; ++byte) {
      npy += static_cast<char>((value >> (8 * byte)) & 0xff);
    }
  }
  return npy;
}

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

  // A table of pseudo-random bytes.
  static std::string Table() {
    std::string table(size_t{kRows} * kRowBytes, '\0');
    for (size_t i = 0; i < table.size(); ++i) {
      table[i] = static_cast<char>((i * 2654435761u) >> 13);
    }
    return table;
  }

  static void WriteFile(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary) << bytes;
  }

  // Runs the CLI with `args`, expecting success and JSON on stdout.
  json CkptJson(const std::string& args) {
    CommandResult result = Ckpt(absl::StrCat(args, " --json"));
    EXPECT_EQ(result.exit_code, 0) << result.err;
    return json::parse(result.out, nullptr, /*allow_exceptions=*/false);
  }

  // The stored bytes of tensor `name` in `step`, from `show --json`.
  json StoredBytes(int step, const std::string& name) {
    const json shown = CkptJson(absl::StrCat("show ", kJob, " ", step));
    for (const json& tensor : shown["shards"][0]["tensors"]) {
      if (tensor["name"] == name) return tensor["stored_bytes"];
    }
    return nullptr;
  }

  // A row delta of n rows of row_bytes: a 32-byte header, 4-byte indices
  // and the rows.
  static int DeltaBytes(int n, int row_bytes = kRowBytes) {
    return 32 + n * (4 + row_bytes);
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
  std::string table = Table();
  const std::string path = dir_->path() + "/table.bin";
  const std::string other = dir_->path() + "/notes.bin";
  WriteFile(path, table);
  auto put = [&](int step) {
    return absl::StrCat("put ", kJob, " ", step, " ", path, " --row-bytes ",
                        kRowBytes);
  };
  json first = CkptJson(put(1));
  EXPECT_EQ(first["deltas"], json::array());

  for (int row : {3, 500, 1023}) table[row * kRowBytes + 7] ^= 0x5a;
  WriteFile(path, table);
  WriteFile(other, std::string(kRowBytes, 'n'));  // step 1 has no notes.bin
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
  // With them the row fingerprints stored: the delta's 3 rows (a 32-byte
  // header, 4-byte indices, 16 bytes a row) and notes.bin's one row.
  const json listed = CkptJson(absl::StrCat("ls ", kJob));
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[1]["bytes_added"],
            32 + 3 * (4 + kRowBytes) + 64 + (32 + 3 * 20) + (32 + 16));

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

  // The text output says which files were deltas and which the base lacks.
  const std::string extra = dir_->path() + "/extra.bin";
  WriteFile(extra, std::string(kRowBytes, 'x'));
  CommandResult text =
      Ckpt(absl::StrCat(put(4), " ", extra, " --delta-against 2"));
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("table.bin: delta against step 2, 0 of "));
  EXPECT_THAT(text.out,
              HasSubstr("extra.bin: saved in full (step 2 has no tensor "
                        "'extra.bin' of this dtype and shape)"));
}

// `ckpt put --dirty-rows NAME=ROWS` stores exactly the rows given (sorted,
// without repeats) and trusts them: the base is not read back, so a changed
// row left out restores the base's bytes.
TEST_F(DeltaCliTest, PutDirtyRowsStoresExactlyTheGivenRows) {
  std::string table = Table();
  const std::string path = dir_->path() + "/table.bin";
  const std::string side = dir_->path() + "/side.bin";
  auto change_row = [&](int row) { table[row * kRowBytes + 5] ^= 0x3c; };
  auto put = [&](int step) {
    return absl::StrCat("put ", kJob, " ", step, " ", path, " ", side,
                        " --row-bytes ", kRowBytes);
  };
  WriteFile(path, table);
  WriteFile(side, std::string(size_t{4} * kRowBytes, 's'));
  ASSERT_EQ(CkptJson(put(1))["deltas"], json::array());

  for (int row : {3, 500, 501}) change_row(row);
  WriteFile(path, table);
  const json second = CkptJson(absl::StrCat(
      put(2), " --delta-against 1 --dirty-rows table.bin=501,3,500-501,3"));
  ASSERT_EQ(second["deltas"].size(), 2u) << second.dump();
  EXPECT_EQ(second["deltas"][0]["name"], "table.bin");
  EXPECT_EQ(second["deltas"][0]["rows"], 3);
  EXPECT_EQ(second["deltas"][0]["rows_from"], "dirty-rows");
  EXPECT_EQ(second["deltas"][1]["name"], "side.bin");
  EXPECT_EQ(second["deltas"][1]["rows"], 0);
  EXPECT_EQ(second["deltas"][1]["rows_from"], "stored fingerprints");
  EXPECT_EQ(StoredBytes(2, "table.bin"), DeltaBytes(3));
  CommandResult got =
      Ckpt(absl::StrCat("get ", kJob, " 2 ", dir_->path(), "/two"));
  ASSERT_EQ(got.exit_code, 0) << got.err;
  EXPECT_TRUE(ReadWholeFile(dir_->path() + "/two/table.bin") == table);

  // Rows 10 and 20 change, only 10 is listed: row 20 comes back as step 2
  // had it, which fingerprints would have caught.
  std::string expected = table;
  change_row(10);
  change_row(20);
  expected.replace(size_t{10} * kRowBytes, kRowBytes, table,
                   size_t{10} * kRowBytes, kRowBytes);
  WriteFile(path, table);
  const json third = CkptJson(
      absl::StrCat(put(3), " --delta-against 2 --dirty-rows table.bin=10"));
  ASSERT_EQ(third["deltas"].size(), 2u) << third.dump();
  EXPECT_EQ(third["deltas"][0]["rows"], 1);
  EXPECT_EQ(StoredBytes(3, "table.bin"), DeltaBytes(1));
  got = Ckpt(absl::StrCat("get ", kJob, " 3 ", dir_->path(), "/three"));
  ASSERT_EQ(got.exit_code, 0) << got.err;
  const std::string restored = ReadWholeFile(dir_->path() + "/three/table.bin");
  EXPECT_TRUE(restored == expected);
  EXPECT_FALSE(restored == table);

  // An empty list: nothing changed.
  const json fourth = CkptJson(
      absl::StrCat(put(4), " --delta-against 3 --dirty-rows table.bin="));
  ASSERT_EQ(fourth["deltas"].size(), 2u) << fourth.dump();
  EXPECT_EQ(fourth["deltas"][0]["rows"], 0);
  EXPECT_EQ(StoredBytes(4, "table.bin"), DeltaBytes(0));

  // Wrong use is refused before anything is saved.
  const std::string base = absl::StrCat(put(5), " --delta-against 4");
  for (const std::string& args : {
           absl::StrCat(base, " --dirty-rows other.bin=1"),
           absl::StrCat(base, " --dirty-rows table.bin=1,x"),
           absl::StrCat(base, " --dirty-rows table.bin=1,,2"),
           absl::StrCat(base, " --dirty-rows table.bin=9-7"),
           absl::StrCat(base, " --dirty-rows table.bin=-1"),
           absl::StrCat(base, " --dirty-rows table.bin=5-"),
           absl::StrCat(base, " --dirty-rows table.bin"),
           absl::StrCat(base, " --dirty-rows table.bin=1024"),
           absl::StrCat(base, " --dirty-rows table.bin=1000-1024"),
           absl::StrCat(base,
                        " --dirty-rows table.bin=1 --dirty-rows "
                        "table.bin=2"),
           absl::StrCat(put(5), " --dirty-rows table.bin=1"),
       }) {
    CommandResult refused = Ckpt(args);
    EXPECT_NE(refused.exit_code, 0) << args;
    EXPECT_THAT(refused.err, HasSubstr("INVALID_ARGUMENT")) << args;
    EXPECT_THAT(refused.err, HasSubstr("--dirty-rows")) << args;
  }
  // Rows given for a file the base lacks cannot be a delta.
  const std::string fresh = dir_->path() + "/fresh.bin";
  WriteFile(fresh, std::string(kRowBytes, 'f'));
  CommandResult no_base =
      Ckpt(absl::StrCat(base, " ", fresh, " --dirty-rows fresh.bin=0"));
  EXPECT_NE(no_base.exit_code, 0);
  EXPECT_THAT(no_base.err, HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(no_base.err, HasSubstr("has no tensor 'fresh.bin'"));
  const json all = CkptJson(absl::StrCat("ls ", kJob, " --all"));
  EXPECT_EQ(all.size(), 4u) << all.dump();
}

// `ckpt put --dirty-rows NAME=@FILE` takes row lists too long for one
// argument (Linux allows 128 KiB): tens of thousands of rows of a 65,536-row
// table from a text file and from a .npy, each stored exactly and restored
// byte-identical. A bad file is refused, naming the file and the place,
// before anything is saved.
TEST_F(DeltaCliTest, PutDirtyRowsFromATextFileAndANpyFile) {
  constexpr int kWideRows = 65536;
  constexpr int kWideRowBytes = 16;
  std::string table(size_t{kWideRows} * kWideRowBytes, '\0');
  for (size_t i = 0; i < table.size(); ++i) {
    table[i] = static_cast<char>((i * 2654435761u) >> 11);
  }
  auto change_row = [&](uint64_t row) {
    table[row * kWideRowBytes + 3] ^= 0x5a;
  };
  const std::string path = dir_->path() + "/wide.bin";
  auto put = [&](int step) {
    return absl::StrCat("put ", kJob, " ", step, " ", path, " --row-bytes ",
                        kWideRowBytes, " --delta-against ", step - 1,
                        " --dirty-rows wide.bin=@");
  };
  auto expect_restores = [&](int step) {
    const std::string out = absl::StrCat(dir_->path(), "/restored", step);
    CommandResult got = Ckpt(absl::StrCat("get ", kJob, " ", step, " ", out));
    ASSERT_EQ(got.exit_code, 0) << got.err;
    EXPECT_TRUE(ReadWholeFile(out + "/wide.bin") == table) << step;
  };
  WriteFile(path, table);
  ASSERT_EQ(CkptJson(absl::StrCat("put ", kJob, " 1 ", path, " --row-bytes ",
                                  kWideRowBytes))["deltas"],
            json::array());

  // Text: 30,000 single rows (every other row below 60,000; about 180 KB
  // as an inline list), ranges that overlap them and each other, comments,
  // blank lines and CRLF line ends: 35,000 rows.
  std::string text = "# rows changed since step 1\r\n\r\n";
  for (int row = 59998; row >= 0; row -= 2) {
    absl::StrAppend(&text, row, row % 7 == 0 ? "\r\n" : "\n");
    change_row(row);
  }
  absl::StrAppend(&text, "  60000-63999  \n63000-64999\n# done\n64999");
  for (int row = 60000; row < 65000; ++row) change_row(row);
  const std::string rows_txt = dir_->path() + "/rows.txt";
  WriteFile(rows_txt, text);
  WriteFile(path, table);
  const json second = CkptJson(put(2) + rows_txt);
  ASSERT_EQ(second["deltas"].size(), 1u) << second.dump();
  EXPECT_EQ(second["deltas"][0]["rows"], 35000);
  EXPECT_EQ(second["deltas"][0]["total_rows"], kWideRows);
  EXPECT_EQ(second["deltas"][0]["rows_from"], "dirty-rows");
  EXPECT_EQ(StoredBytes(2, "wide.bin"), DeltaBytes(35000, kWideRowBytes));
  ASSERT_NO_FATAL_FAILURE(expect_restores(2));

  // .npy: 40,000 distinct rows (i * 7919 mod 65536 is one-to-one), in that
  // scattered order as little-endian int64, the first 100 twice.
  std::vector<uint64_t> npy_rows;
  for (uint64_t i = 0; i < 40000; ++i) npy_rows.push_back(i * 7919 % 65536);
  npy_rows.insert(npy_rows.end(), npy_rows.begin(), npy_rows.begin() + 100);
  for (size_t i = 0; i < 40000; ++i) change_row(npy_rows[i]);
  const std::string rows_npy = dir_->path() + "/rows.npy";
  WriteFile(rows_npy, NpyInt64(npy_rows));
  WriteFile(path, table);
  const json third = CkptJson(put(3) + rows_npy);
  ASSERT_EQ(third["deltas"].size(), 1u) << third.dump();
  EXPECT_EQ(third["deltas"][0]["rows"], 40000);
  EXPECT_EQ(third["deltas"][0]["rows_from"], "dirty-rows");
  EXPECT_EQ(StoredBytes(3, "wide.bin"), DeltaBytes(40000, kWideRowBytes));
  ASSERT_NO_FATAL_FAILURE(expect_restores(3));

  // Refused before anything is saved, naming the file and where in it.
  const std::string missing = dir_->path() + "/missing.txt";
  const std::string bad_txt = dir_->path() + "/bad.txt";
  const std::string far_txt = dir_->path() + "/far.txt";
  const std::string far_npy = dir_->path() + "/far.npy";
  const std::string neg_npy = dir_->path() + "/neg.npy";
  const std::string cut_npy = dir_->path() + "/cut.npy";
  WriteFile(bad_txt, "12\n# fine\nx7\n13\n");
  WriteFile(far_txt, "0\n65530-65536\n");
  WriteFile(far_npy, NpyInt64({3, 70000}));
  WriteFile(neg_npy, NpyInt64({3, static_cast<uint64_t>(-2)}));
  const std::string whole = NpyInt64({1, 2, 3});
  WriteFile(cut_npy, whole.substr(0, whole.size() - 1));
  const std::string prefix = "--dirty-rows wide.bin: ";
  for (const auto& [file, code, message] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {missing, "NOT_FOUND",
            absl::StrCat(prefix, "cannot open '", missing,
                         "': No such file or directory")},
           {bad_txt, "INVALID_ARGUMENT",
            absl::StrCat(prefix, "'", bad_txt,
                         "' line 3: 'x7' is not a row index or an ascending "
                         "range A-B")},
           {far_txt, "INVALID_ARGUMENT",
            absl::StrCat(prefix, "'", far_txt,
                         "' line 2: row 65536 is past its last row (it has "
                         "65536 rows)")},
           {far_npy, "INVALID_ARGUMENT",
            absl::StrCat(prefix, "'", far_npy,
                         "' element 1 (from 0): row 70000 is past its last "
                         "row (it has 65536 rows)")},
           {neg_npy, "INVALID_ARGUMENT",
            absl::StrCat(prefix, "'", neg_npy,
                         "' element 1 (from 0): -2 is negative, not a row "
                         "index")},
           {cut_npy, "INVALID_ARGUMENT",
            absl::StrCat(prefix, "'", cut_npy,
                         "': it ends after 23 of the 24 data bytes its .npy "
                         "header gives (truncated)")},
           {dir_->path(), "INVALID_ARGUMENT",
            absl::StrCat(prefix, "'", dir_->path(),
                         "': it is a directory, not a file of rows")},
           {"", "INVALID_ARGUMENT",
            absl::StrCat(prefix, "'@' names no file (NAME=@FILE)")},
       }) {
    CommandResult refused = Ckpt(put(4) + file);
    EXPECT_NE(refused.exit_code, 0) << file;
    EXPECT_EQ(refused.err, absl::StrCat("ckpt: ", code, ": ", message, "\n"))
        << file;
  }
  const json all = CkptJson(absl::StrCat("ls ", kJob, " --all"));
  EXPECT_EQ(all.size(), 3u) << all.dump();
}

// `ckpt put --quantize-bits 4` stores float32 files quantized, records the
// width and error, and `ckpt get` writes values within that error.
TEST_F(DeltaCliTest, PutQuantizeBitsAndGetTheDequantizedValues) {
  constexpr int kCols = kRowBytes / 4;
  std::vector<float> values(size_t{kRows} * kCols);
  for (size_t i = 0; i < values.size(); ++i) {
    values[i] = static_cast<float>(std::sin(0.37 * i) * (1 + i % kCols));
  }
  std::string bytes(values.size() * sizeof(float), '\0');
  std::memcpy(bytes.data(), values.data(), bytes.size());  // little-endian
  const std::string path = dir_->path() + "/emb.f32";
  WriteFile(path, bytes);

  const json put =
      CkptJson(absl::StrCat("put ", kJob, " 1 ", path, " --row-bytes ",
                            kRowBytes, " --quantize-bits 4"));
  ASSERT_EQ(put["quantized"].size(), 1u) << put.dump();
  EXPECT_EQ(put["quantized"][0]["name"], "emb.f32");
  EXPECT_EQ(put["quantized"][0]["bits"], 4);
  const json shown = CkptJson(absl::StrCat("show ", kJob, " 1"));
  const json& tensor = shown["shards"][0]["tensors"][0];
  EXPECT_EQ(tensor["dtype"], "float32");
  EXPECT_EQ(tensor["global_shape"], json::array({kRows, kCols}));
  ASSERT_EQ(tensor["quantization"]["bits"], 4) << shown.dump();
  const double max_abs_error = tensor["quantization"]["max_abs_error"];
  EXPECT_EQ(put["quantized"][0]["max_abs_error"], max_abs_error);
  EXPECT_GT(max_abs_error, 0);

  CommandResult got =
      Ckpt(absl::StrCat("get ", kJob, " 1 ", dir_->path(), "/restored"));
  ASSERT_EQ(got.exit_code, 0) << got.err;
  const std::string restored =
      ReadWholeFile(dir_->path() + "/restored/emb.f32");
  ASSERT_EQ(restored.size(), bytes.size());
  std::vector<float> dequantized(values.size());
  std::memcpy(dequantized.data(), restored.data(), restored.size());
  for (size_t i = 0; i < values.size(); ++i) {
    ASSERT_LE(std::abs(static_cast<double>(dequantized[i]) - values[i]),
              max_abs_error)
        << i;
  }
  EXPECT_FALSE(restored == bytes);  // lossy at 4 bits

  // Without --row-bytes the file is one row.
  const json flat =
      CkptJson(absl::StrCat("put ", kJob, " 2 ", path, " --quantize-bits 8"));
  EXPECT_EQ(flat["quantized"][0]["bits"], 8);
  EXPECT_EQ(
      CkptJson(absl::StrCat("show ", kJob,
                            " 2"))["shards"][0]["tensors"][0]["global_shape"],
      json::array({kRows * kCols}));

  // Wrong use is refused before anything is saved.
  const std::string odd = dir_->path() + "/odd.f32";
  WriteFile(odd, std::string(30, '\0'));
  const std::string put3 = absl::StrCat("put ", kJob, " 3 ");
  for (const auto& [args, message] :
       std::vector<std::pair<std::string, std::string>>{
           {absl::StrCat(put3, path, " --quantize-bits 5"), "2, 3, 4 or 8"},
           {absl::StrCat(put3, path, " --quantize-bits 0"), "2, 3, 4 or 8"},
           {absl::StrCat(put3, odd, " --quantize-bits 4"), "multiple of 4"},
           {absl::StrCat(put3, path, " --row-bytes 6 --quantize-bits 4"),
            "multiple of 4"},
           {absl::StrCat(put3, path, " --row-bytes ", kRowBytes,
                         " --quantize-bits 4 --delta-against 1"),
            "--delta-against"},
       }) {
    CommandResult refused = Ckpt(args);
    EXPECT_NE(refused.exit_code, 0) << args;
    EXPECT_THAT(refused.err, HasSubstr("INVALID_ARGUMENT")) << args;
    EXPECT_THAT(refused.err, HasSubstr(message)) << args;
  }
  EXPECT_EQ(CkptJson(absl::StrCat("ls ", kJob, " --all")).size(), 2u);
}

}  // namespace
}  // namespace ckpt::testing
