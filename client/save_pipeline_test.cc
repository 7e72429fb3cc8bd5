#include "client/save_pipeline.h"

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "client/stored_fingerprints.h"
#include "common/chunking.h"
#include "common/fingerprint_record.h"
#include "common/row_delta.h"
#include "common/row_fingerprint.h"
#include "common/sha256.h"
#include "common/thread_group.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/client_tensors.h"
#include "tests/testing/fake_transport.h"

namespace ckpt::client {
namespace {

using ::ckpt::testing::FakeTransport;
using ::ckpt::testing::PatternBytes;
using ::ckpt::testing::Uint8Tensor;
using ::ckpt::testing::WholeTensor;
using ::testing::HasSubstr;

constexpr char kJob[] = "team/model";
constexpr size_t kChunk = 64;

SaveOptions SmallChunks() {
  SaveOptions options;
  options.chunk_bytes = kChunk;
  return options;
}

std::vector<ChunkRef> PiecesOf(FakeTransport& fake, int64_t step,
                               const std::string& name) {
  absl::StatusOr<Checkpoint> manifest =
      fake.GetManifest(kJob, step, std::nullopt);
  EXPECT_TRUE(manifest.ok()) << manifest.status();
  if (!manifest.ok()) return {};
  for (const TensorEntry& entry : manifest->shards.at(0).tensors) {
    if (entry.name == name) return entry.pieces;
  }
  ADD_FAILURE() << "no tensor " << name << " at step " << step;
  return {};
}

TEST(SavePipelineTest, SecondSaveOfIdenticalBytesSendsNoChunks) {
  FakeTransport fake;
  const std::string bytes = PatternBytes(10 * kChunk, 1);
  const std::vector<TensorData> tensors = {Uint8Tensor("a", bytes)};

  absl::StatusOr<SaveResult> first =
      SaveShard(fake, kJob, 1, tensors, SmallChunks());
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->chunks_total, 10u);
  EXPECT_EQ(first->chunks_sent, 10u);
  EXPECT_EQ(first->bytes_sent, bytes.size());
  EXPECT_EQ(first->logical_bytes, bytes.size());
  EXPECT_TRUE(first->checkpoint_committed);
  EXPECT_EQ(first->checkpoint.state, CheckpointState::kCommitted);

  absl::StatusOr<SaveResult> second =
      SaveShard(fake, kJob, 2, tensors, SmallChunks());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->chunks_total, 10u);
  EXPECT_EQ(second->chunks_sent, 0u);
  EXPECT_EQ(second->bytes_sent, 0u);
  EXPECT_TRUE(second->checkpoint_committed);
  EXPECT_EQ(fake.chunks_uploaded(), 10u);
  EXPECT_EQ(PiecesOf(fake, 2, "a"), PiecesOf(fake, 1, "a"));
}

TEST(SavePipelineTest, RepeatedChunksWithinOneSaveAreAskedAboutAndSentOnce) {
  FakeTransport fake;
  // 200 equal chunks per tensor: they span several hashing batches.
  const std::string repeated(200 * kChunk, 'x');
  const std::string distinct = PatternBytes(3 * kChunk, 2);
  const std::vector<TensorData> tensors = {Uint8Tensor("r1", repeated),
                                           Uint8Tensor("r2", repeated),
                                           Uint8Tensor("d", distinct)};
  SaveOptions options = SmallChunks();
  options.hash_threads = 3;

  absl::StatusOr<SaveResult> saved = SaveShard(fake, kJob, 1, tensors, options);
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(saved->chunks_total, 403u);
  EXPECT_EQ(saved->chunks_sent, 4u);
  EXPECT_EQ(saved->bytes_sent, 4 * kChunk);
  const ChunkId x_chunk = Sha256(repeated.substr(0, kChunk));
  EXPECT_EQ(fake.UploadsOf(x_chunk), 1);
  EXPECT_EQ(fake.chunks_uploaded(), 4u);
  const std::vector<ChunkId> asked = fake.asked_missing();
  EXPECT_EQ(absl::c_count(asked, x_chunk), 1);
  EXPECT_EQ(asked.size(), 4u);
  // The manifest still lists every piece, repeats included.
  EXPECT_EQ(PiecesOf(fake, 1, "r2").size(), 200u);
}

TEST(SavePipelineTest, RetriesTheCommitAfterTheServerLostChunks) {
  FakeTransport fake;
  const std::string bytes = PatternBytes(10 * kChunk, 3);
  fake.LoseChunksAtNextCommit();

  absl::StatusOr<SaveResult> saved =
      SaveShard(fake, kJob, 1, {Uint8Tensor("a", bytes)}, SmallChunks());
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(fake.commit_calls(), 2);
  EXPECT_TRUE(saved->checkpoint_committed);
  // Everything went twice: once before the loss, once for the retry.
  EXPECT_EQ(saved->chunks_sent, 20u);
  EXPECT_EQ(saved->bytes_sent, 2 * bytes.size());
  EXPECT_EQ(fake.UploadsOf(Sha256(bytes.substr(0, kChunk))), 2);
  EXPECT_EQ(fake.stored_chunks(), 10u);
  for (const ChunkRef& piece : PiecesOf(fake, 1, "a")) {
    EXPECT_TRUE(fake.HasChunk(piece.id));
  }
}

TEST(SavePipelineTest, ReturnsTheCommitRefusalWhenNoChunkIsMissing) {
  FakeTransport fake;
  const std::string bytes = PatternBytes(10 * kChunk, 4);
  const absl::Status refusal = absl::FailedPreconditionError(
      "the base checkpoint 7 of job 'team/model' has no tensor 'a'");
  fake.RefuseCommits(refusal);

  absl::StatusOr<SaveResult> saved =
      SaveShard(fake, kJob, 1, {Uint8Tensor("a", bytes)}, SmallChunks());
  EXPECT_EQ(saved.status(), refusal);
  EXPECT_EQ(fake.commit_calls(), 1);
  EXPECT_EQ(fake.chunks_uploaded(), 10u);  // nothing sent again
  // The retry asked about every distinct chunk again before giving up.
  EXPECT_EQ(fake.asked_missing().size(), 20u);
}

TEST(SavePipelineTest, OtherCommitErrorsAreNotRetried) {
  FakeTransport fake;
  const absl::Status refusal = absl::AbortedError("lost the lease");
  fake.RefuseCommits(refusal);
  fake.LoseChunksAtNextCommit();  // would make a retry upload again

  absl::StatusOr<SaveResult> saved =
      SaveShard(fake, kJob, 1, {Uint8Tensor("a", PatternBytes(kChunk, 5))},
                SmallChunks());
  EXPECT_EQ(saved.status(), refusal);
  EXPECT_EQ(fake.commit_calls(), 1);
  EXPECT_EQ(fake.chunks_uploaded(), 1u);
}

TEST(SavePipelineTest, RefusesMalformedRequestsBeforeCallingTheServer) {
  FakeTransport fake;
  const std::string bytes = PatternBytes(16, 6);
  const std::vector<uint64_t> descending = {3, 1};
  const std::vector<uint64_t> rows = {1};
  struct Case {
    std::string what;
    TensorData tensor;
    SaveOptions options;
    std::string message;
  };
  std::vector<Case> cases;
  {
    Case c{"rank", Uint8Tensor("a", bytes), SmallChunks(),
           "outside world_size"};
    c.options.rank = 2;
    c.options.world_size = 2;
    cases.push_back(c);
  }
  {
    Case c{"chunk_bytes", Uint8Tensor("a", bytes), SmallChunks(),
           "chunk_bytes must be"};
    c.options.chunk_bytes = 0;
    cases.push_back(c);
  }
  cases.push_back({"size", WholeTensor("a", DType::kFloat32, {5}, bytes),
                   SmallChunks(), "16 bytes given but its box of float32"});
  {
    Case c{"rows without base", WholeTensor("a", DType::kUint8, {4, 4}, bytes),
           SmallChunks(), "delta_rows given without delta_base_step"};
    c.tensor.delta_rows = rows;
    cases.push_back(c);
  }
  {
    Case c{"rows descending", WholeTensor("a", DType::kUint8, {4, 4}, bytes),
           SmallChunks(), "strictly ascending"};
    c.tensor.delta_base_step = 1;
    c.tensor.delta_rows = descending;
    cases.push_back(c);
  }
  {
    Case c{"quantize uint8", Uint8Tensor("a", bytes), SmallChunks(),
           "cannot quantize it: it is uint8"};
    c.tensor.quantize_bits = 8;
    cases.push_back(c);
  }
  for (const Case& c : cases) {
    absl::StatusOr<SaveResult> saved =
        SaveShard(fake, kJob, 1, {c.tensor}, c.options);
    EXPECT_TRUE(absl::IsInvalidArgument(saved.status()))
        << c.what << ": " << saved.status();
    EXPECT_THAT(saved.status().message(), HasSubstr(c.message)) << c.what;
  }
  EXPECT_EQ(fake.begin_calls(), 0);
  EXPECT_EQ(fake.commit_calls(), 0);
  EXPECT_TRUE(fake.asked_missing().empty());
}

TEST(SavePipelineTest, LaysOutFullDeltaAndQuantizedEntries) {
  FakeTransport fake;
  const std::string full = PatternBytes(200, 7);  // 64 + 64 + 64 + 8
  const std::string table = PatternBytes(size_t{8} * 16, 8);
  std::vector<float> weights(size_t{4} * 8);
  for (size_t i = 0; i < weights.size(); ++i) {
    weights[i] = static_cast<float>(i) * 0.25f - 3.0f;
  }
  const absl::string_view weight_bytes(
      reinterpret_cast<const char*>(weights.data()),
      weights.size() * sizeof(float));
  const std::vector<uint64_t> rows = {2, 5};

  TensorData delta = WholeTensor("table", DType::kUint8, {8, 16}, table);
  delta.delta_base_step = 1;
  delta.delta_rows = rows;
  TensorData quantized =
      WholeTensor("w", DType::kFloat32, {4, 8}, weight_bytes);
  quantized.quantize_bits = 8;
  SaveOptions options = SmallChunks();
  options.metadata.metrics["loss"] = 0.5;
  options.metadata.tags["phase"] = "warmup";

  absl::StatusOr<SaveResult> saved = SaveShard(
      fake, kJob, 2, {Uint8Tensor("full", full), delta, quantized}, options);
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(saved->logical_bytes,
            full.size() + table.size() + weight_bytes.size());

  absl::StatusOr<Checkpoint> manifest = fake.GetManifest(kJob, 2, std::nullopt);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->record.metadata, options.metadata);
  ASSERT_EQ(manifest->shards.size(), 1u);
  const std::vector<TensorEntry>& entries = manifest->shards[0].tensors;
  ASSERT_EQ(entries.size(), 3u);

  EXPECT_EQ(entries[0].name, "full");
  std::vector<uint64_t> sizes;
  for (const ChunkRef& piece : entries[0].pieces) sizes.push_back(piece.size);
  EXPECT_EQ(sizes, (std::vector<uint64_t>{64, 64, 64, 8}));
  EXPECT_EQ(entries[0].pieces[0].id, Sha256(full.substr(0, 64)));
  EXPECT_FALSE(entries[0].IsDelta());

  EXPECT_EQ(entries[1].name, "table");
  EXPECT_EQ(entries[1].delta_base_step, 1);
  absl::StatusOr<std::string> encoded =
      EncodeRowDelta(absl::MakeConstSpan(table.data(), table.size()), 16, rows);
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  EXPECT_EQ(entries[1].StoredBytes(), encoded->size());
  EXPECT_EQ(entries[1].pieces[0].id,
            Sha256(absl::string_view(*encoded).substr(0, kChunk)));

  EXPECT_EQ(entries[2].name, "w");
  ASSERT_TRUE(entries[2].IsQuantized());
  EXPECT_EQ(entries[2].quantization->bits, 8);
  ASSERT_TRUE(saved->quantized.contains("w"));
  EXPECT_EQ(saved->quantized.at("w"), *entries[2].quantization);
  EXPECT_GT(entries[2].quantization->max_abs_error, 0.0);
  EXPECT_LT(entries[2].StoredBytes(), weight_bytes.size());
}

// Row fingerprints given with a tensor are stored as its entry's
// fingerprint pieces: a dense record for a full tensor, a sparse one of the
// delta's rows for a delta; LoadStoredChain reads them back and rebuilds
// the fingerprints of the delta's tensor without its rows.
TEST(SavePipelineTest, StoresRowFingerprintsThatLoadStoredChainRebuilds) {
  FakeTransport fake;
  constexpr size_t kRowBytes = 16;
  const std::string base = PatternBytes(kRowBytes * 40, 11);
  std::string now = base;
  const std::vector<uint64_t> rows = {3, 17, 39};
  for (uint64_t row : rows) now[row * kRowBytes] ^= 0x5a;
  auto base_fingerprints =
      RowFingerprints(absl::MakeConstSpan(base.data(), base.size()), kRowBytes);
  auto now_fingerprints =
      RowFingerprints(absl::MakeConstSpan(now.data(), now.size()), kRowBytes);
  ASSERT_TRUE(base_fingerprints.ok() && now_fingerprints.ok());

  TensorData full = WholeTensor("table", DType::kUint8, {40, 16}, base);
  full.row_fingerprints = absl::MakeConstSpan(*base_fingerprints);
  ASSERT_TRUE(SaveShard(fake, kJob, 1, {full}, SmallChunks()).ok());
  std::vector<RowFingerprint> changed;
  for (uint64_t row : rows) changed.push_back((*now_fingerprints)[row]);
  TensorData delta = WholeTensor("table", DType::kUint8, {40, 16}, now);
  delta.delta_base_step = 1;
  delta.delta_rows = rows;
  delta.row_fingerprints = absl::MakeConstSpan(changed);
  ASSERT_TRUE(SaveShard(fake, kJob, 2, {delta}, SmallChunks()).ok());

  absl::StatusOr<Checkpoint> manifest = fake.GetManifest(kJob, 2, std::nullopt);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  const TensorEntry& entry = manifest->shards.at(0).tensors.at(0);
  EXPECT_EQ(entry.FingerprintBytes(), SparseFingerprintRecordBytes(40, 3));
  auto record = EncodeSparseFingerprints(kRowBytes, 40, rows, changed);
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(entry.fingerprint_pieces.at(0).id,
            Sha256(absl::string_view(*record).substr(0, kChunk)));

  absl::StatusOr<StoredChain> chain = LoadStoredChain(fake, kJob, 2, entry);
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_EQ(chain->baseline_step, 1);
  EXPECT_EQ(chain->chain_length, 1);
  EXPECT_EQ(chain->bytes_read, DenseFingerprintRecordBytes(40) +
                                   SparseFingerprintRecordBytes(40, 3));
  ASSERT_TRUE(chain->fingerprints.has_value());
  EXPECT_EQ(chain->fingerprints->at_baseline, *base_fingerprints);
  EXPECT_EQ(chain->fingerprints->at_checkpoint, *now_fingerprints);
  EXPECT_EQ(chain->fingerprints->changed_since_baseline, rows);

  // A chain with an entry saved without fingerprints has none to rebuild.
  TensorData plain = WholeTensor("table", DType::kUint8, {40, 16}, base);
  ASSERT_TRUE(SaveShard(fake, kJob, 3, {plain}, SmallChunks()).ok());
  manifest = fake.GetManifest(kJob, 3, std::nullopt);
  ASSERT_TRUE(manifest.ok());
  chain = LoadStoredChain(fake, kJob, 3, manifest->shards.at(0).tensors.at(0));
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_FALSE(chain->fingerprints.has_value());
  EXPECT_EQ(chain->bytes_read, 0u);
}

TEST(SavePipelineTest, RefusesRowFingerprintsThatDoNotFitTheTensor) {
  FakeTransport fake;
  const std::string table = PatternBytes(size_t{8} * 16, 3);
  const std::vector<RowFingerprint> eight(8), two(2);
  const std::vector<uint64_t> rows = {1, 4};
  struct Case {
    const char* what;
    TensorData tensor;
    const char* message;
  };
  std::vector<Case> cases;
  cases.push_back({"too few for a full tensor",
                   WholeTensor("t", DType::kUint8, {8, 16}, table),
                   "2 given for 8 rows"});
  cases.back().tensor.row_fingerprints = absl::MakeConstSpan(two);
  cases.push_back({"one per row for a delta",
                   WholeTensor("t", DType::kUint8, {8, 16}, table),
                   "8 given for a delta of 2 rows"});
  cases.back().tensor.delta_base_step = 1;
  cases.back().tensor.delta_rows = rows;
  cases.back().tensor.row_fingerprints = absl::MakeConstSpan(eight);
  cases.push_back(
      {"rowless", WholeTensor("t", DType::kUint8, {}, "x"), "it has no rows"});
  cases.back().tensor.row_fingerprints = absl::MakeConstSpan(two);
  for (Case& c : cases) {
    absl::StatusOr<SaveResult> saved =
        SaveShard(fake, kJob, 1, {c.tensor}, SmallChunks());
    EXPECT_TRUE(absl::IsInvalidArgument(saved.status()))
        << c.what << ": " << saved.status();
    EXPECT_THAT(saved.status().message(), HasSubstr(c.message)) << c.what;
  }
  EXPECT_EQ(fake.begin_calls(), 0);
}

// Hashing threads the system will not create (none, or fewer than asked):
// the threads that did start, or the saving thread itself when none did,
// hash every batch, and the save stores every chunk under its SHA-256 (an
// uncaught std::system_error would end the process).
TEST(SavePipelineTest, HashesEveryChunkWhenHashThreadsCannotStart) {
  // 300 chunks: five hashing batches of at most 64.
  constexpr size_t kChunks = 300;
  const std::string bytes = PatternBytes(kChunks * kChunk, 5);
  const std::vector<TensorData> tensors = {Uint8Tensor("a", bytes)};
  SaveOptions options = SmallChunks();
  options.hash_threads = 4;
  for (int allowed : {0, 1, 2}) {
    SCOPED_TRACE(absl::StrCat(allowed, " hashing thread(s) may start"));
    FakeTransport fake;
    absl::StatusOr<SaveResult> saved = absl::UnknownError("not run");
    {
      ScopedSpawnLimitForTesting limit(allowed);
      saved = SaveShard(fake, kJob, 1, tensors, options);
    }
    ASSERT_TRUE(saved.ok()) << saved.status();
    EXPECT_EQ(saved->chunks_sent, kChunks);
    const std::vector<ChunkRef> pieces = PiecesOf(fake, 1, "a");
    ASSERT_EQ(pieces.size(), kChunks);
    for (size_t i = 0; i < kChunks; ++i) {
      ASSERT_EQ(pieces[i].id,
                Sha256(absl::string_view(bytes).substr(i * kChunk, kChunk)))
          << "chunk " << i;
    }
  }
}

// A progress callback that throws ends the save with its exception, the
// hashing threads stopped and joined (one left running would end the
// process), and nothing committed.
TEST(SavePipelineTest, AProgressCallbackThatThrowsReachesTheCaller) {
  FakeTransport fake;
  const std::string bytes = PatternBytes(300 * kChunk, 6);
  SaveOptions options = SmallChunks();
  options.hash_threads = 4;
  int calls = 0;
  options.progress = [&calls](uint64_t, uint64_t) {
    ++calls;
    throw std::runtime_error("the progress bar broke");
  };
  EXPECT_THROW(SaveShard(fake, kJob, 1, {Uint8Tensor("a", bytes)}, options),
               std::runtime_error);
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(fake.GetManifest(kJob, 1, std::nullopt).ok());
}

}  // namespace
}  // namespace ckpt::client
