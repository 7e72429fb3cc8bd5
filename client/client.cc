#include "client/client.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "ckpt/v1/ckpt.grpc.pb.h"
#include "client/restore_buffer.h"
#include "common/chunk_id.h"
#include "common/delta_base.h"
#include "common/grpc_status.h"
#include "common/quantize.h"
#include "common/row_delta.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/wire_format.h"

namespace ckpt::client {
namespace {

using Stub = v1::CheckpointService::Stub;

// A hashing batch ends at whichever comes first; each batch costs one
// FindMissingChunks round trip, so batches amortize it without delaying the
// first upload for long.
constexpr size_t kBatchMaxChunks = 64;
constexpr uint64_t kBatchMaxBytes = uint64_t{128} << 20;
// PutChunks messages carry chunks until they reach this size (one 4 MiB
// chunk per message by default; small chunks are packed).
constexpr size_t kTargetMessageBytes = size_t{4} << 20;
// Hashes per ReadChunks / FindMissingChunks request; well under the
// server's per-request limit (100000 by default).
constexpr size_t kMaxHashesPerRequest = 50000;
// Concurrent ReadChunks streams (or ReadChunksIntoFile callers) of one
// restore: enough to keep both the server's reads and hashing busy.
constexpr size_t kRestoreStreams = 3;
// Chunk bytes per ReadChunksIntoFile request: small enough for progress
// reports, large enough that the per-call cost vanishes.
constexpr uint64_t kIntoFileRequestBytes = uint64_t{64} << 20;
// A collection reads every manifest and compacts the chunk store.
constexpr absl::Duration kCollectGarbageTimeout = absl::Hours(6);

struct ChunkTask {
  absl::string_view data;  // view into the caller's tensor bytes
  ChunkId id;              // filled by the hashers
};

// Hashes `chunks` batch by batch on `threads` threads. Batches are claimed in
// order, so the consumer, which waits for them in order, rarely waits for a
// late one. Destruction stops the workers after their current batch.
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
    threads_.reserve(n);
    for (int i = 0; i < n; ++i) threads_.emplace_back([this] { Work(); });
  }

  ~BatchHasher() {
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
    }
    for (std::thread& thread : threads_) thread.join();
  }

  const std::vector<Batch>& batches() const { return batches_; }

  // Blocks until batch `b` is hashed.
  void WaitFor(size_t b) {
    auto hashed = [this, b]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> bool {
      return done_[b];
    };
    absl::MutexLock lock(&mu_, absl::Condition(&hashed));
  }

 private:
  void Work() {
    while (true) {
      size_t b;
      {
        absl::MutexLock lock(&mu_);
        if (cancelled_ || next_ == batches_.size()) return;
        b = next_++;
      }
      for (size_t i = batches_[b].begin; i < batches_[b].end; ++i) {
        ChunkTask& task = (*chunks_)[i];
        task.id = Sha256(task.data);
      }
      absl::MutexLock lock(&mu_);
      done_[b] = true;
    }
  }

  std::vector<ChunkTask>* const chunks_;
  const std::vector<Batch> batches_;
  absl::Mutex mu_;
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<bool> done_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// One PutChunks stream, opened on the first chunk. Chunk bytes are copied
// once, into the message (protobuf owns its bytes fields).
class ChunkUploader {
 public:
  // `step`: the pending checkpoint uploaded for (its bytes_added).
  ChunkUploader(Stub* stub, absl::string_view job, int64_t step)
      : stub_(stub), job_(job), step_(step) {}

  ~ChunkUploader() {
    if (writer_ != nullptr && !closed_) {
      // Abandoned after an error elsewhere: end the call rather than leave
      // the server waiting for more messages.
      context_.TryCancel();
      writer_->Finish().IgnoreError();
    }
  }

  absl::Status Add(const ChunkId& id, absl::string_view data) {
    v1::ChunkData* chunk = pending_.add_chunks();
    chunk->set_sha256(id.bytes().data(), id.bytes().size());
    chunk->set_data(data.data(), data.size());
    pending_bytes_ += data.size();
    ++chunks_sent_;
    bytes_sent_ += data.size();
    if (pending_bytes_ >= kTargetMessageBytes) return Flush();
    return absl::OkStatus();
  }

  // Sends what is pending and ends the stream. OK with nothing sent when no
  // chunk was added (no stream is opened then).
  absl::Status Close() {
    CKPT_RETURN_IF_ERROR(Flush());
    if (writer_ == nullptr) return absl::OkStatus();
    closed_ = true;
    writer_->WritesDone();
    return FromGrpcStatus(writer_->Finish());
  }

  uint64_t chunks_sent() const { return chunks_sent_; }
  uint64_t bytes_sent() const { return bytes_sent_; }

 private:
  absl::Status Flush() {
    if (pending_.chunks_size() == 0) return absl::OkStatus();
    if (writer_ == nullptr) {
      writer_ = stub_->PutChunks(&context_, &response_);
      pending_.set_job(job_);  // the first message names the job
      pending_.set_step(step_);
    }
    if (!writer_->Write(pending_)) {
      // The server ended the call; its status says why.
      closed_ = true;
      absl::Status status = FromGrpcStatus(writer_->Finish());
      if (status.ok()) {
        status = absl::UnavailableError("PutChunks stream closed early");
      }
      return status;
    }
    pending_.Clear();  // keeps the allocations for the next message
    pending_bytes_ = 0;
    return absl::OkStatus();
  }

  Stub* const stub_;
  const std::string job_;
  const int64_t step_;
  grpc::ClientContext context_;
  v1::PutChunksResponse response_;
  std::unique_ptr<grpc::ClientWriter<v1::PutChunksRequest>> writer_;
  v1::PutChunksRequest pending_;
  size_t pending_bytes_ = 0;
  bool closed_ = false;
  uint64_t chunks_sent_ = 0;
  uint64_t bytes_sent_ = 0;
};

// Where the bytes of one distinct chunk go (a chunk may fill several spots).
struct ChunkSink {
  ChunkId id;
  uint64_t size = 0;
  std::vector<char*> destinations;
  // Bytes to write: a chunk repeated many times (zero-filled optimizer
  // state, say) costs one read but a write per place.
  uint64_t WriteBytes() const { return size * destinations.size(); }
};

// Collects sinks, merging repeated chunks.
class SinkSet {
 public:
  void Add(const ChunkRef& ref, char* destination) {
    auto [it, inserted] = index_.try_emplace(ref.id, sinks_.size());
    if (inserted) sinks_.push_back(ChunkSink{ref.id, ref.size, {}});
    sinks_[it->second].destinations.push_back(destination);
  }
  std::vector<ChunkSink>& sinks() { return sinks_; }

 private:
  absl::flat_hash_map<ChunkId, size_t> index_;
  std::vector<ChunkSink> sinks_;
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

// Whether chain[i] (as DeltaChains::Resolve gives it) is fetched into
// scratch and decoded from there rather than fetched into the tensor: its
// deltas, and a quantized entry.
bool FetchedIntoScratch(absl::Span<const TensorEntry> chain, size_t i) {
  return i > 0 || chain[i].IsQuantized();
}

// Dequantizes a quantized entry's fetched bytes into `tensor`, checking
// that they encode the entry's matrix at its width.
absl::Status DequantizeEntry(const TensorEntry& entry,
                             absl::string_view encoded,
                             absl::Span<char> tensor) {
  auto damaged = [&](absl::string_view problem) {
    return absl::DataLossError(absl::StrCat(
        "tensor '", entry.name, "': its quantized bytes ", problem));
  };
  absl::StatusOr<QuantizedHeader> header = ReadQuantizedHeader(encoded);
  if (!header.ok()) return damaged(header.status().message());
  if (header->rows != entry.QuantizedRows() ||
      header->cols != entry.QuantizedCols() ||
      header->bits != entry.quantization->bits) {
    return damaged(absl::StrCat(
        "encode a ", header->rows, " x ", header->cols, " matrix at ",
        header->bits, " bits, the manifest says ", entry.QuantizedRows(), " x ",
        entry.QuantizedCols(), " at ", entry.quantization->bits));
  }
  absl::Status status = DequantizeInto(encoded, tensor);
  if (!status.ok()) return damaged(status.message());
  return absl::OkStatus();
}

// The sum of a full entry's piece sizes must be its box's bytes, or the
// entry cannot be laid out. (The size of a delta or of a quantized entry,
// fetched into scratch, is checked when it is decoded.)
absl::Status CheckPieces(const TensorEntry& entry) {
  if (entry.IsDelta() || entry.IsQuantized()) return absl::OkStatus();
  uint64_t total = 0;
  for (const ChunkRef& piece : entry.pieces) total += piece.size;
  if (total != entry.ByteSize()) {
    return absl::DataLossError(
        absl::StrCat("tensor '", entry.name, "': manifest pieces hold ", total,
                     " bytes but its box needs ", entry.ByteSize()));
  }
  return absl::OkStatus();
}

// Finds the entries a delta entry is rebuilt from in the job's older
// checkpoints, fetching each base manifest once per restore.
class DeltaChains {
 public:
  using FetchManifest = std::function<absl::StatusOr<Checkpoint>(int64_t step)>;
  explicit DeltaChains(FetchManifest fetch) : fetch_(std::move(fetch)) {}

  // The entries that rebuild `entry`: a full one first, then the deltas,
  // oldest first, ending with `entry` itself (just `entry` when it is
  // full). DATA_LOSS naming the tensor and the step when a base checkpoint
  // or its matching entry is missing, or the chain does not go back in
  // time.
  absl::StatusOr<std::vector<TensorEntry>> Resolve(const TensorEntry& entry) {
    std::vector<TensorEntry> chain = {entry};
    while (chain.back().IsDelta()) {
      const int64_t base_step = *chain.back().delta_base_step;
      if (chain.size() > 1 &&
          base_step >= *chain[chain.size() - 2].delta_base_step) {
        return absl::DataLossError(
            absl::StrCat("tensor '", entry.name, "': the delta stored at step ",
                         *chain[chain.size() - 2].delta_base_step,
                         " names a base step that is not older: ", base_step));
      }
      CKPT_ASSIGN_OR_RETURN(const Checkpoint* base, Manifest(entry, base_step));
      CKPT_ASSIGN_OR_RETURN(TensorEntry found, FindBase(entry, *base));
      chain.push_back(std::move(found));
    }
    std::reverse(chain.begin(), chain.end());
    return chain;
  }

 private:
  absl::StatusOr<const Checkpoint*> Manifest(const TensorEntry& entry,
                                             int64_t step) {
    auto it = manifests_.find(step);
    if (it == manifests_.end()) {
      absl::StatusOr<Checkpoint> fetched = fetch_(step);
      if (absl::IsNotFound(fetched.status())) {
        return absl::DataLossError(absl::StrCat(
            "tensor '", entry.name, "' is a row delta on checkpoint ", step,
            ", which is gone: ", fetched.status().message()));
      }
      CKPT_RETURN_IF_ERROR(fetched.status());
      it = manifests_.emplace(step, *std::move(fetched)).first;
    }
    return &it->second;
  }

  static absl::StatusOr<TensorEntry> FindBase(const TensorEntry& entry,
                                              const Checkpoint& base) {
    absl::StatusOr<const TensorEntry*> found =
        FindDeltaBase(base.shards, entry);
    if (!found.ok()) {
      return absl::DataLossError(absl::StrCat(
          "tensor '", entry.name, "': its row delta base, checkpoint ",
          base.record.step, ", cannot rebuild it: the checkpoint ",
          found.status().message()));
    }
    return **found;
  }

  FetchManifest fetch_;
  absl::flat_hash_map<int64_t, Checkpoint> manifests_;
};

// Rebuilds `tensor` from the fetched entries of `chain` (as
// DeltaChains::Resolve gives it): `tensor` holds the full entry's bytes
// unless that entry is quantized, and `scratch` the bytes of the entries
// FetchedIntoScratch, in chain order. A quantized entry is dequantized into
// `tensor`, then the deltas are applied, oldest first.
absl::Status RebuildTensor(absl::Span<const TensorEntry> chain,
                           absl::Span<const absl::string_view> scratch,
                           absl::Span<char> tensor) {
  if (chain.front().IsQuantized()) {
    CKPT_RETURN_IF_ERROR(DequantizeEntry(chain.front(), scratch[0], tensor));
    scratch.remove_prefix(1);
  }
  const TensorEntry& entry = chain.back();
  const uint64_t rows = entry.box.lengths.empty() ? 0 : entry.box.lengths[0];
  for (size_t i = 0; i < scratch.size(); ++i) {
    absl::StatusOr<RowDeltaView> delta = DecodeRowDelta(scratch[i]);
    if (!delta.ok()) {
      return absl::DataLossError(absl::StrCat(
          "tensor '", entry.name, "': its row delta based on step ",
          *chain[i + 1].delta_base_step, ": ", delta.status().message()));
    }
    if (delta->row_bytes() != entry.RowBytes() || delta->total_rows() != rows) {
      return absl::DataLossError(absl::StrCat(
          "tensor '", entry.name, "': its row delta based on step ",
          *chain[i + 1].delta_base_step, " is of ", delta->total_rows(),
          " rows of ", delta->row_bytes(), " bytes, the tensor has ", rows,
          " of ", entry.RowBytes()));
    }
    CKPT_RETURN_IF_ERROR(ApplyRowDelta(*delta, tensor));
  }
  return absl::OkStatus();
}

}  // namespace

struct Client::Impl {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<Stub> stub;
  ConnectOptions options;

  template <typename Request, typename Response>
  absl::Status Call(grpc::Status (Stub::*method)(grpc::ClientContext*,
                                                 const Request&, Response*),
                    const Request& request, Response* response,
                    std::optional<absl::Duration> timeout = std::nullopt) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(
        absl::Now() + timeout.value_or(options.rpc_timeout)));
    return FromGrpcStatus((stub.get()->*method)(&context, request, response));
  }

  // The subset of `ids` the server lacks, in `ids` order.
  absl::StatusOr<absl::flat_hash_set<ChunkId>> FindMissing(
      absl::string_view job, absl::Span<const ChunkId> ids) {
    absl::flat_hash_set<ChunkId> missing;
    for (size_t begin = 0; begin < ids.size(); begin += kMaxHashesPerRequest) {
      const size_t end = std::min(ids.size(), begin + kMaxHashesPerRequest);
      v1::FindMissingChunksRequest request;
      request.set_job(std::string(job));
      for (size_t i = begin; i < end; ++i) {
        request.add_sha256(ids[i].bytes().data(), ids[i].bytes().size());
      }
      v1::FindMissingChunksResponse response;
      CKPT_RETURN_IF_ERROR(Call(&Stub::FindMissingChunks, request, &response));
      for (const std::string& raw : response.missing_sha256()) {
        auto id = ChunkId::FromBytes(raw);
        if (!id.ok()) {
          return absl::InternalError(
              absl::StrCat("FindMissingChunks answered a malformed hash: ",
                           id.status().message()));
        }
        missing.insert(*id);
      }
    }
    return missing;
  }

  // Fetches `sinks` over ReadChunks streams, sequentially, each request at
  // most kMaxHashesPerRequest hashes. Calls `fetched(size)` after each chunk
  // when set.
  absl::Status Fetch(absl::string_view job, absl::Span<const ChunkSink> sinks,
                     const std::function<void(uint64_t)>& fetched = {}) {
    for (size_t begin = 0; begin < sinks.size();
         begin += kMaxHashesPerRequest) {
      const size_t end = std::min(sinks.size(), begin + kMaxHashesPerRequest);
      CKPT_RETURN_IF_ERROR(
          FetchOneStream(job, sinks.subspan(begin, end - begin), fetched));
    }
    return absl::OkStatus();
  }

  absl::Status FetchOneStream(absl::string_view job,
                              absl::Span<const ChunkSink> sinks,
                              const std::function<void(uint64_t)>& fetched) {
    v1::ReadChunksRequest request;
    request.set_job(std::string(job));
    for (const ChunkSink& sink : sinks) {
      request.add_sha256(sink.id.bytes().data(), sink.id.bytes().size());
    }
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<v1::ReadChunksResponse>> reader =
        stub->ReadChunks(&context, request);
    v1::ReadChunksResponse response;
    size_t received = 0;
    absl::Status problem;
    while (received < sinks.size() && reader->Read(&response)) {
      const ChunkSink& sink = sinks[received];
      const v1::ChunkData& chunk = response.chunk();
      if (chunk.sha256() != sink.id.bytes() ||
          chunk.data().size() != sink.size) {
        problem = absl::DataLossError(absl::StrCat(
            "ReadChunks: answer ", received, " is ", chunk.data().size(),
            " bytes of another chunk than the requested ", sink.id.ShortHex(),
            " (", sink.size, " bytes)"));
        break;
      }
      for (char* destination : sink.destinations) {
        std::memcpy(destination, chunk.data().data(), sink.size);
      }
      ++received;
      if (fetched) fetched(sink.size);
    }
    if (!problem.ok()) {
      // Stops a stream we no longer read. Only then: a stream that ended
      // early (Read returned false) carries the server's status, e.g.
      // DATA_LOSS for a corrupt chunk, which a cancel could replace with
      // CANCELLED before Finish reads it.
      context.TryCancel();
    }
    absl::Status status = FromGrpcStatus(reader->Finish());
    if (!problem.ok()) return problem;
    CKPT_RETURN_IF_ERROR(status);
    if (received < sinks.size()) {
      return absl::DataLossError(absl::StrCat("ReadChunks: the server sent ",
                                              received, " of ", sinks.size(),
                                              " chunks"));
    }
    return absl::OkStatus();
  }

  // Has the server on this host write `sinks` (destinations inside
  // `buffer`) into the buffer's memfd, a few chunks per request so
  // `fetched` reports progress. FAILED_PRECONDITION or UNIMPLEMENTED when
  // the server cannot; the caller then streams.
  absl::Status FetchIntoFile(absl::string_view job,
                             absl::Span<const ChunkSink> sinks,
                             const RestoreBuffer& buffer,
                             const std::function<void(uint64_t)>& fetched) {
    size_t begin = 0;
    while (begin < sinks.size()) {
      v1::ReadChunksIntoFileRequest request;
      request.set_job(std::string(job));
      v1::SharedFile* file = request.mutable_file();
      file->set_pid(static_cast<int32_t>(getpid()));
      file->set_fd(buffer.fd());
      file->set_token(std::string(buffer.token()));
      uint64_t request_bytes = 0;
      size_t end = begin;
      while (end < sinks.size() && request_bytes < kIntoFileRequestBytes) {
        const ChunkSink& sink = sinks[end];
        v1::ChunkPlacement* placement = request.add_chunks();
        placement->set_sha256(sink.id.bytes().data(), sink.id.bytes().size());
        placement->set_size(sink.size);
        for (char* destination : sink.destinations) {
          placement->add_offsets(buffer.FileOffset(destination));
        }
        request_bytes += sink.WriteBytes();
        ++end;
      }
      v1::ReadChunksIntoFileResponse response;
      CKPT_RETURN_IF_ERROR(Call(&Stub::ReadChunksIntoFile, request, &response));
      if (fetched) {
        for (size_t i = begin; i < end; ++i) fetched(sinks[i].size);
      }
      begin = end;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<CheckpointUsage>> ListCheckpoints(
      absl::string_view job, bool include_uncommitted, bool with_unique_bytes) {
    v1::ListCheckpointsRequest request;
    request.set_job(std::string(job));
    request.set_include_uncommitted(include_uncommitted);
    request.set_with_unique_bytes(with_unique_bytes);
    v1::ListCheckpointsResponse response;
    CKPT_RETURN_IF_ERROR(Call(&Stub::ListCheckpoints, request, &response));
    std::vector<CheckpointUsage> listed;
    listed.reserve(response.checkpoints_size());
    for (const v1::CheckpointInfo& info : response.checkpoints()) {
      CheckpointUsage usage;
      CKPT_ASSIGN_OR_RETURN(usage.record, FromProto(info));
      if (info.has_unique_bytes()) usage.unique_bytes = info.unique_bytes();
      listed.push_back(std::move(usage));
    }
    return listed;
  }

  // Uploads the chunks of `chunks` (hashed) the server lacks, each once.
  absl::Status UploadMissing(absl::string_view job,
                             absl::Span<const ChunkTask> chunks,
                             ChunkUploader* uploader) {
    std::vector<ChunkId> ids;
    absl::flat_hash_map<ChunkId, absl::string_view> data;
    for (const ChunkTask& task : chunks) {
      if (data.try_emplace(task.id, task.data).second) ids.push_back(task.id);
    }
    CKPT_ASSIGN_OR_RETURN(auto missing, FindMissing(job, ids));
    for (const ChunkId& id : ids) {
      if (missing.contains(id)) {
        CKPT_RETURN_IF_ERROR(uploader->Add(id, data[id]));
      }
    }
    return uploader->Close();
  }
};

Client::Client(PrivateTag, std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

Client::~Client() = default;

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(
    const std::string& address, ConnectOptions options) {
  if (address.empty()) {
    return absl::InvalidArgumentError("server address is empty");
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  // Each Client gets its own connection, so ranks in one process (or a
  // test) upload in parallel instead of multiplexing one TCP stream.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(
      GRPC_ARG_KEEPALIVE_TIME_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_time)));
  args.SetInt(
      GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_timeout)));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  // A long upload sends data all along; a long read only receives: pings
  // must not stop for want of data frames of our own.
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  auto impl = std::make_unique<Impl>();
  impl->channel = grpc::CreateCustomChannel(
      address, grpc::InsecureChannelCredentials(), args);
  impl->stub = v1::CheckpointService::NewStub(impl->channel);
  impl->options = options;
  if (options.connect_timeout > absl::ZeroDuration() &&
      !impl->channel->WaitForConnected(
          absl::ToChronoTime(absl::Now() + options.connect_timeout))) {
    return absl::UnavailableError(
        absl::StrCat("cannot connect to ckpt-server at ", address, " within ",
                     absl::FormatDuration(options.connect_timeout)));
  }
  return std::make_unique<Client>(PrivateTag{}, std::move(impl));
}

absl::StatusOr<SaveResult> Client::SaveShard(
    absl::string_view job, int64_t step, absl::Span<const TensorData> tensors,
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
  ShardManifest shard;
  shard.rank = options.rank;
  std::vector<ChunkTask> chunks;
  std::vector<size_t> first_chunk;  // per tensor
  // The encoded row deltas and quantized tensors, which their chunks view:
  // the only copy a save makes (of a delta's rows alone). A deque, so they
  // never move.
  std::deque<std::string> encoded;
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
      stored = encoded.emplace_back(std::move(quantized.bytes));
      result.quantized[tensor.name] = *entry.quantization;
    } else if (tensor.delta_base_step.has_value()) {
      CKPT_ASSIGN_OR_RETURN(std::string delta, EncodeDelta(tensor, entry));
      stored = encoded.emplace_back(std::move(delta));
    } else if (!tensor.delta_rows.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", tensor.name,
                       "': delta_rows given without delta_base_step"));
    }
    result.logical_bytes += tensor.bytes.size();
    first_chunk.push_back(chunks.size());
    for (absl::string_view piece :
         SplitIntoChunks(stored, options.chunk_bytes)) {
      chunks.push_back(ChunkTask{piece, ChunkId()});
    }
    shard.tensors.push_back(std::move(entry));
  }
  first_chunk.push_back(chunks.size());
  result.chunks_total = chunks.size();

  {
    v1::BeginCheckpointRequest request;
    request.set_job(std::string(job));
    request.set_step(step);
    request.set_world_size(options.world_size);
    ToProto(options.metadata, request.mutable_metadata());
    // Rounded up: a sub-second lease must not turn into "server default".
    request.set_lease_seconds(
        absl::ToInt64Seconds(absl::Ceil(options.lease, absl::Seconds(1))));
    if (options.retention_policy.has_value()) {
      ToProto(*options.retention_policy, request.mutable_retention_policy());
    }
    v1::BeginCheckpointResponse response;
    CKPT_RETURN_IF_ERROR(
        impl_->Call(&Stub::BeginCheckpoint, request, &response));
  }

  // Hash in parallel; check and upload batch by batch as hashes arrive.
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
  {
    BatchHasher hasher(&chunks, std::move(batches), options.hash_threads);
    ChunkUploader uploader(impl_->stub.get(), job, step);
    absl::flat_hash_set<ChunkId> seen;  // asked about already in this save
    for (size_t b = 0; b < hasher.batches().size(); ++b) {
      hasher.WaitFor(b);
      std::vector<const ChunkTask*> fresh;
      std::vector<ChunkId> ids;
      for (size_t i = hasher.batches()[b].begin; i < hasher.batches()[b].end;
           ++i) {
        if (seen.insert(chunks[i].id).second) {
          fresh.push_back(&chunks[i]);
          ids.push_back(chunks[i].id);
        }
      }
      if (ids.empty()) continue;
      CKPT_ASSIGN_OR_RETURN(auto missing, impl_->FindMissing(job, ids));
      for (const ChunkTask* task : fresh) {
        if (missing.contains(task->id)) {
          CKPT_RETURN_IF_ERROR(uploader.Add(task->id, task->data));
        }
      }
    }
    CKPT_RETURN_IF_ERROR(uploader.Close());
    result.chunks_sent = uploader.chunks_sent();
    result.bytes_sent = uploader.bytes_sent();
  }

  for (size_t t = 0; t < shard.tensors.size(); ++t) {
    for (size_t i = first_chunk[t]; i < first_chunk[t + 1]; ++i) {
      shard.tensors[t].pieces.push_back(
          ChunkRef{chunks[i].id, chunks[i].data.size()});
    }
  }
  v1::CommitShardRequest request;
  request.set_job(std::string(job));
  request.set_step(step);
  request.set_world_size(options.world_size);
  ToProto(shard, request.mutable_shard());
  v1::CommitShardResponse response;
  absl::Status commit = impl_->Call(&Stub::CommitShard, request, &response);
  if (absl::IsFailedPrecondition(commit)) {
    // Chunks may have gone missing since they were checked (e.g. the server
    // restarted before making them durable). Upload what is missing now and
    // retry once; if nothing is missing, the refusal has another cause.
    ChunkUploader retry_uploader(impl_->stub.get(), job, step);
    CKPT_RETURN_IF_ERROR(impl_->UploadMissing(job, chunks, &retry_uploader));
    if (retry_uploader.chunks_sent() == 0) return commit;
    result.chunks_sent += retry_uploader.chunks_sent();
    result.bytes_sent += retry_uploader.bytes_sent();
    commit = impl_->Call(&Stub::CommitShard, request, &response);
  }
  CKPT_RETURN_IF_ERROR(commit);
  result.checkpoint_committed = response.checkpoint_committed();
  CKPT_ASSIGN_OR_RETURN(result.checkpoint, FromProto(response.checkpoint()));
  return result;
}

absl::StatusOr<std::vector<JobSummary>> Client::ListJobs() {
  v1::ListJobsResponse response;
  CKPT_RETURN_IF_ERROR(
      impl_->Call(&Stub::ListJobs, v1::ListJobsRequest(), &response));
  std::vector<JobSummary> jobs;
  jobs.reserve(response.jobs_size());
  for (const v1::JobInfo& info : response.jobs()) {
    jobs.push_back(FromProto(info));
  }
  return jobs;
}

absl::StatusOr<std::vector<CheckpointRecord>> Client::ListCheckpoints(
    absl::string_view job, bool include_uncommitted) {
  CKPT_ASSIGN_OR_RETURN(
      std::vector<CheckpointUsage> listed,
      impl_->ListCheckpoints(job, include_uncommitted, false));
  std::vector<CheckpointRecord> records;
  records.reserve(listed.size());
  for (CheckpointUsage& usage : listed) {
    records.push_back(std::move(usage.record));
  }
  return records;
}

absl::StatusOr<Checkpoint> Client::GetManifest(
    absl::string_view job, std::optional<int64_t> step,
    std::optional<int32_t> restoring_rank) {
  v1::GetManifestRequest request;
  request.set_job(std::string(job));
  if (step.has_value()) {
    request.set_step(*step);
  } else {
    request.set_latest(true);
  }
  if (restoring_rank.has_value()) request.set_restoring_rank(*restoring_rank);
  v1::GetManifestResponse response;
  CKPT_RETURN_IF_ERROR(impl_->Call(&Stub::GetManifest, request, &response));
  Checkpoint checkpoint;
  CKPT_ASSIGN_OR_RETURN(checkpoint.record, FromProto(response.checkpoint()));
  checkpoint.shards.reserve(response.shards_size());
  for (const v1::ShardManifest& proto : response.shards()) {
    CKPT_ASSIGN_OR_RETURN(ShardManifest shard, FromProto(proto));
    checkpoint.shards.push_back(std::move(shard));
  }
  return checkpoint;
}

absl::Status Client::ReadTensor(absl::string_view job, const TensorEntry& entry,
                                absl::Span<char> out) {
  return ReadTensors(job, absl::MakeConstSpan(&entry, 1),
                     absl::MakeConstSpan(&out, 1));
}

absl::Status Client::ReadTensors(absl::string_view job,
                                 absl::Span<const TensorEntry> entries,
                                 absl::Span<const absl::Span<char>> outs) {
  if (outs.size() != entries.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(entries.size(), " tensors to read but ", outs.size(),
                     " output buffers"));
  }
  for (size_t t = 0; t < entries.size(); ++t) {
    if (outs[t].size() != entries[t].ByteSize()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", entries[t].name, "' has ", entries[t].ByteSize(),
          " bytes but the output buffer has ", outs[t].size()));
    }
  }
  DeltaChains chains([&](int64_t step) { return GetManifest(job, step); });
  std::vector<std::vector<TensorEntry>> chains_of(entries.size());
  // scratch[t]: the bytes of chains_of[t]'s entries FetchedIntoScratch.
  std::vector<std::deque<std::string>> scratch(entries.size());
  SinkSet sinks;
  for (size_t t = 0; t < entries.size(); ++t) {
    CKPT_ASSIGN_OR_RETURN(chains_of[t], chains.Resolve(entries[t]));
    const std::vector<TensorEntry>& chain = chains_of[t];
    CKPT_RETURN_IF_ERROR(CheckPieces(chain.front()));
    for (size_t i = 0; i < chain.size(); ++i) {
      char* destination = outs[t].data();
      if (FetchedIntoScratch(chain, i)) {
        destination =
            scratch[t].emplace_back(chain[i].StoredBytes(), '\0').data();
      }
      for (const ChunkRef& piece : chain[i].pieces) {
        sinks.Add(piece, destination);
        destination += piece.size;
      }
    }
  }
  CKPT_RETURN_IF_ERROR(impl_->Fetch(job, sinks.sinks()));
  for (size_t t = 0; t < entries.size(); ++t) {
    std::vector<absl::string_view> views(scratch[t].begin(), scratch[t].end());
    CKPT_RETURN_IF_ERROR(RebuildTensor(chains_of[t], views, outs[t]));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<RestoredTensor>> Client::RestoreShard(
    absl::string_view job, std::optional<int64_t> step, int32_t rank) {
  CKPT_ASSIGN_OR_RETURN(Checkpoint checkpoint, GetManifest(job, step, rank));
  return RestoreShard(checkpoint, rank);
}

absl::StatusOr<std::vector<RestoredTensor>> Client::RestoreShard(
    const Checkpoint& checkpoint, int32_t rank,
    const RestoreProgressFn& progress) {
  const CheckpointRecord& record = checkpoint.record;
  if (rank < 0 || rank >= record.world_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rank ", rank, " is outside world_size ", record.world_size,
        " of checkpoint ", record.step, " of job '", record.job, "'"));
  }
  auto shard =
      std::find_if(checkpoint.shards.begin(), checkpoint.shards.end(),
                   [rank](const ShardManifest& s) { return s.rank == rank; });
  if (shard == checkpoint.shards.end()) {
    return absl::NotFoundError(absl::StrCat("checkpoint ", record.step,
                                            " of job '", record.job,
                                            "' has no shard of rank ", rank));
  }

  // Every tensor's chain: just itself unless it is a row delta.
  DeltaChains chains(
      [&](int64_t base_step) { return GetManifest(record.job, base_step); });
  std::vector<std::vector<TensorEntry>> tensor_chains;
  tensor_chains.reserve(shard->tensors.size());
  for (const TensorEntry& entry : shard->tensors) {
    CKPT_ASSIGN_OR_RETURN(std::vector<TensorEntry> chain,
                          chains.Resolve(entry));
    CKPT_RETURN_IF_ERROR(CheckPieces(chain.front()));
    tensor_chains.push_back(std::move(chain));
  }

  // Lay every tensor out in one buffer, each on its own pages so freeing
  // one gives its memory back; the sinks point into the buffer. The deltas
  // to apply follow the tensors in the same buffer (a server writing
  // through shared memory can reach nothing else), and are given back once
  // applied.
  std::vector<RestoredTensor> tensors(shard->tensors.size());
  std::vector<uint64_t> offsets(tensors.size());
  uint64_t layout_bytes = 0;
  for (size_t t = 0; t < tensors.size(); ++t) {
    tensors[t].entry = shard->tensors[t];
    offsets[t] = layout_bytes;
    const uint64_t size = tensors[t].entry.ByteSize();
    layout_bytes += RestoreBuffer::RoundUpToPage(size);
  }
  const uint64_t scratch_offset = layout_bytes;
  for (const std::vector<TensorEntry>& chain : tensor_chains) {
    for (size_t i = 0; i < chain.size(); ++i) {
      if (FetchedIntoScratch(chain, i)) layout_bytes += chain[i].StoredBytes();
    }
  }
  const uint64_t scratch_bytes = layout_bytes - scratch_offset;
  layout_bytes = RestoreBuffer::RoundUpToPage(layout_bytes);
  CKPT_ASSIGN_OR_RETURN(
      std::shared_ptr<RestoreBuffer> buffer,
      RestoreBuffer::Create(layout_bytes,
                            impl_->options.shared_memory_restore));
  for (size_t t = 0; t < tensors.size(); ++t) {
    char* data = buffer->payload() + offsets[t];
    const uint64_t size = tensors[t].entry.ByteSize();
    tensors[t].bytes = absl::MakeSpan(data, size);
    // The deleter keeps the buffer alive and frees this tensor's pages.
    tensors[t].storage = std::shared_ptr<void>(data, [buffer, size](void* p) {
      buffer->Release(static_cast<const char*>(p), size);
    });
  }
  SinkSet sink_set;
  // Per tensor, the bytes of its chain's entries FetchedIntoScratch, in
  // chain order, in the scratch area.
  std::vector<std::vector<absl::string_view>> scratch_bytes_of(tensors.size());
  char* scratch = buffer->payload() + scratch_offset;
  for (size_t t = 0; t < tensors.size(); ++t) {
    const std::vector<TensorEntry>& chain = tensor_chains[t];
    for (size_t i = 0; i < chain.size(); ++i) {
      char* destination = tensors[t].bytes.data();
      if (FetchedIntoScratch(chain, i)) {
        destination = scratch;
        scratch_bytes_of[t].emplace_back(scratch, chain[i].StoredBytes());
        scratch += chain[i].StoredBytes();
      }
      for (const ChunkRef& piece : chain[i].pieces) {
        sink_set.Add(piece, destination);
        destination += piece.size;
      }
    }
  }
  std::vector<ChunkSink>& sinks = sink_set.sinks();

  // Split into a few contiguous ranges of similar bytes to write, one
  // stream (or one series of ReadChunksIntoFile calls) each, so the server
  // reads and hashes on several threads.
  uint64_t total = 0;  // distinct chunk bytes, as progress counts them
  uint64_t write_total = 0;
  for (const ChunkSink& sink : sinks) {
    total += sink.size;
    write_total += sink.WriteBytes();
  }
  std::vector<absl::Span<const ChunkSink>> ranges;
  const uint64_t per_stream = write_total / kRestoreStreams + 1;
  size_t begin = 0;
  uint64_t bytes = 0;
  for (size_t i = 0; i < sinks.size(); ++i) {
    bytes += sinks[i].WriteBytes();
    if (bytes >= per_stream || i + 1 == sinks.size()) {
      ranges.push_back(
          absl::MakeConstSpan(sinks).subspan(begin, i + 1 - begin));
      begin = i + 1;
      bytes = 0;
    }
  }
  // The streams report to `progress` one at a time.
  absl::Mutex progress_mu;
  uint64_t fetched_bytes = 0;
  std::function<void(uint64_t)> fetched;
  if (progress) {
    fetched = [&](uint64_t chunk_bytes) {
      absl::MutexLock lock(&progress_mu);
      fetched_bytes += chunk_bytes;
      progress(fetched_bytes, total);
    };
  }
  const bool shared = buffer->shareable();
  auto fetch_range = [&](absl::Span<const ChunkSink> range) {
    if (shared) {
      absl::Status status =
          impl_->FetchIntoFile(record.job, range, *buffer, fetched);
      // A server elsewhere, an older server, or one that refuses: stream.
      // Requests before the refusal wrote nothing (it comes first), so the
      // whole range is fetched again.
      if (!absl::IsFailedPrecondition(status) &&
          !absl::IsUnimplemented(status)) {
        return status;
      }
    }
    return impl_->Fetch(record.job, range, fetched);
  };
  std::vector<absl::Status> statuses(ranges.size());
  {
    // Mapping the buffer's pages costs about a third of a shared-memory
    // restore; done now, on a core the server's reads leave idle at times,
    // it overlaps the fetch instead of following it.
    std::thread prefault;
    if (shared) prefault = std::thread([&buffer] { buffer->Populate(); });
    std::vector<std::thread> threads;
    for (size_t r = 1; r < ranges.size(); ++r) {
      threads.emplace_back([&, r] { statuses[r] = fetch_range(ranges[r]); });
    }
    if (!ranges.empty()) statuses[0] = fetch_range(ranges[0]);
    for (std::thread& thread : threads) thread.join();
    if (prefault.joinable()) prefault.join();
  }
  for (const absl::Status& status : statuses) CKPT_RETURN_IF_ERROR(status);
  for (size_t t = 0; t < tensors.size(); ++t) {
    CKPT_RETURN_IF_ERROR(
        RebuildTensor(tensor_chains[t], scratch_bytes_of[t], tensors[t].bytes));
  }
  if (scratch_bytes > 0) {
    buffer->Release(buffer->payload() + scratch_offset,
                    RestoreBuffer::RoundUpToPage(scratch_bytes));
  }
  return tensors;
}

absl::Status Client::AbortCheckpoint(absl::string_view job, int64_t step,
                                     absl::string_view reason) {
  v1::AbortCheckpointRequest request;
  request.set_job(std::string(job));
  request.set_step(step);
  request.set_reason(std::string(reason));
  v1::AbortCheckpointResponse response;
  return impl_->Call(&Stub::AbortCheckpoint, request, &response);
}

absl::Status Client::DeleteCheckpoint(absl::string_view job, int64_t step) {
  v1::DeleteCheckpointRequest request;
  request.set_job(std::string(job));
  request.set_step(step);
  v1::DeleteCheckpointResponse response;
  return impl_->Call(&Stub::DeleteCheckpoint, request, &response);
}

absl::StatusOr<Stats> Client::GetStats(absl::string_view job) {
  v1::GetStatsRequest request;
  request.set_job(std::string(job));
  v1::GetStatsResponse response;
  CKPT_RETURN_IF_ERROR(impl_->Call(&Stub::GetStats, request, &response));
  return FromProto(response);
}

absl::StatusOr<std::vector<int64_t>> Client::SetRetentionPolicy(
    absl::string_view job, const RetentionPolicy& policy) {
  v1::SetRetentionPolicyRequest request;
  request.set_job(std::string(job));
  ToProto(policy, request.mutable_policy());
  v1::SetRetentionPolicyResponse response;
  CKPT_RETURN_IF_ERROR(
      impl_->Call(&Stub::SetRetentionPolicy, request, &response));
  return std::vector<int64_t>(response.deleted_steps().begin(),
                              response.deleted_steps().end());
}

absl::StatusOr<std::optional<RetentionPolicy>> Client::GetRetentionPolicy(
    absl::string_view job) {
  v1::GetRetentionPolicyRequest request;
  request.set_job(std::string(job));
  v1::GetRetentionPolicyResponse response;
  CKPT_RETURN_IF_ERROR(
      impl_->Call(&Stub::GetRetentionPolicy, request, &response));
  if (!response.has_policy()) return std::optional<RetentionPolicy>();
  CKPT_ASSIGN_OR_RETURN(RetentionPolicy policy, FromProto(response.policy()));
  return std::optional<RetentionPolicy>(std::move(policy));
}

absl::StatusOr<CheckpointRecord> Client::PinCheckpoint(absl::string_view job,
                                                       int64_t step,
                                                       bool pinned) {
  v1::PinCheckpointRequest request;
  request.set_job(std::string(job));
  request.set_step(step);
  request.set_pinned(pinned);
  v1::PinCheckpointResponse response;
  CKPT_RETURN_IF_ERROR(impl_->Call(&Stub::PinCheckpoint, request, &response));
  return FromProto(response.checkpoint());
}

absl::StatusOr<std::vector<RetentionDecision>> Client::PruneCheckpoints(
    absl::string_view job, const std::optional<RetentionPolicy>& policy,
    bool dry_run) {
  v1::PruneCheckpointsRequest request;
  request.set_job(std::string(job));
  if (policy.has_value()) ToProto(*policy, request.mutable_policy());
  request.set_dry_run(dry_run);
  v1::PruneCheckpointsResponse response;
  CKPT_RETURN_IF_ERROR(
      impl_->Call(&Stub::PruneCheckpoints, request, &response));
  std::vector<RetentionDecision> decisions;
  decisions.reserve(response.decisions_size());
  for (const v1::RetentionDecision& in : response.decisions()) {
    decisions.push_back(FromProto(in));
  }
  return decisions;
}

absl::StatusOr<GcReport> Client::CollectGarbage(bool dry_run) {
  v1::CollectGarbageRequest request;
  request.set_dry_run(dry_run);
  v1::CollectGarbageResponse response;
  CKPT_RETURN_IF_ERROR(impl_->Call(&Stub::CollectGarbage, request, &response,
                                   kCollectGarbageTimeout));
  return FromProto(response);
}

absl::StatusOr<std::vector<CheckpointUsage>>
Client::ListCheckpointsWithUniqueBytes(absl::string_view job,
                                       bool include_uncommitted) {
  return impl_->ListCheckpoints(job, include_uncommitted, true);
}

absl::StatusOr<VerifyReport> Client::VerifyCheckpoints(
    const VerifyOptions& options, const VerifyProgressFn& progress) {
  v1::VerifyRequest request;
  ToProto(options, &request);
  grpc::ClientContext context;  // no deadline: it may read every byte
  std::unique_ptr<grpc::ClientReader<v1::VerifyResponse>> reader =
      impl_->stub->VerifyCheckpoints(&context, request);
  v1::VerifyResponse response;
  std::optional<absl::StatusOr<VerifyReport>> report;
  while (reader->Read(&response)) {
    if (response.has_report()) {
      report = FromProto(response.report());
    } else if (response.has_progress() && progress) {
      // Progress of a stage this build does not know is not worth failing
      // the verify over.
      absl::StatusOr<VerifyProgress> now = FromProto(response.progress());
      if (now.ok()) progress(*now);
    }
  }
  CKPT_RETURN_IF_ERROR(FromGrpcStatus(reader->Finish()));
  if (!report.has_value()) {
    return absl::InternalError("VerifyCheckpoints ended without a report");
  }
  return *std::move(report);
}

absl::StatusOr<std::vector<JobEvent>> Client::ListEvents(absl::string_view job,
                                                         int limit) {
  v1::ListEventsRequest request;
  request.set_job(std::string(job));
  request.set_limit(limit);
  v1::ListEventsResponse response;
  CKPT_RETURN_IF_ERROR(impl_->Call(&Stub::ListEvents, request, &response));
  std::vector<JobEvent> events;
  events.reserve(response.events_size());
  for (const v1::JobEvent& proto : response.events()) {
    CKPT_ASSIGN_OR_RETURN(JobEvent event, FromProto(proto));
    events.push_back(std::move(event));
  }
  return events;
}

}  // namespace ckpt::client
