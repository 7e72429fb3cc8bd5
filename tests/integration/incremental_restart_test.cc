// Incremental saves across a restart, through the real ckpt-server binary:
// one IncrementalSaver saves and is destroyed (the process's memory of the
// fingerprints is gone), a fresh one restores with RestoreShardAndSeed, and
// its next SaveIncremental must be a delta on the right base, send about
// the changed rows only, and restore byte-identical; or, where seeding
// cannot be trusted (no stored fingerprints for an intermittent delta, a
// new layout, a quantized tensor, a corrupt stored record), a full save,
// never a wrong delta. One suite (past 600 lines) because every case needs
// the same real server, trainee and restart fixture.
#include <algorithm>
#include <cstring>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "client/incremental.h"
#include "client/transport.h"
#include "client/transport/grpc_transport.h"
#include "common/fingerprint_record.h"
#include "common/row_delta.h"
#include "common/row_fingerprint.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/real_server_test.h"

namespace ckpt::testing {
namespace {

using ::testing::HasSubstr;
using Kind = DeltaDecision::Kind;

constexpr int64_t kTableRows = 2000;
constexpr int64_t kTableCols = 64;  // float32: 256-byte rows
constexpr uint64_t kTableRowBytes = kTableCols * 4;
constexpr uint64_t kBiasBytes = kTableCols * 4;

// An embedding table whose rows training rewrites, and a 1-D bias (always
// saved in full) that changes at every step.
struct Trainee {
  std::string table = std::string(kTableRows * kTableRowBytes, '\0');
  std::string bias = std::string(kBiasBytes, '\0');
  std::mt19937_64 rng;

  explicit Trainee(uint64_t seed) : rng(seed) {
    Fill(table.data(), table.size());
    Fill(bias.data(), bias.size());
  }
  void Fill(char* data, size_t size) {
    for (size_t i = 0; i < size; ++i) data[i] = static_cast<char>(rng());
  }
  // Rewrites `count` distinct random rows not in `avoid` (random bytes:
  // every one of them differs afterwards) and the bias; returns the rows,
  // ascending.
  std::vector<uint64_t> Train(size_t count,
                              const std::vector<uint64_t>& avoid = {}) {
    std::vector<uint64_t> rows;
    for (uint64_t row = 0; row < static_cast<uint64_t>(kTableRows); ++row) {
      if (!std::binary_search(avoid.begin(), avoid.end(), row)) {
        rows.push_back(row);
      }
    }
    std::shuffle(rows.begin(), rows.end(), rng);
    rows.resize(count);
    std::sort(rows.begin(), rows.end());
    for (uint64_t row : rows)
      Fill(&table[row * kTableRowBytes], kTableRowBytes);
    Fill(bias.data(), bias.size());
    return rows;
  }
  std::vector<client::TensorData> Tensors() const {
    return {WholeTensor("emb.weight", DType::kFloat32, {kTableRows, kTableCols},
                        table),
            WholeTensor("emb.bias", DType::kFloat32, {kTableCols}, bias)};
  }
};

std::vector<uint64_t> Union(const std::vector<uint64_t>& a,
                            const std::vector<uint64_t>& b) {
  std::vector<uint64_t> out;
  std::set_union(a.begin(), a.end(), b.begin(), b.end(),
                 std::back_inserter(out));
  return out;
}

// What a save of the table as a delta of `rows` rows may send, at most:
// 1.1x the rows with their 4-byte indices (the delta's and its
// fingerprint record's headers and the record's 20 bytes a row fit in the
// tenth), plus the bias, always sent in full.
uint64_t DeltaAllowance(uint64_t rows) {
  return rows * (kTableRowBytes + 4) * 11 / 10 + kBiasBytes;
}

client::IncrementalOptions Options(DeltaMode mode, bool store = true) {
  client::IncrementalOptions options;
  options.policy.mode = mode;
  options.policy.max_chain_length = 3;
  options.store_fingerprints = store;
  return options;
}

class IncrementalRestartTest : public RealServerTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(RealServerTest::SetUp());
    StartServer();
  }

  // Saves `trainee` as `step` with `saver`; the plan's decision for the
  // table. Records the table for ExpectEveryStepRestores.
  client::TensorPlan Save(
      client::IncrementalSaver& saver, const std::string& job, int64_t step,
      const Trainee& trainee, client::SaveResult* result = nullptr,
      const std::map<std::string, std::vector<uint64_t>>& dirty = {}) {
    client::IncrementalPlan plan;
    auto saved = client::SaveIncremental(*client_, saver, job, step,
                                         trainee.Tensors(), {}, dirty, &plan);
    EXPECT_TRUE(saved.ok()) << "step " << step << ": " << saved.status();
    if (!saved.ok()) return {};
    if (result != nullptr) *result = *saved;
    tables_[step] = trainee.table;
    EXPECT_EQ(plan.decisions().at(0).name, "emb.weight");
    return plan.decisions().at(0);
  }

  // A new process's saver: a fresh IncrementalSaver seeded by a restore of
  // `step` through a new client; expects the table restored byte-identical
  // to what was saved as `step`.
  std::unique_ptr<client::IncrementalSaver> Restart(
      const std::string& job, std::optional<int64_t> step,
      client::IncrementalOptions options, client::SeedReport& report,
      int32_t rank = 0) {
    auto saver = std::make_unique<client::IncrementalSaver>(options);
    auto client = client::Client::Connect(server_->address());
    EXPECT_TRUE(client.ok()) << client.status();
    if (!client.ok()) return saver;
    auto restored =
        client::RestoreShardAndSeed(**client, *saver, job, step, rank, &report);
    EXPECT_TRUE(restored.ok()) << restored.status();
    if (!restored.ok()) return saver;
    for (const client::RestoredTensor& tensor : *restored) {
      if (tensor.entry.name != "emb.weight" || rank != 0) continue;
      EXPECT_TRUE(std::string(tensor.bytes.data(), tensor.bytes.size()) ==
                  tables_.at(report.step))
          << "restored step " << report.step;
    }
    return saver;
  }

  // The report's line for the table.
  static client::SeedReport::Tensor TableSeed(
      const client::SeedReport& report) {
    for (const auto& tensor : report.tensors) {
      if (tensor.name == "emb.weight") return tensor;
    }
    ADD_FAILURE() << "the seed report has no line for emb.weight";
    return {};
  }

  void ExpectEveryStepRestores(const std::string& job) {
    for (const auto& [step, table] : tables_) {
      for (bool shared : {true, false}) {
        bool found = false;
        for (const client::RestoredTensor& tensor :
             RestoreRankZero(job, step, shared)) {
          if (tensor.entry.name != "emb.weight") continue;
          found = true;
          EXPECT_TRUE(std::string(tensor.bytes.data(), tensor.bytes.size()) ==
                      table)
              << "step " << step << (shared ? " (shared memory)" : " (stream)");
        }
        EXPECT_TRUE(found) << "step " << step << " has no emb.weight";
      }
    }
  }

  std::map<int64_t, std::string> tables_;  // the table saved, by step
};

TEST_F(IncrementalRestartTest,
       AfterRestoringAFullCheckpointTheNextSaveIsADelta) {
  for (DeltaMode mode : {DeltaMode::kIntermittent, DeltaMode::kConsecutive}) {
    SCOPED_TRACE(DeltaModeName(mode));
    tables_.clear();
    const std::string job = absl::StrCat("rs/full-", DeltaModeName(mode));
    // Another seed per mode: the jobs share a tenant, whose chunks dedupe.
    Trainee trainee(mode == DeltaMode::kIntermittent ? 1 : 11);
    {
      client::IncrementalSaver first(Options(mode));
      EXPECT_EQ(Save(first, job, 1, trainee).decision.kind, Kind::kFull);
    }  // the first process ends: its fingerprints are gone

    client::SeedReport report;
    auto saver = Restart(job, std::nullopt, Options(mode), report);
    EXPECT_EQ(report.step, 1);
    EXPECT_TRUE(TableSeed(report).seeded);
    EXPECT_EQ(TableSeed(report).how, "stored fingerprints");
    // 16 bytes a row, never the rows.
    EXPECT_EQ(report.fingerprint_bytes_read,
              DenseFingerprintRecordBytes(kTableRows));
    EXPECT_EQ(report.bytes_fingerprinted, 0u);

    const std::vector<uint64_t> rows = trainee.Train(100);
    client::SaveResult saved;
    const client::TensorPlan decided = Save(*saver, job, 2, trainee, &saved);
    EXPECT_EQ(decided.decision.kind, Kind::kDelta);
    EXPECT_EQ(decided.decision.base_step, 1);
    EXPECT_EQ(decided.changed_rows, rows.size());
    EXPECT_GE(saved.bytes_sent, rows.size() * (kTableRowBytes + 4));
    EXPECT_LE(saved.bytes_sent, DeltaAllowance(rows.size()));
    ExpectEveryStepRestores(job);
  }
}

TEST_F(IncrementalRestartTest,
       IntermittentDeltaAfterRestoringADeltaIsOnItsBaseline) {
  const std::string job = "rs/intermittent";
  Trainee trainee(2);
  std::vector<uint64_t> first_rows;
  {
    client::IncrementalSaver first(Options(DeltaMode::kIntermittent));
    Save(first, job, 1, trainee);
    first_rows = trainee.Train(60);
    const client::TensorPlan decided = Save(first, job, 2, trainee);
    ASSERT_EQ(decided.decision.kind, Kind::kDelta);
    ASSERT_EQ(decided.changed_rows, first_rows.size());
  }
  client::SeedReport report;
  auto saver =
      Restart(job, std::nullopt, Options(DeltaMode::kIntermittent), report);
  EXPECT_EQ(report.step, 2);
  EXPECT_EQ(TableSeed(report).how, "stored fingerprints");
  EXPECT_EQ(report.fingerprint_bytes_read,
            DenseFingerprintRecordBytes(kTableRows) +
                SparseFingerprintRecordBytes(kTableRows, first_rows.size()));

  // Rows apart from step 2's: the delta on step 1 must hold both sets.
  const std::vector<uint64_t> rows = trainee.Train(90, first_rows);
  client::SaveResult saved;
  const client::TensorPlan decided = Save(*saver, job, 3, trainee, &saved);
  EXPECT_EQ(decided.decision.kind, Kind::kDelta);
  EXPECT_EQ(decided.decision.base_step, 1);
  const std::vector<uint64_t> since_baseline = Union(first_rows, rows);
  EXPECT_EQ(decided.changed_rows, since_baseline.size());
  EXPECT_LE(saved.bytes_sent, DeltaAllowance(since_baseline.size()));
  ExpectEveryStepRestores(job);
}

TEST_F(IncrementalRestartTest, ConsecutiveChainGoesOnFromTheRestoredDelta) {
  const std::string job = "rs/consecutive";
  Trainee trainee(3);
  {
    client::IncrementalSaver first(Options(DeltaMode::kConsecutive));
    Save(first, job, 1, trainee);
    trainee.Train(40);
    ASSERT_EQ(Save(first, job, 2, trainee).decision.base_step, 1);
  }
  client::SeedReport report;
  auto saver =
      Restart(job, std::nullopt, Options(DeltaMode::kConsecutive), report);
  EXPECT_EQ(TableSeed(report).how, "stored fingerprints");
  // Against the restored step itself, the chain's length counted: step 2 is
  // delta 1 of max_chain_length 3, so 3 and 4 are deltas and 5 is full.
  const std::vector<std::optional<int64_t>> bases = {2, 3, std::nullopt};
  for (int64_t step = 3; step <= 5; ++step) {
    const std::vector<uint64_t> rows = trainee.Train(70);
    client::SaveResult saved;
    const client::TensorPlan decided = Save(*saver, job, step, trainee, &saved);
    EXPECT_EQ(decided.decision.base_step, bases[step - 3]) << step;
    if (decided.decision.kind == Kind::kDelta) {
      EXPECT_EQ(decided.changed_rows, rows.size()) << step;
      EXPECT_LE(saved.bytes_sent, DeltaAllowance(rows.size())) << step;
    }
  }
  ExpectEveryStepRestores(job);
}

// Dirty rows right after a restart from an intermittent delta: the saver's
// rows changed since the baseline come from the stored sparse records, so
// the delta holds the rows the restored delta held too.
TEST_F(IncrementalRestartTest, DirtyRowsAfterRestoringADeltaRestoreExactly) {
  for (DeltaMode mode : {DeltaMode::kIntermittent, DeltaMode::kConsecutive}) {
    SCOPED_TRACE(DeltaModeName(mode));
    tables_.clear();
    const std::string job = absl::StrCat("rs/dirty-", DeltaModeName(mode));
    Trainee trainee(4);
    std::vector<uint64_t> first_rows;
    {
      client::IncrementalSaver first(Options(mode));
      Save(first, job, 1, trainee);
      first_rows = trainee.Train(50);
      ASSERT_EQ(Save(first, job, 2, trainee).decision.kind, Kind::kDelta);
    }
    client::SeedReport report;
    auto saver = Restart(job, 2, Options(mode), report);
    ASSERT_TRUE(TableSeed(report).seeded);
    const std::vector<uint64_t> rows = trainee.Train(30, first_rows);
    const client::TensorPlan decided =
        Save(*saver, job, 3, trainee, nullptr, {{"emb.weight", rows}});
    EXPECT_EQ(decided.decision.kind, Kind::kDelta);
    if (mode == DeltaMode::kIntermittent) {
      EXPECT_EQ(decided.decision.base_step, 1);
      EXPECT_EQ(decided.changed_rows, first_rows.size() + rows.size());
    } else {
      EXPECT_EQ(decided.decision.base_step, 2);
      EXPECT_EQ(decided.changed_rows, rows.size());
    }
    ExpectEveryStepRestores(job);
  }
}

// A chain saved without stored fingerprints (store_fingerprints=false, as
// before they existed): a full entry is seeded by hashing the restored
// bytes; an intermittent delta cannot be (its baseline's fingerprints are
// unknown), and the next save is full; a consecutive one can.
TEST_F(IncrementalRestartTest,
       WithoutStoredFingerprintsSeedsFromRestoredBytes) {
  const std::string job = "rs/unstored";
  Trainee trainee(5);
  const client::IncrementalOptions unstored =
      Options(DeltaMode::kIntermittent, /*store=*/false);
  {
    client::IncrementalSaver first(unstored);
    Save(first, job, 1, trainee);
  }
  auto manifest = client_->GetManifest(job, 1);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  ASSERT_FALSE(manifest->shards.at(0).tensors.at(0).HasStoredFingerprints());

  client::SeedReport report;
  auto saver = Restart(job, 1, Options(DeltaMode::kIntermittent), report);
  EXPECT_TRUE(TableSeed(report).seeded);
  EXPECT_EQ(TableSeed(report).how, "fingerprints of the restored bytes");
  EXPECT_EQ(report.bytes_fingerprinted, kTableRows * kTableRowBytes);
  std::vector<uint64_t> rows = trainee.Train(80);
  client::SaveResult saved;
  client::TensorPlan decided = Save(*saver, job, 2, trainee, &saved);
  EXPECT_EQ(decided.decision.kind, Kind::kDelta);
  EXPECT_EQ(decided.decision.base_step, 1);
  EXPECT_EQ(decided.changed_rows, rows.size());
  EXPECT_LE(saved.bytes_sent, DeltaAllowance(rows.size()));

  // Now a delta chain without fingerprints: 3 full, 4 a delta on it.
  {
    client::IncrementalSaver writer(unstored);
    trainee.Train(kTableRows);
    EXPECT_EQ(Save(writer, job, 3, trainee).decision.kind, Kind::kFull);
    trainee.Train(25);
    EXPECT_EQ(Save(writer, job, 4, trainee).decision.base_step, 3);
  }
  saver = Restart(job, 4, Options(DeltaMode::kIntermittent), report);
  EXPECT_FALSE(TableSeed(report).seeded);
  EXPECT_THAT(TableSeed(report).how,
              HasSubstr("intermittent policy needs its baseline"));
  trainee.Train(10);
  decided = Save(*saver, job, 5, trainee);
  EXPECT_EQ(decided.decision.kind, Kind::kFull);

  // Consecutive: the restored delta itself is the base, hashed.
  saver = Restart(job, 4, Options(DeltaMode::kConsecutive), report);
  EXPECT_EQ(TableSeed(report).how, "fingerprints of the restored bytes");
  // Step 6 from step 4's table: the rows changed since 4 (step 5's 10 and
  // these 20) are the delta.
  rows = trainee.Train(20);
  decided = Save(*saver, job, 6, trainee);
  EXPECT_EQ(decided.decision.kind, Kind::kDelta);
  EXPECT_EQ(decided.decision.base_step, 4);
  EXPECT_GE(decided.changed_rows, rows.size());
  EXPECT_LE(decided.changed_rows, rows.size() + 10);
  ExpectEveryStepRestores(job);
}

// Restored under another layout (world size, box, global shape): the
// seeded history does not fit, and the tensor's next save is full; the
// same layout again is a delta.
TEST_F(IncrementalRestartTest, AnotherWorldSizeAfterARestoreSavesInFull) {
  const std::string job = "rs/world-size";
  Trainee trainee(6);
  // Step 1 by two ranks: each holds half of the table's rows.
  const int64_t half = kTableRows / 2;
  auto halves = [&](const Trainee& t) {
    std::vector<client::TensorData> ranks(2, t.Tensors()[0]);
    for (int r = 0; r < 2; ++r) {
      ranks[r].box = Box{{r * half, 0}, {half, kTableCols}};
      ranks[r].bytes = absl::string_view(t.table).substr(
          r * half * kTableRowBytes, half * kTableRowBytes);
    }
    return ranks;
  };
  for (int32_t rank = 0; rank < 2; ++rank) {
    client::IncrementalSaver first(Options(DeltaMode::kIntermittent));
    client::SaveOptions options;
    options.world_size = 2;
    options.rank = rank;
    auto saved = client::SaveIncremental(*client_, first, job, 1,
                                         {halves(trainee)[rank]}, options);
    ASSERT_TRUE(saved.ok()) << saved.status();
  }
  client::SeedReport report;
  auto saver = std::make_unique<client::IncrementalSaver>(
      Options(DeltaMode::kIntermittent));
  ASSERT_TRUE(
      client::RestoreShardAndSeed(*client_, *saver, job, 1, 0, &report).ok());
  ASSERT_TRUE(TableSeed(report).seeded);

  // One rank now, holding the whole table: a full save, not a delta on
  // rank 0's half.
  const std::vector<uint64_t> step2_rows = trainee.Train(10);
  client::IncrementalPlan plan;
  auto saved = client::SaveIncremental(*client_, *saver, job, 2,
                                       trainee.Tensors(), {}, {}, &plan);
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(plan.decisions().at(0).decision.kind, Kind::kFull);
  tables_[2] = trainee.table;

  // A saver seeded from rank 0's half and saving rank 0's half again, of
  // world size 2: a delta.
  ASSERT_TRUE(
      client::RestoreShardAndSeed(*client_, *saver, job, 1, 0, &report).ok());
  const std::vector<uint64_t> rows = Union(step2_rows, trainee.Train(10));
  client::SaveOptions options;
  options.world_size = 2;
  auto again = client::SaveIncremental(
      *client_, *saver, job, 3, {halves(trainee)[0]}, options, {}, &plan);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(plan.decisions().at(0).decision.kind, Kind::kDelta);
  EXPECT_EQ(plan.decisions().at(0).decision.base_step, 1);
  // Step 3's half differs from step 1's in the rows of both trainings.
  const auto in_top_half = std::count_if(
      rows.begin(), rows.end(), [&](uint64_t r) { return r < uint64_t(half); });
  EXPECT_EQ(plan.decisions().at(0).changed_rows,
            static_cast<uint64_t>(in_top_half));
  ExpectEveryStepRestores(job);
}

TEST_F(IncrementalRestartTest, AQuantizedTensorIsNeverSeeded) {
  const std::string job = "rs/quantized";
  Trainee trainee(7);
  // Floats of modest range: quantization needs finite values.
  std::vector<float> values(kTableRows * kTableCols);
  for (size_t i = 0; i < values.size(); ++i) values[i] = (i % 97) * 0.01f;
  std::memcpy(trainee.table.data(), values.data(), trainee.table.size());
  {
    client::IncrementalSaver first(Options(DeltaMode::kIntermittent));
    std::vector<client::TensorData> tensors = trainee.Tensors();
    tensors[0].quantize_bits = 8;
    client::IncrementalPlan plan;
    auto saved = client::SaveIncremental(*client_, first, job, 1, tensors, {},
                                         {}, &plan);
    ASSERT_TRUE(saved.ok()) << saved.status();
    EXPECT_EQ(plan.decisions().at(0).decision.kind, Kind::kFull);
  }
  client::SeedReport report;
  client::IncrementalSaver saver(Options(DeltaMode::kIntermittent));
  ASSERT_TRUE(
      client::RestoreShardAndSeed(*client_, saver, job, 1, 0, &report).ok());
  EXPECT_FALSE(TableSeed(report).seeded);
  EXPECT_THAT(TableSeed(report).how, HasSubstr("quantized"));
  EXPECT_EQ(report.fingerprint_bytes_read, 0u);
  // Saved unquantized now: in full (its restored values were not the saved
  // ones), then deltas.
  EXPECT_EQ(Save(saver, job, 2, trainee).decision.kind, Kind::kFull);
  trainee.Train(5);
  EXPECT_EQ(Save(saver, job, 3, trainee).decision.base_step, 2);
  tables_.erase(1);  // lossy: not byte-identical
  ExpectEveryStepRestores(job);
}

// Per-rank state (docs/architecture.md): two ranks each save a table under
// the same name with the same whole box but their own values. Each rank's
// deltas are taken against its own rows, so they must be rebuilt from its
// own base entry, and a restarted rank seeded from its own chain.
TEST_F(IncrementalRestartTest, PerRankTablesRebuildFromTheirOwnRanksBase) {
  const std::string job = "rs/per-rank";
  std::vector<Trainee> ranks = {Trainee(20), Trainee(21)};
  std::vector<client::IncrementalSaver> savers(2);
  std::vector<std::map<int64_t, std::string>> saved(2);
  auto save_all = [&](std::vector<client::IncrementalSaver>& by_rank,
                      int64_t step) {
    for (int32_t rank = 0; rank < 2; ++rank) {
      client::SaveOptions options;
      options.world_size = 2;
      options.rank = rank;
      client::IncrementalPlan plan;
      auto result =
          client::SaveIncremental(*client_, by_rank[rank], job, step,
                                  ranks[rank].Tensors(), options, {}, &plan);
      ASSERT_TRUE(result.ok()) << result.status();
      saved[rank][step] = ranks[rank].table;
      if (step > 1) {
        EXPECT_EQ(plan.decisions().at(0).decision.kind, Kind::kDelta)
            << "rank " << rank << " step " << step;
      }
    }
  };
  save_all(savers, 1);
  for (Trainee& trainee : ranks) trainee.Train(20);
  save_all(savers, 2);
  // Without a saver (`ckpt put --rank 1 --delta-against 2`): rank 1's
  // entry of step 2 read, and compared with, as rank 1's own chain.
  auto manifest = client_->GetManifest(job, 2);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  const TensorEntry& rank1_entry = manifest->shards.at(1).tensors.at(0);
  ASSERT_EQ(manifest->shards.at(1).rank, 1);
  ASSERT_TRUE(rank1_entry.IsDelta());
  std::string read(rank1_entry.ByteSize(), '\0');
  ASSERT_TRUE(
      client_->ReadTensor(job, rank1_entry, absl::MakeSpan(read), 1).ok());
  EXPECT_TRUE(read == saved[1][2]);
  const std::vector<uint64_t> rank1_rows = ranks[1].Train(15);
  auto changed = client::RowsChangedSince(*client_, job, 2, rank1_entry,
                                          ranks[1].Tensors()[0], 2, 1);
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_TRUE(changed->from_stored_fingerprints);
  EXPECT_EQ(changed->rows, rank1_rows);
  // A restart of both ranks, seeded from step 2, then step 3.
  std::vector<client::IncrementalSaver> restarted(2);
  for (int32_t rank = 0; rank < 2; ++rank) {
    client::SeedReport report;
    auto restored = client::RestoreShardAndSeed(*client_, restarted[rank], job,
                                                2, rank, &report);
    ASSERT_TRUE(restored.ok()) << restored.status();
    EXPECT_TRUE(TableSeed(report).seeded) << rank;
    ranks[rank].Train(20);
  }
  save_all(restarted, 3);
  for (int32_t rank = 0; rank < 2; ++rank) {
    for (const auto& [step, table] : saved[rank]) {
      auto restored = client_->RestoreShard(job, step, rank);
      ASSERT_TRUE(restored.ok()) << restored.status();
      EXPECT_TRUE(std::string(restored->at(0).bytes.data(),
                              restored->at(0).bytes.size()) == table)
          << "rank " << rank << " step " << step;
    }
  }
}

// Hostile stored fingerprints: a checkpoint whose table's fingerprint
// pieces are a stored chunk of exactly the size the entry implies but not
// a record that fits it. The restore works, the table is not seeded
// (DATA_LOSS in the report), and the next save is full: never a delta
// computed against fingerprints nobody can trust.
TEST_F(IncrementalRestartTest, CorruptStoredFingerprintsAreNotUsed) {
  const std::string job = "rs/hostile";
  Trainee trainee(8);
  {
    client::IncrementalSaver first(Options(DeltaMode::kIntermittent));
    Save(first, job, 1, trainee);
  }
  auto manifest = client_->GetManifest(job, 1);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  const ShardManifest shard = manifest->shards.at(0);
  ASSERT_EQ(shard.tensors.at(0).name, "emb.weight");
  const uint64_t record_bytes = DenseFingerprintRecordBytes(kTableRows);
  ASSERT_EQ(shard.tensors.at(0).FingerprintBytes(), record_bytes);

  // Records of the dense size: garbage; a valid sparse record (1600 rows
  // with 4-byte indices: 32 + 1600 * 20 = 32 + 2000 * 16); a dense record
  // of another row size.
  std::vector<std::string> records;
  std::string garbage = PatternBytes(record_bytes, 99);
  records.push_back(garbage);
  std::vector<uint64_t> sparse_rows(1600);
  for (size_t i = 0; i < sparse_rows.size(); ++i) sparse_rows[i] = i;
  auto sparse =
      EncodeSparseFingerprints(kTableRowBytes, kTableRows, sparse_rows,
                               std::vector<RowFingerprint>(sparse_rows.size()));
  ASSERT_TRUE(sparse.ok()) << sparse.status();
  ASSERT_EQ(sparse->size(), record_bytes);
  records.push_back(*sparse);
  auto dense = EncodeDenseFingerprints(kTableRowBytes * 2,
                                       std::vector<RowFingerprint>(kTableRows));
  ASSERT_TRUE(dense.ok()) << dense.status();
  records.push_back(*dense);

  auto transport = client::ConnectGrpcTransport(server_->address(), {});
  ASSERT_TRUE(transport.ok()) << transport.status();
  // Commits `planted` as `step` with its table's fingerprint pieces one
  // chunk of `record`, restarts from it and saves the next step.
  auto plant_and_restart = [&](int64_t step, ShardManifest planted,
                               const std::string& record,
                               const std::string& table) {
    SCOPED_TRACE(absl::StrCat("step ", step));
    ASSERT_TRUE((*transport)->BeginCheckpoint(job, step, {}).ok());
    const ChunkId id = Sha256(record);
    auto upload = (*transport)->OpenUpload(job, step);
    ASSERT_TRUE(upload->Add(id, record).ok());
    ASSERT_TRUE(upload->Close().ok());
    planted.tensors[0].fingerprint_pieces = {ChunkRef{id, record.size()}};
    auto committed = (*transport)->CommitShard(job, step, 1, planted);
    ASSERT_TRUE(committed.ok()) << committed.status();
    ASSERT_TRUE(committed->checkpoint_committed);
    tables_[step] = table;

    client::SeedReport report;
    auto saver = Restart(job, step, Options(DeltaMode::kIntermittent), report);
    EXPECT_FALSE(TableSeed(report).seeded);
    EXPECT_THAT(TableSeed(report).how, HasSubstr("DATA_LOSS"));
    trainee.Train(10);
    EXPECT_EQ(Save(*saver, job, step + 1, trainee).decision.kind, Kind::kFull);
  };
  int64_t step = 10;
  for (const std::string& record : records) {
    plant_and_restart(step, shard, record, tables_.at(1));
    step += 10;
  }

  // A delta of 1600 rows on step 31 (the last full save, of the table
  // before these rows changed), whose sparse record has the size of a dense
  // one: a valid dense record in its place does not fit a delta.
  const std::vector<uint64_t> rows = trainee.Train(1600);
  std::vector<client::TensorData> tensors = trainee.Tensors();
  auto fingerprints = SelectedRowFingerprints(
      absl::MakeConstSpan(tensors[0].bytes.data(), tensors[0].bytes.size()),
      kTableRowBytes, rows);
  ASSERT_TRUE(fingerprints.ok()) << fingerprints.status();
  tensors[0].delta_base_step = 31;
  tensors[0].delta_rows = rows;
  tensors[0].row_fingerprints = *fingerprints;
  ASSERT_TRUE(client_->SaveShard(job, 100, tensors, {}).ok());
  tables_[100] = trainee.table;
  auto delta = client_->GetManifest(job, 100);
  ASSERT_TRUE(delta.ok()) << delta.status();
  ASSERT_EQ(delta->shards.at(0).tensors.at(0).FingerprintBytes(), record_bytes);
  auto dense_in_place = EncodeDenseFingerprints(
      kTableRowBytes, std::vector<RowFingerprint>(kTableRows));
  ASSERT_TRUE(dense_in_place.ok()) << dense_in_place.status();
  plant_and_restart(110, delta->shards.at(0), *dense_in_place, trainee.table);
  ExpectEveryStepRestores(job);
}

}  // namespace
}  // namespace ckpt::testing
