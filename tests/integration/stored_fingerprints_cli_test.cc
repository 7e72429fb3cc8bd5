// Stored row fingerprints end to end: the real `ckpt` CLI against a real
// ckpt-server over RocksDB. `ckpt put --delta-against` reads the base's
// stored fingerprints (16 bytes a row) instead of its rows, counted both by
// put's --json and by the server's ckpt_sent_bytes_total; a base without
// them is read back; GC keeps the records of kept checkpoints only; verify
// sees a damaged or missing record, and a delta against it is refused.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "ckpt/v1/ckpt.grpc.pb.h"
#include "common/manifest.h"
#include "common/sha256.h"
#include "common/wire_format.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/storage/rocksdb_store.h"
#include "tests/testing/flip_on_disk.h"
#include "tests/testing/logfmt.h"
#include "tests/testing/metrics_scrape.h"
#include "tests/testing/raw_calls.h"
#include "tests/testing/real_server_test.h"

namespace ckpt::testing {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kJob[] = "it/fp";
constexpr char kFile[] = "table.bin";

// Encoded sizes of a CKFP record (common/fingerprint_record.h): a 32-byte
// header, then 16 bytes a row (dense) or a 4-byte index and 16 bytes a row
// (sparse, fewer than 2^32 rows).
uint64_t DenseRecord(uint64_t rows) { return 32 + 16 * rows; }
uint64_t SparseRecord(uint64_t rows) { return 32 + 20 * rows; }

std::string RandomTable(size_t bytes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string table(bytes, '\0');
  for (size_t i = 0; i + 8 <= bytes; i += 8) {
    const uint64_t word = rng();
    std::memcpy(table.data() + i, &word, 8);
  }
  return table;
}

// One row in every hundred, at scattered offsets: 1% of `rows`.
std::vector<uint64_t> ScatteredRows(uint64_t rows) {
  std::vector<uint64_t> changed;
  for (uint64_t k = 0; k < rows / 100; ++k) {
    changed.push_back(k * 100 + (k * 37) % 100);
  }
  return changed;
}

void ChangeRows(std::string& table, size_t row_bytes,
                const std::vector<uint64_t>& rows) {
  for (uint64_t row : rows) table[row * row_bytes + 7] ^= 0x5a;
}

class StoredFingerprintsCliTest : public RealServerTest {
 protected:
  // A server with its metrics endpoint, and no chunk hold (GC may collect
  // just-uploaded garbage at once).
  void StartWithMetrics() {
    const std::string log = dir_->path() + "/server.log";
    auto server = ServerProcess::Start(
        db_path(),
        {"--metrics-listen", "127.0.0.1:0", "--chunk-hold-seconds", "0",
         "--gc-interval", "0"},
        log);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    auto client = client::Client::Connect(server_->address(), {});
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
    metrics_port_ = 0;
    for (const LogLine& line : ParseLog(ReadWholeFile(log))) {
      if (line.count("event") == 0 || line.at("event") != "metrics_listening") {
        continue;
      }
      const std::string& address = line.at("address");
      ASSERT_TRUE(absl::SimpleAtoi(address.substr(address.rfind(':') + 1),
                                   &metrics_port_));
    }
    ASSERT_GT(metrics_port_, 0) << ReadWholeFile(log);
  }

  // Chunk bytes the server has read for clients of tenant "it".
  double SentBytes() {
    const double sent = Sample(Scrape(metrics_port_), "ckpt_sent_bytes_total",
                               {"tenant=\"it\""});
    return sent < 0 ? 0 : sent;  // no sample before the first read
  }

  std::string TablePath() const { return dir_->path() + "/" + kFile; }
  void WriteTable(const std::string& table) const {
    std::ofstream(TablePath(), std::ios::binary) << table;
  }

  // Puts a random table as step 1, then with rows 9 and 99 changed as a
  // delta at step 2; returns the table at step 2.
  std::string PutFullAndDelta(uint64_t rows, size_t row_bytes, uint64_t seed) {
    std::string table = RandomTable(rows * row_bytes, seed);
    WriteTable(table);
    Put(kJob, 1, row_bytes);
    ChangeRows(table, row_bytes, {9, 99});
    WriteTable(table);
    Put(kJob, 2, row_bytes, "--delta-against 1");
    return table;
  }

  json CkptJson(const std::string& args) {
    CommandResult result = Ckpt(absl::StrCat(args, " --json"));
    EXPECT_EQ(result.exit_code, 0) << args << ": " << result.err;
    return json::parse(result.out, nullptr, /*allow_exceptions=*/false);
  }

  // `ckpt put` of the table file as `step`, with `extra` flags.
  json Put(const std::string& job, int step, size_t row_bytes,
           const std::string& extra = "") {
    return CkptJson(absl::StrCat("put ", job, " ", step, " ", TablePath(),
                                 " --row-bytes ", row_bytes, " ", extra));
  }

  // `ckpt get` of (job, step) restores `table` byte for byte.
  void ExpectGetRestores(const std::string& job, int step,
                         const std::string& table) {
    const std::string out =
        absl::StrCat(dir_->path(), "/got-", step, "-", ++gets_);
    CommandResult got = Ckpt(absl::StrCat("get ", job, " ", step, " ", out));
    ASSERT_EQ(got.exit_code, 0) << got.err;
    const std::string restored = ReadWholeFile(out + "/" + kFile);
    EXPECT_EQ(restored.size(), table.size());
    EXPECT_TRUE(restored == table) << job << "@" << step << " differs";
  }

  // The table's manifest entry at (job, step).
  TensorEntry Entry(const std::string& job, int64_t step) {
    auto manifest = client_->GetManifest(job, step);
    EXPECT_TRUE(manifest.ok()) << manifest.status();
    if (!manifest.ok()) return {};
    return manifest->shards.at(0).tensors.at(0);
  }

  // The stored fingerprint record of `entry`, read as plain bytes.
  absl::StatusOr<std::string> Record(const std::string& job,
                                     const TensorEntry& entry) {
    TensorEntry bytes;
    bytes.name = "record";
    bytes.dtype = DType::kUint8;
    const int64_t size = static_cast<int64_t>(entry.FingerprintBytes());
    bytes.global_shape = {size};
    bytes.box = Box{{0}, {size}};
    bytes.pieces = entry.fingerprint_pieces;
    std::string out(static_cast<size_t>(size), '\0');
    absl::Status read = client_->ReadTensor(job, bytes, absl::MakeSpan(out));
    if (!read.ok()) return read;
    return out;
  }

  // A stateless delta of `table` against `base`: the rows changed, where
  // they came from and the base bytes read, as put --json reports them.
  void ExpectStatelessDelta(const json& put, uint64_t rows,
                            const std::string& rows_from,
                            uint64_t base_bytes_read) {
    ASSERT_EQ(put["deltas"].size(), 1u) << put.dump();
    const json& delta = put["deltas"][0];
    EXPECT_EQ(delta["rows"], rows) << put.dump();
    EXPECT_EQ(delta["rows_from"], rows_from) << put.dump();
    EXPECT_EQ(delta["base_bytes_read"], base_bytes_read) << put.dump();
    EXPECT_EQ(put["base_bytes_read"], base_bytes_read) << put.dump();
  }

  // The issue's measurement: a table of `rows` rows of `row_bytes`, 1% of
  // them changed, saved as a delta against its full save: reads only the
  // dense record (put's count and the server's agree), restores exactly.
  void DeltaOfOnePercent(uint64_t rows, size_t row_bytes) {
    std::string table = RandomTable(rows * row_bytes, rows);
    WriteTable(table);
    const json first = Put(kJob, 1, row_bytes);
    ASSERT_EQ(first["deltas"], json::array()) << first.dump();
    EXPECT_EQ(first["base_bytes_read"], 0);
    EXPECT_EQ(Entry(kJob, 1).FingerprintBytes(), DenseRecord(rows));

    const std::vector<uint64_t> changed = ScatteredRows(rows);
    ChangeRows(table, row_bytes, changed);
    WriteTable(table);
    const double sent_before = SentBytes();
    const json second = Put(kJob, 2, row_bytes, "--delta-against 1");
    const double server_sent = SentBytes() - sent_before;
    ASSERT_NO_FATAL_FAILURE(ExpectStatelessDelta(
        second, changed.size(), "stored fingerprints", DenseRecord(rows)));
    EXPECT_EQ(server_sent, static_cast<double>(DenseRecord(rows)))
        << "the server read other chunks for the put than the record";
    EXPECT_LE(server_sent, static_cast<double>(table.size() / 16 + (64 << 10)));
    EXPECT_EQ(Entry(kJob, 2).FingerprintBytes(), SparseRecord(changed.size()));
    ExpectGetRestores(kJob, 2, table);
  }

  int metrics_port_ = 0;
  int gets_ = 0;
};

// The issue's test: 64 MiB of 1 KiB rows, 1% changed: under 2 MiB read.
TEST_F(StoredFingerprintsCliTest, DeltaOf64MiBOfKiBRowsReadsUnder2MiB) {
  ASSERT_NO_FATAL_FAILURE(StartWithMetrics());
  ASSERT_NO_FATAL_FAILURE(DeltaOfOnePercent(65536, 1024));
  EXPECT_EQ(CkptJson(absl::StrCat("ls ", kJob)).size(), 2u);
  EXPECT_LT(DenseRecord(65536), uint64_t{2} << 20);
}

// 256-byte rows: the record is a 16th of the table (4 MiB of 64 MiB).
TEST_F(StoredFingerprintsCliTest, DeltaOf64MiBOf256ByteRowsReadsASixteenth) {
  ASSERT_NO_FATAL_FAILURE(StartWithMetrics());
  ASSERT_NO_FATAL_FAILURE(DeltaOfOnePercent(262144, 256));
}

// Full at 1, delta at 2, delta against 2 at 3: step 3's put reads the
// baseline's dense record and step 2's sparse one, nothing else.
TEST_F(StoredFingerprintsCliTest, DeltaAgainstADeltaReadsTheChainsRecords) {
  ASSERT_NO_FATAL_FAILURE(StartWithMetrics());
  constexpr uint64_t kRows = 4096;
  constexpr size_t kRowBytes = 256;
  std::string table = RandomTable(kRows * kRowBytes, 7);
  WriteTable(table);
  Put(kJob, 1, kRowBytes);

  const std::vector<uint64_t> second_rows = {0, 17, 900, 4095};
  ChangeRows(table, kRowBytes, second_rows);
  WriteTable(table);
  ASSERT_NO_FATAL_FAILURE(
      ExpectStatelessDelta(Put(kJob, 2, kRowBytes, "--delta-against 1"), 4,
                           "stored fingerprints", DenseRecord(kRows)));

  // Rows changed again (17) and new ones (18, 2000).
  ChangeRows(table, kRowBytes, {17, 18, 2000});
  WriteTable(table);
  const double sent_before = SentBytes();
  const json third = Put(kJob, 3, kRowBytes, "--delta-against 2");
  const uint64_t expected = DenseRecord(kRows) + SparseRecord(4);
  ASSERT_NO_FATAL_FAILURE(
      ExpectStatelessDelta(third, 3, "stored fingerprints", expected));
  EXPECT_EQ(SentBytes() - sent_before, static_cast<double>(expected));
  EXPECT_EQ(Entry(kJob, 3).FingerprintBytes(), SparseRecord(3));
  ExpectGetRestores(kJob, 3, table);
  ExpectGetRestores(kJob, 2, [&] {
    std::string at_two = table;
    ChangeRows(at_two, kRowBytes, {17, 18, 2000});  // undo step 3's changes
    return at_two;
  }());
}

// A base without stored fingerprints (--no-fingerprints, or written by a
// client before they existed) is read back whole, and the delta is right.
TEST_F(StoredFingerprintsCliTest, ABaseWithoutFingerprintsIsReadBack) {
  ASSERT_NO_FATAL_FAILURE(StartWithMetrics());
  constexpr uint64_t kRows = 2048;
  constexpr size_t kRowBytes = 128;
  std::string table = RandomTable(kRows * kRowBytes, 11);
  WriteTable(table);
  const json first = Put(kJob, 1, kRowBytes, "--no-fingerprints");
  EXPECT_FALSE(Entry(kJob, 1).HasStoredFingerprints());

  ChangeRows(table, kRowBytes, {5, 1000, 2047});
  WriteTable(table);
  double sent_before = SentBytes();
  const json second = Put(kJob, 2, kRowBytes, "--delta-against 1");
  ASSERT_NO_FATAL_FAILURE(
      ExpectStatelessDelta(second, 3, "read back", table.size()));
  EXPECT_EQ(SentBytes() - sent_before, static_cast<double>(table.size()));
  // Its own fingerprints are stored all the same (a sparse record), but
  // its chain's baseline has none, so a delta against it is read back too.
  EXPECT_EQ(Entry(kJob, 2).FingerprintBytes(), SparseRecord(3));
  ExpectGetRestores(kJob, 2, table);
  ChangeRows(table, kRowBytes, {6});
  WriteTable(table);
  ASSERT_NO_FATAL_FAILURE(
      ExpectStatelessDelta(Put(kJob, 3, kRowBytes, "--delta-against 2"), 1,
                           "read back", table.size()));
  ExpectGetRestores(kJob, 3, table);

  // An old-style save: committed through the raw API with no
  // fingerprint_pieces, as a client of before the field would.
  const char kOld[] = "it/old";
  auto stub = v1::CheckpointService::NewStub(grpc::CreateChannel(
      server_->address(), grpc::InsecureChannelCredentials()));
  const RawCaller raw(stub.get(), "");
  v1::BeginCheckpointRequest begin;
  begin.set_job(kOld);
  begin.set_step(1);
  begin.set_world_size(1);
  ASSERT_TRUE(raw.Call(&RawCaller::Stub::BeginCheckpoint, begin).ok());
  ASSERT_TRUE(raw.Put(kOld, {table}).ok());
  TensorEntry entry;
  entry.name = kFile;
  entry.dtype = DType::kUint8;
  entry.global_shape = {kRows, kRowBytes};
  entry.box = Box{{0, 0}, {kRows, kRowBytes}};
  entry.pieces = {ChunkRef{Sha256(table), table.size()}};
  ShardManifest shard;
  shard.tensors.push_back(std::move(entry));
  v1::CommitShardRequest commit;
  commit.set_job(kOld);
  commit.set_step(1);
  commit.set_world_size(1);
  ToProto(shard, commit.mutable_shard());
  grpc::Status committed = raw.Call(&RawCaller::Stub::CommitShard, commit);
  ASSERT_TRUE(committed.ok()) << committed.error_message();
  ChangeRows(table, kRowBytes, {0, 1});
  WriteTable(table);
  sent_before = SentBytes();
  ASSERT_NO_FATAL_FAILURE(
      ExpectStatelessDelta(Put(kOld, 2, kRowBytes, "--delta-against 1"), 2,
                           "read back", table.size()));
  EXPECT_EQ(SentBytes() - sent_before, static_cast<double>(table.size()));
  ExpectGetRestores(kOld, 2, table);
}

// A delta saved with --no-fingerprints breaks its chain's records: a delta
// against it, or against any later delta on that chain, reads the base
// back. put reports the base's size read back; the server sends the
// chain's stored bytes (the full baseline and each delta).
TEST_F(StoredFingerprintsCliTest,
       ADeltaWithoutFingerprintsInTheChainIsReadBack) {
  ASSERT_NO_FATAL_FAILURE(StartWithMetrics());
  constexpr uint64_t kRows = 1024;
  constexpr size_t kRowBytes = 64;
  std::string table = RandomTable(kRows * kRowBytes, 13);
  WriteTable(table);
  Put(kJob, 1, kRowBytes);
  ChangeRows(table, kRowBytes, {1, 2});
  WriteTable(table);
  ASSERT_NO_FATAL_FAILURE(ExpectStatelessDelta(
      Put(kJob, 2, kRowBytes, "--delta-against 1 --no-fingerprints"), 2,
      "stored fingerprints", DenseRecord(kRows)));
  EXPECT_FALSE(Entry(kJob, 2).HasStoredFingerprints());
  ChangeRows(table, kRowBytes, {2, 3});
  WriteTable(table);
  const double sent_before = SentBytes();
  ASSERT_NO_FATAL_FAILURE(
      ExpectStatelessDelta(Put(kJob, 3, kRowBytes, "--delta-against 2"), 2,
                           "read back", table.size()));
  const uint64_t step_two_delta = 32 + 2 * (4 + kRowBytes);
  EXPECT_EQ(SentBytes() - sent_before,
            static_cast<double>(table.size() + step_two_delta));
  EXPECT_EQ(Entry(kJob, 3).FingerprintBytes(), SparseRecord(2));
  ExpectGetRestores(kJob, 3, table);
  // Step 3 stored its fingerprints, but its chain still lacks step 2's.
  CommandResult text =
      Ckpt(absl::StrCat("put ", kJob, " 4 ", TablePath(), " --row-bytes ",
                        kRowBytes, " --delta-against 3"));
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("table.bin: delta against step 3, 0 of "
                                  "1024 rows (from the base's rows read "
                                  "back, 64.0 KiB read)"));
}

// GC keeps the records kept checkpoints reference (also when a deleted
// checkpoint shared them) and removes the others, with their bytes.
TEST_F(StoredFingerprintsCliTest, GcKeepsTheRecordsOfKeptCheckpointsOnly) {
  ASSERT_NO_FATAL_FAILURE(StartWithMetrics());
  constexpr uint64_t kRows = 1024;
  constexpr size_t kRowBytes = 256;
  const std::string table_a = RandomTable(kRows * kRowBytes, 21);
  std::string table_b = RandomTable(kRows * kRowBytes, 22);
  WriteTable(table_a);
  Put(kJob, 1, kRowBytes);
  Put(kJob, 2, kRowBytes);  // the same bytes: the same chunks and record
  WriteTable(table_b);
  Put(kJob, 3, kRowBytes);
  ChangeRows(table_b, kRowBytes, {1, 2, 3});
  WriteTable(table_b);
  Put(kJob, 4, kRowBytes, "--delta-against 3");
  const TensorEntry two = Entry(kJob, 2);
  ASSERT_EQ(Entry(kJob, 1).fingerprint_pieces, two.fingerprint_pieces);

  // The server's stats of stored chunks: their count and bytes.
  auto chunk_count = [&]() -> uint64_t {
    return CkptJson("stats")["chunk_count"].get<uint64_t>();
  };
  auto stored_bytes = [&]() -> uint64_t {
    return CkptJson("stats")["stored_bytes"].get<uint64_t>();
  };
  // Step 1 shares everything with step 2: nothing to collect.
  ASSERT_EQ(Ckpt(absl::StrCat("rm ", kJob, " 1")).exit_code, 0);
  const uint64_t chunks_before = chunk_count();
  const uint64_t bytes_before = stored_bytes();
  json gc = CkptJson("gc");
  EXPECT_EQ(gc["chunks_deleted"], 0) << gc.dump();
  EXPECT_EQ(chunk_count(), chunks_before);
  EXPECT_EQ(stored_bytes(), bytes_before);
  absl::StatusOr<std::string> record_two = Record(kJob, two);
  ASSERT_TRUE(record_two.ok()) << record_two.status();
  EXPECT_EQ(record_two->size(), DenseRecord(kRows));

  // A stateless delta against the kept step 2 still finds its record.
  std::string table_a5 = table_a;
  ChangeRows(table_a5, kRowBytes, {100});
  WriteTable(table_a5);
  ASSERT_NO_FATAL_FAILURE(
      ExpectStatelessDelta(Put(kJob, 5, kRowBytes, "--delta-against 2"), 1,
                           "stored fingerprints", DenseRecord(kRows)));
  ExpectGetRestores(kJob, 5, table_a5);

  // Steps 5 and 2 go: table A's chunks, its dense record, step 5's delta
  // and its sparse record are collected, exactly those bytes.
  ASSERT_EQ(Ckpt(absl::StrCat("rm ", kJob, " 5")).exit_code, 0);
  ASSERT_EQ(Ckpt(absl::StrCat("rm ", kJob, " 2")).exit_code, 0);
  uint64_t data_bytes = 0;
  for (const ChunkRef& piece : two.pieces) data_bytes += piece.size;
  ASSERT_EQ(data_bytes, table_a.size());
  const uint64_t delta_five = 32 + 1 * (4 + kRowBytes);
  const uint64_t expected_chunks = two.pieces.size() + 1 + 1 + 1;
  const uint64_t expected_bytes =
      table_a.size() + DenseRecord(kRows) + delta_five + SparseRecord(1);
  const uint64_t chunks_mid = chunk_count();
  const uint64_t bytes_mid = stored_bytes();
  gc = CkptJson("gc");
  EXPECT_EQ(gc["chunks_deleted"], expected_chunks) << gc.dump();
  EXPECT_EQ(gc["bytes_deleted"], expected_bytes) << gc.dump();
  EXPECT_EQ(chunk_count(), chunks_mid - expected_chunks);
  EXPECT_EQ(stored_bytes(), bytes_mid - expected_bytes);
  absl::StatusOr<std::string> gone = Record(kJob, two);
  EXPECT_FALSE(gone.ok()) << "step 2's record survived GC";

  // Steps 3 and 4 keep theirs: a delta against 4 reads both records.
  ChangeRows(table_b, kRowBytes, {500});
  WriteTable(table_b);
  ASSERT_NO_FATAL_FAILURE(ExpectStatelessDelta(
      Put(kJob, 6, kRowBytes, "--delta-against 4"), 1, "stored fingerprints",
      DenseRecord(kRows) + SparseRecord(3)));
  ExpectGetRestores(kJob, 6, table_b);
  CommandResult verify = Ckpt("verify --read-data");
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
}

// One byte of a stored record flipped on disk: verify --read-data names the
// chunk and its checkpoint, a delta against it is refused with DATA_LOSS,
// and the checkpoint's data still restores.
TEST_F(StoredFingerprintsCliTest, VerifyFindsACorruptRecordAndPutRefusesIt) {
  ASSERT_NO_FATAL_FAILURE(StartWithMetrics());
  constexpr uint64_t kRows = 4096;
  constexpr size_t kRowBytes = 256;
  std::string table = PutFullAndDelta(kRows, kRowBytes, 31);
  const std::string first_table = RandomTable(kRows * kRowBytes, 31);
  const TensorEntry one = Entry(kJob, 1);
  ASSERT_EQ(one.fingerprint_pieces.size(), 1u);
  const ChunkId record_id = one.fingerprint_pieces[0].id;
  absl::StatusOr<std::string> record = Record(kJob, one);
  ASSERT_TRUE(record.ok()) << record.status();

  ASSERT_NO_FATAL_FAILURE(StopServer());
  ASSERT_NO_FATAL_FAILURE(FlipTheOnlyCopy(db_path(), record->substr(1000, 64)));
  ASSERT_NO_FATAL_FAILURE(StartWithMetrics());

  CommandResult verify = Ckpt("verify --read-data");
  EXPECT_EQ(verify.exit_code, 1) << verify.out << verify.err;
  EXPECT_THAT(verify.out, HasSubstr(record_id.ShortHex()));
  EXPECT_THAT(verify.out, HasSubstr("corrupt"));
  EXPECT_THAT(verify.out, HasSubstr("it/fp@1"));
  EXPECT_THAT(verify.err, HasSubstr("1 damaged chunk(s)"));

  ChangeRows(table, kRowBytes, {300});
  WriteTable(table);
  for (int base : {1, 2}) {
    CommandResult put =
        Ckpt(absl::StrCat("put ", kJob, " 3 ", TablePath(), " --row-bytes ",
                          kRowBytes, " --delta-against ", base));
    EXPECT_NE(put.exit_code, 0) << "delta against " << base << ": " << put.out;
    EXPECT_THAT(put.err, HasSubstr("DATA_LOSS")) << put.err;
    EXPECT_THAT(put.err, HasSubstr(absl::StrCat("tensor 'table.bin' of "
                                                "checkpoint ",
                                                base)));
    EXPECT_THAT(put.err, HasSubstr(record_id.ShortHex()));
  }
  EXPECT_EQ(CkptJson(absl::StrCat("ls ", kJob, " --all")).size(), 2u)
      << "a refused put left a checkpoint";
  ExpectGetRestores(kJob, 1, first_table);
  ChangeRows(table, kRowBytes, {300});  // back to step 2's bytes
  ExpectGetRestores(kJob, 2, table);
}

// Step 2's sparse record deleted from the store: verify names it missing,
// a delta against step 2 is refused, and step 2 restores.
TEST_F(StoredFingerprintsCliTest, VerifyFindsAMissingRecordAndPutRefusesIt) {
  ASSERT_NO_FATAL_FAILURE(StartWithMetrics());
  constexpr uint64_t kRows = 1024;
  constexpr size_t kRowBytes = 256;
  std::string table = PutFullAndDelta(kRows, kRowBytes, 41);
  const TensorEntry two = Entry(kJob, 2);
  ASSERT_EQ(two.fingerprint_pieces.size(), 1u);
  const ChunkId record_id = two.fingerprint_pieces[0].id;

  ASSERT_NO_FATAL_FAILURE(StopServer());
  {
    auto store = server::RocksDbStore::Open(db_path());
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->Delete("it", record_id).ok());
  }
  ASSERT_NO_FATAL_FAILURE(StartWithMetrics());

  for (const char* flags : {"", " --read-data"}) {
    CommandResult verify = Ckpt(absl::StrCat("verify", flags));
    EXPECT_EQ(verify.exit_code, 1) << flags << verify.out << verify.err;
    EXPECT_THAT(verify.out, HasSubstr(record_id.ShortHex())) << flags;
    EXPECT_THAT(verify.out, HasSubstr("missing")) << flags;
    EXPECT_THAT(verify.out, HasSubstr("it/fp@2")) << flags;
    EXPECT_THAT(verify.out, Not(HasSubstr("it/fp@1"))) << flags;
  }

  ChangeRows(table, kRowBytes, {300});
  WriteTable(table);
  CommandResult put =
      Ckpt(absl::StrCat("put ", kJob, " 3 ", TablePath(), " --row-bytes ",
                        kRowBytes, " --delta-against 2"));
  EXPECT_NE(put.exit_code, 0) << put.out;
  EXPECT_THAT(put.err, HasSubstr("DATA_LOSS")) << put.err;
  EXPECT_THAT(put.err, HasSubstr("tensor 'table.bin' of checkpoint 2"));
  EXPECT_THAT(put.err, HasSubstr(record_id.ShortHex()));
  EXPECT_EQ(CkptJson(absl::StrCat("ls ", kJob, " --all")).size(), 2u);
  ChangeRows(table, kRowBytes, {300});
  ExpectGetRestores(kJob, 2, table);
}

}  // namespace
}  // namespace ckpt::testing
