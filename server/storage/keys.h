// Key encodings shared by every store, so the in-memory and RocksDB stores
// order and scope entries identically, plus the small argument checks and
// error messages both stores report.
//
//   chunk key      = tenant + '\0' + 32-byte digest
//   checkpoint key = job + '\0' + 8-byte big-endian step      (step >= 0)
//   shard key      = checkpoint key + 4-byte big-endian rank  (rank >= 0)
//   event key      = job + '\0' + 8-byte big-endian sequence  (sequence >= 1)
//
// Tenants and jobs never contain '\0' (see ValidateJobName), so `x + '\0'`
// is a prefix that no other tenant's or job's keys share, and bytewise key
// order is (tenant, id), (job, step), (job, step, rank) and (job, sequence)
// order.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/chunk_id.h"
#include "server/storage/metadata_store.h"

namespace ckpt::server {

// Scan prefix of every chunk of `tenant`; empty (all chunks) when empty.
std::string ChunkKeyPrefix(absl::string_view tenant);
std::string ChunkKey(absl::string_view tenant, const ChunkId& id);
struct DecodedChunkKey {
  absl::string_view tenant;  // points into the decoded key
  ChunkId id;
};
// DATA_LOSS when `key` is not a chunk key.
absl::StatusOr<DecodedChunkKey> DecodeChunkKey(absl::string_view key);

// Scan prefix of every checkpoint (and shard) of `job`.
std::string JobKeyPrefix(absl::string_view job);
// REQUIRES: step >= 0.
std::string CheckpointKey(absl::string_view job, int64_t step);
// REQUIRES: step >= 0, rank >= 0.
std::string ShardKey(absl::string_view job, int64_t step, int32_t rank);
struct DecodedShardKey {
  absl::string_view job;  // points into the decoded key
  int64_t step = 0;
  int32_t rank = 0;
};
// DATA_LOSS when `key` is not a shard key.
absl::StatusOr<DecodedShardKey> DecodeShardKey(absl::string_view key);

// JobKeyPrefix(job) + the sequence; the events of a job share that prefix.
std::string EventKey(absl::string_view job, uint64_t sequence);
// The sequence of an event key of `job`; DATA_LOSS when malformed.
absl::StatusOr<uint64_t> DecodeEventSequence(absl::string_view job,
                                             absl::string_view key);

// Numbers the events of one batch (MetadataBatch::AppendEventOp): each job's
// continue from its highest stored sequence, so numbering survives restarts.
// Every store uses it, so numbering and trimming agree across stores.
// Use within one Apply, while holding what serializes the store's appends.
class EventSequencer {
 public:
  // The sequence of the next event of `job`. `last_stored(job)` is the job's
  // highest stored sequence (0 when none); called once per job.
  absl::StatusOr<uint64_t> Next(
      absl::string_view job,
      absl::FunctionRef<absl::StatusOr<uint64_t>(absl::string_view job)>
          last_stored);

  struct Trim {
    std::string job;
    uint64_t keep_from;  // events of `job` below this sequence are dropped
  };
  // The jobs numbered so far that now exceed kMaxEventsPerJob events.
  std::vector<Trim> Trims() const;

 private:
  std::map<std::string, uint64_t, std::less<>> last_;  // per job, so far
};

// The smallest key greater than every key starting with `prefix`; empty
// when there is none (prefix is all 0xff). Exclusive end of a prefix range.
std::string PrefixSuccessor(absl::string_view prefix);

// A LEB128 varint.
std::string EncodeVarint64(uint64_t value);
// DATA_LOSS unless `value` is exactly one well-formed varint.
absl::StatusOr<uint64_t> DecodeVarint64(absl::string_view value);

// XXH3-128 of a chunk's bytes, recorded when it is stored.
struct ChunkChecksum {
  uint64_t low = 0;
  uint64_t high = 0;
  friend bool operator==(const ChunkChecksum&, const ChunkChecksum&) = default;
};
ChunkChecksum ComputeChunkChecksum(absl::string_view bytes);
// The checksum as stored: 16 bytes, low then high, little-endian.
std::string EncodeChunkChecksum(const ChunkChecksum& checksum);
// DATA_LOSS unless `value` is exactly 16 bytes.
absl::StatusOr<ChunkChecksum> DecodeChunkChecksum(absl::string_view value);

// Chunk index values: the chunk's size as a varint, then its checksum (16
// bytes, low then high, little-endian), then, for a chunk whose bytes are in
// a file of their own (chunk_files.h) rather than in the `chunks` family, the
// file's number as a varint. Values written before checksums were recorded
// hold only the size; they decode with no checksum.
struct ChunkIndexValue {
  uint64_t size = 0;
  std::optional<ChunkChecksum> checksum;
  std::optional<uint64_t> file_number;
};
std::string EncodeChunkIndexValue(
    uint64_t size, const ChunkChecksum& checksum,
    std::optional<uint64_t> file_number = std::nullopt);
// DATA_LOSS unless `value` is a varint followed by nothing, or by 16 bytes
// and at most one more varint.
absl::StatusOr<ChunkIndexValue> DecodeChunkIndexValue(absl::string_view value);

// INVALID_ARGUMENT when `tenant` cannot name stored chunks: empty (which
// means "all tenants" in GetUsage/ForEach) or containing '\0'.
absl::Status ValidateTenant(absl::string_view tenant);
// INVALID_ARGUMENT when an op cannot be keyed: negative step or rank, empty
// job name or one containing '\0'. Both stores check a whole batch before
// applying any of it.
absl::Status ValidateBatch(const MetadataBatch& batch);

// The NOT_FOUND statuses both stores return.
absl::Status ChunkNotFound(absl::string_view tenant, const ChunkId& id);
absl::Status CheckpointNotFound(absl::string_view job, int64_t step);

}  // namespace ckpt::server
