// Metrics: what the server counts for monitoring, as a plain interface that
// the service and rpc layers call. Every method has a no-op body, so a
// server without a metrics endpoint (and every test) uses Metrics itself;
// the Prometheus implementation (prometheus_metrics.h) is the only file
// that names prometheus-cpp. Implementations are thread-safe and cheap
// enough to call on every chunk.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ckpt::server {

enum class StreamKind { kUpload, kDownload, kVerify };
enum class AbortCause { kClient, kLeaseExpired, kOther };

class Metrics {
 public:
  virtual ~Metrics() = default;

  // --- rpc layer ---
  // A call of ckpt.v1.CheckpointService ended (method: its short name).
  virtual void RpcFinished(absl::string_view /*method*/,
                           absl::StatusCode /*code*/,
                           absl::Duration /*latency*/) {}
  // A streaming call started / ended.
  virtual void StreamOpened(StreamKind /*kind*/) {}
  virtual void StreamClosed(StreamKind /*kind*/) {}
  // The bytes of upload (PutChunks) messages the server holds, received and
  // not yet processed and freed, changed by `delta` (negative: freed).
  virtual void UploadBufferedBytesChanged(int64_t /*delta*/) {}
  // Upload streams waiting for room in the server's upload buffer budget
  // (StreamLimits::upload_buffer_bytes) before reading their next message
  // changed by `delta`.
  virtual void UploadWaitingForBufferChanged(int /*delta*/) {}
  // The bytes reserved in that budget (reads' reservations and messages
  // held) changed by `delta`; 0 whenever no upload is open.
  virtual void UploadBufferReservedChanged(int64_t /*delta*/) {}

  // --- service layer (tenant: TenantOf of a valid job name) ---
  // A chunk of `bytes` arrived for `tenant`; `stored_new` false when the
  // tenant already held it (deduplicated).
  virtual void ChunkReceived(absl::string_view /*tenant*/, uint64_t /*bytes*/,
                             bool /*stored_new*/) {}
  // A chunk of `bytes` was read for a restore.
  virtual void ChunkSent(absl::string_view /*tenant*/, uint64_t /*bytes*/) {}
  // A checkpoint committed; the last rank to commit waited `slowest_wait`
  // after the first rank's commit (the commit wait of the slowest rank).
  virtual void CheckpointCommitted(absl::string_view /*tenant*/,
                                   int32_t /*slowest_rank*/,
                                   absl::Duration /*slowest_wait*/) {}
  virtual void CheckpointAborted(absl::string_view /*tenant*/,
                                 AbortCause /*cause*/) {}
  // A garbage collection finished (not dry run: bytes_reclaimed counts).
  virtual void GcFinished(bool /*ok*/, uint64_t /*chunks_deleted*/,
                          uint64_t /*bytes_reclaimed*/) {}
  // Where the verify in progress stands (common/verify.h VerifyProgress:
  // the chunks and bytes of its current stage done, and in total).
  virtual void VerifyProgressed(uint64_t /*chunks_done*/,
                                uint64_t /*chunks_total*/,
                                uint64_t /*bytes_done*/,
                                uint64_t /*bytes_total*/) {}
  // `count` pending checkpoints were aborted as their lease had expired.
  virtual void LeasesExpired(int /*count*/) {}
  // A request was refused by a tenant quota (limit: a fixed name such as
  // "max_stored_bytes").
  virtual void QuotaRefused(absl::string_view /*tenant*/,
                            absl::string_view /*limit*/) {}
};

// A Metrics that counts nothing, for servers without an endpoint.
Metrics* NoMetrics();

}  // namespace ckpt::server
