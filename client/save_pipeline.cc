#include "client/save_pipeline.h"

#include <algorithm>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/chunk_id.h"
#include "common/chunking.h"
#include "common/fingerprint_record.h"
#include "common/quantize.h"
#include "common/row_delta.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/thread_group.h"

namespace ckpt::client {
namespace {

// A hashing batch ends at whichever comes first; each batch costs one
// FindMissingChunks round trip, so batches amortize it without delaying the
// first upload for long.
constexpr size_t kBatchMaxChunks = 64;
constexpr uint64_t kBatchMaxBytes = uint64_t{128} << 20;

struct ChunkTask {
  absl::string_view data;  // view into the caller's tensor bytes
  ChunkId id;              // filled by the hashers
};

// Hashes `chunks` batch by batch on `threads` threads. Batches are claimed in
// order, so the consumer, which waits for them in order, rarely waits for a
// late one. Destruction stops the workers after their current batch and
// joins them. Threads the system cannot start are no error: those that did
// start hash every batch, and when none did, the consumer hashes each batch
// as it waits for it.
class BatchHasher {
 public:
  struct Batch {
    size_t begin, end;  // chunk indices
  };

  BatchHasher(std::vector<ChunkTask>* chunks, std::vector<Batch> batches,
              int threads)
      : chunks_(chunks),
        batches_(std::move(batches)),
        done_(batches_.size(), false) {
    const int n = std::max(1, threads);
    for (int i = 0; i < n; ++i) {
      if (!pool_.Spawn([this] { Work(); }).ok()) break;
    }
  }

  ~BatchHasher() {
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
    }
    pool_.JoinAll();
  }

  const std::vector<Batch>& batches() const { return batches_; }

  // Blocks until batch `b` is hashed (hashing it here when no worker runs).
  void WaitFor(size_t b) {
    if (pool_.size() == 0) {
      // Batches are claimed in order: this hashes up to `b`.
      while (true) {
        {
          absl::MutexLock lock(&mu_);
          if (done_[b]) return;
        }
        if (!HashNext()) break;
      }
    }
    auto hashed = [this, b]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> bool {
      return done_[b];
    };
    absl::MutexLock lock(&mu_, absl::Condition(&hashed));
  }

 private:
  void Work() {
    while (HashNext()) {
    }
  }

  // Claims the next batch and hashes it; false when none is left or the
  // hasher is being destroyed.
  bool HashNext() {
    size_t b;
    {
      absl::MutexLock lock(&mu_);
      if (cancelled_ || next_ == batches_.size()) return false;
      b = next_++;
    }
    for (size_t i = batches_[b].begin; i < batches_[b].end; ++i) {
      ChunkTask& task = (*chunks_)[i];
      task.id = Sha256(task.data);
    }
    absl::MutexLock lock(&mu_);
    done_[b] = true;
    return true;
  }

  std::vector<ChunkTask>* const chunks_;
  const std::vector<Batch> batches_;
  absl::Mutex mu_;
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<bool> done_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  ThreadGroup pool_;  // the workers; empty when none could start
};

// The row delta a TensorData with delta_base_step asks for: its delta_rows
// (strictly ascending, inside the box) of its bytes.
absl::StatusOr<std::string> EncodeDelta(const TensorData& tensor,
                                        const TensorEntry& entry) {
  const uint64_t rows = entry.box.lengths.empty() ? 0 : entry.box.lengths[0];
  if (rows == 0 || entry.RowBytes() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", tensor.name, "': a row delta needs a tensor with rows"));
  }
  for (size_t i = 0; i < tensor.delta_rows.size(); ++i) {
    if (tensor.delta_rows[i] >= rows ||
        (i > 0 && tensor.delta_rows[i] <= tensor.delta_rows[i - 1])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", tensor.name, "': delta_rows must be strictly ascending ",
          "and below its ", rows, " rows; entry ", i, " is ",
          tensor.delta_rows[i]));
    }
  }
  return EncodeRowDelta(
      absl::MakeConstSpan(tensor.bytes.data(), tensor.bytes.size()),
      entry.RowBytes(), tensor.delta_rows);
}

// The quantized encoding a TensorData with quantize_bits asks for.
absl::StatusOr<QuantizedTensor> QuantizeTensor(const TensorData& tensor,
                                               const TensorEntry& entry,
                                               int threads) {
  auto refuse = [&](absl::string_view problem) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", tensor.name, "': cannot quantize it: ", problem));
  };
  if (tensor.delta_base_step.has_value() || !tensor.delta_rows.empty()) {
    return refuse(
        "a quantized tensor is always saved in full, not as a "
        "row delta");
  }
  if (tensor.dtype != DType::kFloat32) {
    return refuse(absl::StrCat("it is ", DTypeName(tensor.dtype),
                               "; only float32 tensors are quantized"));
  }
  if (entry.ByteSize() == 0) return refuse("it is empty");
  QuantizeOptions options;
  options.bits = *tensor.quantize_bits;
  options.threads = std::max(1, threads);
  absl::StatusOr<QuantizedTensor> quantized = QuantizeRows(
      absl::MakeConstSpan(tensor.bytes.data(), tensor.bytes.size()),
      entry.QuantizedCols(), options);
  if (!quantized.ok()) return refuse(quantized.status().message());
  return quantized;
}

// The fingerprint record a TensorData with row_fingerprints asks for
// (common/fingerprint_record.h); nullopt when it has none. Called after
// its delta rows were checked (EncodeDelta).
absl::StatusOr<std::optional<std::string>> EncodeFingerprints(
    const TensorData& tensor, const TensorEntry& entry) {
  if (!tensor.row_fingerprints.has_value()) return std::nullopt;
  auto refuse = [&](absl::string_view problem) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", tensor.name,
                     "': cannot store its row fingerprints: ", problem));
  };
  if (tensor.quantize_bits.has_value()) {
    return refuse("a quantized tensor is never a row delta's base");
  }
  const uint64_t rows = entry.box.lengths.empty() ? 0 : entry.box.lengths[0];
  if (rows == 0 || entry.RowBytes() == 0) return refuse("it has no rows");
  const absl::Span<const RowFingerprint> fingerprints =
      *tensor.row_fingerprints;
  const size_t given = fingerprints.size();
  if (tensor.delta_base_step.has_value()) {
    if (given != tensor.delta_rows.size()) {
      return refuse(absl::StrCat(given, " given for a delta of ",
                                 tensor.delta_rows.size(), " rows"));
    }
    return EncodeSparseFingerprints(entry.RowBytes(), rows, tensor.delta_rows,
                                    fingerprints);
  }
  if (given != rows) {
    return refuse(absl::StrCat(given, " given for ", rows, " rows"));
  }
  return EncodeDenseFingerprints(entry.RowBytes(), fingerprints);
}

// A shard laid out for upload: the manifest without pieces, and its chunks
// (views into the caller's bytes or into `encoded`).
struct ShardLayout {
  ShardManifest shard;
  std::vector<ChunkTask> chunks;
  std::vector<size_t> first_chunk;  // per tensor, and one past the last
  // Per tensor: its fingerprint record's chunks [begin, end) (empty when
  // it stores none).
  std::vector<std::pair<size_t, size_t>> fingerprint_chunks;
  // The encoded row deltas and quantized tensors, which their chunks view:
  // the only copy a save makes (of a delta's rows alone). A deque, so they
  // never move.
  std::deque<std::string> encoded;
};

// Lays `tensors` out into `*layout` (fresh), counting into `*result` its
// logical bytes, chunks and quantized tensors. INVALID_ARGUMENT for a
// malformed tensor.
absl::Status LayOut(absl::Span<const TensorData> tensors,
                    const SaveOptions& options, ShardLayout* layout,
                    SaveResult* result) {
  layout->shard.rank = options.rank;
  for (const TensorData& tensor : tensors) {
    TensorEntry entry;
    entry.name = tensor.name;
    entry.dtype = tensor.dtype;
    entry.global_shape = tensor.global_shape;
    entry.box = tensor.box;
    entry.delta_base_step = tensor.delta_base_step;
    if (tensor.bytes.size() != entry.ByteSize()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", tensor.name, "': ", tensor.bytes.size(),
                       " bytes given but its box of ", DTypeName(tensor.dtype),
                       " needs ", entry.ByteSize()));
    }
    absl::string_view stored = tensor.bytes;
    if (tensor.quantize_bits.has_value()) {
      CKPT_ASSIGN_OR_RETURN(
          QuantizedTensor quantized,
          QuantizeTensor(tensor, entry, options.hash_threads));
      entry.quantization =
          Quantization{.bits = *tensor.quantize_bits,
                       .max_abs_error = quantized.error.max_abs_error,
                       .relative_l2_error = quantized.error.relative_l2_error};
      stored = layout->encoded.emplace_back(std::move(quantized.bytes));
      result->quantized[tensor.name] = *entry.quantization;
    } else if (tensor.delta_base_step.has_value()) {
      CKPT_ASSIGN_OR_RETURN(std::string delta, EncodeDelta(tensor, entry));
      stored = layout->encoded.emplace_back(std::move(delta));
    } else if (!tensor.delta_rows.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", tensor.name,
                       "': delta_rows given without delta_base_step"));
    }
    CKPT_ASSIGN_OR_RETURN(std::optional<std::string> fingerprints,
                          EncodeFingerprints(tensor, entry));
    result->logical_bytes += tensor.bytes.size();
    layout->first_chunk.push_back(layout->chunks.size());
    for (absl::string_view piece :
         SplitIntoChunks(stored, options.chunk_bytes)) {
      layout->chunks.push_back(ChunkTask{piece, ChunkId()});
    }
    const size_t fingerprints_begin = layout->chunks.size();
    if (fingerprints.has_value()) {
      absl::string_view record =
          layout->encoded.emplace_back(*std::move(fingerprints));
      for (absl::string_view piece :
           SplitIntoChunks(record, options.chunk_bytes)) {
        layout->chunks.push_back(ChunkTask{piece, ChunkId()});
      }
    }
    layout->fingerprint_chunks.emplace_back(fingerprints_begin,
                                            layout->chunks.size());
    layout->shard.tensors.push_back(std::move(entry));
  }
  layout->first_chunk.push_back(layout->chunks.size());
  result->chunks_total = layout->chunks.size();
  return absl::OkStatus();
}

// Hashing batches over `chunks`: consecutive, each at most kBatchMaxChunks
// chunks and closed once it reaches kBatchMaxBytes.
std::vector<BatchHasher::Batch> SplitIntoBatches(
    const std::vector<ChunkTask>& chunks) {
  std::vector<BatchHasher::Batch> batches;
  for (size_t begin = 0; begin < chunks.size();) {
    size_t end = begin;
    uint64_t bytes = 0;
    while (end < chunks.size() && end - begin < kBatchMaxChunks &&
           bytes < kBatchMaxBytes) {
      bytes += chunks[end++].data.size();
    }
    batches.push_back({begin, end});
    begin = end;
  }
  return batches;
}

// Hashes `*chunks` on options.hash_threads threads and, batch by batch as
// hashes arrive, asks which the server lacks and uploads those, each
// distinct chunk once, over one upload stream. Counts what was sent into
// `*result`.
absl::Status HashAndUpload(Transport& transport, absl::string_view job,
                           int64_t step, const SaveOptions& options,
                           std::vector<ChunkTask>* chunks, SaveResult* result) {
  BatchHasher hasher(chunks, SplitIntoBatches(*chunks), options.hash_threads);
  std::unique_ptr<ChunkUploadStream> upload = transport.OpenUpload(job, step);
  absl::flat_hash_set<ChunkId> seen;  // asked about already in this save
  uint64_t total = 0;
  for (const ChunkTask& task : *chunks) total += task.data.size();
  uint64_t done = 0;
  for (size_t b = 0; b < hasher.batches().size(); ++b) {
    hasher.WaitFor(b);
    std::vector<const ChunkTask*> fresh;
    std::vector<ChunkId> ids;
    for (size_t i = hasher.batches()[b].begin; i < hasher.batches()[b].end;
         ++i) {
      done += (*chunks)[i].data.size();
      if (seen.insert((*chunks)[i].id).second) {
        fresh.push_back(&(*chunks)[i]);
        ids.push_back((*chunks)[i].id);
      }
    }
    if (!ids.empty()) {
      CKPT_ASSIGN_OR_RETURN(auto missing,
                            transport.FindMissingChunks(job, ids));
      for (const ChunkTask* task : fresh) {
        if (missing.contains(task->id)) {
          CKPT_RETURN_IF_ERROR(upload->Add(task->id, task->data));
        }
      }
    }
    if (options.progress) options.progress(done, total);
  }
  CKPT_RETURN_IF_ERROR(upload->Close());
  result->chunks_sent = upload->chunks_sent();
  result->bytes_sent = upload->bytes_sent();
  return absl::OkStatus();
}

// Uploads the chunks of `chunks` (hashed) the server lacks, each once, over
// `*upload`, and closes it.
absl::Status UploadMissing(Transport& transport, absl::string_view job,
                           absl::Span<const ChunkTask> chunks,
                           ChunkUploadStream* upload) {
  std::vector<ChunkId> ids;
  absl::flat_hash_map<ChunkId, absl::string_view> data;
  for (const ChunkTask& task : chunks) {
    if (data.try_emplace(task.id, task.data).second) ids.push_back(task.id);
  }
  CKPT_ASSIGN_OR_RETURN(auto missing, transport.FindMissingChunks(job, ids));
  for (const ChunkId& id : ids) {
    if (missing.contains(id)) {
      CKPT_RETURN_IF_ERROR(upload->Add(id, data[id]));
    }
  }
  return upload->Close();
}

}  // namespace

absl::StatusOr<SaveResult> SaveShard(Transport& transport,
                                     absl::string_view job, int64_t step,
                                     absl::Span<const TensorData> tensors,
                                     const SaveOptions& options) {
  if (options.world_size < 1 || options.rank < 0 ||
      options.rank >= options.world_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rank ", options.rank, " is outside world_size ", options.world_size));
  }
  if (options.chunk_bytes == 0 || options.chunk_bytes > kMaxChunkBytes) {
    return absl::InvalidArgumentError(absl::StrCat("chunk_bytes must be 1..",
                                                   kMaxChunkBytes, ", got ",
                                                   options.chunk_bytes));
  }

  // Lay out the manifest and the chunks (views into the caller's bytes).
  SaveResult result;
  ShardLayout layout;
  CKPT_RETURN_IF_ERROR(LayOut(tensors, options, &layout, &result));

  BeginOptions begin;
  begin.world_size = options.world_size;
  begin.metadata = options.metadata;
  begin.lease = options.lease;
  begin.retention_policy = options.retention_policy;
  CKPT_ASSIGN_OR_RETURN(BeginReply begun,
                        transport.BeginCheckpoint(job, step, begin));
  result.retention_policy_ignored = std::move(begun.retention_policy_ignored);

  // Hash in parallel; check and upload batch by batch as hashes arrive.
  CKPT_RETURN_IF_ERROR(
      HashAndUpload(transport, job, step, options, &layout.chunks, &result));

  ShardManifest& shard = layout.shard;
  for (size_t t = 0; t < shard.tensors.size(); ++t) {
    const auto [fingerprints_begin, fingerprints_end] =
        layout.fingerprint_chunks[t];
    for (size_t i = layout.first_chunk[t]; i < fingerprints_begin; ++i) {
      shard.tensors[t].pieces.push_back(
          ChunkRef{layout.chunks[i].id, layout.chunks[i].data.size()});
    }
    for (size_t i = fingerprints_begin; i < fingerprints_end; ++i) {
      shard.tensors[t].fingerprint_pieces.push_back(
          ChunkRef{layout.chunks[i].id, layout.chunks[i].data.size()});
    }
  }
  absl::StatusOr<CommitResult> commit =
      transport.CommitShard(job, step, options.world_size, shard);
  if (absl::IsFailedPrecondition(commit.status())) {
    // Chunks may have gone missing since they were checked (e.g. the server
    // restarted before making them durable). Upload what is missing now and
    // retry once; if nothing is missing, the refusal has another cause.
    std::unique_ptr<ChunkUploadStream> retry = transport.OpenUpload(job, step);
    CKPT_RETURN_IF_ERROR(
        UploadMissing(transport, job, layout.chunks, retry.get()));
    if (retry->chunks_sent() == 0) return commit.status();
    result.chunks_sent += retry->chunks_sent();
    result.bytes_sent += retry->bytes_sent();
    commit = transport.CommitShard(job, step, options.world_size, shard);
  }
  CKPT_RETURN_IF_ERROR(commit.status());
  result.checkpoint_committed = commit->checkpoint_committed;
  result.checkpoint = std::move(commit->checkpoint);
  return result;
}

}  // namespace ckpt::client
