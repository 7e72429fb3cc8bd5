// Resharded restores end to end through the real ckpt-server binary (real
// RocksDB, real gRPC): 4 ranks save sharded tensors (split along dimension
// 0 and along dimension 1, a row-delta chain, a quantized one), and 1, 3
// and 4 new ranks restore their regions with Client::RestoreRegions (shared
// memory and streamed) and ReadRegions; the regions put together are the
// saved global tensors, byte for byte.
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/real_server_test.h"

namespace ckpt::testing {
namespace {

constexpr char kJob[] = "team/resharded";
constexpr int32_t kSavedRanks = 4;

// A global tensor, the boxes the 4 saving ranks hold, and how a new layout
// of M ranks splits it (along `split_dim`).
struct Global {
  std::string name;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
  std::string bytes;
  std::vector<Box> saved;  // per saving rank
  size_t split_dim = 0;
  std::optional<int> quantize_bits;
  size_t element_bytes() const { return DTypeSize(dtype); }
};

// Boxes cutting `shape` along `dim` at `bounds`.
std::vector<Box> Split(const std::vector<int64_t>& shape, size_t dim,
                       const std::vector<int64_t>& bounds) {
  std::vector<Box> boxes;
  for (size_t i = 0; i + 1 < bounds.size(); ++i) {
    Box box{std::vector<int64_t>(shape.size(), 0), shape};
    box.offsets[dim] = bounds[i];
    box.lengths[dim] = bounds[i + 1] - bounds[i];
    boxes.push_back(box);
  }
  return boxes;
}

// `parts` near-even boxes along `dim`, as a new layout of that many ranks.
std::vector<Box> EvenSplit(const std::vector<int64_t>& shape, size_t dim,
                           int parts) {
  std::vector<int64_t> bounds;
  for (int i = 0; i <= parts; ++i) bounds.push_back(shape[dim] * i / parts);
  return Split(shape, dim, bounds);
}

std::string Floats(size_t count, float phase) {
  std::vector<float> values(count);
  for (size_t i = 0; i < count; ++i) {
    values[i] = std::sin(static_cast<float>(i) * 0.013f + phase);
  }
  return std::string(reinterpret_cast<const char*>(values.data()),
                     count * sizeof(float));
}

class RegionRestoreTest : public RealServerTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(RealServerTest::SetUp());
    ASSERT_NO_FATAL_FAILURE(StartServer());
    // Dimension 0, uneven; dimension 1; an embedding table of 40-byte rows
    // that steps 2 and 3 save as row deltas; a quantized matrix.
    w_ = Global{"model.w",
                DType::kFloat32,
                {64, 48},
                Floats(64 * 48, 0.1f),
                Split({64, 48}, 0, {0, 10, 30, 47, 64}),
                0,
                std::nullopt};
    v_ = Global{"model.v",
                DType::kInt16,
                {20, 100},
                PatternBytes(4000, 3),
                Split({20, 100}, 1, {0, 25, 50, 75, 100}),
                1,
                std::nullopt};
    emb_ = Global{"emb",
                  DType::kFloat32,
                  {400, 10},
                  Floats(4000, 0.7f),
                  Split({400, 10}, 0, {0, 100, 200, 300, 400}),
                  0,
                  std::nullopt};
    q_ = Global{"q",
                DType::kFloat32,
                {40, 32},
                Floats(40 * 32, 2.0f),
                Split({40, 32}, 0, {0, 10, 20, 30, 40}),
                0,
                8};
    for (int32_t r = 0; r < kSavedRanks; ++r) {
      auto client = client::Client::Connect(server_->address());
      ASSERT_TRUE(client.ok()) << client.status();
      savers_.push_back(*std::move(client));
    }
    history_[1] = emb_.bytes;
    ASSERT_NO_FATAL_FAILURE(SaveStep(1, {}));
    // Step 2 changes rows 5, 99, 100 and 350; step 3 rows 99 and 250, each
    // a delta on the step before (a chain of three).
    ASSERT_NO_FATAL_FAILURE(SaveStep(2, {5, 99, 100, 350}));
    ASSERT_NO_FATAL_FAILURE(SaveStep(3, {99, 250}));
  }

  // Saves checkpoint `step` by the 4 ranks: emb as a delta on step - 1 of
  // `changed` rows (global), the rest whole (deduplicated).
  void SaveStep(int64_t step, const std::vector<int64_t>& changed) {
    if (step > 1) {
      std::string next = history_[step - 1];
      for (int64_t row : changed) {
        const std::string fresh = Floats(10, static_cast<float>(step * row));
        std::memcpy(next.data() + row * 40, fresh.data(), 40);
      }
      history_[step] = next;
      emb_.bytes = next;
    }
    for (int32_t r = 0; r < kSavedRanks; ++r) {
      std::vector<std::string> bytes;
      bytes.reserve(4);
      std::vector<client::TensorData> tensors;
      std::vector<uint64_t> delta_rows;
      for (const Global* g : {&w_, &v_, &emb_, &q_}) {
        bytes.push_back(
            SliceBox(g->bytes, g->shape, g->element_bytes(), g->saved[r]));
        client::TensorData& t = tensors.emplace_back();
        t.name = g->name;
        t.dtype = g->dtype;
        t.global_shape = g->shape;
        t.box = g->saved[r];
        t.bytes = bytes.back();
        t.quantize_bits = g->quantize_bits;
      }
      if (step > 1) {
        const Box& box = emb_.saved[r];
        for (int64_t row : changed) {
          if (row >= box.offsets[0] && row < box.offsets[0] + box.lengths[0]) {
            delta_rows.push_back(static_cast<uint64_t>(row - box.offsets[0]));
          }
        }
        tensors[2].delta_base_step = step - 1;
        tensors[2].delta_rows = delta_rows;
      }
      client::SaveOptions options;
      options.rank = r;
      options.world_size = kSavedRanks;
      options.chunk_bytes = 1000;  // many chunks, cut by the new layouts
      auto saved = savers_[r]->SaveShard(kJob, step, tensors, options);
      ASSERT_TRUE(saved.ok()) << saved.status();
    }
  }

  // What the quantized tensor restores to: the 4 saving ranks' whole
  // restores, put together.
  std::string DequantizedQ(const Checkpoint& checkpoint) {
    std::string global(q_.bytes.size(), '\0');
    for (int32_t r = 0; r < kSavedRanks; ++r) {
      auto whole = client_->RestoreShard(checkpoint, r);
      EXPECT_TRUE(whole.ok()) << whole.status();
      if (!whole.ok()) return "";
      for (const client::RestoredTensor& t : *whole) {
        if (t.entry.name != q_.name) continue;
        PasteBox(global, q_.shape, 4, q_.saved[r],
                 absl::string_view(t.bytes.data(), t.bytes.size()));
      }
    }
    return global;
  }

  // Restores step `step` by `ranks` new ranks, each its own client, and
  // checks that their regions put together are the saved tensors.
  void RestoreBy(int ranks, int64_t step, bool shared_memory) {
    SCOPED_TRACE(
        absl::StrCat(kSavedRanks, " -> ", ranks, ", step ", step,
                     shared_memory ? ", shared memory" : ", streamed"));
    auto reader = client::Client::Connect(
        server_->address(), {.shared_memory_restore = shared_memory});
    ASSERT_TRUE(reader.ok()) << reader.status();
    auto checkpoint = (*reader)->GetManifest(kJob, step);
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
    const std::vector<const Global*> globals = {&w_, &v_, &emb_, &q_};
    std::vector<std::string> assembled;
    for (const Global* g : globals) {
      assembled.emplace_back(g->bytes.size(), '\0');
    }
    for (int r = 0; r < ranks; ++r) {
      std::vector<client::RegionRequest> requests;
      for (const Global* g : globals) {
        requests.push_back(client::RegionRequest{
            g->name, g->dtype, g->shape,
            EvenSplit(g->shape, g->split_dim, ranks)[r], std::nullopt});
      }
      auto restored = (*reader)->RestoreRegions(*checkpoint, requests);
      ASSERT_TRUE(restored.ok()) << restored.status();
      uint64_t used = 0;
      for (size_t i = 0; i < globals.size(); ++i) {
        const client::RestoredTensor& t = restored->tensors[i];
        EXPECT_EQ(t.entry.box, requests[i].region);
        PasteBox(assembled[i], globals[i]->shape, globals[i]->element_bytes(),
                 requests[i].region,
                 absl::string_view(t.bytes.data(), t.bytes.size()));
        used += t.bytes.size();
      }
      EXPECT_EQ(restored->stats.bytes_used, used);
      EXPECT_GT(restored->stats.chunks_fetched, 0u);
    }
    EXPECT_TRUE(assembled[0] == w_.bytes) << "model.w differs";
    EXPECT_TRUE(assembled[1] == v_.bytes) << "model.v differs";
    EXPECT_TRUE(assembled[2] == history_[step]) << "emb differs";
    EXPECT_TRUE(assembled[3] == DequantizedQ(*checkpoint)) << "q differs";
  }

  Global w_, v_, emb_, q_;
  std::map<int64_t, std::string> history_;  // emb's bytes per step
  std::vector<std::unique_ptr<client::Client>> savers_;
};

TEST_F(RegionRestoreTest, FourRanksRestoredByOneThreeAndFour) {
  for (bool shared_memory : {true, false}) {
    for (int ranks : {1, 3, 4}) {
      ASSERT_NO_FATAL_FAILURE(RestoreBy(ranks, 3, shared_memory));
    }
  }
  // An older step of the chain too.
  ASSERT_NO_FATAL_FAILURE(RestoreBy(3, 2, true));
}

TEST_F(RegionRestoreTest, TheSameLayoutFetchesExactlyItsBytes) {
  auto checkpoint = client_->GetManifest(kJob, 3);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  for (int32_t r = 0; r < kSavedRanks; ++r) {
    const std::vector<client::RegionRequest> requests = {
        {w_.name, w_.dtype, w_.shape, w_.saved[r], std::nullopt},
        {v_.name, v_.dtype, v_.shape, v_.saved[r], std::nullopt}};
    auto restored = client_->RestoreRegions(*checkpoint, requests);
    ASSERT_TRUE(restored.ok()) << restored.status();
    EXPECT_EQ(restored->stats.bytes_fetched, restored->stats.bytes_used);
  }
}

TEST_F(RegionRestoreTest, ReadRegionsFillsCallerMemory) {
  auto checkpoint = client_->GetManifest(kJob, 3);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  // Rank 1 of 3 new ranks: the middle third of each tensor's rows, and a
  // block across two of v's column splits.
  const Box w_part{{21, 0}, {21, 48}};
  const Box emb_part{{133, 0}, {133, 10}};
  const Box v_part{{4, 20}, {10, 40}};
  const std::vector<client::RegionRequest> requests = {
      {w_.name, w_.dtype, w_.shape, w_part, std::nullopt},
      {emb_.name, emb_.dtype, emb_.shape, emb_part, std::nullopt},
      {v_.name, v_.dtype, v_.shape, v_part, std::nullopt}};
  std::vector<std::string> outs = {std::string(21 * 48 * 4, '\0'),
                                   std::string(133 * 10 * 4, '\0'),
                                   std::string(10 * 40 * 2, '\0')};
  const std::vector<absl::Span<char>> spans = {absl::MakeSpan(outs[0]),
                                               absl::MakeSpan(outs[1]),
                                               absl::MakeSpan(outs[2])};
  uint64_t last_done = 0, last_total = 0;
  auto stats = client_->ReadRegions(*checkpoint, requests, spans,
                                    [&](uint64_t done, uint64_t total) {
                                      last_done = done;
                                      last_total = total;
                                    });
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_TRUE(outs[0] == SliceBox(w_.bytes, w_.shape, 4, w_part));
  EXPECT_TRUE(outs[1] == SliceBox(history_[3], emb_.shape, 4, emb_part));
  EXPECT_TRUE(outs[2] == SliceBox(v_.bytes, v_.shape, 2, v_part));
  EXPECT_EQ(last_done, stats->bytes_fetched);
  EXPECT_EQ(last_total, stats->bytes_fetched);
  EXPECT_EQ(stats->bytes_used,
            outs[0].size() + outs[1].size() + outs[2].size());
  // Only regions' chunks were read: far less than the checkpoint.
  EXPECT_LT(stats->bytes_fetched, 2 * stats->bytes_used);
}

TEST_F(RegionRestoreTest, RefusesADtypeMismatch) {
  auto checkpoint = client_->GetManifest(kJob, 3);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  const std::vector<client::RegionRequest> requests = {
      {w_.name, DType::kFloat64, w_.shape, w_.saved[0], std::nullopt}};
  auto restored = client_->RestoreRegions(*checkpoint, requests);
  EXPECT_TRUE(absl::IsInvalidArgument(restored.status())) << restored.status();
  EXPECT_THAT(restored.status().message(),
              ::testing::HasSubstr("requested as float64 but rank 0 saved it "
                                   "as float32"));
}

}  // namespace
}  // namespace ckpt::testing
