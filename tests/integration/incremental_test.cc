// Row deltas (Check-N-Run) end to end through the real ckpt-server binary:
// SaveShard of delta entries, restores that apply chains (shared memory and
// streaming), ReadTensor, and IncrementalSaver / SaveIncremental. One
// suite (past 600 lines) because all of it needs the same real server and
// the same delta fixtures.
#include "client/incremental.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "common/fingerprint_record.h"
#include "common/row_delta.h"
#include "common/row_fingerprint.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/real_server_test.h"

namespace ckpt::testing {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kRows = 2000;
constexpr int64_t kCols = 64;  // float32: 256-byte rows
constexpr uint64_t kRowBytes = kCols * 4;

// A 2-D float32 embedding table and a 1-D bias, both changed row by row.
struct Model {
  std::string table = std::string(kRows * kRowBytes, '\0');
  std::string bias = std::string(kCols * 4, '\0');
  std::mt19937_64 rng;

  explicit Model(uint64_t seed) : rng(seed) {
    Randomize(table.data(), table.size());
    Randomize(bias.data(), bias.size());
  }
  void Randomize(char* data, size_t size) {
    for (size_t i = 0; i < size; ++i) data[i] = static_cast<char>(rng());
  }
  void ChangeRows(const std::vector<uint64_t>& rows) {
    for (uint64_t row : rows) Randomize(&table[row * kRowBytes], kRowBytes);
    Randomize(bias.data(), bias.size());
  }
  // `count` distinct random rows, ascending.
  std::vector<uint64_t> RandomRows(uint64_t count) {
    std::vector<uint64_t> all(kRows);
    for (int64_t i = 0; i < kRows; ++i) all[i] = i;
    std::shuffle(all.begin(), all.end(), rng);
    all.resize(count);
    std::sort(all.begin(), all.end());
    return all;
  }
  std::vector<client::TensorData> Tensors() const {
    return {WholeTensor("emb.weight", DType::kFloat32, {kRows, kCols}, table),
            WholeTensor("emb.bias", DType::kFloat32, {kCols}, bias)};
  }
};

class IncrementalTest : public RealServerTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(RealServerTest::SetUp());
    StartServer();
  }

  // The bytes of every tensor of (job, step), restored through shared
  // memory or by streaming.
  std::map<std::string, std::string> Restore(const std::string& job,
                                             int64_t step, bool shared) {
    std::map<std::string, std::string> out;
    for (const client::RestoredTensor& tensor :
         RestoreRankZero(job, step, shared)) {
      out[tensor.entry.name] =
          std::string(tensor.bytes.data(), tensor.bytes.size());
    }
    return out;
  }

  // Restores every step of `expected` both ways and compares the table.
  void ExpectEveryStepRestores(
      const std::string& job,
      const std::map<int64_t, std::string>& expected_tables) {
    for (const auto& [step, table] : expected_tables) {
      for (bool shared : {true, false}) {
        auto restored = Restore(job, step, shared);
        EXPECT_TRUE(restored["emb.weight"] == table)
            << "step " << step << (shared ? " (shared memory)" : " (stream)");
      }
    }
  }

  // delta_base_step of each tensor of (job, step), by name.
  std::map<std::string, std::optional<int64_t>> Bases(const std::string& job,
                                                      int64_t step) {
    auto manifest = client_->GetManifest(job, step);
    EXPECT_TRUE(manifest.ok()) << manifest.status();
    std::map<std::string, std::optional<int64_t>> bases;
    if (!manifest.ok()) return bases;
    for (const TensorEntry& entry : manifest->shards.at(0).tensors) {
      bases[entry.name] = entry.delta_base_step;
    }
    return bases;
  }
};

TEST_F(IncrementalTest, DeltaRoundTripRestoresSavedBytesBothWays) {
  Model model(1);
  const std::string job = "it/delta";
  ASSERT_TRUE(client_->SaveShard(job, 1, model.Tensors(), {}).ok());
  const std::string table1 = model.table;
  const std::vector<uint64_t> rows = model.RandomRows(150);
  model.ChangeRows(rows);
  std::vector<client::TensorData> tensors = model.Tensors();
  tensors[0].delta_base_step = 1;
  tensors[0].delta_rows = rows;
  auto saved = client_->SaveShard(job, 2, tensors, {});
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(saved->logical_bytes, model.table.size() + model.bias.size());
  // Only the delta's bytes travelled (plus the changed bias).
  EXPECT_LT(saved->bytes_sent, model.table.size() / 5);

  auto manifest = client_->GetManifest(job, 2);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  const TensorEntry& entry = manifest->shards.at(0).tensors.at(0);
  EXPECT_EQ(entry.delta_base_step, 1);
  EXPECT_EQ(entry.StoredBytes(), RowDeltaBytes(kRows, kRowBytes, rows.size()));
  EXPECT_FALSE(manifest->shards.at(0).tensors.at(1).IsDelta());

  for (bool shared : {true, false}) {
    auto restored = Restore(job, 2, shared);
    EXPECT_TRUE(restored["emb.weight"] == model.table) << shared;
    EXPECT_TRUE(restored["emb.bias"] == model.bias) << shared;
    EXPECT_TRUE(Restore(job, 1, shared)["emb.weight"] == table1) << shared;
  }

  std::string read(entry.ByteSize(), '\0');
  ASSERT_TRUE(client_->ReadTensor(job, entry, absl::MakeSpan(read)).ok());
  EXPECT_TRUE(read == model.table);
}

TEST_F(IncrementalTest, InvalidDeltaRowsAreRefused) {
  Model model(2);
  const std::string job = "it/invalid";
  ASSERT_TRUE(client_->SaveShard(job, 1, model.Tensors(), {}).ok());
  const std::vector<std::vector<uint64_t>> bad = {
      {3, 2}, {5, 5}, {0, kRows}, {uint64_t{1} << 40}};
  for (const std::vector<uint64_t>& rows : bad) {
    std::vector<client::TensorData> tensors = model.Tensors();
    tensors[0].delta_base_step = 1;
    tensors[0].delta_rows = rows;
    auto saved = client_->SaveShard(job, 2, tensors, {});
    EXPECT_TRUE(absl::IsInvalidArgument(saved.status())) << saved.status();
    EXPECT_THAT(saved.status().message(), HasSubstr("emb.weight"));
  }
  std::vector<client::TensorData> tensors = model.Tensors();
  const std::vector<uint64_t> rows = {1};
  tensors[0].delta_rows = rows;  // without a base
  EXPECT_TRUE(absl::IsInvalidArgument(
      client_->SaveShard(job, 2, tensors, {}).status()));
  // Nothing began: step 2 does not exist.
  auto listed = client_->ListCheckpoints(job, true);
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), 1u);
}

// 12 saves of a table whose rows change at random (none, a few, many, all)
// restore exactly at every step, in both modes.
class ChainTest : public IncrementalTest,
                  public ::testing::WithParamInterface<DeltaMode> {};

TEST_P(ChainTest, EveryStepOfAChainRestoresTheSavedBytes) {
  Model model(3);
  const std::string job = absl::StrCat("it/chain-", DeltaModeName(GetParam()));
  client::IncrementalOptions options;
  options.policy.mode = GetParam();
  options.policy.max_chain_length = 4;
  client::IncrementalSaver saver(options);
  const std::vector<uint64_t> counts = {0,  30, 0,    kRows, 5,  200,
                                        80, 1,  1500, 10,    40, 0};
  std::map<int64_t, std::string> tables;
  int deltas = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const int64_t step = static_cast<int64_t>(i) + 1;
    if (i > 0) model.ChangeRows(model.RandomRows(counts[i]));
    client::IncrementalPlan plan;
    auto saved = client::SaveIncremental(*client_, saver, job, step,
                                         model.Tensors(), {}, {}, &plan);
    ASSERT_TRUE(saved.ok()) << saved.status();
    tables[step] = model.table;
    const client::TensorPlan& decided = plan.decisions().at(0);
    auto bases = Bases(job, step);
    EXPECT_EQ(bases["emb.weight"], decided.decision.base_step) << step;
    EXPECT_EQ(bases["emb.bias"], std::nullopt) << "1-D tensors are full";
    if (decided.decision.kind == DeltaDecision::Kind::kDelta) {
      ++deltas;
      // Random bytes make every changed row differ; an intermittent delta
      // also holds the rows changed since its baseline.
      if (GetParam() == DeltaMode::kConsecutive) {
        EXPECT_EQ(decided.changed_rows, counts[i]) << step;
      } else {
        EXPECT_GE(decided.changed_rows, counts[i]) << step;
      }
    }
    if (i == 0 || counts[i] == static_cast<uint64_t>(kRows)) {
      EXPECT_EQ(decided.decision.kind, DeltaDecision::Kind::kFull) << step;
    }
    if (i == 1 || i == 2) {
      EXPECT_EQ(decided.decision.kind, DeltaDecision::Kind::kDelta) << step;
    }
  }
  EXPECT_GE(deltas, 6);
  ExpectEveryStepRestores(job, tables);
}

INSTANTIATE_TEST_SUITE_P(Modes, ChainTest,
                         ::testing::Values(DeltaMode::kIntermittent,
                                           DeltaMode::kConsecutive),
                         [](const auto& param_info) {
                           return std::string(DeltaModeName(param_info.param));
                         });

TEST_F(IncrementalTest,
       IntermittentBaselineResetsOnceTheDeltaReachesTheFraction) {
  Model model(4);
  const std::string job = "it/intermittent";
  client::IncrementalSaver saver;  // intermittent, fraction 0.5
  // Disjoint row sets: 10%, +20% (30% since the baseline), +25% (55%: new
  // baseline), then 5% against the new baseline.
  std::vector<uint64_t> order = model.RandomRows(kRows);
  std::shuffle(order.begin(), order.end(), model.rng);
  auto take = [&](size_t n) {
    std::vector<uint64_t> rows(order.end() - n, order.end());
    order.resize(order.size() - n);
    return rows;
  };
  const std::vector<size_t> sizes = {0, 200, 400, 500, 100};
  const std::vector<std::optional<int64_t>> expected = {std::nullopt, 1, 1,
                                                        std::nullopt, 4};
  std::map<int64_t, std::string> tables;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const int64_t step = static_cast<int64_t>(i) + 1;
    model.ChangeRows(take(sizes[i]));
    client::IncrementalPlan plan;
    ASSERT_TRUE(client::SaveIncremental(*client_, saver, job, step,
                                        model.Tensors(), {}, {}, &plan)
                    .ok());
    EXPECT_EQ(plan.decisions()[0].decision.base_step, expected[i]) << step;
    EXPECT_EQ(Bases(job, step)["emb.weight"], expected[i]) << step;
    tables[step] = model.table;
  }
  ExpectEveryStepRestores(job, tables);
}

TEST_F(IncrementalTest, ConsecutiveBaselineResetsAfterMaxChainLength) {
  Model model(5);
  const std::string job = "it/consecutive";
  client::IncrementalOptions options;
  options.policy.mode = DeltaMode::kConsecutive;
  options.policy.max_chain_length = 2;
  client::IncrementalSaver saver(options);
  const std::vector<std::optional<int64_t>> expected = {
      std::nullopt, 1, 2, std::nullopt, 4, 5, std::nullopt};
  std::map<int64_t, std::string> tables;
  for (size_t i = 0; i < expected.size(); ++i) {
    const int64_t step = static_cast<int64_t>(i) + 1;
    model.ChangeRows(model.RandomRows(50));
    client::IncrementalPlan plan;
    ASSERT_TRUE(client::SaveIncremental(*client_, saver, job, step,
                                        model.Tensors(), {}, {}, &plan)
                    .ok());
    EXPECT_EQ(plan.decisions()[0].decision.base_step, expected[i]) << step;
    EXPECT_EQ(plan.decisions()[0].changed_rows, expected[i] ? 50u : 0u);
    EXPECT_EQ(Bases(job, step)["emb.weight"], expected[i]) << step;
    tables[step] = model.table;
  }
  ExpectEveryStepRestores(job, tables);
  // ReadTensor walks the chain too: step 6 is a delta on 5, itself on 4.
  auto manifest = client_->GetManifest(job, 6);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  const TensorEntry& entry = manifest->shards.at(0).tensors.at(0);
  ASSERT_EQ(entry.delta_base_step, 5);
  std::string read(entry.ByteSize(), '\0');
  ASSERT_TRUE(client_->ReadTensor(job, entry, absl::MakeSpan(read)).ok());
  EXPECT_TRUE(read == tables[6]);
  // ReadTensors reads the whole shard in one go, chain and full tensors.
  const std::vector<TensorEntry>& entries = manifest->shards.at(0).tensors;
  std::vector<std::string> reads;
  std::vector<absl::Span<char>> outs;
  reads.reserve(entries.size());
  outs.reserve(entries.size());
  for (const TensorEntry& e : entries) reads.emplace_back(e.ByteSize(), '\0');
  for (std::string& r : reads) outs.push_back(absl::MakeSpan(r));
  ASSERT_TRUE(client_->ReadTensors(job, entries, outs).ok());
  const std::map<std::string, std::string> restored = Restore(job, 6, true);
  for (size_t t = 0; t < entries.size(); ++t) {
    EXPECT_TRUE(reads[t] == restored.at(entries[t].name)) << entries[t].name;
  }
  EXPECT_TRUE(reads[0] == tables[6]);
  outs.pop_back();
  EXPECT_TRUE(
      absl::IsInvalidArgument(client_->ReadTensors(job, entries, outs)));
  reads[0].resize(1);
  outs = {absl::MakeSpan(reads[0]), absl::MakeSpan(reads[1])};
  EXPECT_TRUE(
      absl::IsInvalidArgument(client_->ReadTensors(job, entries, outs)));
}

// The server refuses a delta whose base holds no matching tensor, so a
// restore never meets one (the client still checks, as DATA_LOSS).
TEST_F(IncrementalTest, DeltaWithoutAMatchingBaseEntryIsRefusedAtCommit) {
  Model model(11);
  const std::string job = "it/no-base-entry";
  // Step 1 holds the table under another name, step 2 with another global
  // shape.
  std::vector<client::TensorData> tensors = model.Tensors();
  tensors[0].name = "other";
  ASSERT_TRUE(client_->SaveShard(job, 1, tensors, {}).ok());
  // The table as the top half of one twice as tall (same box and bytes),
  // rank 1 holding the bottom half.
  tensors = model.Tensors();
  tensors[0].global_shape = {kRows * 2, kCols};
  client::SaveOptions two_ranks;
  two_ranks.world_size = 2;
  ASSERT_TRUE(client_->SaveShard(job, 2, tensors, two_ranks).ok());
  client::TensorData bottom = tensors[0];
  bottom.box.offsets = {kRows, 0};
  two_ranks.rank = 1;
  ASSERT_TRUE(client_->SaveShard(job, 2, {bottom}, two_ranks).ok());
  const std::vector<uint64_t> rows = {0, 7};
  for (int64_t base : {1, 2}) {
    tensors = model.Tensors();
    tensors[0].delta_base_step = base;
    tensors[0].delta_rows = rows;
    auto saved = client_->SaveShard(job, base + 10, tensors, {});
    EXPECT_TRUE(absl::IsFailedPrecondition(saved.status())) << saved.status();
    EXPECT_THAT(saved.status().message(), HasSubstr("emb.weight"));
    EXPECT_THAT(saved.status().message(),
                HasSubstr(absl::StrCat("step ", base)));
    EXPECT_TRUE(
        absl::IsNotFound(client_->GetManifest(job, base + 10).status()));
  }
}

TEST_F(IncrementalTest, DirtyRowsAndFingerprintsRestoreTheSameBytes) {
  for (DeltaMode mode : {DeltaMode::kIntermittent, DeltaMode::kConsecutive}) {
    Model model(6);
    const std::string dirty_job =
        absl::StrCat("it/dirty-", DeltaModeName(mode));
    const std::string hashed_job =
        absl::StrCat("it/hashed-", DeltaModeName(mode));
    client::IncrementalOptions options;
    options.policy.mode = mode;
    client::IncrementalSaver dirty_saver(options);
    client::IncrementalSaver hashed_saver(options);
    std::map<int64_t, std::string> tables;
    for (int64_t step = 1; step <= 6; ++step) {
      std::vector<uint64_t> rows = model.RandomRows(step * 20);
      if (step > 1) model.ChangeRows(rows);
      // Dirty rows may repeat, come in any order, and name rows that did
      // not actually change.
      std::vector<uint64_t> dirty(rows.rbegin(), rows.rend());
      dirty.push_back(rows.empty() ? 0 : rows[0]);
      dirty.push_back(static_cast<uint64_t>(kRows - 1));
      client::IncrementalPlan dirty_plan, hashed_plan;
      auto a = client::SaveIncremental(*client_, dirty_saver, dirty_job, step,
                                       model.Tensors(), {},
                                       {{"emb.weight", dirty}}, &dirty_plan);
      ASSERT_TRUE(a.ok()) << a.status();
      auto b = client::SaveIncremental(*client_, hashed_saver, hashed_job, step,
                                       model.Tensors(), {}, {}, &hashed_plan);
      ASSERT_TRUE(b.ok()) << b.status();
      const auto kind =
          step == 1 ? DeltaDecision::Kind::kFull : DeltaDecision::Kind::kDelta;
      EXPECT_EQ(dirty_plan.decisions()[0].decision.kind, kind) << step;
      EXPECT_EQ(hashed_plan.decisions()[0].decision.kind, kind) << step;
      tables[step] = model.table;
    }
    ExpectEveryStepRestores(dirty_job, tables);
    ExpectEveryStepRestores(hashed_job, tables);
    for (const auto& [step, table] : tables) {
      EXPECT_TRUE(Restore(dirty_job, step, true) ==
                  Restore(hashed_job, step, true))
          << step;
    }
  }
}

// Saves from dirty rows and from fingerprints mixed: with stored
// fingerprints (the default) a save from dirty rows keeps the fingerprints
// up to date, so the next save without dirty rows is still a delta; without
// them (store_fingerprints off, the old behaviour) the baseline saved from
// dirty rows has no fingerprints and the next such save is full.
TEST_F(IncrementalTest, FingerprintsAfterDirtyRowsSaves) {
  for (bool store : {true, false}) {
    SCOPED_TRACE(store ? "store_fingerprints" : "no stored fingerprints");
    Model model(7);
    const std::string job = store ? "it/mixed" : "it/mixed-unstored";
    client::IncrementalOptions options;
    options.store_fingerprints = store;
    client::IncrementalSaver saver(options);
    std::map<int64_t, std::string> tables;
    auto save = [&](int64_t step,
                    const std::map<std::string, std::vector<uint64_t>>& dirty) {
      client::IncrementalPlan plan;
      auto saved = client::SaveIncremental(*client_, saver, job, step,
                                           model.Tensors(), {}, dirty, &plan);
      EXPECT_TRUE(saved.ok()) << saved.status();
      tables[step] = model.table;
      return plan.decisions().at(0).decision.kind;
    };
    using Kind = DeltaDecision::Kind;
    EXPECT_EQ(save(1, {{"emb.weight", {}}}), Kind::kFull);  // no history
    std::vector<uint64_t> rows = model.RandomRows(10);
    model.ChangeRows(rows);
    EXPECT_EQ(save(2, {{"emb.weight", rows}}), Kind::kDelta);
    model.ChangeRows(model.RandomRows(10));
    EXPECT_EQ(save(3, {}), store ? Kind::kDelta : Kind::kFull);
    rows = model.RandomRows(10);
    model.ChangeRows(rows);
    EXPECT_EQ(save(4, {}), Kind::kDelta);
    // Dirty rows after a fingerprinted delta still cover that delta's rows.
    std::vector<uint64_t> more = model.RandomRows(10);
    model.ChangeRows(more);
    EXPECT_EQ(save(5, {{"emb.weight", more}}), Kind::kDelta);
    ExpectEveryStepRestores(job, tables);
    auto manifest = client_->GetManifest(job, 5);
    ASSERT_TRUE(manifest.ok()) << manifest.status();
    EXPECT_EQ(manifest->shards.at(0).tensors.at(0).HasStoredFingerprints(),
              store);
  }
}

TEST_F(IncrementalTest, PlanRefusesBadInput) {
  Model model(8);
  client::IncrementalSaver saver;
  EXPECT_TRUE(absl::IsInvalidArgument(
      saver.Plan(1, model.Tensors(), {{"emb.weight", {uint64_t{kRows}}}})
          .status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      saver.Plan(1, model.Tensors(), {{"nope", {0}}}).status()));
  auto plan = saver.Plan(5, model.Tensors());
  ASSERT_TRUE(plan.ok());
  saver.Committed(*plan);
  EXPECT_TRUE(absl::IsInvalidArgument(saver.Plan(5, model.Tensors()).status()));
  // A changed layout has no base: full.
  Model other(9);
  std::vector<client::TensorData> tensors = other.Tensors();
  tensors[0].global_shape = {kRows * 2, kCols};
  auto replanned = saver.Plan(6, tensors);
  ASSERT_TRUE(replanned.ok());
  EXPECT_EQ(replanned->decisions()[0].decision.kind,
            DeltaDecision::Kind::kFull);
  auto same = saver.Plan(6, model.Tensors());
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->decisions()[0].decision.kind, DeltaDecision::Kind::kDelta);
  EXPECT_EQ(same->decisions()[0].changed_rows, 0u);
}

// The saver's history holds for one layout (common/delta_base's
// SameTensorLayout): a change of dtype, global shape or box, even with the
// same bytes and row size, starts a new baseline, and the next save of the
// new layout is a delta on it.
TEST_F(IncrementalTest, AnyLayoutChangeStartsANewBaseline) {
  Model model(12);
  // The table as rows 0..kRows-1 of a global table one row longer, so that
  // its box can move without changing the global shape.
  auto tensors = [&](DType dtype, std::vector<int64_t> global_shape,
                     int64_t first_row) {
    std::vector<client::TensorData> out = model.Tensors();
    out[0].dtype = dtype;
    out[0].global_shape = std::move(global_shape);
    out[0].box.offsets = {first_row, 0};
    return out;
  };
  const std::vector<int64_t> taller = {kRows + 1, kCols};
  client::IncrementalSaver saver;
  auto plan = saver.Plan(1, tensors(DType::kFloat32, taller, 0));
  ASSERT_TRUE(plan.ok()) << plan.status();
  saver.Committed(*plan);

  using Kind = DeltaDecision::Kind;
  auto kind_of = [&](int64_t step,
                     const std::vector<client::TensorData>& planned) {
    auto replanned = saver.Plan(step, planned);
    EXPECT_TRUE(replanned.ok()) << replanned.status();
    return replanned.ok() ? replanned->decisions()[0].decision.kind
                          : Kind::kFull;
  };
  EXPECT_EQ(kind_of(2, tensors(DType::kFloat32, taller, 0)), Kind::kDelta);
  EXPECT_EQ(kind_of(2, tensors(DType::kInt32, taller, 0)), Kind::kFull);
  EXPECT_EQ(kind_of(2, tensors(DType::kFloat32, taller, 1)), Kind::kFull);
  EXPECT_EQ(kind_of(2, tensors(DType::kFloat32, {kRows + 2, kCols}, 0)),
            Kind::kFull);

  // Committing the new layout replaces the history: deltas follow it.
  plan = saver.Plan(2, tensors(DType::kInt32, taller, 0));
  ASSERT_TRUE(plan.ok()) << plan.status();
  saver.Committed(*plan);
  auto next = saver.Plan(3, tensors(DType::kInt32, taller, 0));
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->decisions()[0].decision.kind, Kind::kDelta);
  EXPECT_EQ(next->decisions()[0].decision.base_step, 2);
  EXPECT_EQ(kind_of(3, tensors(DType::kFloat32, taller, 0)), Kind::kFull);
}

// RowsChangedSince (what `ckpt put --delta-against` uses) finds exactly the
// rows that differ, the rows IncrementalSaver finds for the same two saves,
// from the fingerprints the saver stored: it reads 16 bytes a row, never
// the rows.
TEST_F(IncrementalTest, RowsChangedSinceFindsTheRowsTheSaverFinds) {
  Model model(13);
  const std::string job = "it/changed-since";
  client::IncrementalSaver saver;
  ASSERT_TRUE(
      client::SaveIncremental(*client_, saver, job, 1, model.Tensors(), {})
          .ok());
  auto manifest = client_->GetManifest(job, 1);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  const TensorEntry base = manifest->shards.at(0).tensors.at(0);
  ASSERT_EQ(base.name, "emb.weight");

  ASSERT_TRUE(base.HasStoredFingerprints());
  auto unchanged =
      client::RowsChangedSince(*client_, job, 1, base, model.Tensors()[0]);
  ASSERT_TRUE(unchanged.ok()) << unchanged.status();
  EXPECT_THAT(unchanged->rows, ::testing::IsEmpty());
  EXPECT_TRUE(unchanged->from_stored_fingerprints);
  EXPECT_EQ(unchanged->base_bytes_read, DenseFingerprintRecordBytes(kRows));

  // Random bytes make every changed row differ.
  const std::vector<uint64_t> rows = model.RandomRows(37);
  model.ChangeRows(rows);
  const std::vector<client::TensorData> tensors = model.Tensors();
  for (int threads : {1, 2}) {
    auto changed =
        client::RowsChangedSince(*client_, job, 1, base, tensors[0], threads);
    ASSERT_TRUE(changed.ok()) << changed.status();
    EXPECT_EQ(changed->rows, rows) << threads << " thread(s)";
    EXPECT_TRUE(changed->from_stored_fingerprints);
    // The fingerprints of the changed rows now, for the new delta's record.
    ASSERT_EQ(changed->fingerprints.size(), rows.size());
    auto now = SelectedRowFingerprints(
        absl::MakeConstSpan(tensors[0].bytes.data(), tensors[0].bytes.size()),
        kRowBytes, rows);
    ASSERT_TRUE(now.ok());
    EXPECT_EQ(changed->fingerprints, *now);
  }
  auto plan = saver.Plan(2, tensors);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->decisions()[0].decision.kind, DeltaDecision::Kind::kDelta);
  const absl::Span<const uint64_t> planned = plan->tensors()[0].delta_rows;
  EXPECT_EQ(std::vector<uint64_t>(planned.begin(), planned.end()), rows);
}

// Against a base that is itself a delta and was saved without stored
// fingerprints (as before they existed), RowsChangedSince reads the base
// back and compares with its rebuilt bytes (not its stored rows), so the
// result saved as a delta on it restores exactly.
TEST_F(IncrementalTest, RowsChangedSinceComparesWithARebuiltDeltaBase) {
  Model model(14);
  const std::string job = "it/changed-since-delta";
  ASSERT_TRUE(client_->SaveShard(job, 1, model.Tensors(), {}).ok());
  const std::vector<uint64_t> first = model.RandomRows(50);
  model.ChangeRows(first);
  std::vector<client::TensorData> tensors = model.Tensors();
  tensors[0].delta_base_step = 1;
  tensors[0].delta_rows = first;
  ASSERT_TRUE(client_->SaveShard(job, 2, tensors, {}).ok());
  auto manifest = client_->GetManifest(job, 2);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  const TensorEntry base = manifest->shards.at(0).tensors.at(0);
  ASSERT_EQ(base.delta_base_step, 1);

  // Rows disjoint from `first`, so a comparison with step 1 would differ.
  std::vector<uint64_t> second;
  for (uint64_t row : model.RandomRows(200)) {
    if (!std::binary_search(first.begin(), first.end(), row)) {
      second.push_back(row);
    }
    if (second.size() == 20) break;
  }
  ASSERT_EQ(second.size(), 20u);
  model.ChangeRows(second);
  tensors = model.Tensors();
  auto changed = client::RowsChangedSince(*client_, job, 2, base, tensors[0]);
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_EQ(changed->rows, second);
  EXPECT_FALSE(changed->from_stored_fingerprints);
  EXPECT_EQ(changed->base_bytes_read, base.ByteSize());

  tensors[0].delta_base_step = 2;
  tensors[0].delta_rows = changed->rows;
  ASSERT_TRUE(client_->SaveShard(job, 3, tensors, {}).ok());
  EXPECT_TRUE(Restore(job, 3, true)["emb.weight"] == model.table);
  EXPECT_TRUE(Restore(job, 3, false)["emb.weight"] == model.table);
}

// A tensor that is not laid out as the base entry (SameTensorLayout), or
// whose bytes do not fill its box, is refused before the base is read: the
// base here names a job that does not exist.
TEST_F(IncrementalTest, RowsChangedSinceRefusesAnotherLayoutBeforeReading) {
  Model model(15);
  const client::TensorData tensor = model.Tensors()[0];
  const TensorEntry base = client::TensorLayout(tensor);
  EXPECT_EQ(base.name, "emb.weight");
  EXPECT_EQ(base.dtype, DType::kFloat32);
  EXPECT_EQ(base.global_shape, (std::vector<int64_t>{kRows, kCols}));
  EXPECT_EQ(base.box, (Box{{0, 0}, {kRows, kCols}}));
  EXPECT_TRUE(base.pieces.empty());

  std::vector<client::TensorData> others(4, tensor);
  others[0].name = "other";
  others[1].dtype = DType::kInt32;
  others[2].global_shape = {kRows * 2, kCols};
  others[3].box.offsets = {kRows, 0};
  others[3].global_shape = others[2].global_shape;
  for (const client::TensorData& other : others) {
    auto refused =
        client::RowsChangedSince(*client_, "it/none", 1, base, other);
    EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << refused.status();
    EXPECT_THAT(refused.status().message(), HasSubstr("cannot be compared"));
  }
  client::TensorData short_bytes = tensor;
  short_bytes.bytes.remove_suffix(kRowBytes);
  auto refused =
      client::RowsChangedSince(*client_, "it/none", 1, base, short_bytes);
  EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr("bytes given"));
}

// A base deleted after the saver chose it (it had no dependents yet, so the
// server allowed that): the delta's commit is refused and SaveIncremental
// saves in full instead.
TEST_F(IncrementalTest, DeletedBaseMakesTheSaveFull) {
  Model model(10);
  const std::string job = "it/deleted-base";
  client::IncrementalSaver saver;
  ASSERT_TRUE(
      client::SaveIncremental(*client_, saver, job, 1, model.Tensors(), {})
          .ok());
  ASSERT_TRUE(client_->DeleteCheckpoint(job, 1).ok());

  model.ChangeRows(model.RandomRows(20));
  client::IncrementalPlan plan;
  auto saved = client::SaveIncremental(*client_, saver, job, 2, model.Tensors(),
                                       {}, {}, &plan);
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(plan.decisions()[0].decision.kind, DeltaDecision::Kind::kFull);
  EXPECT_EQ(Bases(job, 2)["emb.weight"], std::nullopt);
  EXPECT_TRUE(Restore(job, 2, true)["emb.weight"] == model.table);
  EXPECT_TRUE(Restore(job, 2, false)["emb.weight"] == model.table);
  // Its base protected now, the next save is a delta again.
  model.ChangeRows(model.RandomRows(20));
  ASSERT_TRUE(client::SaveIncremental(*client_, saver, job, 3, model.Tensors(),
                                      {}, {}, &plan)
                  .ok());
  EXPECT_EQ(Bases(job, 3)["emb.weight"], std::optional<int64_t>(2));
  EXPECT_TRUE(Restore(job, 3, true)["emb.weight"] == model.table);
  // And that base cannot be deleted while the delta exists.
  EXPECT_TRUE(absl::IsFailedPrecondition(client_->DeleteCheckpoint(job, 2)));
}

}  // namespace
}  // namespace ckpt::testing
