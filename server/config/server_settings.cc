#include "server/config/server_settings.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/byte_size.h"
#include "common/status_macros.h"

namespace ckpt::server {
namespace {

using S = ServerSettings;
using T = SettingType;

// Longest duration any setting takes: ten years, far beyond any sensible
// value, and far below where absl::Duration or int64 seconds overflow.
constexpr double kTenYears = 10.0 * 365 * 24 * 3600;

// clang-format off
const ServerSetting kRows[] = {
  {"data_dir", "--data-dir", T::kString, &S::data_dir, "",
   0, 0, "Directory of the RocksDB database (created if missing). Required "
   "with --chunk-store rocksdb"},
  {"chunk_store", "--chunk-store", T::kString, &S::chunk_store, "rocksdb",
   0, 0, "Where chunks and metadata live: rocksdb (the embedded database in "
   "--data-dir) or rados:POOL (an existing Ceph pool, shared by every "
   "ckpt-server given the same pool: any of them serves any job; "
   "docs/scaling.md)"},
  {"ceph_conf", "--ceph-conf", T::kString, &S::ceph_conf,
   "/etc/ceph/ceph.conf",
   0, 0, "With --chunk-store rados:POOL: the Ceph configuration file (monitor "
   "addresses, authentication)"},
  {"ceph_user", "--ceph-user", T::kString, &S::ceph_user, "admin",
   0, 0, "With --chunk-store rados:POOL: the cephx user, without 'client.'; "
   "it needs 'mon allow r' and 'osd allow rwx pool=POOL'"},
  {"ceph_keyring", "--ceph-keyring", T::kString, &S::ceph_keyring, "",
   0, 0, "With --chunk-store rados:POOL: the user's keyring file; empty: the "
   "one --ceph-conf names"},
  {"rados_lock_lease_seconds", "--rados-lock-lease-seconds", T::kSeconds,
   &S::rados_lock_lease_seconds, "15",
   1, 3600, "With --chunk-store rados:POOL: the lease of the cluster-wide "
   "lock a server holds while it changes a job; a server that stalls longer "
   "loses it and its late writes are refused. Another server waits for a "
   "crashed holder's lock at most this long. Give every server on one pool "
   "the same value"},
  {"rados_op_timeout_seconds", "--rados-op-timeout-seconds", T::kSeconds,
   &S::rados_op_timeout_seconds, "60",
   1, 3600, "With --chunk-store rados:POOL: how long one RADOS operation may "
   "take before the call that needs it fails UNAVAILABLE (an OSD or monitor "
   "that stopped answering); also the wait for the monitors at startup"},
  {"rados_min_hold_seconds", "--rados-min-hold-seconds", T::kSeconds,
   &S::rados_min_hold_seconds, "120",
   1, kTenYears, "With --chunk-store rados:POOL: the least time garbage "
   "collection spares a chunk after any server last used it, whatever hold "
   "it is asked for; at least twice the largest --rados-lock-lease-seconds "
   "of the servers on the pool, plus their clock differences"},
  {"listen", "--listen", T::kString, &S::listen, "127.0.0.1:7070",
   0, 0, "HOST:PORT to listen on; port 0 picks a free port, printed on "
   "stdout"},
  {"auth_tokens", "--auth-tokens", T::kString, &S::auth_tokens, "",
   0, 0, "Token file: every call must then carry 'authorization: Bearer "
   "<token>' with a token it lists. One line per token: SHA256_HEX_OF_TOKEN "
   "PRINCIPAL ROLE SCOPE (role reader, writer, admin or operator; scope "
   "tenant/, tenant/prefix, or * for an operator); # starts a comment. Only "
   "the tokens' hashes are in it. Reloaded on SIGHUP (a bad file keeps the "
   "tokens loaded before). Without it, only clients on this host are served, "
   "each with full rights"},
  {"insecure_allow_unauthenticated", "--insecure-allow-unauthenticated",
   T::kBool, &S::insecure_allow_unauthenticated, "false",
   0, 0, "Without --auth-tokens, serve clients on other hosts too, and listen "
   "on any address: anyone who can reach the port may then read and delete "
   "every checkpoint. For isolated networks and tests only"},
  {"lease_check_interval_seconds", "--lease-check-interval", T::kSeconds,
   &S::lease_check_interval_seconds, "5",
   0.001, kTenYears, "Seconds between checks that abort pending checkpoints "
   "whose lease expired"},
  {"default_lease_seconds", "--default-lease-seconds", T::kInt,
   &S::default_lease_seconds, "1800",
   1, kTenYears, "Lease of a pending checkpoint when the client asks for "
   "none; renewed by every BeginCheckpoint and CommitShard. At most "
   "--max-lease-seconds"},
  {"max_lease_seconds", "--max-lease-seconds", T::kInt, &S::max_lease_seconds,
   "3600",
   1, kTenYears, "Longest lease a client may ask for; a longer request is "
   "refused (INVALID_ARGUMENT naming this cap). Renewals never extend a lease "
   "past it, and a stored lease that reaches further (from an older server) "
   "is cut to it, so every pending checkpoint ends and none holds back "
   "garbage collection forever"},
  {"gc_interval_seconds", "--gc-interval", T::kSeconds, &S::gc_interval_seconds,
   "3600",
   0, kTenYears, "Seconds between background garbage collections (deleting "
   "chunks no checkpoint references); 0 turns them off (`ckpt gc` still runs "
   "one on demand)"},
  {"health_check_interval_seconds", "--health-check-interval-seconds",
   T::kSeconds, &S::health_check_interval_seconds, "1",
   0.01, 3600, "Seconds between checks of whether the store can take writes "
   "(free space on the data dir's volume, RocksDB's background errors). The "
   "gRPC health service (grpc.health.v1) answers NOT_SERVING for "
   "ckpt.v1.CheckpointService while it cannot and SERVING again once it "
   "can; each check also resumes a store stopped on a full disk once space "
   "is freed. The overall service \"\" stays SERVING until shutdown"},
  {"max_background_flushes", "--max-background-flushes", T::kInt,
   &S::max_background_flushes, "1",
   1, 16, "RocksDB memtable flushes that may run at once. 1 keeps RocksDB 7.8 "
   "from wedging or aborting when flushes fail together on a full disk; 2 "
   "may save faster (docs/operations.md, Disk full)"},
  {"chunk_hold_seconds", "--chunk-hold-seconds", T::kInt,
   &S::chunk_hold_seconds, "1800",
   0, kTenYears, "How long garbage collection spares an unreferenced chunk "
   "after a save last uploaded or asked about it: the longest a rank may take "
   "from upload to commit"},
  {"direct_io", "--direct-io", T::kBool, &S::direct_io, "false",
   0, 0, "Read and write RocksDB's blob and table files with O_DIRECT, "
   "bypassing the page cache (true or false; chunk files of 1 MiB and more "
   "always use the page cache); ignored where the file system has no "
   "O_DIRECT, e.g. tmpfs"},
  {"file_chunk_min_bytes", "--file-chunk-min-bytes", T::kBytes,
   &S::file_chunk_min_bytes, "1MiB",
   1, 9.0e18, "Chunks at least this large are stored in files of their own "
   "under <data-dir>/chunk_files (written by the upload threads in "
   "parallel, synced in batches); smaller ones in RocksDB. A huge value "
   "keeps every chunk in RocksDB (slower saves: one flush thread copies and "
   "checksums them)"},
  {"shared_memory_reads", "--shared-memory-reads", T::kBool,
   &S::shared_memory_reads, "true",
   0, 0, "Let clients on this host restore through shared memory: the server "
   "writes verified chunks straight into the client's memory instead of "
   "sending them over the socket (true or false). The client passes its "
   "memory file (a sealed memfd) to the server over a Unix socket with an "
   "abstract random name; see docs/security.md"},
  {"request_threads", "--request-threads", T::kInt, &S::request_threads, "0",
   0, 4096, "Threads that do the work of client calls (saves, restores, "
   "listings), so that the network threads never wait on hashing or the "
   "disk; calls beyond them wait in line. 0: twice the machine's cores, at "
   "least 4"},
  {"maintenance_threads", "--maintenance-threads", T::kInt,
   &S::maintenance_threads, "2",
   1, 256, "Threads for garbage collection and verify calls, which may read "
   "the whole store for minutes; kept apart so they never slow the other "
   "calls. Further such calls wait in line"},
  {"verify_threads", "--verify-threads", T::kInt, &S::verify_threads, "0",
   0, 64, "Threads one verify call that reads data (`ckpt verify "
   "--read-data`) reads and hashes chunks on, each holding one chunk (up to "
   "16 MiB) at a time; the report is the same whatever the number. Every "
   "such call starts its own, taking cores and memory from saves and "
   "restores. 0: half the machine's cores, at least 1 and at most 4"},
  {"tls_cert", "--tls-cert", T::kString, &S::tls_cert, "",
   0, 0, "Serve TLS only (plaintext clients fail at the handshake) with this "
   "PEM certificate chain, the server's own certificate first; its "
   "subjectAltName must name the host or IP address clients dial. Needs "
   "--tls-key"},
  {"tls_key", "--tls-key", T::kString, &S::tls_key, "",
   0, 0, "The PEM private key (unencrypted) of --tls-cert; keep it readable "
   "by the server's user only"},
  {"tls_client_ca", "--tls-client-ca", T::kString, &S::tls_client_ca, "",
   0, 0, "Mutual TLS: require every client to present a certificate issued "
   "by a CA in this PEM file (needs --tls-cert)"},
  {"shutdown_grace_seconds", "--shutdown-grace-seconds", T::kSeconds,
   &S::shutdown_grace_seconds, "10",
   0, 3600, "On SIGTERM or SIGINT: health turns NOT_SERVING and new calls are "
   "refused (UNAVAILABLE) at once; calls in flight (uploads included) get "
   "this long to finish, then are cancelled and the process exits. Should "
   "the close still hang 10 s later (RocksDB behind a failed flush on a full "
   "disk), the process exits with code 75 and an event=shutdown_stuck line; "
   "every commit that returned is on disk"},
  {"upload_idle_timeout_seconds", "--upload-idle-timeout-seconds",
   T::kSeconds, &S::upload_idle_timeout_seconds, "120",
   0.01, 1e9, "End an upload (PutChunks) stream on which the client sent "
   "nothing for this long, with DEADLINE_EXCEEDED, and free its buffers; "
   "chunks it stored stay stored"},
  {"max_upload_stream_bytes", "--max-upload-stream-bytes", T::kBytes,
   &S::max_upload_stream_bytes, "64GiB",
   1, 9.0e18, "Chunk bytes one upload stream may carry; the chunk that would "
   "pass it is refused with RESOURCE_EXHAUSTED"},
  {"upload_buffer_bytes", "--upload-buffer-bytes", T::kBytes,
   &S::upload_buffer_bytes, "256MiB",
   1, 9.0e18, "Bytes of upload messages the server holds at once over all "
   "upload streams; a stream waits (its client held back by flow control) "
   "before reading its next message while they are spent. With "
   "--grpc-memory-quota, bounds the memory uploads take"},
  {"max_concurrent_streams", "--max-concurrent-streams", T::kInt,
   &S::max_concurrent_streams, "100",
   1, 1 << 30, "Calls one client connection may have open at once (HTTP/2 "
   "streams); the client queues further ones"},
  {"grpc_memory_quota", "--grpc-memory-quota", T::kBytes,
   &S::grpc_memory_quota_bytes, "2GiB",
   1 << 20, 9.0e18, "Memory gRPC may use for its buffers over all "
   "connections (its ResourceQuota); under pressure it shrinks flow-control "
   "windows and refuses new calls"},
  {"grpc_bdp_probe", "--grpc-bdp-probe", T::kBool, &S::grpc_bdp_probe,
   "false", 0, 0, "Let gRPC grow each connection's receive window to the "
   "measured bandwidth-delay product (true or false). Off, an upload's window "
   "still opens to the message it reads, and uploading connections buffer "
   "far less (on a 2-core test machine, 8 uploads at once peaked at half the "
   "memory); turn it on if uploads over long-distance links are slow"},
  {"max_connection_idle_seconds", "--max-connection-idle-seconds",
   T::kSeconds, &S::max_connection_idle_seconds, "900",
   0.01, 1e9, "Close a client connection that has had no call for this long "
   "(the client reconnects on its next call)"},
  {"quotas.defaults.max_stored_bytes", "--quota-bytes", T::kBytes,
   &S::quota_max_stored_bytes, "0",
   0, 9.0e18, "Every tenant's quota of stored chunk bytes (after "
   "deduplication; deleted checkpoints give their bytes back once garbage "
   "collection frees their chunks). An upload that would pass it is refused "
   "with RESOURCE_EXHAUSTED before anything is committed. 0: unlimited"},
  {"quotas.defaults.max_upload_streams", "--quota-upload-streams", T::kInt,
   &S::quota_max_upload_streams, "0",
   0, 1 << 30, "Upload streams every tenant may have open at once; one more "
   "is refused with RESOURCE_EXHAUSTED. 0: unlimited"},
  {"metrics_listen", "--metrics-listen", T::kString, &S::metrics_listen, "",
   0, 0, "HOST:PORT to serve Prometheus metrics on, at /metrics over plain "
   "HTTP (port 0 picks a free port, logged as event=metrics_listening); "
   "empty: no metrics endpoint. The metrics name tenants but hold no "
   "checkpoint data; keep the port on a trusted network "
   "(docs/operations.md lists every metric)"},
  {"log_level", "--log-level", T::kString, &S::log_level, "info",
   0, 0, "Least severe log lines written to stderr: debug, info, warning or "
   "error. Every line is logfmt (ts=... level=... event=... key=value; see "
   "docs/operations.md); debug adds a line per successful call and gRPC "
   "core's own lines"},
  {"probe_tls_ca", "--probe-tls-ca", T::kString, &S::probe_tls_ca, "",
   0, 0, "--health-probe of a TLS server: PEM CA certificates to verify the "
   "server's certificate with"},
  {"probe_tls_cert", "--probe-tls-cert", T::kString, &S::probe_tls_cert, "",
   0, 0, "--health-probe of a mutual-TLS server: the probe's PEM client "
   "certificate (needs --probe-tls-key)"},
  {"probe_tls_key", "--probe-tls-key", T::kString, &S::probe_tls_key, "",
   0, 0, "--health-probe: the PEM private key of --probe-tls-cert"},
  {"probe_tls_server_name", "--probe-tls-server-name", T::kString,
   &S::probe_tls_server_name, "",
   0, 0, "--health-probe of a TLS server: the name its certificate must "
   "carry, when not the host the probe dials (the --listen host, or "
   "127.0.0.1 / ::1 for a wildcard address)"},
};
// clang-format on

template <typename... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <typename... F>
Overloaded(F...) -> Overloaded<F...>;

std::string FormatDouble(double value) {
  char buffer[64];
  auto [end, error] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  if (error != std::errc()) return absl::StrCat(value);
  return std::string(buffer, end);
}

absl::Status CheckRange(const ServerSetting& setting, double value,
                        absl::string_view text) {
  if (value >= setting.min && value <= setting.max) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("'", text, "' is out of range: must be from ",
                   setting.type == T::kBytes
                       ? FormatByteSize(static_cast<uint64_t>(setting.min))
                       : FormatDouble(setting.min),
                   " to ",
                   setting.type == T::kBytes
                       ? FormatByteSize(static_cast<uint64_t>(setting.max))
                       : FormatDouble(setting.max)));
}

absl::Status ParseWholeNumber(absl::string_view text, int64_t* value) {
  absl::string_view digits = text;
  if (!digits.empty() && (digits[0] == '-' || digits[0] == '+')) {
    digits.remove_prefix(1);
  }
  if (digits.empty() || !std::all_of(digits.begin(), digits.end(), [](char c) {
        return absl::ascii_isdigit(c);
      })) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is not a whole number"));
  }
  if (!absl::SimpleAtoi(text, value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is out of range"));
  }
  return absl::OkStatus();
}

// A byte size that fits the int64_t fields.
absl::Status ParseBytes(absl::string_view text, int64_t* value) {
  CKPT_ASSIGN_OR_RETURN(uint64_t bytes, ParseByteCount(text));
  if (bytes > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is too large"));
  }
  *value = static_cast<int64_t>(bytes);
  return absl::OkStatus();
}

}  // namespace

ServerSettings::ServerSettings() {
  for (const ServerSetting& setting : ServerSettingTable()) {
    absl::Status status =
        ParseServerSetting(setting, setting.default_value, this);
    // A wrong default is a programming error, caught by every test.
    if (!status.ok()) std::abort();
  }
}

std::span<const ServerSetting> ServerSettingTable() { return kRows; }

const ServerSetting* FindServerSetting(absl::string_view key) {
  for (const ServerSetting& setting : kRows) {
    if (key == setting.key) return &setting;
  }
  return nullptr;
}

absl::Status ParseServerSetting(const ServerSetting& setting,
                                absl::string_view text,
                                ServerSettings* settings) {
  switch (setting.type) {
    case T::kString:
      settings->*std::get<std::string S::*>(setting.field) = std::string(text);
      return absl::OkStatus();
    case T::kBool:
      if (absl::EqualsIgnoreCase(text, "true")) {
        settings->*std::get<bool S::*>(setting.field) = true;
      } else if (absl::EqualsIgnoreCase(text, "false")) {
        settings->*std::get<bool S::*>(setting.field) = false;
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("'", text, "' is not true or false"));
      }
      return absl::OkStatus();
    case T::kInt:
    case T::kBytes: {
      int64_t value = 0;
      CKPT_RETURN_IF_ERROR(setting.type == T::kInt
                               ? ParseWholeNumber(text, &value)
                               : ParseBytes(text, &value));
      CKPT_RETURN_IF_ERROR(
          CheckRange(setting, static_cast<double>(value), text));
      settings->*std::get<int64_t S::*>(setting.field) = value;
      return absl::OkStatus();
    }
    case T::kSeconds: {
      double value = 0;
      if (text.empty() || !absl::SimpleAtod(text, &value) ||
          !std::isfinite(value) ||
          !(absl::ascii_isdigit(text.front()) || text.front() == '-' ||
            text.front() == '+' || text.front() == '.')) {
        return absl::InvalidArgumentError(
            absl::StrCat("'", text, "' is not a number of seconds"));
      }
      CKPT_RETURN_IF_ERROR(CheckRange(setting, value, text));
      settings->*std::get<double S::*>(setting.field) = value;
      return absl::OkStatus();
    }
  }
  return absl::InternalError("unknown setting type");
}

std::string FormatServerSetting(const ServerSetting& setting,
                                const ServerSettings& settings) {
  if (setting.type == T::kBytes) {
    // Never negative: every kBytes row's range starts at 0 or more.
    return FormatByteSize(
        static_cast<uint64_t>(settings.*std::get<int64_t S::*>(setting.field)));
  }
  return std::visit(
      Overloaded{
          [&](std::string S::*field) { return settings.*field; },
          [&](bool S::*field) {
            return std::string(settings.*field ? "true" : "false");
          },
          [&](int64_t S::*field) { return absl::StrCat(settings.*field); },
          [&](double S::*field) { return FormatDouble(settings.*field); }},
      setting.field);
}

}  // namespace ckpt::server
