// T15 bit rot: a real ckpt-server's data directory, made once, copied per
// trial; one random byte of its SST, blob and chunk files (uniform over
// their bytes) flipped while no server runs; then a server on the copy.
// Whenever the byte hit a stored chunk's value, `verify --read-data`
// (VerifyCheckpoints with read_data) must name that chunk and every checkpoint
// that references it; a restore must never return wrong bytes (an affected
// checkpoint fails DATA_LOSS, an unaffected one restores byte-identical); the
// list of checkpoints must be whole or an error; and a server that cannot open
// the database must exit non-zero naming the file. Also the logical case: a
// chunk's value replaced by another valid chunk value through RocksDB (the
// store opened in-process, server stopped). Flags: --seed=N (else random,
// printed) and
// --trials=N (CI 20, soak 200). Prints one JSON line with the figures.
#include <sys/wait.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "client/client.h"
#include "common/sha256.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "server/storage/keys.h"
#include "server/storage/rocksdb_store.h"
#include "server/storage/rocksdb_store_impl.h"
#include "tests/reliability/reliability_flags.h"
#include "tests/testing/real_server_test.h"
#include "tests/testing/server_process.h"

namespace ckpt::testing {
namespace {

namespace fs = std::filesystem;

ReliabilityFlags& TheFlags() {
  static ReliabilityFlags flags{.seed = std::nullopt, .size = 20};
  return flags;
}

constexpr char kJob[] = "rot/job";
constexpr char kTenant[] = "rot";
constexpr size_t kChunkBytes = size_t{64} << 10;

std::string RandomBytes(std::mt19937_64& rng, size_t size) {
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(rng());
  return bytes;
}

// Steps 1-3 of kJob: step 2 shares two chunks of "w" with step 1; each
// step has a small tensor whose one chunk stays inline in an SST file.
struct Saved {
  std::map<int64_t, std::vector<std::pair<std::string, std::string>>> tensors;
  std::map<ChunkId, std::string> chunks;  // every chunk's bytes
  std::map<ChunkId, std::set<int64_t>> steps_of;

  std::set<int64_t> Steps() const {
    std::set<int64_t> steps;
    for (const auto& [step, t] : tensors) steps.insert(step);
    return steps;
  }
};

class BitRotTest : public RealServerTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(RealServerTest::SetUp());
    seed_ = TheFlags().seed.value_or(std::random_device()());
    rng_.seed(seed_);
  }

  // Saves the three steps through a real server on db_path(), then stops
  // it cleanly (so every chunk is in a blob, SST or chunk file).
  void SaveSteps() {
    ASSERT_NO_FATAL_FAILURE(StartServer());
    const std::string shared = RandomBytes(rng_, 4 * kChunkBytes);
    std::string changed = shared;
    for (size_t i = 2 * kChunkBytes; i < changed.size(); ++i) changed[i] ^= 1;
    saved_.tensors[1] = {{"w", shared}, {"s", RandomBytes(rng_, 1000)}};
    saved_.tensors[2] = {{"w", changed}, {"s", RandomBytes(rng_, 1500)}};
    saved_.tensors[3] = {{"w", RandomBytes(rng_, 3 * kChunkBytes)},
                         {"s", RandomBytes(rng_, 700)}};
    for (const auto& [step, tensors] : saved_.tensors) {
      if (step == 3) {
        // Step 3's whole chunks go to chunk files (chunk_files.h), the
        // others' to RocksDB's blob files: rot strikes both.
        StopServer();
        ASSERT_NO_FATAL_FAILURE(StartServer(
            {"--file-chunk-min-bytes", absl::StrCat(kChunkBytes / 2)}));
      }
      std::vector<client::TensorData> data;
      for (const auto& [name, bytes] : tensors) {
        data.push_back(Uint8Tensor(name, bytes));
        for (size_t at = 0; at < bytes.size(); at += kChunkBytes) {
          const std::string chunk = bytes.substr(at, kChunkBytes);
          const ChunkId id = Sha256(chunk);
          saved_.chunks[id] = chunk;
          saved_.steps_of[id].insert(step);
        }
      }
      client::SaveOptions options;
      options.chunk_bytes = kChunkBytes;
      auto result = client_->SaveShard(kJob, step, data, options);
      ASSERT_TRUE(result.ok()) << result.status();
      ASSERT_TRUE(result->checkpoint_committed);
    }
    StopServer();
  }

  // Whether `step` restores exactly as saved: true, false with DATA_LOSS;
  // wrong bytes or another error fail the test.
  bool RestoresExactly(int64_t step) {
    auto restored = client_->RestoreShard(kJob, step, 0);
    if (!restored.ok()) {
      EXPECT_TRUE(absl::IsDataLoss(restored.status()))
          << "step " << step << ": " << restored.status();
      return false;
    }
    const auto& expected = saved_.tensors.at(step);
    EXPECT_EQ(restored->size(), expected.size());
    bool exact = restored->size() == expected.size();
    for (size_t i = 0; exact && i < expected.size(); ++i) {
      const absl::string_view got((*restored)[i].bytes.data(),
                                  (*restored)[i].bytes.size());
      exact = (*restored)[i].entry.name == expected[i].first &&
              got == expected[i].second;
    }
    if (!exact) {
      ++wrong_bytes_;
      ADD_FAILURE() << "step " << step << " restored OK with wrong bytes";
    }
    return exact;
  }

  // The chunks whose stored value covers byte `offset` of `content`.
  std::set<ChunkId> ChunksAt(const std::string& content, uint64_t offset) {
    std::set<ChunkId> hit;
    for (const auto& [id, bytes] : saved_.chunks) {
      for (size_t at = content.find(bytes); at != std::string::npos;
           at = content.find(bytes, at + 1)) {
        if (offset >= at && offset < at + bytes.size()) hit.insert(id);
      }
    }
    return hit;
  }

  // A server on `dir` that would not start: its exit code and its log.
  CommandResult RunRefusingServer(const std::string& dir) {
    const std::string err = dir_->path() + "/refused.err";
    const std::string command = absl::StrCat(
        "timeout 60 ", BuiltBinary("server/rpc/ckpt-server"), " --data-dir ",
        dir, " --listen 127.0.0.1:0 >/dev/null 2>", err);
    const int status = std::system(command.c_str());
    CommandResult result;
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    result.err = ReadWholeFile(err);
    return result;
  }

  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
  Saved saved_;
  int wrong_bytes_ = 0;
};

TEST_F(BitRotTest, VerifyNamesEveryDamagedChunkAndRestoreNeverLies) {
  SCOPED_TRACE(
      absl::StrCat("seed ", seed_, " (rerun with --seed=", seed_, ")"));
  ASSERT_NO_FATAL_FAILURE(SaveSteps());
  const std::string pristine = db_path();
  // Relative to the data directory.
  std::vector<fs::path> files;
  for (const auto& entry : fs::recursive_directory_iterator(pristine)) {
    const fs::path relative = fs::relative(entry.path(), pristine);
    const std::string ext = entry.path().extension().string();
    const bool chunk_file =
        entry.is_regular_file() && *relative.begin() == "chunk_files";
    if (ext == ".sst" || ext == ".blob" || chunk_file) {
      files.push_back(relative);
    }
  }
  std::sort(files.begin(), files.end());
  ASSERT_FALSE(files.empty());
  std::vector<uint64_t> sizes;
  uint64_t total_bytes = 0;
  for (const fs::path& file : files) {
    sizes.push_back(fs::file_size(fs::path(pristine) / file));
    total_bytes += sizes.back();
  }
  ASSERT_GT(total_bytes, 0u);

  int hit_live = 0, found_live = 0, refused_open = 0, other_damage_found = 0;
  int nothing_found = 0, verify_errors = 0;
  const std::string trial_dir = dir_->path() + "/trial";
  for (int trial = 0; trial < TheFlags().size; ++trial) {
    SCOPED_TRACE(absl::StrCat("trial ", trial));
    fs::remove_all(trial_dir);
    fs::copy(pristine, trial_dir, fs::copy_options::recursive);
    // A byte uniform over all SST and blob bytes, as rot strikes a disk.
    uint64_t at = rng_() % total_bytes;
    size_t index = 0;
    while (at >= sizes[index]) at -= sizes[index++];
    const fs::path victim = fs::path(trial_dir) / files[index];
    std::string content = ReadWholeFile(victim);
    ASSERT_EQ(content.size(), sizes[index]);
    const uint64_t offset = at;
    const std::set<ChunkId> hit = ChunksAt(content, offset);
    {
      std::fstream file(victim,
                        std::ios::in | std::ios::out | std::ios::binary);
      file.seekp(static_cast<std::streamoff>(offset));
      file.put(static_cast<char>(content[offset] ^ (1 + rng_() % 255)));
      ASSERT_TRUE(file.good());
    }
    SCOPED_TRACE(absl::StrCat("flipped byte ", offset, " of ",
                              victim.filename().string(), " (", hit.size(),
                              " chunk(s) hit)"));
    hit_live += hit.empty() ? 0 : 1;

    auto server = ServerProcess::Start(trial_dir, {}, dir_->path() + "/log");
    if (!server.ok()) {
      ++refused_open;
      const CommandResult refused = RunRefusingServer(trial_dir);
      EXPECT_NE(refused.exit_code, 0) << refused.err;
      EXPECT_NE(refused.exit_code, 124) << "it started the second time";
      // RocksDB reads a table file's properties while it replays the
      // MANIFEST at open; damage there is reported naming the MANIFEST
      // (seed 4104, trial 142: "properties unsorted in file MANIFEST-..."),
      // which is the name the operator gets.
      const bool names_victim =
          absl::StrContains(refused.err, victim.filename().string());
      const bool names_manifest = victim.extension() == ".sst" &&
                                  absl::StrContains(refused.err, "MANIFEST-");
      EXPECT_TRUE(names_victim || names_manifest)
          << "the refusal does not name the file: " << refused.err;
      found_live += hit.empty() ? 0 : 1;
      continue;
    }
    server_ = *std::move(server);
    auto client = client::Client::Connect(server_->address(), {});
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);

    // The list is whole, or an error; never silently shorter.
    auto listed = client_->ListCheckpoints(kJob, false);
    if (listed.ok()) {
      std::set<int64_t> steps;
      for (const CheckpointRecord& record : *listed) steps.insert(record.step);
      EXPECT_EQ(steps, saved_.Steps()) << "a checkpoint silently vanished";
    }

    VerifyOptions read_data;
    read_data.read_data = true;
    auto report = client_->VerifyCheckpoints(read_data);
    std::set<ChunkId> damaged;
    std::set<int64_t> damaged_steps;
    if (!report.ok()) {
      ++verify_errors;
      EXPECT_TRUE(absl::IsDataLoss(report.status())) << report.status();
    } else {
      for (const VerifyReport::DamagedChunk& chunk : report->damaged_chunks) {
        damaged.insert(chunk.id);
        std::set<int64_t> steps;
        for (const CheckpointKey& key : chunk.checkpoints) {
          steps.insert(key.step);
        }
        if (saved_.steps_of.count(chunk.id) != 0) {
          EXPECT_EQ(steps, saved_.steps_of.at(chunk.id))
              << chunk.id.ToHex() << " named with the wrong checkpoints";
        }
      }
      for (const auto& checkpoint : report->damaged_checkpoints) {
        damaged_steps.insert(checkpoint.checkpoint.step);
      }
      for (const ChunkId& id : hit) {
        EXPECT_EQ(damaged.count(id), 1u)
            << "verify missed damaged chunk " << id.ToHex();
        for (int64_t step : saved_.steps_of.at(id)) {
          EXPECT_EQ(damaged_steps.count(step), 1u)
              << "verify missed damaged checkpoint " << step;
        }
      }
      if (!hit.empty() && !report->ok()) ++found_live;
      if (hit.empty()) ++(report->ok() ? nothing_found : other_damage_found);
    }

    for (int64_t step : saved_.Steps()) {
      const bool exact = RestoresExactly(step);
      if (report.ok()) {
        // Verify and restore agree: a checkpoint verify found damaged does
        // not restore, and one it found whole restores exactly.
        EXPECT_EQ(exact, damaged_steps.count(step) == 0) << "step " << step;
      }
    }
    client_.reset();
    absl::StatusOr<int> stopped = server_->Stop();
    server_.reset();
    ASSERT_TRUE(stopped.ok()) << stopped.status();
    EXPECT_EQ(*stopped, 0) << "the server did not stop cleanly";
  }
  std::printf(
      "{\"test\": \"bit_rot\", \"seed\": %llu, \"trials\": %d, "
      "\"files\": %zu, \"bytes\": %llu, \"hit_live_data\": %d, "
      "\"live_hits_found\": %d, "
      "\"refused_open\": %d, \"other_damage_found\": %d, "
      "\"nothing_found\": %d, \"verify_errors\": %d, \"wrong_bytes\": %d}\n",
      static_cast<unsigned long long>(seed_), TheFlags().size, files.size(),
      static_cast<unsigned long long>(total_bytes), hit_live, found_live,
      refused_open, other_damage_found, nothing_found, verify_errors,
      wrong_bytes_);
  EXPECT_EQ(found_live, hit_live);
  EXPECT_EQ(wrong_bytes_, 0);
}

// Logical corruption: a chunk's value replaced by another valid chunk
// value of the same size, written through the store (RocksDB, with the
// server stopped), so RocksDB's block checksums and the store's XXH3
// record both match the new bytes; only the content against its id can
// tell. Swaps `victim` (a chunk of step 1 only) for a chunk of step 3.
class SwappedValueTest : public BitRotTest {
 protected:
  void SwapAChunk() {
    ChunkId donor;
    ASSERT_NO_FATAL_FAILURE(SaveAndPick(&donor));
    auto store = server::RocksDbStore::Open(db_path());
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->Delete(kTenant, victim_).ok());
    auto put = (*store)->Put(kTenant, victim_, saved_.chunks.at(donor));
    ASSERT_TRUE(put.ok()) << put.status();
    ASSERT_TRUE((*store)->Sync().ok());
    store->reset();
    StartServer();
  }

  // Saves the steps, then picks `victim_` (a full-size chunk of step 1
  // only) and `donor` (one of step 3 only).
  void SaveAndPick(ChunkId* donor) {
    ASSERT_NO_FATAL_FAILURE(SaveSteps());
    std::vector<ChunkId> only_one, only_three;
    for (const auto& [id, steps] : saved_.steps_of) {
      if (saved_.chunks.at(id).size() != kChunkBytes) continue;
      if (steps == std::set<int64_t>{1}) only_one.push_back(id);
      if (steps == std::set<int64_t>{3}) only_three.push_back(id);
    }
    ASSERT_FALSE(only_one.empty());
    ASSERT_FALSE(only_three.empty());
    victim_ = only_one[rng_() % only_one.size()];
    *donor = only_three[rng_() % only_three.size()];
  }

  // verify --read-data reports `victim_` corrupt, in step 1 only.
  void ExpectVerifyNamesOnlyTheVictim() {
    VerifyOptions read_data;
    read_data.read_data = true;
    auto report = client_->VerifyCheckpoints(read_data);
    ASSERT_TRUE(report.ok()) << report.status();
    ASSERT_EQ(report->damaged_chunks.size(), 1u);
    EXPECT_EQ(report->damaged_chunks[0].id, victim_);
    EXPECT_EQ(report->damaged_chunks[0].problem, ChunkProblem::kCorrupt);
    EXPECT_EQ(report->damaged_chunks[0].checkpoints,
              (std::vector<CheckpointKey>{{kJob, 1}}));
    ASSERT_EQ(report->damaged_checkpoints.size(), 1u);
    EXPECT_EQ(report->damaged_checkpoints[0].checkpoint.step, 1);
  }

  ChunkId victim_;
};

TEST_F(SwappedValueTest, VerifyNamesTheChunkAndItsCheckpoint) {
  SCOPED_TRACE(
      absl::StrCat("seed ", seed_, " (rerun with --seed=", seed_, ")"));
  ASSERT_NO_FATAL_FAILURE(SwapAChunk());
  ExpectVerifyNamesOnlyTheVictim();
  EXPECT_TRUE(RestoresExactly(2));
  EXPECT_TRUE(RestoresExactly(3));
  EXPECT_EQ(wrong_bytes_, 0);
}

// Physical mix-up: a chunk's key in the `chunks` column family made to hold
// another valid chunk's value, written below the store (RocksDB opened
// directly, server stopped) as a misdirected write or a wrong blob
// reference would leave it; the chunk's index entry, with the checksum
// recorded when the victim was stored, stays. Restore reads check that
// record, so the swapped checkpoint fails DATA_LOSS instead of restoring
// the donor's bytes, and verify names the chunk.
//
// A swap made through RocksDbStore::Put, as SwapAChunk does, rewrites the
// checksum with the value, so restore reads cannot see it; only verify's
// SHA-256 does (the test above). Put is reached from the service only after
// the SHA-256 of the bytes was checked against the id (PutChunk), so that
// case is a bug in the server itself (docs/architecture.md, "Reads").
class MisplacedValueTest : public SwappedValueTest {
 protected:
  void MisplaceAChunk() {
    ChunkId donor;
    ASSERT_NO_FATAL_FAILURE(SaveAndPick(&donor));

    std::vector<rocksdb::ColumnFamilyDescriptor> families;
    for (const char* name : server::rocksdb_internal::kCfNames) {
      families.emplace_back(name, rocksdb::ColumnFamilyOptions());
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    rocksdb::Status opened = rocksdb::DB::Open(rocksdb::DBOptions(), db_path(),
                                               families, &handles, &raw);
    ASSERT_TRUE(opened.ok()) << opened.ToString();
    std::unique_ptr<rocksdb::DB> db(raw);
    rocksdb::ColumnFamilyHandle* chunks =
        handles[server::rocksdb_internal::kChunks];
    const std::string key = server::ChunkKey(kTenant, victim_);
    const std::string& value = saved_.chunks.at(donor);
    rocksdb::WriteOptions synced;
    synced.sync = true;
    const rocksdb::Status put = db->Put(
        synced, chunks, key, rocksdb::Slice(value.data(), value.size()));
    for (rocksdb::ColumnFamilyHandle* handle : handles) {
      ASSERT_TRUE(db->DestroyColumnFamilyHandle(handle).ok());
    }
    ASSERT_TRUE(put.ok()) << put.ToString();
    ASSERT_TRUE(db->Close().ok());
    db.reset();
    StartServer();
  }
};

TEST_F(MisplacedValueTest, RestoreRefusesItAndVerifyNamesIt) {
  SCOPED_TRACE(
      absl::StrCat("seed ", seed_, " (rerun with --seed=", seed_, ")"));
  ASSERT_NO_FATAL_FAILURE(MisplaceAChunk());
  EXPECT_FALSE(RestoresExactly(1));
  EXPECT_TRUE(RestoresExactly(2));
  EXPECT_TRUE(RestoresExactly(3));
  ExpectVerifyNamesOnlyTheVictim();
  EXPECT_EQ(wrong_bytes_, 0);
}

}  // namespace
}  // namespace ckpt::testing

// gtest's own flags, then --seed=N and --trials=N.
int main(int argc, char** argv) {
  return ckpt::testing::RunReliabilityProgram(argc, argv, "trials",
                                              &ckpt::testing::TheFlags());
}
