#include "server/observability/prometheus_metrics.h"

#include <malloc.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/manifest.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace ckpt::server {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;

constexpr char kOtherTenant[] = "(other)";

const prometheus::Histogram::BucketBoundaries& SecondsBuckets() {
  static const auto* const buckets =
      new prometheus::Histogram::BucketBoundaries{
          0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800};
  return *buckets;
}

absl::string_view StreamName(StreamKind kind) {
  switch (kind) {
    case StreamKind::kUpload:
      return "upload";
    case StreamKind::kDownload:
      return "download";
    case StreamKind::kVerify:
      return "verify";
  }
  return "other";
}

// Resident set size of this process, from /proc/self/statm.
std::optional<uint64_t> ResidentBytes() {
  std::FILE* file = std::fopen("/proc/self/statm", "r");
  if (file == nullptr) return std::nullopt;
  unsigned long long size = 0, resident = 0;
  const int read = std::fscanf(file, "%llu %llu", &size, &resident);
  std::fclose(file);
  if (read != 2) return std::nullopt;
  return resident * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

}  // namespace

struct PrometheusMetrics::Impl {
  explicit Impl(PrometheusOptions opts)
      : options(std::move(opts)),
        registry(std::make_shared<prometheus::Registry>()),
        rpcs(BuildCounter()
                 .Name("ckpt_rpcs_total")
                 .Help("Calls of ckpt.v1.CheckpointService ended, by method "
                       "and status code")
                 .Register(*registry)),
        rpc_seconds(BuildHistogram()
                        .Name("ckpt_rpc_duration_seconds")
                        .Help("Time from a call's start to its status, by "
                              "method (streams: the whole stream)")
                        .Register(*registry)),
        streams(BuildGauge()
                    .Name("ckpt_streams")
                    .Help("Streaming calls open now, by kind (upload: "
                          "PutChunks, download: ReadChunks, verify)")
                    .Register(*registry)),
        upload_buffered(BuildGauge()
                            .Name("ckpt_upload_buffered_bytes")
                            .Help("Bytes of upload (PutChunks) messages "
                                  "received and not yet processed and freed")
                            .Register(*registry)
                            .Add({})),
        upload_waiting(BuildGauge()
                           .Name("ckpt_upload_streams_waiting_for_buffer")
                           .Help("Upload (PutChunks) streams waiting for room "
                                 "in the server's upload buffer budget "
                                 "(--upload-buffer-bytes) before reading "
                                 "their next message")
                           .Register(*registry)
                           .Add({})),
        upload_reserved(BuildGauge()
                            .Name("ckpt_upload_buffer_reserved_bytes")
                            .Help("Bytes reserved in the server's upload "
                                  "buffer budget (--upload-buffer-bytes): "
                                  "reads' reservations and messages held; "
                                  "0 whenever no upload is open")
                            .Register(*registry)
                            .Add({})),
        received_bytes(BuildCounter()
                           .Name("ckpt_received_bytes_total")
                           .Help("Chunk bytes uploaded, by tenant")
                           .Register(*registry)),
        deduplicated_bytes(BuildCounter()
                               .Name("ckpt_deduplicated_bytes_total")
                               .Help("Uploaded chunk bytes the tenant already "
                                     "held (not stored again), by tenant")
                               .Register(*registry)),
        stored_bytes(BuildCounter()
                         .Name("ckpt_stored_bytes_total")
                         .Help("Uploaded chunk bytes stored new, by tenant")
                         .Register(*registry)),
        sent_bytes(BuildCounter()
                       .Name("ckpt_sent_bytes_total")
                       .Help("Chunk bytes read for clients (ReadChunks and "
                             "shared-memory reads), by tenant")
                       .Register(*registry)),
        commits(BuildCounter()
                    .Name("ckpt_commits_total")
                    .Help("Checkpoints committed (last rank's commit), by "
                          "tenant")
                    .Register(*registry)),
        aborts(BuildCounter()
                   .Name("ckpt_aborts_total")
                   .Help("Pending checkpoints aborted, by tenant and cause "
                         "(client, lease_expired)")
                   .Register(*registry)),
        slowest_wait(BuildHistogram()
                         .Name("ckpt_commit_slowest_rank_wait_seconds")
                         .Help("Per committed checkpoint, the time from its "
                               "begin to the commit of its last (slowest) "
                               "rank")
                         .Register(*registry)),
        slowest_rank(BuildGauge()
                         .Name("ckpt_commit_slowest_rank")
                         .Help("The rank whose commit completed the tenant's "
                               "latest committed checkpoint (its slowest)")
                         .Register(*registry)),
        slowest_wait_last(
            BuildGauge()
                .Name("ckpt_commit_slowest_rank_wait_last_seconds")
                .Help("ckpt_commit_slowest_rank_wait_seconds of "
                      "the tenant's latest checkpoint")
                .Register(*registry)),
        gc_runs(BuildCounter()
                    .Name("ckpt_gc_runs_total")
                    .Help("Garbage collections finished, by result (ok, "
                          "failed)")
                    .Register(*registry)),
        gc_reclaimed(BuildCounter()
                         .Name("ckpt_gc_reclaimed_bytes_total")
                         .Help("Chunk bytes deleted by garbage collection")
                         .Register(*registry)
                         .Add({})),
        gc_chunks(BuildCounter()
                      .Name("ckpt_gc_deleted_chunks_total")
                      .Help("Chunks deleted by garbage collection")
                      .Register(*registry)
                      .Add({})),
        verify(BuildGauge()
                   .Name("ckpt_verify_progress")
                   .Help("The latest verify's progress in its current stage: "
                         "what (chunks_done, chunks_total, bytes_done, "
                         "bytes_total)")
                   .Register(*registry)),
        lease_expiries(BuildCounter()
                           .Name("ckpt_lease_expiries_total")
                           .Help("Pending checkpoints aborted because their "
                                 "lease expired")
                           .Register(*registry)
                           .Add({})),
        quota_refusals(BuildCounter()
                           .Name("ckpt_quota_refusals_total")
                           .Help("Requests refused by a tenant quota, by "
                                 "tenant and limit")
                           .Register(*registry)),
        gauges(BuildGauge()
                   .Name("ckpt_rocksdb_write_stopped")
                   .Help("1 while RocksDB stops writes (a stall), else 0")
                   .Register(*registry)
                   .Add({})),
        background_errors(BuildGauge()
                              .Name("ckpt_rocksdb_background_errors")
                              .Help("RocksDB background errors since the "
                                    "store opened (flush, compaction)")
                              .Register(*registry)
                              .Add({})),
        disk_free(BuildGauge()
                      .Name("ckpt_data_dir_free_bytes")
                      .Help("Bytes available to the server on the data "
                            "dir's file system")
                      .Register(*registry)
                      .Add({})),
        disk_total(BuildGauge()
                       .Name("ckpt_data_dir_total_bytes")
                       .Help("Size of the data dir's file system")
                       .Register(*registry)
                       .Add({})),
        resident(BuildGauge()
                     .Name("ckpt_process_resident_bytes")
                     .Help("Resident set size of the server process")
                     .Register(*registry)
                     .Add({})),
        heap(BuildGauge()
                 .Name("ckpt_process_heap_bytes")
                 .Help("Heap bytes in use (malloc), of the server process")
                 .Register(*registry)
                 .Add({})) {}

  // The label for `tenant`: itself while fewer than kMaxTenantLabels
  // tenants were seen (and it is a valid tenant name), else "(other)".
  std::string TenantLabel(absl::string_view tenant) {
    if (tenant.empty() || !ValidateJobName(absl::StrCat(tenant, "/x")).ok() ||
        TenantOf(absl::StrCat(tenant, "/x")) != tenant) {
      return kOtherTenant;
    }
    absl::MutexLock lock(&mu);
    if (tenants.contains(tenant)) return std::string(tenant);
    if (tenants.size() >= kMaxTenantLabels) return kOtherTenant;
    tenants.emplace(tenant);
    return std::string(tenant);
  }

  // Refreshes the sampled gauges (at each scrape).
  void Sample() {
    if (options.store_property) {
      if (auto v = options.store_property("rocksdb.is-write-stopped")) {
        gauges.Set(static_cast<double>(*v));
      }
      if (auto v = options.store_property("rocksdb.background-errors")) {
        background_errors.Set(static_cast<double>(*v));
      }
    }
    struct statvfs fs {};
    if (!options.data_dir.empty() &&
        ::statvfs(options.data_dir.c_str(), &fs) == 0) {
      disk_free.Set(static_cast<double>(fs.f_bavail) *
                    static_cast<double>(fs.f_frsize));
      disk_total.Set(static_cast<double>(fs.f_blocks) *
                     static_cast<double>(fs.f_frsize));
    }
    if (auto rss = ResidentBytes()) resident.Set(static_cast<double>(*rss));
    heap.Set(static_cast<double>(mallinfo2().uordblks));
  }

  const PrometheusOptions options;
  std::shared_ptr<prometheus::Registry> registry;
  Family<Counter>& rpcs;
  Family<Histogram>& rpc_seconds;
  Family<Gauge>& streams;
  Gauge& upload_buffered;
  Gauge& upload_waiting;
  Gauge& upload_reserved;
  Family<Counter>& received_bytes;
  Family<Counter>& deduplicated_bytes;
  Family<Counter>& stored_bytes;
  Family<Counter>& sent_bytes;
  Family<Counter>& commits;
  Family<Counter>& aborts;
  Family<Histogram>& slowest_wait;
  Family<Gauge>& slowest_rank;
  Family<Gauge>& slowest_wait_last;
  Family<Counter>& gc_runs;
  Counter& gc_reclaimed;
  Counter& gc_chunks;
  Family<Gauge>& verify;
  Counter& lease_expiries;
  Family<Counter>& quota_refusals;
  Gauge& gauges;  // rocksdb.is-write-stopped
  Gauge& background_errors;
  Gauge& disk_free;
  Gauge& disk_total;
  Gauge& resident;
  Gauge& heap;

  absl::Mutex mu;
  absl::flat_hash_set<std::string> tenants ABSL_GUARDED_BY(mu);

  // What the exposer serves: the registry, with the sampled gauges
  // refreshed first.
  class Sampled final : public prometheus::Collectable {
   public:
    explicit Sampled(Impl* impl) : impl_(impl) {}
    std::vector<prometheus::MetricFamily> Collect() const override {
      impl_->Sample();
      return impl_->registry->Collect();
    }

   private:
    Impl* const impl_;
  };
  std::shared_ptr<Sampled> sampled;
  absl::Mutex exposer_mu;
  std::unique_ptr<prometheus::Exposer> exposer ABSL_GUARDED_BY(exposer_mu);
  int port = 0;
};

absl::StatusOr<std::unique_ptr<PrometheusMetrics>> PrometheusMetrics::Start(
    PrometheusOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  impl->sampled = std::make_shared<Impl::Sampled>(impl.get());
  // civetweb: no keep-alive and a short request timeout, so that stopping
  // never waits on a scraper's idle connection.
  std::vector<std::string> civet = {
      "listening_ports",    impl->options.listen_address,
      "num_threads",        "2",
      "enable_keep_alive",  "no",
      "request_timeout_ms", "2000",
      "linger_timeout_ms",  "0"};
  try {
    auto exposer = std::make_unique<prometheus::Exposer>(civet);
    exposer->RegisterCollectable(impl->sampled);
    std::vector<int> ports = exposer->GetListeningPorts();
    impl->port = ports.empty() ? 0 : ports.front();
    absl::MutexLock lock(&impl->exposer_mu);
    impl->exposer = std::move(exposer);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on '", impl->options.listen_address,
                     "' (address in use or invalid?): ", e.what()));
  }
  return std::make_unique<PrometheusMetrics>(std::move(impl));
}

PrometheusMetrics::PrometheusMetrics(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

PrometheusMetrics::~PrometheusMetrics() { StopServing(); }

int PrometheusMetrics::port() const { return impl_->port; }

void PrometheusMetrics::StopServing() {
  std::unique_ptr<prometheus::Exposer> exposer;
  {
    absl::MutexLock lock(&impl_->exposer_mu);
    exposer = std::move(impl_->exposer);
  }
  exposer.reset();  // joins civetweb's threads
}

void PrometheusMetrics::RpcFinished(absl::string_view method,
                                    absl::StatusCode code,
                                    absl::Duration latency) {
  const std::string name(method);
  impl_->rpcs.Add({{"method", name}, {"code", absl::StatusCodeToString(code)}})
      .Increment();
  impl_->rpc_seconds.Add({{"method", name}}, SecondsBuckets())
      .Observe(absl::ToDoubleSeconds(latency));
}

void PrometheusMetrics::StreamOpened(StreamKind kind) {
  impl_->streams.Add({{"kind", std::string(StreamName(kind))}}).Increment();
}

void PrometheusMetrics::StreamClosed(StreamKind kind) {
  impl_->streams.Add({{"kind", std::string(StreamName(kind))}}).Decrement();
}

void PrometheusMetrics::UploadBufferedBytesChanged(int64_t delta) {
  if (delta >= 0) {
    impl_->upload_buffered.Increment(static_cast<double>(delta));
  } else {
    impl_->upload_buffered.Decrement(-static_cast<double>(delta));
  }
}

void PrometheusMetrics::UploadWaitingForBufferChanged(int delta) {
  impl_->upload_waiting.Increment(static_cast<double>(delta));
}

void PrometheusMetrics::UploadBufferReservedChanged(int64_t delta) {
  impl_->upload_reserved.Increment(static_cast<double>(delta));
}

void PrometheusMetrics::ChunkReceived(absl::string_view tenant, uint64_t bytes,
                                      bool stored_new) {
  const prometheus::Labels labels = {{"tenant", impl_->TenantLabel(tenant)}};
  const double value = static_cast<double>(bytes);
  impl_->received_bytes.Add(labels).Increment(value);
  (stored_new ? impl_->stored_bytes : impl_->deduplicated_bytes)
      .Add(labels)
      .Increment(value);
}

void PrometheusMetrics::ChunkSent(absl::string_view tenant, uint64_t bytes) {
  impl_->sent_bytes.Add({{"tenant", impl_->TenantLabel(tenant)}})
      .Increment(static_cast<double>(bytes));
}

void PrometheusMetrics::CheckpointCommitted(absl::string_view tenant,
                                            int32_t rank, absl::Duration wait) {
  const prometheus::Labels labels = {{"tenant", impl_->TenantLabel(tenant)}};
  impl_->commits.Add(labels).Increment();
  const double seconds = absl::ToDoubleSeconds(wait);
  impl_->slowest_wait.Add({}, SecondsBuckets()).Observe(seconds);
  impl_->slowest_rank.Add(labels).Set(rank);
  impl_->slowest_wait_last.Add(labels).Set(seconds);
}

void PrometheusMetrics::CheckpointAborted(absl::string_view tenant,
                                          AbortCause cause) {
  const char* name = cause == AbortCause::kClient         ? "client"
                     : cause == AbortCause::kLeaseExpired ? "lease_expired"
                                                          : "other";
  impl_->aborts.Add({{"tenant", impl_->TenantLabel(tenant)}, {"cause", name}})
      .Increment();
}

void PrometheusMetrics::GcFinished(bool ok, uint64_t chunks_deleted,
                                   uint64_t bytes_reclaimed) {
  impl_->gc_runs.Add({{"result", ok ? "ok" : "failed"}}).Increment();
  impl_->gc_chunks.Increment(static_cast<double>(chunks_deleted));
  impl_->gc_reclaimed.Increment(static_cast<double>(bytes_reclaimed));
}

void PrometheusMetrics::VerifyProgressed(uint64_t chunks_done,
                                         uint64_t chunks_total,
                                         uint64_t bytes_done,
                                         uint64_t bytes_total) {
  impl_->verify.Add({{"what", "chunks_done"}})
      .Set(static_cast<double>(chunks_done));
  impl_->verify.Add({{"what", "chunks_total"}})
      .Set(static_cast<double>(chunks_total));
  impl_->verify.Add({{"what", "bytes_done"}})
      .Set(static_cast<double>(bytes_done));
  impl_->verify.Add({{"what", "bytes_total"}})
      .Set(static_cast<double>(bytes_total));
}

void PrometheusMetrics::LeasesExpired(int count) {
  impl_->lease_expiries.Increment(count);
}

void PrometheusMetrics::QuotaRefused(absl::string_view tenant,
                                     absl::string_view limit) {
  impl_->quota_refusals
      .Add({{"tenant", impl_->TenantLabel(tenant)},
            {"limit", std::string(limit)}})
      .Increment();
}

}  // namespace ckpt::server
