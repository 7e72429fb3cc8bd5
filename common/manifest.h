// The checkpoint data model (jobs, checkpoints, shards, tensor entries) and
// its validation. Pure: no I/O, no gRPC, no RocksDB.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/chunk_id.h"
#include "common/policy_origin.h"
#include "common/retention_policy.h"

namespace ckpt {

// Persisted records carry this; readers accept every version <= it.
inline constexpr uint32_t kFormatVersion = 1;

enum class DType : uint8_t {
  kUint8 = 1,
  kInt8,
  kInt16,
  kInt32,
  kInt64,
  kFloat16,
  kBFloat16,
  kFloat32,
  kFloat64,
  kBool,
  kComplex64,
  kComplex128,
};

// Bytes per element.
size_t DTypeSize(DType dtype);
// "float32", "bfloat16", ... (numpy / torch spellings).
absl::string_view DTypeName(DType dtype);
absl::StatusOr<DType> ParseDType(absl::string_view name);

struct Box {
  std::vector<int64_t> offsets;
  std::vector<int64_t> lengths;
  friend bool operator==(const Box&, const Box&) = default;
};

struct ChunkRef {
  ChunkId id;
  uint64_t size = 0;
  friend bool operator==(const ChunkRef&, const ChunkRef&) = default;
};

// How a quantized entry's pieces were made (lossy, opt-in; common/
// quantize.h) and what it cost, as measured over the whole entry at save.
struct Quantization {
  int bits = 0;  // 2, 3, 4 or 8
  double max_abs_error = 0;
  double relative_l2_error = 0;  // ||x - x'|| / ||x||
  friend bool operator==(const Quantization&, const Quantization&) = default;
};

struct TensorEntry {
  std::string name;
  DType dtype = DType::kUint8;
  std::vector<int64_t> global_shape;
  Box box;
  // Concatenated in order: the box's bytes, row-major; for a delta, an
  // encoded row delta (common/row_delta.h); for a quantized entry, its
  // encoded matrix (common/quantize.h).
  std::vector<ChunkRef> pieces;
  // Set for a row delta against the tensor of the same name, dtype, shape
  // and box in this older checkpoint of the job (which may be a delta too).
  std::optional<int64_t> delta_base_step;
  // Set for a quantized float32 entry: its pieces are the encoded matrix
  // (common/quantize.h) of QuantizedRows() x QuantizedCols(), and a restore
  // gives the dequantized values. Never a delta, never a delta's base.
  std::optional<Quantization> quantization;
  // Concatenated in order: the stored row fingerprints of the tensor as
  // this checkpoint holds it (common/fingerprint_record.h): a dense record
  // for a full entry, a sparse one of exactly the delta's rows for a row
  // delta. Empty when the writer stored none (saves without row deltas,
  // quantized entries, checkpoints written before they existed). Never
  // restored as data; kept, copied, collected and verified like pieces.
  std::vector<ChunkRef> fingerprint_pieces;

  bool IsDelta() const { return delta_base_step.has_value(); }
  bool IsQuantized() const { return quantization.has_value(); }
  // The matrix a quantized entry is encoded as: rows along dimension 0 of
  // the box and the rest flattened into columns; one row for a box of at
  // most one dimension.
  uint64_t QuantizedRows() const;
  uint64_t QuantizedCols() const;
  // Product of box lengths times the element size: the restored size.
  uint64_t ByteSize() const;
  // Sum of the pieces' sizes: the stored data (not the fingerprints).
  uint64_t StoredBytes() const;
  // Sum of the fingerprint pieces' sizes.
  uint64_t FingerprintBytes() const;
  bool HasStoredFingerprints() const { return !fingerprint_pieces.empty(); }
  // Bytes per row (slice along dimension 0) of the box; the whole box when
  // it has no dimensions.
  uint64_t RowBytes() const;
  friend bool operator==(const TensorEntry&, const TensorEntry&) = default;
};

struct ShardManifest {
  int32_t rank = 0;
  std::vector<TensorEntry> tensors;

  uint64_t ByteSize() const;
  friend bool operator==(const ShardManifest&, const ShardManifest&) = default;
};

struct CheckpointMetadata {
  std::map<std::string, double> metrics;
  std::map<std::string, std::string> tags;
  std::optional<absl::Time> writer_time;
  friend bool operator==(const CheckpointMetadata&,
                         const CheckpointMetadata&) = default;
};

// The other end of a copy between servers (`ckpt copy`), as the copying
// client names it: on the target, where a checkpoint came from (kept with
// the checkpoint and in its `copied` event); on the source, where it went
// (its `copied` event). `server` is a label the client chose (the address
// it dialled), never dialled by the server: untrusted text, bounded and
// checked like a tag (kMaxCopyServerBytes, printable).
struct CopyPeer {
  std::string server;
  std::string job;
  int64_t step = 0;
  friend bool operator==(const CopyPeer&, const CopyPeer&) = default;
};
inline constexpr size_t kMaxCopyServerBytes = 256;

// INVALID_ARGUMENT naming the field ("server", "job", "step") unless
// `server` is 1-kMaxCopyServerBytes bytes of printable UTF-8
// (IsPrintableUtf8: no control characters), `job` a valid job name and
// `step` >= 0. The server checks every CopyPeer a client sends with it.
absl::Status ValidateCopyPeer(const CopyPeer& peer);
// "SERVER JOB@STEP", as events and `ckpt show` print a peer.
std::string CopyPeerText(const CopyPeer& peer);

enum class CheckpointState : uint8_t { kPending = 1, kCommitted, kAborted };
absl::string_view CheckpointStateName(CheckpointState state);

// A checkpoint's header: everything but the shards' tensor lists.
struct CheckpointRecord {
  std::string job;
  int64_t step = 0;
  CheckpointState state = CheckpointState::kPending;
  int32_t world_size = 1;
  CheckpointMetadata metadata;
  absl::Time create_time = absl::UnixEpoch();
  absl::Time commit_time = absl::UnixEpoch();   // meaningful when committed
  absl::Time lease_expiry = absl::UnixEpoch();  // meaningful when pending
  // How far each Begin or CommitShard of it pushes lease_expiry out.
  absl::Duration lease_duration = absl::ZeroDuration();
  uint64_t logical_bytes = 0;            // over committed shards
  std::vector<int32_t> committed_ranks;  // ascending
  std::string abort_reason;
  // Never deleted by retention or prune while set (committed ones only).
  bool pinned = false;
  // Steps its delta entries are taken against, ascending (set at commit).
  std::vector<int64_t> base_steps;
  // Chunk bytes first stored by uploads for this checkpoint.
  uint64_t bytes_added = 0;
  // Set when the checkpoint was copied from another server (`ckpt copy`):
  // where from, as the first Begin said (BeginOptions::copied_from).
  std::optional<CopyPeer> copied_from;

  // Some of its entries are row deltas (base_steps is non-empty).
  bool IsIncremental() const { return !base_steps.empty(); }

  // The time retention and listings use: the writer's, else the commit's.
  absl::Time EffectiveTime() const {
    return metadata.writer_time.value_or(commit_time);
  }
  friend bool operator==(const CheckpointRecord&,
                         const CheckpointRecord&) = default;
};

// "delta" for an incremental checkpoint, else "full" (listings, CLI, Python).
absl::string_view CheckpointKindName(const CheckpointRecord& record);

// What an entry's pieces hold: "full", "delta" or "quantized Nb" (`ckpt
// show`, `ckpt diff`).
std::string TensorEntryKind(const TensorEntry& entry);

// A committed checkpoint with all of its shards (ascending rank).
struct Checkpoint {
  CheckpointRecord record;
  std::vector<ShardManifest> shards;
};

struct JobRecord {
  std::string name;
  absl::Time create_time = absl::UnixEpoch();
  // The job's own policy, enforced at every commit (of a caller that may
  // delete history) and prune; nullopt: none (its tenant's default
  // applies, if any; else keep everything).
  std::optional<RetentionPolicy> retention_policy;
  // Who set retention_policy. nullopt with it, and in records older than
  // origins (the service infers it then, service/policy_owner.h).
  std::optional<PolicyOrigin> policy_origin;
  // Digests (IgnoredPolicyDigest, server/service/policy_owner.h) of the
  // writers'
  // policies already reported ignored since the job's policy last changed,
  // oldest first, at most kMaxIgnoredPolicies: each distinct one is
  // reported by one `policy_ignored` event.
  std::vector<std::string> ignored_policy_digests;
  // The effective time of the job's first committed checkpoint: where the
  // every-N-hours clock starts. Set at the first commit, never changed.
  std::optional<absl::Time> first_checkpoint_time;
  friend bool operator==(const JobRecord&, const JobRecord&) = default;
};

// A job without a policy or checkpoints yet.
inline JobRecord MakeJobRecord(std::string name, absl::Time create_time) {
  JobRecord job;
  job.name = std::move(name);
  job.create_time = create_time;
  return job;
}

// A tenant's settings: its default retention policy (`ckpt policy set
// TENANT/ --default`), for its jobs without an operator's policy of their
// own.
struct TenantRecord {
  std::string name;
  std::optional<RetentionPolicy> default_policy;
  std::optional<PolicyOrigin> default_policy_origin;  // set with it
  friend bool operator==(const TenantRecord&, const TenantRecord&) = default;
};

// A job as listings show it: its record and its committed checkpoints
// totals.
struct JobSummary {
  JobRecord job;
  int64_t checkpoint_count = 0;  // committed
  uint64_t logical_bytes = 0;    // over committed checkpoints
  std::optional<int64_t> latest_step;
  friend bool operator==(const JobSummary&, const JobSummary&) = default;
};

// Limits on client-chosen names; an error quoting a name that breaks them
// quotes it truncated (common/quote.h).
inline constexpr size_t kMaxJobNameBytes = 256;
inline constexpr size_t kMaxTensorNameBytes = 1024;
// Largest size of one dimension of a tensor's global shape (which keeps
// extents and byte counts from overflowing).
inline constexpr int64_t kMaxDimension = int64_t{1} << 48;
// Metric names (checkpoint metadata, a retention policy's keep_best).
inline constexpr size_t kMaxMetricNameBytes = 256;

// Job names are `tenant/name`, at most 256 characters in all: tenant is
// [A-Za-z0-9._-]{1,64}; name is one or more `/`-separated segments of
// [A-Za-z0-9._-].
absl::Status ValidateJobName(absl::string_view job);
// The tenant part of a valid job name.
absl::string_view TenantOf(absl::string_view job);
// A tenant on its own (as the config file names one): what ValidateJobName
// accepts before the first '/'. INVALID_ARGUMENT saying what is wrong.
absl::Status ValidateTenantName(absl::string_view tenant);

// Checks a shard's internal consistency for a checkpoint of `world_size`
// ranks: rank range, unique non-empty tensor names, known dtypes, shapes and
// boxes that agree, piece sizes that add up to the box's bytes, and
// fingerprint pieces (if any) that add up to the record the entry implies:
// dense over its rows for a full entry, sparse over the delta's rows for a
// row delta, none for a quantized or rowless one.
// INVALID_ARGUMENT with a message naming the offending tensor otherwise.
absl::Status ValidateShardManifest(const ShardManifest& shard,
                                   int32_t world_size);

// Every chunk the shard needs to be restored, each once, in first-use order.
// "Once" is per (id, size): a manifest committed before sizes were checked
// at commit may name one chunk with two sizes, and verify must see both.
// Commit, GC and verify all enumerate references through this one function,
// so a new kind of piece (a delta that also needs its base) changes it here.
std::vector<ChunkRef> ReferencedChunks(const ShardManifest& shard);

}  // namespace ckpt
