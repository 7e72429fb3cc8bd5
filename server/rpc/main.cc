// ckpt-server: serves ckpt.v1.CheckpointService over a RocksDB store.
//
// Once listening it prints exactly one line to stdout,
//   ckpt-server listening on HOST:PORT
// (with the chosen port when --listen asked for port 0), so scripts and tests
// can start it with `--listen 127.0.0.1:0` and read the port. SIGTERM and
// SIGINT shut it down gracefully.

#include <malloc.h>
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/rpc/server.h"
#include "server/service/checkpoint_service.h"
#include "server/storage/rocksdb_store.h"

namespace ckpt::server {
namespace {

struct Flags {
  std::string data_dir;
  std::string listen = "127.0.0.1:7070";
  double lease_check_interval_seconds = 5;
  int64_t default_lease_seconds = 1800;
  double gc_interval_seconds = 3600;
  int64_t chunk_hold_seconds = 1800;
  bool direct_io = true;
  bool shared_memory_reads = true;
  int request_threads = 0;
  int maintenance_threads = 2;
};

// Host part of HOST:PORT (brackets of an IPv6 literal kept).
std::string HostOf(const std::string& address) {
  size_t colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

// Runs `work` every `interval` on its own thread until destroyed; the
// destructor ends the wait at once (not after a sleep) and joins.
class Periodic {
 public:
  template <typename Work>
  Periodic(absl::Duration interval, Work work)
      : thread_([this, interval, work = std::move(work)] {
          while (!stop_.WaitForNotificationWithTimeout(interval)) work();
        }) {}
  ~Periodic() {
    stop_.Notify();
    thread_.join();
  }

 private:
  absl::Notification stop_;
  std::thread thread_;  // last: starts once stop_ exists
};

void ExpireLeases(CheckpointService* service) {
  absl::StatusOr<int> expired = service->ExpireLeases();
  if (!expired.ok()) {
    CKPT_LOG(Warning, "lease expiry failed: ", expired.status().ToString());
  } else if (*expired > 0) {
    CKPT_LOG(Info, "aborted ", *expired,
             " pending checkpoint(s) whose lease expired");
  }
}

// The collection logs its own summary.
void CollectGarbage(CheckpointService* service) {
  absl::StatusOr<GcReport> report = service->CollectGarbage({});
  if (!report.ok()) {
    CKPT_LOG(Warning, "background gc failed: ", report.status().ToString());
  }
}

absl::Status Run(const Flags& flags, const sigset_t& shutdown_signals) {
  RocksDbStoreOptions store_options;
  store_options.direct_io = flags.direct_io;
  CKPT_ASSIGN_OR_RETURN(std::unique_ptr<RocksDbStore> store,
                        RocksDbStore::Open(flags.data_dir, store_options));
  ServiceOptions service_options;
  service_options.default_lease = absl::Seconds(flags.default_lease_seconds);
  service_options.chunk_hold = absl::Seconds(flags.chunk_hold_seconds);
  CheckpointService service(store.get(), store.get(), RealClock::Get(),
                            service_options);

  ServerOptions server_options;
  server_options.limits.shared_file_reads = flags.shared_memory_reads;
  server_options.request_threads = flags.request_threads;
  server_options.maintenance_threads = flags.maintenance_threads;
  server_options.listen_address = flags.listen;
  CKPT_ASSIGN_OR_RETURN(std::unique_ptr<CheckpointServer> server,
                        CheckpointServer::Start(server_options, &service));

  std::optional<Periodic> lease_reaper;
  lease_reaper.emplace(absl::Seconds(flags.lease_check_interval_seconds),
                       [&service] { ExpireLeases(&service); });
  std::optional<Periodic> collector;
  if (flags.gc_interval_seconds > 0) {
    collector.emplace(absl::Seconds(flags.gc_interval_seconds),
                      [&service] { CollectGarbage(&service); });
  }

  const std::string address =
      absl::StrCat(HostOf(flags.listen), ":", server->port());
  CKPT_LOG(Info, "serving data dir ", flags.data_dir, " on ", address, " with ",
           RequestThreads(server_options), " request and ",
           server_options.maintenance_threads, " maintenance threads");
  std::cout << "ckpt-server listening on " << address << std::endl;

  // The signals are blocked in every thread (see main), so they stay pending
  // until this sigwait takes one: no work ever runs in a signal handler.
  int signal_number = 0;
  sigwait(&shutdown_signals, &signal_number);
  CKPT_LOG(Info, "received signal ", signal_number, ", shutting down");

  server->Shutdown(absl::Now() + absl::Seconds(10));
  server->Wait();
  collector.reset();  // waits for a collection in progress
  lease_reaper.reset();
  server.reset();
  store.reset();  // flushes and closes the database
  CKPT_LOG(Info, "shut down cleanly");
  return absl::OkStatus();
}

}  // namespace
}  // namespace ckpt::server

int main(int argc, char** argv) {
  // Chunks pass through many multi-MiB buffers (gRPC messages, memtable
  // arenas). glibc would mmap and unmap each, so every chunk would fault in
  // fresh pages, which costs more than the bytes' copy (several microseconds
  // a page on virtual machines). Keep such buffers in the heap and reuse it.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
  ckpt::server::Flags flags;
  CLI::App app{
      "ckpt-server: stores distributed training checkpoints (gRPC service "
      "ckpt.v1.CheckpointService).\nPrints 'ckpt-server listening on "
      "HOST:PORT' once ready; SIGTERM or SIGINT shut it down gracefully."};
  app.add_option("--data-dir", flags.data_dir,
                 "Directory of the RocksDB database (created if missing)")
      ->required();
  app.add_option("--listen", flags.listen,
                 "HOST:PORT to listen on; port 0 picks a free port, printed "
                 "on stdout")
      ->capture_default_str();
  app.add_option("--lease-check-interval", flags.lease_check_interval_seconds,
                 "Seconds between checks that abort pending checkpoints "
                 "whose lease expired")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--default-lease-seconds", flags.default_lease_seconds,
                 "Lease of a pending checkpoint when the client asks for "
                 "none; renewed by every BeginCheckpoint and CommitShard")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--gc-interval", flags.gc_interval_seconds,
                 "Seconds between background garbage collections (deleting "
                 "chunks no checkpoint references); 0 turns them off "
                 "(`ckpt gc` still runs one on demand)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--chunk-hold-seconds", flags.chunk_hold_seconds,
                 "How long garbage collection spares an unreferenced chunk "
                 "after a save last uploaded or asked about it: the longest "
                 "a rank may take from upload to commit")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--direct-io", flags.direct_io,
                 "Read and write chunk files with O_DIRECT, bypassing the "
                 "page cache (true or false); ignored where the file system "
                 "has no O_DIRECT, e.g. tmpfs")
      ->capture_default_str();
  app.add_option("--shared-memory-reads", flags.shared_memory_reads,
                 "Let clients on this host restore through shared memory: "
                 "the server writes verified chunks straight into the "
                 "client's memory instead of sending them over the socket "
                 "(true or false). The client passes its memory file (a "
                 "sealed memfd) to the server over a Unix socket with an "
                 "abstract random name; see docs/security.md")
      ->capture_default_str();
  app.add_option("--request-threads", flags.request_threads,
                 "Threads that do the work of client calls (saves, restores, "
                 "listings), so that the network threads never wait on "
                 "hashing or the disk; calls beyond them wait in line. 0: "
                 "twice the machine's cores, at least 4")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--maintenance-threads", flags.maintenance_threads,
                 "Threads for garbage collection and verify calls, which may "
                 "read the whole store for minutes; kept apart so they never "
                 "slow the other calls. Further such calls wait in line")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  // Block the shutdown signals before any thread exists so every thread
  // (gRPC's included) inherits the mask and only sigwait receives them.
  sigset_t shutdown_signals;
  sigemptyset(&shutdown_signals);
  sigaddset(&shutdown_signals, SIGTERM);
  sigaddset(&shutdown_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &shutdown_signals, nullptr);

  absl::Status status = ckpt::server::Run(flags, shutdown_signals);
  if (!status.ok()) {
    std::cerr << "ckpt-server: " << status.ToString() << std::endl;
    return 1;
  }
  return 0;
}
