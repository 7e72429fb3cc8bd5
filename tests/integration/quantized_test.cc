// Quantized tensors (opt-in, lossy) end to end through the real ckpt-server
// binary: SaveShard with quantize_bits, the manifest's record of width and
// error, restores (shared memory, streaming, ReadTensor) within that error,
// the refusals, IncrementalSaver leaving them alone, and `ckpt show`.
#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "client/incremental.h"
#include "common/quantize.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/real_server_test.h"

namespace ckpt::testing {
namespace {

using ::testing::HasSubstr;

std::string FloatBytes(const std::vector<float>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()),
                     values.size() * sizeof(float));
}

std::vector<float> Floats(absl::Span<const char> bytes) {
  std::vector<float> values(bytes.size() / sizeof(float));
  std::memcpy(values.data(), bytes.data(), values.size() * sizeof(float));
  return values;
}

// Normal values with a few large outliers, as trained embeddings have.
std::vector<float> RandomTable(size_t count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  std::vector<float> values(count);
  for (float& x : values) x = normal(rng);
  for (size_t i = 0; i < count; i += 97) values[i] *= 20;
  return values;
}

client::TensorData Tensor(const std::string& name, DType dtype,
                          std::vector<int64_t> shape, absl::string_view bytes,
                          std::optional<int> bits) {
  client::TensorData tensor = WholeTensor(name, dtype, std::move(shape), bytes);
  tensor.quantize_bits = bits;
  return tensor;
}

// What a restore must give: every value within the recorded max absolute
// error of the original, and the recorded relative L2 error the one
// measured here.
void ExpectWithinRecordedError(const std::vector<float>& original,
                               absl::Span<const char> restored_bytes,
                               const Quantization& recorded,
                               const std::string& what) {
  const std::vector<float> restored = Floats(restored_bytes);
  ASSERT_EQ(restored.size(), original.size()) << what;
  double max_abs = 0, diff2 = 0, norm2 = 0;
  for (size_t i = 0; i < original.size(); ++i) {
    const double d = static_cast<double>(restored[i]) - original[i];
    max_abs = std::max(max_abs, std::abs(d));
    diff2 += d * d;
    norm2 += static_cast<double>(original[i]) * original[i];
  }
  EXPECT_LE(max_abs, recorded.max_abs_error) << what;
  EXPECT_GT(max_abs, 0) << what << ": quantization changed nothing";
  EXPECT_NEAR(std::sqrt(diff2 / norm2), recorded.relative_l2_error,
              1e-6 + 1e-4 * recorded.relative_l2_error)
      << what;
}

class QuantizedTest : public RealServerTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(RealServerTest::SetUp());
    StartServer();
  }

  const TensorEntry* Find(const Checkpoint& checkpoint,
                          const std::string& name) {
    for (const TensorEntry& entry : checkpoint.shards[0].tensors) {
      if (entry.name == name) return &entry;
    }
    ADD_FAILURE() << "no tensor " << name;
    return nullptr;
  }
};

TEST_F(QuantizedTest, EveryWidthRestoresWithinTheRecordedError) {
  constexpr int64_t kRows = 300, kCols = 64;
  const std::vector<float> table = RandomTable(kRows * kCols, 1);
  const std::string table_bytes = FloatBytes(table);
  const std::vector<float> dense = RandomTable(kCols, 2);
  const std::string dense_bytes = FloatBytes(dense);
  std::map<int, double> l2_by_bits;
  int64_t step = 0;
  for (int bits : {8, 4, 3, 2}) {
    ++step;
    const std::vector<client::TensorData> tensors = {
        Tensor("emb", DType::kFloat32, {kRows, kCols}, table_bytes, bits),
        Tensor("dense", DType::kFloat32, {kCols}, dense_bytes, std::nullopt)};
    auto saved = client_->SaveShard("t/q", step, tensors, {});
    ASSERT_TRUE(saved.ok()) << saved.status();
    ASSERT_EQ(saved->quantized.size(), 1u);
    const Quantization reported = saved->quantized.at("emb");
    EXPECT_EQ(reported.bits, bits);
    // The table went over the wire quantized; the unchanged dense part
    // only the first time (deduplicated after).
    EXPECT_EQ(saved->bytes_sent, QuantizedBytes(kRows, kCols, bits) +
                                     (step == 1 ? dense_bytes.size() : 0));

    auto manifest = client_->GetManifest("t/q", step);
    ASSERT_TRUE(manifest.ok()) << manifest.status();
    const TensorEntry* emb = Find(*manifest, "emb");
    const TensorEntry* plain = Find(*manifest, "dense");
    ASSERT_NE(emb, nullptr);
    ASSERT_NE(plain, nullptr);
    ASSERT_TRUE(emb->IsQuantized());
    EXPECT_EQ(*emb->quantization, reported);
    EXPECT_EQ(emb->StoredBytes(), QuantizedBytes(kRows, kCols, bits));
    EXPECT_EQ(emb->ByteSize(), table_bytes.size());
    EXPECT_FALSE(plain->IsQuantized()) << "quantized without being asked";
    l2_by_bits[bits] = reported.relative_l2_error;

    for (bool shared : {true, false}) {
      const std::string what =
          absl::StrCat(bits, " bits", shared ? " (shared memory)" : "");
      std::vector<client::RestoredTensor> restored =
          RestoreRankZero("t/q", step, shared);
      ASSERT_EQ(restored.size(), 2u);
      for (const client::RestoredTensor& tensor : restored) {
        if (tensor.entry.name == "emb") {
          ExpectWithinRecordedError(table, tensor.bytes, reported, what);
        } else {
          EXPECT_EQ(absl::string_view(tensor.bytes.data(), tensor.bytes.size()),
                    dense_bytes)
              << what;
        }
      }
    }
    std::string read(table_bytes.size(), '\0');
    ASSERT_TRUE(client_->ReadTensor("t/q", *emb, absl::MakeSpan(read)).ok());
    ExpectWithinRecordedError(table, absl::MakeConstSpan(read), reported,
                              absl::StrCat(bits, " bits, ReadTensor"));
  }
  // Fewer bits, more error.
  EXPECT_LT(l2_by_bits[8], l2_by_bits[4]);
  EXPECT_LT(l2_by_bits[4], l2_by_bits[3]);
  EXPECT_LT(l2_by_bits[3], l2_by_bits[2]);
}

TEST_F(QuantizedTest, OneAndThreeDimensionalTensorsAndRanksShards) {
  // A 1-D tensor is one row; a 3-D box has rows along dimension 0 and the
  // rest as columns. Two ranks each quantize their own box of one tensor.
  const std::vector<float> vector = RandomTable(1000, 3);
  const std::string vector_bytes = FloatBytes(vector);
  const std::vector<float> cube = RandomTable(size_t{2} * 6 * 5 * 7, 4);
  constexpr int64_t kHalf = int64_t{6} * 5 * 7;  // values in one rank's box
  std::vector<std::string> halves(2);
  for (int r = 0; r < 2; ++r) {
    halves[r] = FloatBytes(std::vector<float>(cube.begin() + r * kHalf,
                                              cube.begin() + (r + 1) * kHalf));
  }
  for (int r = 0; r < 2; ++r) {
    std::vector<client::TensorData> tensors = {
        Tensor("cube", DType::kFloat32, {12, 5, 7}, halves[r], 4)};
    tensors[0].box = Box{{int64_t{6} * r, 0, 0}, {6, 5, 7}};
    if (r == 0) {
      tensors.push_back(
          Tensor("vector", DType::kFloat32, {1000}, vector_bytes, 8));
    }
    client::SaveOptions options;
    options.rank = r;
    options.world_size = 2;
    auto saved = client_->SaveShard("t/shapes", 1, tensors, options);
    ASSERT_TRUE(saved.ok()) << saved.status();
  }
  auto manifest = client_->GetManifest("t/shapes", 1);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  for (const ShardManifest& shard : manifest->shards) {
    for (const TensorEntry& entry : shard.tensors) {
      ASSERT_TRUE(entry.IsQuantized()) << entry.name;
      if (entry.name == "vector") {
        EXPECT_EQ(entry.QuantizedRows(), 1u);
        EXPECT_EQ(entry.QuantizedCols(), 1000u);
        EXPECT_EQ(entry.StoredBytes(), QuantizedBytes(1, 1000, 8));
      } else {
        EXPECT_EQ(entry.QuantizedRows(), 6u);
        EXPECT_EQ(entry.QuantizedCols(), 35u);
      }
      std::string read(entry.ByteSize(), '\0');
      ASSERT_TRUE(
          client_->ReadTensor("t/shapes", entry, absl::MakeSpan(read)).ok());
      const std::vector<float> original =
          entry.name == "vector"
              ? vector
              : Floats(absl::MakeConstSpan(halves[entry.box.offsets[0] / 6]));
      ExpectWithinRecordedError(
          original, absl::MakeConstSpan(read), *entry.quantization,
          absl::StrCat(entry.name, " of rank ", shard.rank));
    }
  }
}

TEST_F(QuantizedTest, BadRequestsAreRefusedAndNothingIsCommitted) {
  const std::vector<float> table = RandomTable(size_t{64} * 8, 5);
  const std::string table_bytes = FloatBytes(table);
  std::vector<float> with_nan = table;
  with_nan[17] = std::nanf("");
  const std::string nan_bytes = FloatBytes(with_nan);
  const std::string ints(size_t{64} * 8 * 4, '\1');

  struct Case {
    std::string what;
    client::TensorData tensor;
    std::string message;
  };
  std::vector<Case> cases = {
      {"5 bits", Tensor("emb", DType::kFloat32, {64, 8}, table_bytes, 5),
       "bits"},
      {"0 bits", Tensor("emb", DType::kFloat32, {64, 8}, table_bytes, 0),
       "bits"},
      {"int32", Tensor("emb", DType::kInt32, {64, 8}, ints, 4),
       "only float32 tensors are quantized"},
      {"NaN", Tensor("emb", DType::kFloat32, {64, 8}, nan_bytes, 4),
       "only finite values quantize"},
      {"empty", Tensor("emb", DType::kFloat32, {0, 8}, "", 4), "empty"},
  };
  client::TensorData delta =
      Tensor("emb", DType::kFloat32, {64, 8}, table_bytes, 4);
  delta.delta_base_step = 0;
  cases.push_back({"a delta", delta, "always saved in full"});
  int64_t step = 10;
  for (const Case& c : cases) {
    auto saved = client_->SaveShard("t/bad", ++step, {&c.tensor, 1}, {});
    EXPECT_TRUE(absl::IsInvalidArgument(saved.status()))
        << c.what << ": " << saved.status();
    EXPECT_THAT(saved.status().message(), HasSubstr("'emb'")) << c.what;
    EXPECT_THAT(saved.status().message(), HasSubstr(c.message)) << c.what;
  }
  // Refused before anything began: the job does not even exist.
  EXPECT_TRUE(absl::IsNotFound(client_->ListCheckpoints("t/bad").status()));
}

TEST_F(QuantizedTest, ADeltaAgainstAQuantizedBaseIsRefused) {
  const std::vector<float> table = RandomTable(size_t{64} * 8, 6);
  const std::string table_bytes = FloatBytes(table);
  const client::TensorData quantized =
      Tensor("emb", DType::kFloat32, {64, 8}, table_bytes, 4);
  ASSERT_TRUE(client_->SaveShard("t/base", 1, {&quantized, 1}, {}).ok());
  client::TensorData delta =
      Tensor("emb", DType::kFloat32, {64, 8}, table_bytes, std::nullopt);
  const std::vector<uint64_t> rows = {3};
  delta.delta_base_step = 1;
  delta.delta_rows = rows;
  auto saved = client_->SaveShard("t/base", 2, {&delta, 1}, {});
  EXPECT_TRUE(absl::IsFailedPrecondition(saved.status())) << saved.status();
  EXPECT_THAT(saved.status().message(),
              HasSubstr("which holds it quantized to 4 bits"));
}

TEST_F(QuantizedTest, IncrementalSaverSavesQuantizedTensorsInFull) {
  const std::vector<float> table = RandomTable(size_t{256} * 16, 7);
  const std::string table_bytes = FloatBytes(table);
  const std::string plain_bytes = FloatBytes(RandomTable(size_t{256} * 16, 8));
  client::IncrementalSaver saver;
  for (int64_t step = 1; step <= 3; ++step) {
    const std::vector<client::TensorData> tensors = {
        Tensor("emb", DType::kFloat32, {256, 16}, table_bytes, 4),
        Tensor("plain", DType::kFloat32, {256, 16}, plain_bytes, std::nullopt)};
    client::IncrementalPlan plan;
    auto saved = client::SaveIncremental(*client_, saver, "t/inc", step,
                                         tensors, {}, {}, &plan);
    ASSERT_TRUE(saved.ok()) << saved.status();
    for (const client::TensorPlan& decided : plan.decisions()) {
      const bool delta = decided.decision.kind == DeltaDecision::Kind::kDelta;
      if (decided.name == "emb") {
        EXPECT_FALSE(delta) << "step " << step;
        EXPECT_THAT(decided.decision.reason, HasSubstr("quantized"));
      } else {
        EXPECT_EQ(delta, step > 1) << "step " << step;
      }
    }
  }
  std::vector<client::RestoredTensor> restored =
      RestoreRankZero("t/inc", 3, true);
  ASSERT_EQ(restored.size(), 2u);
  for (const client::RestoredTensor& tensor : restored) {
    if (tensor.entry.name == "emb") {
      ASSERT_TRUE(tensor.entry.IsQuantized());
      ExpectWithinRecordedError(table, tensor.bytes, *tensor.entry.quantization,
                                "step 3");
    } else {
      EXPECT_EQ(absl::string_view(tensor.bytes.data(), tensor.bytes.size()),
                plain_bytes);
    }
  }
}

TEST_F(QuantizedTest, CkptShowReportsWidthAndError) {
  const std::vector<float> table = RandomTable(size_t{128} * 32, 9);
  const std::string table_bytes = FloatBytes(table);
  const std::vector<client::TensorData> tensors = {
      Tensor("emb", DType::kFloat32, {128, 32}, table_bytes, 3),
      Tensor("plain", DType::kFloat32, {128, 32}, table_bytes, std::nullopt)};
  auto saved = client_->SaveShard("t/show", 4, tensors, {});
  ASSERT_TRUE(saved.ok()) << saved.status();
  const Quantization recorded = saved->quantized.at("emb");

  CommandResult json_run = Ckpt("show t/show 4 --json");
  ASSERT_EQ(json_run.exit_code, 0) << json_run.err;
  const nlohmann::json shown = nlohmann::json::parse(json_run.out);
  std::map<std::string, nlohmann::json> by_name;
  for (const nlohmann::json& tensor : shown["shards"][0]["tensors"]) {
    by_name[tensor["name"]] = tensor;
  }
  const nlohmann::json& q = by_name.at("emb")["quantization"];
  EXPECT_EQ(q["bits"], 3);
  EXPECT_DOUBLE_EQ(q["max_abs_error"].get<double>(), recorded.max_abs_error);
  EXPECT_DOUBLE_EQ(q["relative_l2_error"].get<double>(),
                   recorded.relative_l2_error);
  EXPECT_EQ(by_name.at("emb")["stored_bytes"], QuantizedBytes(128, 32, 3));
  EXPECT_TRUE(by_name.at("plain")["quantization"].is_null());

  CommandResult text_run = Ckpt("show t/show 4");
  ASSERT_EQ(text_run.exit_code, 0) << text_run.err;
  EXPECT_THAT(text_run.out, HasSubstr("quantized 3b"));
  EXPECT_THAT(text_run.out, HasSubstr("ERROR"));
}

}  // namespace
}  // namespace ckpt::testing
