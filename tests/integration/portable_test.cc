// Export and import end to end (client/portable/, `ckpt export`, `ckpt
// import`) against the real ckpt-server: every dtype round-trips exactly
// through the CLI, with its metadata; a sharded multi-rank checkpoint is
// exported whole and by rank (torch.chunk rows) and imported back as
// ranks; a delta chain is exported applied and a quantized tensor
// dequantized, in slabs of a small buffer; a split export has an index;
// a hand-made Hugging Face directory imports. Every exported directory is
// read by safetensors_tool.py, an independent json + numpy reader.
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/portable/export.h"
#include "client/portable/import.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/portable_test_util.h"

namespace ckpt::testing {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

// The independent reader's view of a tensor must be exactly this.
void ExpectTool(const json& read, const std::string& name, DType dtype,
                const std::vector<int64_t>& shape, absl::string_view bytes) {
  ASSERT_TRUE(read.contains(name)) << name << " missing from " << read.dump();
  EXPECT_EQ(read[name]["dtype"], std::string(DTypeName(dtype))) << name;
  EXPECT_EQ(read[name]["shape"].get<std::vector<int64_t>>(), shape) << name;
  EXPECT_EQ(read[name]["sha256"], Sha(bytes)) << name;
}

std::vector<std::string> Keys(const json& object) {
  std::vector<std::string> keys;
  for (const auto& [key, value] : object.items()) keys.push_back(key);
  return keys;
}

// A tensor of `dtype` and `shape` over pattern bytes (bools 0 or 1).
struct Sample {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

Sample MakeSample(const std::string& name, DType dtype,
                  std::vector<int64_t> shape, uint32_t seed) {
  uint64_t count = 1;
  for (int64_t dim : shape) count *= static_cast<uint64_t>(dim);
  std::string bytes = PatternBytes(count * DTypeSize(dtype), seed);
  if (dtype == DType::kBool) {
    for (char& c : bytes) c = static_cast<char>(c & 1);
  }
  return {name, dtype, std::move(shape), std::move(bytes)};
}

TEST_F(PortableTest, RoundTripsEveryDTypeAndTheMetadataThroughTheCli) {
  const std::vector<Sample> samples = {
      MakeSample("u8", DType::kUint8, {3, 5}, 1),
      MakeSample("i8", DType::kInt8, {7}, 2),
      MakeSample("i16", DType::kInt16, {2, 3, 4}, 3),
      MakeSample("i32/empty", DType::kInt32, {0, 4}, 4),
      MakeSample("i64", DType::kInt64, {5}, 5),
      MakeSample("model/f16", DType::kFloat16, {4, 4}, 6),
      MakeSample("model/bf16", DType::kBFloat16, {6, 2}, 7),
      MakeSample("f32", DType::kFloat32, {300, 1000}, 8),  // several chunks
      MakeSample("f64.scalar", DType::kFloat64, {}, 9),
      MakeSample("flags", DType::kBool, {9}, 10),
      MakeSample("c64", DType::kComplex64, {4}, 11),
      MakeSample("c128", DType::kComplex128, {2, 3}, 12),
  };
  std::vector<client::TensorData> tensors;
  for (const Sample& sample : samples) {
    tensors.push_back(
        WholeTensor(sample.name, sample.dtype, sample.shape, sample.bytes));
  }
  CheckpointMetadata metadata;
  metadata.metrics = {{"loss", 0.1 + 0.2},
                      {"nan", std::numeric_limits<double>::quiet_NaN()},
                      {"huge", -1e308}};
  metadata.tags = {{"run", "a b=c"}, {"name", "é"}};
  metadata.writer_time = absl::FromUnixNanos(1700000000123456789);
  Save("it/src", 3, tensors, 0, 1, metadata);

  const std::string out = Dir("export");
  CommandResult exported = Ckpt("--json export it/src latest " + out);
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  const json report = json::parse(exported.out);
  EXPECT_EQ(report["step"], 3);
  EXPECT_EQ(report["tensors"], samples.size());
  EXPECT_EQ(report["files"],
            json({"model.safetensors", "ckpt_checkpoint.json"}));

  const json read = Tool("read", out);
  EXPECT_EQ(read.size(), samples.size());
  for (const Sample& sample : samples) {
    ExpectTool(read, sample.name, sample.dtype, sample.shape, sample.bytes);
  }
  // The export is a restore in the job's history, by rank 0.
  auto events = client_->ListEvents("it/src");
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_EQ(events->back().kind, EventKind::kRestored);
  EXPECT_EQ(events->back().detail, "rank 0");

  CommandResult imported = Ckpt("--json import " + out + " it/dst 9");
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_EQ(json::parse(imported.out)["metadata_from_json"], true);
  auto restored = client_->RestoreShard("it/dst", 9, 0);
  ASSERT_TRUE(restored.ok()) << restored.status();
  ASSERT_EQ(restored->size(), samples.size());
  std::map<std::string, const client::RestoredTensor*> by_name;
  for (const auto& tensor : *restored) by_name[tensor.entry.name] = &tensor;
  for (const Sample& sample : samples) {
    const client::RestoredTensor& got = *by_name.at(sample.name);
    EXPECT_EQ(got.entry.dtype, sample.dtype) << sample.name;
    EXPECT_EQ(got.entry.global_shape, sample.shape) << sample.name;
    EXPECT_EQ(absl::string_view(got.bytes.data(), got.bytes.size()),
              sample.bytes)
        << sample.name;
  }
  auto records = client_->ListCheckpoints("it/dst");
  ASSERT_TRUE(records.ok() && records->size() == 1);
  const CheckpointMetadata& got = (*records)[0].metadata;
  EXPECT_EQ(got.metrics.at("loss"), 0.1 + 0.2);  // exact, not rounded
  EXPECT_TRUE(std::isnan(got.metrics.at("nan")));
  EXPECT_EQ(got.metrics.at("huge"), -1e308);
  EXPECT_EQ(got.tags, metadata.tags);
  // As the source server stored it (to the microsecond).
  auto source = client_->ListCheckpoints("it/src");
  ASSERT_TRUE(source.ok() && source->size() == 1);
  EXPECT_EQ(got.writer_time, (*source)[0].metadata.writer_time);
  EXPECT_EQ(absl::ToUnixMicros(*got.writer_time), 1700000000123456);
}

// Three ranks: "emb" sharded by rows 5/3/2, "head" replicated, "loader"
// per-rank, "only0" saved by rank 0 alone.
class ShardedExportTest : public PortableTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(PortableTest::SetUp());
    emb_ = PatternBytes(10 * 4 * 4, 21);
    head_ = PatternBytes(4 * 2, 22);
    only0_ = PatternBytes(3, 23);
    const int64_t rows[] = {5, 3, 2};
    int64_t at = 0;
    for (int32_t rank = 0; rank < 3; ++rank) {
      loader_.push_back(PatternBytes(16, 30 + rank));
      parts_.push_back(emb_.substr(at * 16, rows[rank] * 16));
      client::TensorData emb =
          WholeTensor("emb", DType::kFloat32, {10, 4}, parts_.back());
      emb.box = Box{{at, 0}, {rows[rank], 4}};
      at += rows[rank];
      std::vector<client::TensorData> tensors = {
          emb, WholeTensor("head", DType::kBFloat16, {4}, head_),
          WholeTensor("loader", DType::kInt64, {2}, loader_.back())};
      if (rank == 0) {
        tensors.push_back(WholeTensor("only0", DType::kUint8, {3}, only0_));
      }
      Save(kJob, 1, tensors, rank, 3);
    }
  }

  static constexpr char kJob[] = "it/sharded";
  std::string emb_, head_, only0_;
  std::vector<std::string> loader_, parts_;
};

TEST_F(ShardedExportTest, ExportsWholeTensorsAndEachRanksCopyOfPerRankOnes) {
  const std::string out = Dir("full");
  CommandResult run = Ckpt(absl::StrCat("export ", kJob, " 1 ", out));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const json read = Tool("read", out);
  EXPECT_THAT(Keys(read),
              UnorderedElementsAre("emb", "head", "only0", "rank-0/loader",
                                   "rank-1/loader", "rank-2/loader"));
  ExpectTool(read, "emb", DType::kFloat32, {10, 4}, emb_);
  ExpectTool(read, "head", DType::kBFloat16, {4}, head_);
  ExpectTool(read, "only0", DType::kUint8, {3}, only0_);
  for (int rank = 0; rank < 3; ++rank) {
    ExpectTool(read, absl::StrCat("rank-", rank, "/loader"), DType::kInt64, {2},
               loader_[rank]);
  }
  const json described =
      json::parse(ReadWholeFile(out + "/ckpt_checkpoint.json"));
  EXPECT_EQ(described["world_size"], 3);
  EXPECT_EQ(described["tensors"]["emb"]["layout"], "sharded");
  EXPECT_EQ(described["tensors"]["emb"]["saved"].size(), 3u);
  EXPECT_EQ(described["tensors"]["emb"]["saved"][1]["offsets"], json({5, 0}));
  EXPECT_EQ(described["tensors"]["rank-2/loader"]["ranks"], json({2}));

  // Imported as rank 0 of 1: every tensor whole, the per-rank copies under
  // their rank-N names.
  CommandResult imported = Ckpt("import " + out + " it/whole 4");
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  auto restored = client_->RestoreShard("it/whole", 4, 0);
  ASSERT_TRUE(restored.ok()) << restored.status();
  for (const auto& tensor : *restored) {
    if (tensor.entry.name == "emb") {
      EXPECT_EQ(absl::string_view(tensor.bytes.data(), tensor.bytes.size()),
                emb_);
    }
  }
  EXPECT_EQ(restored->size(), 6u);
}

TEST_F(ShardedExportTest, ExportsRankPartsThatImportBackAsRanks) {
  for (int rank = 0; rank < 2; ++rank) {
    const std::string out = Dir(absl::StrCat("rank", rank));
    CommandResult run = Ckpt(absl::StrCat("export ", kJob, " 1 ", out,
                                          " --rank ", rank, " --world-size 2"));
    ASSERT_EQ(run.exit_code, 0) << run.err;
    const json read = Tool("read", out);
    // torch.chunk(10 rows, 2): rows 0-4 and 5-9.
    ExpectTool(read, "emb", DType::kFloat32, {5, 4},
               emb_.substr(rank * 5 * 16, 5 * 16));
    ExpectTool(read, "head", DType::kBFloat16, {4}, head_);
    ExpectTool(read, "loader", DType::kInt64, {2}, loader_[rank]);
    EXPECT_EQ(read.contains("only0"), rank == 0);
    EXPECT_EQ(read.size(), rank == 0 ? 4u : 3u);
    // Recorded as that rank's restore.
    auto events = client_->ListEvents(kJob);
    ASSERT_TRUE(events.ok());
    EXPECT_EQ(events->back().detail, absl::StrCat("rank ", rank));
  }
  // The rank directories go back in as the two ranks of a checkpoint (their
  // JSON gives rank, world size and the boxes).
  CommandResult first = Ckpt("import " + Dir("rank1") + " it/resharded 2");
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_THAT(first.out, HasSubstr("pending until every rank"));
  CommandResult second = Ckpt("import " + Dir("rank0") + " it/resharded 2");
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_THAT(second.out, HasSubstr("committed step 2"));
  auto checkpoint = client_->GetManifest("it/resharded", 2);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_EQ(checkpoint->record.world_size, 2);
  auto regions = client_->RestoreRegions(
      *checkpoint, {client::RegionRequest{.name = "emb",
                                          .dtype = DType::kFloat32,
                                          .global_shape = {10, 4},
                                          .region = Box{{0, 0}, {10, 4}},
                                          .source_rank = std::nullopt}});
  ASSERT_TRUE(regions.ok()) << regions.status();
  const auto& whole = regions->tensors[0].bytes;
  EXPECT_EQ(absl::string_view(whole.data(), whole.size()), emb_);
}

TEST_F(ShardedExportTest, RefusesARankTheCheckpointHasNoPerRankStateFor) {
  const std::string out = Dir("rank3");
  CommandResult run = Ckpt(
      absl::StrCat("export ", kJob, " 1 ", out, " --rank 3 --world-size 4"));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(run.err, HasSubstr("no rank 3"));
  EXPECT_THAT(run.err, HasSubstr("'loader', 'only0'"));
  EXPECT_FALSE(std::filesystem::exists(out));
  CommandResult both = Ckpt(absl::StrCat("export ", kJob, " 1 ", out,
                                         " --rank 0 --world-size 2 --full"));
  EXPECT_NE(both.exit_code, 0);
  CommandResult alone =
      Ckpt(absl::StrCat("export ", kJob, " 1 ", out, " --rank 0"));
  EXPECT_THAT(alone.err, HasSubstr("--rank and --world-size go together"));
}

TEST_F(PortableTest, ExportsADeltaChainAppliedAndQuantizedValuesInSlabs) {
  // table: 128 rows of 16 KiB (2 MiB), a delta of rows 3 and 77 at step 2
  // and of row 5 at step 3; q: float32 quantized to 8 bits at step 3.
  constexpr int64_t kRows = 128;
  constexpr int64_t kCols = 4096;
  std::string table = PatternBytes(kRows * kCols * 4, 41);
  Save("it/delta", 1,
       {WholeTensor("table", DType::kFloat32, {kRows, kCols}, table)});
  auto change_rows = [&](const std::vector<uint64_t>& rows, uint32_t seed) {
    for (uint64_t row : rows) {
      table.replace(row * kCols * 4, kCols * 4,
                    PatternBytes(kCols * 4, seed + row));
    }
  };
  const std::vector<uint64_t> rows2 = {3, 77};
  change_rows(rows2, 50);
  client::TensorData delta2 =
      WholeTensor("table", DType::kFloat32, {kRows, kCols}, table);
  delta2.delta_base_step = 1;
  delta2.delta_rows = rows2;
  Save("it/delta", 2, {delta2});
  const std::vector<uint64_t> rows3 = {5};
  change_rows(rows3, 60);
  client::TensorData delta3 =
      WholeTensor("table", DType::kFloat32, {kRows, kCols}, table);
  delta3.delta_base_step = 2;
  delta3.delta_rows = rows3;
  std::vector<float> values(32 * 64);
  for (size_t i = 0; i < values.size(); ++i) {
    values[i] = std::sin(static_cast<float>(i)) * 3;
  }
  const std::string q(reinterpret_cast<const char*>(values.data()),
                      values.size() * 4);
  client::TensorData quantized = WholeTensor("q", DType::kFloat32, {32, 64}, q);
  quantized.quantize_bits = 8;
  Save("it/delta", 3, {delta3, quantized});

  auto restored = client_->RestoreShard("it/delta", 3, 0);
  ASSERT_TRUE(restored.ok()) << restored.status();
  std::string dequantized;
  for (const auto& tensor : *restored) {
    if (tensor.entry.name == "q") {
      dequantized.assign(tensor.bytes.data(), tensor.bytes.size());
    }
  }
  ASSERT_NE(dequantized, q);  // lossy: what is exported is what restores

  // Through the library with a 1 MiB buffer: the table is read in slabs.
  auto checkpoint = client_->GetManifest("it/delta", 3);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  client::portable::ExportOptions options;
  options.buffer_bytes = 1 << 20;
  std::vector<std::pair<uint64_t, uint64_t>> progress;
  const std::string out = Dir("delta");
  auto report = client::portable::ExportCheckpoint(
      *client_, *checkpoint, out, options, [&](uint64_t done, uint64_t total) {
        progress.emplace_back(done, total);
      });
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->tensor_bytes, table.size() + q.size());
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back(),
            std::make_pair(report->tensor_bytes, report->tensor_bytes));
  const json read = Tool("read", out);
  ExpectTool(read, "table", DType::kFloat32, {kRows, kCols}, table);
  ExpectTool(read, "q", DType::kFloat32, {32, 64}, dequantized);
  const json described =
      json::parse(ReadWholeFile(out + "/ckpt_checkpoint.json"));
  EXPECT_EQ(described["tensors"]["table"]["saved"][0]["delta_base_step"], 2);
  EXPECT_EQ(described["tensors"]["q"]["dequantized"], true);
  EXPECT_EQ(described["tensors"]["q"]["saved"][0]["quantization"]["bits"], 8);
  EXPECT_EQ(described["delta_base_steps"], json({2}));

  // Imported, the chain is one full tensor and q its dequantized values.
  auto imported =
      client::portable::ImportDirectory(*client_, out, "it/flat", 3, {});
  ASSERT_TRUE(imported.ok()) << imported.status();
  auto flat = client_->RestoreShard("it/flat", 3, 0);
  ASSERT_TRUE(flat.ok()) << flat.status();
  for (const auto& tensor : *flat) {
    EXPECT_FALSE(tensor.entry.IsDelta() || tensor.entry.IsQuantized());
    EXPECT_EQ(absl::string_view(tensor.bytes.data(), tensor.bytes.size()),
              tensor.entry.name == "q" ? dequantized : table);
  }
}

TEST_F(PortableTest, SplitsALargeExportWithAHuggingFaceIndex) {
  std::vector<std::string> bytes;
  std::vector<client::TensorData> tensors;
  for (int i = 0; i < 5; ++i) {
    bytes.push_back(PatternBytes(256 << 10, 70 + i));
  }
  for (int i = 0; i < 5; ++i) {
    tensors.push_back(WholeTensor(absl::StrCat("layer.", i), DType::kInt16,
                                  {128, 1024}, bytes[i]));
  }
  Save("it/split", 1, tensors);
  const std::string out = Dir("split");
  CommandResult run =
      Ckpt("--json export it/split 1 " + out + " --max-file-size 600K");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(json::parse(run.out)["files"],
            json({"model-00001-of-00003.safetensors",
                  "model-00002-of-00003.safetensors",
                  "model-00003-of-00003.safetensors",
                  "model.safetensors.index.json", "ckpt_checkpoint.json"}));
  const json index =
      json::parse(ReadWholeFile(out + "/model.safetensors.index.json"));
  EXPECT_EQ(index["metadata"]["total_size"], 5 * (256 << 10));
  EXPECT_EQ(index["weight_map"]["layer.4"], "model-00003-of-00003.safetensors");
  const json read = Tool("read", out);  // through the index
  for (int i = 0; i < 5; ++i) {
    ExpectTool(read, absl::StrCat("layer.", i), DType::kInt16, {128, 1024},
               bytes[i]);
  }
  CommandResult imported = Ckpt("import " + out + " it/unsplit 1");
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_THAT(imported.out, HasSubstr("5 tensor(s)"));
  EXPECT_THAT(imported.out, HasSubstr("from 3 file(s)"));
  CommandResult bad =
      Ckpt("export it/split 1 " + Dir("x") + " --max-file-size 0");
  EXPECT_THAT(bad.err, HasSubstr("--max-file-size '0' is not a size"));
}

TEST_F(PortableTest, ImportsAHandMadeHuggingFaceDirectory) {
  const std::string hf = Dir("hf");
  const json written = Tool("write-hf", hf);
  ASSERT_EQ(written.size(), 5u);
  CommandResult run = Ckpt("--json import " + hf +
                           " it/hf 1 --metric loss=1.5 --tag source=hf");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const json report = json::parse(run.out);
  EXPECT_EQ(report["files"], json({"model-00001-of-00002.safetensors",
                                   "model-00002-of-00002.safetensors"}));
  EXPECT_EQ(report["metadata_from_json"], false);
  EXPECT_EQ(report["committed"], true);
  auto restored = client_->RestoreShard("it/hf", 1, 0);
  ASSERT_TRUE(restored.ok()) << restored.status();
  ASSERT_EQ(restored->size(), written.size());
  for (const auto& tensor : *restored) {
    const json& expected = written[tensor.entry.name];
    EXPECT_EQ(expected["dtype"], std::string(DTypeName(tensor.entry.dtype)));
    EXPECT_EQ(expected["shape"].get<std::vector<int64_t>>(),
              tensor.entry.global_shape);
    EXPECT_EQ(expected["sha256"],
              Sha(absl::string_view(tensor.bytes.data(), tensor.bytes.size())))
        << tensor.entry.name;
  }
  auto records = client_->ListCheckpoints("it/hf");
  ASSERT_TRUE(records.ok() && records->size() == 1);
  EXPECT_EQ((*records)[0].metadata.metrics.at("loss"), 1.5);
  EXPECT_EQ((*records)[0].metadata.tags.at("source"), "hf");
}

}  // namespace
}  // namespace ckpt::testing
