// PrometheusMetrics: Metrics exported in Prometheus' text format at
// http://HOST:PORT/metrics (ckpt-server --metrics-listen). The only file
// that names prometheus-cpp. Label values are bounded: method and code are
// fixed sets, and past kMaxTenantLabels distinct tenants the rest are
// counted under the tenant "(other)". Gauges of the process and the store
// (disk, memory, RocksDB state) are sampled at each scrape.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "server/observability/metrics.h"

namespace ckpt::server {

inline constexpr size_t kMaxTenantLabels = 1000;

struct PrometheusOptions {
  // HOST:PORT of the HTTP endpoint; port 0 picks a free one (see port()).
  std::string listen_address;
  // The directory whose file system's free and total bytes are exported.
  std::string data_dir;
  // Reads an integer RocksDB property (e.g. "rocksdb.is-write-stopped");
  // nullopt when unknown. Called at each scrape. Default: none.
  std::function<std::optional<uint64_t>(const std::string&)> store_property;
};

// Thread-safe.
class PrometheusMetrics final : public Metrics {
 public:
  // Binds and starts serving. UNAVAILABLE naming the address when it cannot
  // be bound.
  static absl::StatusOr<std::unique_ptr<PrometheusMetrics>> Start(
      PrometheusOptions options);
  ~PrometheusMetrics() override;

  int port() const;
  // Stops the HTTP endpoint (no more scrapes, so no more store_property
  // calls); counting goes on. Idempotent; the destructor calls it.
  void StopServing();

  void RpcFinished(absl::string_view method, absl::StatusCode code,
                   absl::Duration latency) override;
  void StreamOpened(StreamKind kind) override;
  void StreamClosed(StreamKind kind) override;
  void UploadBufferedBytesChanged(int64_t delta) override;
  void UploadWaitingForBufferChanged(int delta) override;
  void UploadBufferReservedChanged(int64_t delta) override;
  void ChunkReceived(absl::string_view tenant, uint64_t bytes,
                     bool stored_new) override;
  void ChunkSent(absl::string_view tenant, uint64_t bytes) override;
  void CheckpointCommitted(absl::string_view tenant, int32_t slowest_rank,
                           absl::Duration slowest_wait) override;
  void CheckpointAborted(absl::string_view tenant, AbortCause cause) override;
  void GcFinished(bool ok, uint64_t chunks_deleted,
                  uint64_t bytes_reclaimed) override;
  void VerifyProgressed(uint64_t chunks_done, uint64_t chunks_total,
                        uint64_t bytes_done, uint64_t bytes_total) override;
  void LeasesExpired(int count) override;
  void QuotaRefused(absl::string_view tenant, absl::string_view limit) override;

  struct Impl;
  explicit PrometheusMetrics(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace ckpt::server
