// The client library's value types: connection and save options, the
// tensors a save takes and what it returns, listed checkpoints and restored
// tensors. Apart from client.h so that the layers under the facade (the
// transport, the save pipeline, the restore plan) share them without
// depending on the Client class; client.h includes this header, so callers
// see no difference.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/chunking.h"
#include "common/manifest.h"
#include "common/policy_origin.h"
#include "common/retention.h"
#include "common/row_fingerprint_value.h"
#include "common/stats.h"
#include "common/verify.h"

namespace ckpt::client {

struct ConnectOptions {
  // Largest message sent or received; must be at least kMaxChunkBytes plus
  // framing. Default: 64 MiB (the server's limit too).
  int max_message_bytes = 64 << 20;
  // Deadline of each unary call, but CollectGarbage's, which gets 6 hours
  // (a collection reads every manifest and compacts the store). Streams
  // have no deadline, as a large save may take long; stream_stall_timeout
  // bounds them instead. Default: 5 minutes; a commit makes every chunk
  // durable first.
  absl::Duration rpc_timeout = absl::Minutes(5);
  // A stream that makes no progress for this long fails with
  // DEADLINE_EXCEEDED naming the server: a server that keeps the connection
  // (answering pings) but stops serving must not hang a training job.
  // Progress is, per stream: a chunk received (ReadChunks: restores,
  // copies); for an upload (PutChunks: saves, copies' targets), the server
  // taking data or answering, counting only time spent waiting on it (a
  // write blocked by flow control, the final status), never the client's
  // own hashing and reading between messages; any message of a verify,
  // whose server sends a heartbeat at least every 10 s while it is queued
  // or working. Progress-based, so a large transfer over a slow link is
  // never cut short for its size. Positive; absl::InfiniteDuration()
  // disables it. Default: 2 minutes.
  absl::Duration stream_stall_timeout = absl::Minutes(2);
  // When positive, Connect waits this long for the server to be reachable
  // and fails with UNAVAILABLE otherwise; zero connects on the first call.
  // Either way, a call made while the client is not connected waits up to
  // 2 s for the connection (see CallSetup in
  // client/transport/grpc_transport.cc). Default: zero.
  absl::Duration connect_timeout = absl::ZeroDuration();
  // A connection whose server answers no HTTP/2 ping for keepalive_timeout
  // is closed, failing its calls with UNAVAILABLE: a frozen or unreachable
  // server then ends streams (which have no deadline) instead of hanging
  // them. Pings are sent only while calls are active, every keepalive_time.
  // Defaults: 60 s and 20 s. The server accepts pings every 10 s or less
  // often; more frequent ones make it close the connection. gRPC 1.51 can
  // miss a frozen server that froze while a flow-control ping of the client
  // was in flight; rpc_timeout and stream_stall_timeout still end the call.
  absl::Duration keepalive_time = absl::Seconds(60);
  absl::Duration keepalive_timeout = absl::Seconds(20);
  // Restores from a server on this host go through shared memory
  // (ReadChunksIntoFile): the server writes the verified chunks into the
  // restored tensors' memory. Falls back to streaming when the server
  // cannot. Default: true.
  bool shared_memory_restore = true;

  // Transport security. Non-empty tls_ca_pem: the connection uses TLS and
  // trusts only the server certificates these PEM CA certificates issued
  // (pass the system bundle, e.g. /etc/ssl/certs/ca-certificates.crt, for
  // a publicly issued one). Empty: plaintext. Default: empty.
  std::string tls_ca_pem = "";
  // Mutual TLS: the client's PEM certificate chain and its unencrypted
  // private key, presented when the server asks. Both or neither, and only
  // with tls_ca_pem. Default: empty.
  std::string tls_cert_pem = "";
  std::string tls_key_pem = "";
  // The name checked against the server certificate instead of the host of
  // the address, for a certificate whose subjectAltName does not name the
  // host dialled (e.g. dialling an IP address). Only with tls_ca_pem.
  // Default: empty (the address's host).
  std::string tls_server_name = "";
  // A bearer token sent on every call as the metadata
  // `authorization: Bearer <token>`. Printable ASCII without spaces. Refused
  // (INVALID_ARGUMENT at Connect) over plaintext to a host other than
  // loopback, where anyone on the path could read it. Never logged or
  // echoed in an error. Default: empty (none sent).
  std::string token = "";
};

// One tensor (region) a rank saves. `bytes` is a view of the caller's memory,
// row-major bytes of `box`; it is never copied into a staging buffer and
// must stay valid and unchanged during SaveShard.
struct TensorData {
  std::string name;
  DType dtype = DType::kUint8;
  std::vector<int64_t> global_shape;
  Box box;
  absl::string_view bytes;
  // Set to save a row delta (Check-N-Run) instead of the whole tensor: only
  // the rows `delta_rows` (indices along dimension 0 of the box, strictly
  // ascending) of `bytes` are stored, on top of this tensor (same name,
  // dtype, shape and box) in committed checkpoint `delta_base_step` of the
  // job. The caller guarantees every other row equals the base's; the
  // server checks that the base exists and matches (FAILED_PRECONDITION
  // otherwise). The rows are copied once, into the encoded delta (common/
  // row_delta.h), which is chunked and uploaded like any tensor's bytes.
  // INVALID_ARGUMENT when delta_rows are not strictly ascending, reach past
  // the box's rows, or are given without delta_base_step.
  // IncrementalSaver (client/incremental.h) fills these in.
  std::optional<int64_t> delta_base_step;
  absl::Span<const uint64_t> delta_rows;
  // When set, stored with the tensor as its row fingerprints
  // (common/fingerprint_record.h), so that a restarted job or a client
  // without history can later find the rows changed since this checkpoint
  // without reading its rows: for a full tensor one per row of the box, in
  // order; for a row delta one per delta_rows entry (the row's fingerprint
  // after this save). They must be the XXH3-128 fingerprints
  // (common/row_fingerprint.h) of those rows of `bytes`: a wrong one makes
  // a later delta against this checkpoint miss a changed row, and nothing
  // (not `ckpt verify --read-data`) checks them against the rows.
  // INVALID_ARGUMENT for another count, or with quantize_bits or a tensor
  // without rows.
  // IncrementalSaver fills this in.
  // nullopt: none stored (an empty span stores the record of a delta of no
  // rows).
  std::optional<absl::Span<const RowFingerprint>> row_fingerprints;
  // Set to save a float32 tensor quantized (opt-in, lossy; Check-N-Run):
  // row-wise to 2, 3, 4 or 8 bits with the range search of common/
  // quantize.h, on options.hash_threads threads (about 15 MB/s per core).
  // The entry records the width and the error measured over the tensor,
  // and restores return the dequantized float32 values. Rows are along
  // dimension 0 of the box; a box of at most one dimension is one row.
  // INVALID_ARGUMENT for another width or dtype, an empty box, a NaN or
  // infinite value, or together with delta_base_step (a quantized tensor
  // is always saved in full, and cannot be a row delta's base).
  std::optional<int> quantize_bits;
};

struct SaveOptions {
  int32_t rank = 0;
  int32_t world_size = 1;
  // Recorded by the first rank to begin the checkpoint; ignored for ranks
  // joining a pending one.
  CheckpointMetadata metadata;
  // Chunk size, 1..kMaxChunkBytes. The same tensor bytes give the same
  // chunks only with the same value. Default: kDefaultChunkBytes (4 MiB).
  size_t chunk_bytes = kDefaultChunkBytes;
  // Threads hashing chunks while earlier batches upload. Default: 2.
  int hash_threads = 2;
  // Lease of the pending checkpoint; zero means the server's default.
  absl::Duration lease = absl::ZeroDuration();
  // A writer's policy: when set, replaces the job's retention policy as the
  // checkpoint begins (applied at once by the server), unless an
  // operator's policy applies or the caller is append-only; then the server
  // ignores it and SaveResult::retention_policy_ignored says why.
  // Default: nullopt (keep the stored one).
  std::optional<RetentionPolicy> retention_policy;
  // When set, called (from the saving thread) after each batch of chunks is
  // hashed and, where the server lacked them, uploaded: the chunk bytes
  // done so far of the shard's total (stored bytes: a delta's or quantized
  // tensor's encoding). Default: none.
  std::function<void(uint64_t bytes_done, uint64_t bytes_total)> progress =
      nullptr;
};

struct SaveResult {
  uint64_t logical_bytes = 0;  // bytes of this rank's tensors
  uint64_t chunks_total = 0;   // chunks of this rank's tensors, repeats too
  uint64_t chunks_sent = 0;    // chunks the server lacked and was sent
  uint64_t bytes_sent = 0;     // chunk bytes sent
  // Per tensor saved quantized (TensorData::quantize_bits): its width and
  // the error measured, as recorded in the manifest.
  std::map<std::string, Quantization> quantized;
  // This rank's commit completed the checkpoint (it was the last rank).
  bool checkpoint_committed = false;
  // The checkpoint header after this rank's commit.
  CheckpointRecord checkpoint;
  // Non-empty when the server ignored options.retention_policy: why.
  std::string retention_policy_ignored;
};

// A retention policy as GetRetentionPolicy answers it: the one that applies
// (a job's own, or its tenant's default) and who set it.
struct PolicyInfo {
  std::optional<RetentionPolicy> policy;  // nullopt: none (keep everything)
  // Set with policy by servers that record origins; nullopt from older ones.
  std::optional<PolicyOrigin> origin;
};

// Defined in common/; also ckpt::client's, as the rest of this API.
using ::ckpt::JobStats;
using ::ckpt::JobSummary;  // common/manifest.h
using ::ckpt::Stats;
using ::ckpt::TenantStats;

// A listed checkpoint with what deleting it alone would free.
struct CheckpointUsage {
  CheckpointRecord record;
  // Bytes of the chunks it references and no other pending or committed
  // checkpoint of its tenant does; nullopt when the server did not say
  // (a checkpoint committed while the listing was made).
  std::optional<uint64_t> unique_bytes;
};

// Bytes fetched so far of a restore's total (each distinct chunk once).
using RestoreProgressFn =
    std::function<void(uint64_t bytes_done, uint64_t bytes_total)>;
using VerifyProgressFn = std::function<void(const VerifyProgress&)>;

struct RestoredTensor {
  TensorEntry entry;
  // entry.ByteSize() bytes, row-major over entry.box, page-aligned and
  // writable. Valid while `storage` (or a copy of it) lives.
  absl::Span<char> bytes;
  // Owns `bytes`; freeing it gives the tensor's memory back.
  std::shared_ptr<void> storage;
};

// One region of a global tensor to restore (a resharded restore: the rank
// asks for the part it owns now, whatever boxes the checkpoint's ranks
// saved). Client::ReadRegions and Client::RestoreRegions take these.
struct RegionRequest {
  std::string name;
  // Must equal the saved entries' dtype and global shape: nothing is
  // converted (INVALID_ARGUMENT naming the tensor otherwise).
  DType dtype = DType::kUint8;
  std::vector<int64_t> global_shape;
  // The region wanted, inside global_shape; its bytes are returned
  // row-major over region.lengths.
  Box region;
  // nullopt: assembled from the boxes every rank saved under `name` (a
  // sharded tensor, or a replicated one: identical boxes of several ranks
  // must reference identical chunks, and are read once). Set: only that
  // rank's entry (a per-rank tensor); its box must cover the region.
  std::optional<int32_t> source_rank;
};

// What a region restore read, for reports (ckpt.CheckpointManager's
// last_restore) and the tests that bound it.
struct RegionReadStats {
  uint64_t chunks_fetched = 0;  // distinct chunks read from the server
  uint64_t bytes_fetched = 0;   // their bytes (delta chains' too)
  uint64_t bytes_used = 0;      // bytes of the regions requested
};

// Regions restored into memory the restore allocated.
struct RestoredRegions {
  // One per request, in order: entry describes the region (name, dtype,
  // global shape, box = the region; no pieces).
  std::vector<RestoredTensor> tensors;
  RegionReadStats stats;
};

}  // namespace ckpt::client
