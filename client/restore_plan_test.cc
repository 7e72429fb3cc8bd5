#include "client/restore_plan.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "client/fetch_plan.h"
#include "client/restore_buffer.h"
#include "client/save_pipeline.h"
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
using ::ckpt::testing::WholeTensor;
using ::testing::HasSubstr;

constexpr char kJob[] = "team/model";
constexpr int64_t kRows = 8;
constexpr int64_t kRowBytes = 16;

// The tests save through the save pipeline (into the fake, which commits
// any delta whatever its base) and restore what it stored.
void Save(FakeTransport& fake, int64_t step,
          const std::vector<TensorData>& tensors) {
  SaveOptions options;
  options.chunk_bytes = 32;  // several pieces per tensor
  absl::StatusOr<SaveResult> saved =
      SaveShard(fake, kJob, step, tensors, options);
  ASSERT_TRUE(saved.ok()) << saved.status();
}

// An 8 x 16 uint8 table.
TensorData Table(const std::string& name, const std::string& bytes) {
  return WholeTensor(name, DType::kUint8, {kRows, kRowBytes}, bytes);
}

// A row delta of `name` with `rows` of `bytes` on checkpoint `base_step`.
TensorData Delta(const std::string& name, const std::string& bytes,
                 int64_t base_step, const std::vector<uint64_t>& rows) {
  TensorData tensor = Table(name, bytes);
  tensor.delta_base_step = base_step;
  tensor.delta_rows = rows;
  return tensor;
}

// `bytes` with each row of `rows` replaced by a pattern of `seed`.
std::string ChangeRows(std::string bytes, const std::vector<uint64_t>& rows,
                       uint32_t seed) {
  for (uint64_t row : rows) {
    const std::string fresh = PatternBytes(kRowBytes, seed + row);
    std::memcpy(bytes.data() + row * kRowBytes, fresh.data(), kRowBytes);
  }
  return bytes;
}

Checkpoint Manifest(FakeTransport& fake, int64_t step) {
  absl::StatusOr<Checkpoint> manifest =
      fake.GetManifest(kJob, step, std::nullopt);
  EXPECT_TRUE(manifest.ok()) << manifest.status();
  return manifest.ok() ? *manifest : Checkpoint();
}

absl::StatusOr<std::vector<RestoredTensor>> Restore(FakeTransport& fake,
                                                    int64_t step,
                                                    bool shared_memory) {
  return RestoreShard(fake, Manifest(fake, step), 0, {}, shared_memory);
}

absl::string_view View(const RestoredTensor& tensor) {
  return {tensor.bytes.data(), tensor.bytes.size()};
}

bool SharedMemoryWorks() {
  absl::StatusOr<std::shared_ptr<RestoreBuffer>> buffer =
      RestoreBuffer::Create(RestoreBuffer::kPageBytes, true);
  return buffer.ok() && (*buffer)->shareable();
}

// A full base at step 1 and deltas at 2 (rows 1, 5) and 3 (rows 5, 7) of
// two tables; the expected contents of each table at each step.
struct DeltaHistory {
  std::string emb[4];
  std::string pos[4];
};

DeltaHistory SaveDeltaChain(FakeTransport& fake) {
  DeltaHistory h;
  h.emb[1] = PatternBytes(kRows * kRowBytes, 10);
  h.pos[1] = PatternBytes(kRows * kRowBytes, 11);
  const std::vector<uint64_t> rows2 = {1, 5};
  const std::vector<uint64_t> rows3 = {5, 7};
  h.emb[2] = ChangeRows(h.emb[1], rows2, 20);
  h.pos[2] = ChangeRows(h.pos[1], rows2, 21);
  h.emb[3] = ChangeRows(h.emb[2], rows3, 30);
  h.pos[3] = ChangeRows(h.pos[2], rows3, 31);
  Save(fake, 1, {Table("emb", h.emb[1]), Table("pos", h.pos[1])});
  Save(fake, 2,
       {Delta("emb", h.emb[2], 1, rows2), Delta("pos", h.pos[2], 1, rows2)});
  Save(fake, 3,
       {Delta("emb", h.emb[3], 2, rows3), Delta("pos", h.pos[3], 2, rows3)});
  return h;
}

TEST(RestorePlanTest, RebuildsAFullBaseAndTwoDeltasFetchingEachBaseOnce) {
  for (bool shared_memory : {false, true}) {
    SCOPED_TRACE(shared_memory ? "shared memory" : "streamed");
    FakeTransport fake;
    const DeltaHistory h = SaveDeltaChain(fake);
    const Checkpoint latest = Manifest(fake, 3);

    absl::StatusOr<std::vector<RestoredTensor>> restored =
        RestoreShard(fake, latest, 0, {}, shared_memory);
    ASSERT_TRUE(restored.ok()) << restored.status();
    ASSERT_EQ(restored->size(), 2u);
    EXPECT_EQ(View((*restored)[0]), h.emb[3]);
    EXPECT_EQ(View((*restored)[1]), h.pos[3]);
    // The checkpoint's own entries, still deltas.
    EXPECT_EQ((*restored)[0].entry.delta_base_step, 2);
    // Two tensors chain through steps 2 and 1: each manifest fetched once.
    EXPECT_EQ(fake.ManifestFetches(2), 1);
    EXPECT_EQ(fake.ManifestFetches(1), 1);
  }
}

TEST(RestorePlanTest, ReadTensorsRebuildsDeltasOfSeveralSteps) {
  FakeTransport fake;
  const DeltaHistory h = SaveDeltaChain(fake);
  const TensorEntry emb3 = Manifest(fake, 3).shards[0].tensors[0];
  const TensorEntry pos2 = Manifest(fake, 2).shards[0].tensors[1];
  const int fetches_of_1 = fake.ManifestFetches(1);
  std::string out_emb(h.emb[3].size(), '\0');
  std::string out_pos(h.pos[2].size(), '\0');
  const std::vector<TensorEntry> entries = {emb3, pos2};
  const std::vector<absl::Span<char>> outs = {absl::MakeSpan(out_emb),
                                              absl::MakeSpan(out_pos)};

  ASSERT_TRUE(ReadTensors(fake, kJob, entries, outs).ok());
  EXPECT_EQ(out_emb, h.emb[3]);
  EXPECT_EQ(out_pos, h.pos[2]);
  EXPECT_EQ(fake.ManifestFetches(1), fetches_of_1 + 1);
  // The base's chunks of both tables were fetched in one call.
  EXPECT_EQ(fake.read_calls().size(), 1u);
}

TEST(RestorePlanTest, RestoresAQuantizedEntryWithinItsRecordedError) {
  for (bool shared_memory : {false, true}) {
    SCOPED_TRACE(shared_memory ? "shared memory" : "streamed");
    FakeTransport fake;
    std::vector<float> values(size_t{16} * 32);
    for (size_t i = 0; i < values.size(); ++i) {
      values[i] = std::sin(static_cast<float>(i) * 0.37f) * 4.0f;
    }
    TensorData tensor = WholeTensor(
        "w", DType::kFloat32, {16, 32},
        absl::string_view(reinterpret_cast<const char*>(values.data()),
                          values.size() * sizeof(float)));
    tensor.quantize_bits = 4;
    const std::string plain = PatternBytes(100, 12);
    Save(fake, 1, {tensor, WholeTensor("b", DType::kUint8, {100}, plain)});

    absl::StatusOr<std::vector<RestoredTensor>> restored =
        Restore(fake, 1, shared_memory);
    ASSERT_TRUE(restored.ok()) << restored.status();
    ASSERT_EQ(restored->size(), 2u);
    const RestoredTensor& w = (*restored)[0];
    ASSERT_TRUE(w.entry.IsQuantized());
    ASSERT_EQ(w.bytes.size(), values.size() * sizeof(float));
    std::vector<float> got(values.size());
    std::memcpy(got.data(), w.bytes.data(), w.bytes.size());
    const double bound = w.entry.quantization->max_abs_error;
    EXPECT_GT(bound, 0.0);
    double worst = 0;
    for (size_t i = 0; i < values.size(); ++i) {
      worst = std::max(worst, std::abs(double{got[i]} - double{values[i]}));
    }
    EXPECT_LE(worst, bound * (1 + 1e-6));
    EXPECT_GT(worst, 0.0);  // lossy: these are dequantized values
    EXPECT_EQ(View((*restored)[1]), plain);
  }
}

TEST(RestorePlanTest, DataLossWhenTheBaseCheckpointIsGone) {
  FakeTransport fake;
  SaveDeltaChain(fake);
  ASSERT_TRUE(fake.DeleteCheckpoint(kJob, 1, false).ok());

  absl::StatusOr<std::vector<RestoredTensor>> restored =
      Restore(fake, 3, false);
  EXPECT_TRUE(absl::IsDataLoss(restored.status())) << restored.status();
  EXPECT_THAT(restored.status().message(),
              HasSubstr("tensor 'emb' is a row delta on checkpoint 1, which "
                        "is gone"));
  EXPECT_TRUE(fake.read_calls().empty());
}

TEST(RestorePlanTest, DataLossWhenTheBaseHoldsTheTensorInAnotherLayout) {
  FakeTransport fake;
  const std::string base = PatternBytes(kRows * kRowBytes, 13);
  Save(fake, 1, {Table("emb", base)});
  // The same bytes as 4 rows of 32: not a layout a delta of it may have.
  const std::vector<uint64_t> rows = {0};
  TensorData delta = WholeTensor("emb", DType::kUint8, {4, 32}, base);
  delta.delta_base_step = 1;
  delta.delta_rows = rows;
  Save(fake, 2, {delta});

  absl::StatusOr<std::vector<RestoredTensor>> restored =
      Restore(fake, 2, false);
  EXPECT_TRUE(absl::IsDataLoss(restored.status())) << restored.status();
  EXPECT_THAT(restored.status().message(),
              HasSubstr("tensor 'emb': its row delta base, checkpoint 1, "
                        "cannot rebuild it: the checkpoint which holds it as"));
}

TEST(RestorePlanTest, DataLossWhenADeltaChainDoesNotGoBackInTime) {
  FakeTransport fake;
  const std::string bytes = PatternBytes(kRows * kRowBytes, 14);
  const std::vector<uint64_t> rows = {3};
  Save(fake, 4, {Table("emb", bytes)});
  Save(fake, 3, {Delta("emb", bytes, 4, rows)});
  Save(fake, 2, {Delta("emb", bytes, 3, rows)});

  absl::StatusOr<std::vector<RestoredTensor>> restored =
      Restore(fake, 2, false);
  EXPECT_TRUE(absl::IsDataLoss(restored.status())) << restored.status();
  EXPECT_THAT(restored.status().message(),
              HasSubstr("names a base step that is not older: 4"));
}

TEST(RestorePlanTest, DataLossWhenAChunkIsAnsweredWithTheWrongSizeOrHash) {
  const std::string bytes = PatternBytes(kRows * kRowBytes, 15);
  struct Case {
    std::string what;
    bool wrong_hash;
  };
  for (const Case& c : {Case{"wrong size", false}, Case{"wrong hash", true}}) {
    SCOPED_TRACE(c.what);
    FakeTransport fake;
    Save(fake, 1, {Table("emb", bytes)});
    const Checkpoint checkpoint = Manifest(fake, 1);
    const ChunkRef& piece = checkpoint.shards[0].tensors[0].pieces[1];
    const std::string other(piece.size, 'o');
    if (c.wrong_hash) {
      fake.AnswerWith(piece.id, Sha256(other), other);
    } else {
      fake.AnswerWith(piece.id, piece.id, "short");
    }

    absl::StatusOr<std::vector<RestoredTensor>> restored =
        RestoreShard(fake, checkpoint, 0, {}, false);
    EXPECT_TRUE(absl::IsDataLoss(restored.status())) << restored.status();
    EXPECT_THAT(restored.status().message(),
                HasSubstr("of another chunk than the requested " +
                          piece.id.ShortHex()));

    std::string out(bytes.size(), '\0');
    absl::Status read = ReadTensors(fake, kJob, checkpoint.shards[0].tensors,
                                    {absl::MakeSpan(out)});
    EXPECT_TRUE(absl::IsDataLoss(read)) << read;
  }
}

// A hostile or corrupt manifest that names one chunk with two sizes: the
// larger would be copied into the smaller reference's place, past it. The
// restore refuses before fetching anything.
TEST(RestorePlanTest, DataLossWhenAManifestNamesAChunkWithTwoSizes) {
  FakeTransport fake;
  const std::string bytes = PatternBytes(kRows * kRowBytes, 16);
  Save(fake, 1, {Table("emb", bytes)});
  Checkpoint checkpoint = Manifest(fake, 1);
  // A second tensor of 8 bytes whose one piece is the first tensor's first
  // (32-byte) chunk, claimed as 8 bytes: each entry's pieces add up.
  TensorEntry small = checkpoint.shards[0].tensors[0];
  small.name = "small";
  small.global_shape = {8};
  small.box = Box{{0}, {8}};
  small.pieces = {ChunkRef{small.pieces[0].id, 8}};
  checkpoint.shards[0].tensors.push_back(small);

  absl::StatusOr<std::vector<RestoredTensor>> restored =
      RestoreShard(fake, checkpoint, 0, {}, false);
  EXPECT_TRUE(absl::IsDataLoss(restored.status())) << restored.status();
  EXPECT_THAT(restored.status().message(),
              HasSubstr("with two sizes, 32 and 8"));
  EXPECT_TRUE(fake.read_calls().empty());
  EXPECT_EQ(fake.into_file_calls(), 0);

  std::string out_big(bytes.size(), '\0');
  std::string out_small(8, '\0');
  absl::Status read =
      ReadTensors(fake, kJob, checkpoint.shards[0].tensors,
                  {absl::MakeSpan(out_big), absl::MakeSpan(out_small)});
  EXPECT_TRUE(absl::IsDataLoss(read)) << read;
}

TEST(RestorePlanTest, DataLossWhenADeltaOrQuantizedEntryDoesNotDecode) {
  FakeTransport fake;
  const DeltaHistory h = SaveDeltaChain(fake);
  const TensorEntry emb2 = Manifest(fake, 2).shards[0].tensors[0];
  // Bytes of the right size under the right name, but not a row delta.
  const ChunkRef& piece = emb2.pieces[0];
  fake.AnswerWith(piece.id, piece.id, std::string(piece.size, '\xff'));

  std::string out(h.emb[2].size(), '\0');
  absl::Status read = ReadTensors(fake, kJob, {emb2}, {absl::MakeSpan(out)});
  EXPECT_TRUE(absl::IsDataLoss(read)) << read;
  EXPECT_THAT(read.message(),
              HasSubstr("tensor 'emb': its row delta based on step 1"));

  std::vector<float> values(64, 1.5f);
  TensorData tensor = WholeTensor(
      "w", DType::kFloat32, {8, 8},
      absl::string_view(reinterpret_cast<const char*>(values.data()),
                        values.size() * sizeof(float)));
  tensor.quantize_bits = 8;
  Save(fake, 5, {tensor});
  const TensorEntry w = Manifest(fake, 5).shards[0].tensors[0];
  fake.AnswerWith(w.pieces[0].id, w.pieces[0].id,
                  std::string(w.pieces[0].size, '\0'));
  std::string w_out(w.ByteSize(), '\0');
  read = ReadTensors(fake, kJob, {w}, {absl::MakeSpan(w_out)});
  EXPECT_TRUE(absl::IsDataLoss(read)) << read;
  EXPECT_THAT(read.message(), HasSubstr("tensor 'w': its quantized bytes"));
}

TEST(RestorePlanTest, RepeatedChunksAreFetchedOnceAndProgressCountsThemOnce) {
  FakeTransport fake;
  const std::string repeated(kRows * kRowBytes, 'r');
  const std::string distinct = PatternBytes(kRows * kRowBytes, 16);
  Save(fake, 1,
       {Table("a", repeated), Table("b", repeated), Table("c", distinct)});
  const Checkpoint checkpoint = Manifest(fake, 1);
  const ChunkId r_chunk = checkpoint.shards[0].tensors[0].pieces[0].id;
  uint64_t last_done = 0, last_total = 0;
  int calls = 0;

  absl::StatusOr<std::vector<RestoredTensor>> restored = RestoreShard(
      fake, checkpoint, 0,
      [&](uint64_t done, uint64_t total) {
        EXPECT_GE(done, last_done);
        last_done = done;
        last_total = total;
        ++calls;
      },
      false);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(View((*restored)[0]), repeated);
  EXPECT_EQ(View((*restored)[1]), repeated);
  EXPECT_EQ(View((*restored)[2]), distinct);
  EXPECT_EQ(fake.ReadsOf(r_chunk), 1);
  // One 32-byte chunk for both repeated tables, four for the other.
  EXPECT_EQ(calls, 5);
  EXPECT_EQ(last_total, 5 * 32u);
  EXPECT_EQ(last_done, last_total);
}

TEST(RestorePlanTest, FetchesSeveralRangesInParallel) {
  FakeTransport fake;
  const std::string bytes = PatternBytes(size_t{30} * 32, 17);
  Save(fake, 1, {WholeTensor("a", DType::kUint8, {int64_t{30} * 32}, bytes)});

  absl::StatusOr<std::vector<RestoredTensor>> restored =
      Restore(fake, 1, false);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(View((*restored)[0]), bytes);
  // Three ranges of similar size, one call each.
  const std::vector<size_t> calls = fake.read_calls();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0] + calls[1] + calls[2], 30u);
  for (size_t call : calls) EXPECT_GE(call, 8u);
}

// Fetch threads the system will not create (none, or fewer than the
// ranges): this thread fetches their ranges after its own, and the restore
// is the same, streamed or through shared memory (whose page prefaulting is
// then skipped). An uncaught std::system_error would end the process.
TEST(RestorePlanTest, FetchesEveryRangeWhenThreadsCannotStart) {
  FakeTransport fake;
  const std::string bytes = PatternBytes(size_t{30} * 32, 19);
  Save(fake, 1, {WholeTensor("a", DType::kUint8, {int64_t{30} * 32}, bytes)});
  for (const bool shared : {false, true}) {
    if (shared && !SharedMemoryWorks()) continue;
    for (int allowed : {0, 1}) {
      SCOPED_TRACE(
          absl::StrCat(allowed, " thread(s) may start, shared ", shared));
      absl::StatusOr<std::vector<RestoredTensor>> restored =
          absl::UnknownError("not run");
      {
        ScopedSpawnLimitForTesting limit(allowed);
        restored = Restore(fake, 1, shared);
      }
      ASSERT_TRUE(restored.ok()) << restored.status();
      EXPECT_EQ(View((*restored)[0]), bytes);
    }
  }
}

// A progress callback that throws, called on the fetching threads: every
// fetch ends, and then the exception reaches the caller (on a thread of its
// own it would end the process).
TEST(RestorePlanTest, AProgressCallbackThatThrowsReachesTheCaller) {
  FakeTransport fake;
  const std::string bytes = PatternBytes(size_t{30} * 32, 20);
  Save(fake, 1, {WholeTensor("a", DType::kUint8, {int64_t{30} * 32}, bytes)});
  std::atomic<int> calls{0};
  auto throwing = [&calls](uint64_t, uint64_t) {
    ++calls;
    throw std::runtime_error("the progress bar broke");
  };
  EXPECT_THROW((void)RestoreShard(fake, Manifest(fake, 1), 0, throwing, false),
               std::runtime_error);
  // Each of the three ranges stopped at its first report.
  EXPECT_EQ(calls.load(), 3);
  // The restore left nothing behind: the next one succeeds.
  absl::StatusOr<std::vector<RestoredTensor>> restored =
      Restore(fake, 1, false);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(View((*restored)[0]), bytes);
}

TEST(RestorePlanTest, WritesThroughSharedMemoryWhenTheServerCan) {
  if (!SharedMemoryWorks()) GTEST_SKIP() << "no memfd here";
  FakeTransport fake;
  const std::string bytes = PatternBytes(kRows * kRowBytes, 18);
  Save(fake, 1, {Table("emb", bytes)});

  absl::StatusOr<std::vector<RestoredTensor>> restored = Restore(fake, 1, true);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(View((*restored)[0]), bytes);
  EXPECT_GT(fake.into_file_calls(), 0);
  EXPECT_TRUE(fake.read_calls().empty());
  // One registration serves every concurrent request, and it has ended by
  // the time the restore returns (the tensors outlive it).
  EXPECT_EQ(fake.registrations(), 1);
  EXPECT_EQ(fake.registered_files(), 0u);
}

TEST(RestorePlanTest, OneRegistrationServesEveryConcurrentRequest) {
  if (!SharedMemoryWorks()) GTEST_SKIP() << "no memfd here";
  FakeTransport fake;
  std::vector<TensorData> tables;
  std::vector<std::string> bytes;
  bytes.reserve(6);
  for (int i = 0; i < 6; ++i)
    bytes.push_back(PatternBytes(kRows * kRowBytes, 40 + i));
  for (int i = 0; i < 6; ++i) {
    tables.push_back(Table(absl::StrCat("t", i), bytes[i]));
  }
  Save(fake, 1, tables);

  absl::StatusOr<std::vector<RestoredTensor>> restored = Restore(fake, 1, true);
  ASSERT_TRUE(restored.ok()) << restored.status();
  for (int i = 0; i < 6; ++i) EXPECT_EQ(View((*restored)[i]), bytes[i]);
  EXPECT_GT(fake.into_file_calls(), 1);
  EXPECT_EQ(fake.registrations(), 1);
  EXPECT_EQ(fake.registered_files(), 0u);
}

TEST(RestorePlanTest, StreamsWhenTheServerRefusesTheRegistration) {
  if (!SharedMemoryWorks()) GTEST_SKIP() << "no memfd here";
  for (const absl::Status& refusal :
       {absl::UnimplementedError("old server"),
        absl::FailedPreconditionError("shared memory turned off")}) {
    SCOPED_TRACE(refusal.ToString());
    FakeTransport fake;
    const std::string bytes = PatternBytes(kRows * kRowBytes, 46);
    Save(fake, 1, {Table("emb", bytes)});
    fake.FailSharedFileRegistrations(refusal);

    absl::StatusOr<std::vector<RestoredTensor>> restored =
        Restore(fake, 1, true);
    ASSERT_TRUE(restored.ok()) << restored.status();
    EXPECT_EQ(View((*restored)[0]), bytes);
    EXPECT_EQ(fake.into_file_calls(), 0);
    EXPECT_FALSE(fake.read_calls().empty());
  }
  // A server that is down is an error, not a reason to stream.
  FakeTransport fake;
  Save(fake, 1, {Table("emb", PatternBytes(kRows * kRowBytes, 47))});
  fake.FailSharedFileRegistrations(absl::UnavailableError("server gone"));
  EXPECT_TRUE(absl::IsUnavailable(Restore(fake, 1, true).status()));
  EXPECT_TRUE(fake.read_calls().empty());
}

TEST(RestorePlanTest, StreamsWhenTheServerCannotWriteSharedMemory) {
  if (!SharedMemoryWorks()) GTEST_SKIP() << "no memfd here";
  for (const absl::Status& refusal :
       {absl::UnimplementedError("old server"),
        absl::FailedPreconditionError("another host")}) {
    SCOPED_TRACE(refusal.ToString());
    FakeTransport fake;
    const std::string bytes = PatternBytes(kRows * kRowBytes, 19);
    Save(fake, 1, {Table("emb", bytes)});
    fake.FailReadsIntoFile(refusal);

    absl::StatusOr<std::vector<RestoredTensor>> restored =
        Restore(fake, 1, true);
    ASSERT_TRUE(restored.ok()) << restored.status();
    EXPECT_EQ(View((*restored)[0]), bytes);
    EXPECT_FALSE(fake.read_calls().empty());
  }
}

TEST(RestorePlanTest, OtherSharedMemoryErrorsAreNotRetriedByStreaming) {
  if (!SharedMemoryWorks()) GTEST_SKIP() << "no memfd here";
  FakeTransport fake;
  Save(fake, 1, {Table("emb", PatternBytes(kRows * kRowBytes, 20))});
  const Checkpoint checkpoint = Manifest(fake, 1);
  const ChunkRef& piece = checkpoint.shards[0].tensors[0].pieces[0];
  fake.AnswerWith(piece.id, piece.id, "corrupt");

  absl::StatusOr<std::vector<RestoredTensor>> restored =
      RestoreShard(fake, checkpoint, 0, {}, true);
  EXPECT_TRUE(absl::IsDataLoss(restored.status())) << restored.status();
  EXPECT_TRUE(fake.read_calls().empty());
}

TEST(RestorePlanTest, RefusesARankOutsideTheCheckpointOrWithoutAShard) {
  FakeTransport fake;
  Save(fake, 1, {Table("emb", PatternBytes(kRows * kRowBytes, 21))});
  Checkpoint checkpoint = Manifest(fake, 1);

  EXPECT_TRUE(absl::IsInvalidArgument(
      RestoreShard(fake, checkpoint, 1, {}, false).status()));
  checkpoint.record.world_size = 2;
  EXPECT_TRUE(
      absl::IsNotFound(RestoreShard(fake, checkpoint, 1, {}, false).status()));
  std::string out(10, '\0');
  EXPECT_TRUE(absl::IsInvalidArgument(ReadTensors(
      fake, kJob, checkpoint.shards[0].tensors, {absl::MakeSpan(out)})));
  EXPECT_TRUE(fake.read_calls().empty());
}

TEST(SplitForParallelFetchTest, CoversEverySinkInOrderInAtMostStreamsRanges) {
  std::vector<char> memory(64);
  std::vector<ChunkSink> sinks;
  for (int i = 0; i < 10; ++i) {
    ChunkSink sink;
    sink.id = Sha256(std::to_string(i));
    sink.size = 4;
    sink.destinations.push_back(memory.data());
    // A chunk written to many places weighs as much as the writes.
    if (i == 7) sink.destinations.resize(6, memory.data());
    sinks.push_back(sink);
  }
  for (size_t streams : {1, 2, 3, 5, 20}) {
    SCOPED_TRACE(streams);
    const std::vector<absl::Span<const ChunkSink>> ranges =
        SplitForParallelFetch(sinks, streams);
    EXPECT_LE(ranges.size(), streams);
    size_t next = 0;
    for (absl::Span<const ChunkSink> range : ranges) {
      ASSERT_FALSE(range.empty());
      EXPECT_EQ(range.data(), sinks.data() + next);
      next += range.size();
    }
    EXPECT_EQ(next, sinks.size());
  }
  EXPECT_EQ(SplitForParallelFetch(sinks, 1).size(), 1u);
  EXPECT_TRUE(SplitForParallelFetch({}, 3).empty());
}

}  // namespace
}  // namespace ckpt::client
