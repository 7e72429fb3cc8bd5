// Integrity verification, shared by server and client: what a verify run
// covers (VerifyOptions), which chunks a partial data read covers
// (ReadDataSubset), its progress and its report. Pure: no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/chunk_id.h"

namespace ckpt {

// Part n of t (1-based), as restic's `--read-data-subset n/t`: a chunk is in
// part (first 8 bytes of its SHA-256, big-endian) mod t + 1. The t parts are
// disjoint and together hold every chunk, and a chunk stays in its part from
// run to run, so t runs with n = 1..t read everything once.
struct ReadDataSubset {
  uint32_t n = 1;
  uint32_t t = 1;

  // REQUIRES: ValidateReadDataSubset(*this) is OK.
  bool Contains(const ChunkId& id) const;
  // "n/t".
  std::string ToString() const;
  friend bool operator==(const ReadDataSubset&,
                         const ReadDataSubset&) = default;
};

// INVALID_ARGUMENT unless 1 <= n <= t.
absl::Status ValidateReadDataSubset(const ReadDataSubset& subset);
// Parses and validates "n/t", e.g. "2/5".
absl::StatusOr<ReadDataSubset> ParseReadDataSubset(absl::string_view text);

// What a verify run checks. Only committed checkpoints are verified.
struct VerifyOptions {
  std::string job;              // empty: every job
  std::optional<int64_t> step;  // one checkpoint of `job`; nullopt: all
  // Also read every chunk and compare its bytes with its SHA-256.
  bool read_data = false;
  // Read only this part of the chunks; implies read_data.
  std::optional<ReadDataSubset> read_data_subset;

  bool reads_data() const { return read_data || read_data_subset.has_value(); }
};

enum class VerifyStage : uint8_t {
  kExistence = 1,  // asking the store which chunks it holds (no body read)
  kReadData,       // reading and hashing chunk bytes
};

struct VerifyProgress {
  VerifyStage stage = VerifyStage::kExistence;
  uint64_t chunks_done = 0;
  uint64_t chunks_total = 0;
  uint64_t bytes_done = 0;   // kReadData only
  uint64_t bytes_total = 0;  // kReadData only
  friend bool operator==(const VerifyProgress&,
                         const VerifyProgress&) = default;
};

struct CheckpointKey {
  std::string job;
  int64_t step = 0;
  // clang-tidy before 18 flags the 0 that the rewritten `a < b` compares
  // against (llvm/llvm-project#53961): there is no pointer here.
  // NOLINTNEXTLINE(modernize-use-nullptr)
  friend auto operator<=>(const CheckpointKey&, const CheckpointKey&) = default;
};

enum class ChunkProblem : uint8_t {
  kMissing = 1,   // not in the store
  kCorrupt,       // stored bytes do not hash to the chunk's id
  kSizeMismatch,  // a manifest records another size than the stored chunk's
};
// "missing", "corrupt", "size-mismatch".
absl::string_view ChunkProblemName(ChunkProblem problem);

struct VerifyReport {
  struct DamagedChunk {
    std::string tenant;
    ChunkId id;
    uint64_t size = 0;  // as the manifests record it
    ChunkProblem problem = ChunkProblem::kMissing;
    std::string detail;  // e.g. what the stored bytes hash to
    // Every verified checkpoint that references it, ascending.
    std::vector<CheckpointKey> checkpoints;
    friend bool operator==(const DamagedChunk&, const DamagedChunk&) = default;
  };
  struct DamagedCheckpoint {
    CheckpointKey checkpoint;
    uint64_t missing_chunks = 0;
    // Chunks whose stored bytes do not match their hash, or whose size its
    // manifests record wrongly (either way a restore fails).
    uint64_t corrupt_chunks = 0;
    // Damage of the checkpoint's own metadata: absent or unreadable shards.
    std::vector<std::string> problems;
    friend bool operator==(const DamagedCheckpoint&,
                           const DamagedCheckpoint&) = default;
  };

  bool read_data = false;
  std::optional<ReadDataSubset> read_data_subset;  // nullopt: every chunk
  int64_t checkpoints_checked = 0;                 // committed ones in scope
  int64_t pending_skipped = 0;  // pending ones in scope, not verified
  uint64_t chunks_checked = 0;  // distinct (tenant, chunk) references
  uint64_t chunks_read = 0;
  uint64_t bytes_read = 0;
  // Ascending (tenant, id); at most kMaxListedDamagedChunks of them.
  std::vector<DamagedChunk> damaged_chunks;
  uint64_t damaged_chunk_count = 0;  // all of them, listed or not
  std::vector<DamagedCheckpoint> damaged_checkpoints;  // ascending

  bool ok() const {
    return damaged_chunk_count == 0 && damaged_checkpoints.empty();
  }
  friend bool operator==(const VerifyReport&, const VerifyReport&) = default;
};

// Bounds the report's size (and its message on the wire) when a whole disk
// is lost; the damaged checkpoints are always all listed.
inline constexpr size_t kMaxListedDamagedChunks = 10000;

}  // namespace ckpt
