// CrashWorkload: the client traffic of the crash tests (T1, T2). Several
// jobs save concurrently, each step by several ranks on their own threads
// through the real client library (Client::SaveShard), with about half of
// each shard's chunks unchanged since the previous step so that dedup is
// exercised; jobs also prune (max_to_keep), delete old checkpoints, copy
// checkpoints to another job and run garbage collection. Every operation goes
// into the history (history.h) with the SHA-256 of every tensor sent.
// Deterministic per seed in what it sends; how far it gets before the server
// dies is not.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "client/client.h"
#include "tests/reliability/history.h"

namespace ckpt::reliability {

struct WorkloadOptions {
  int jobs = 3;
  int ranks = 4;
  // Each rank's shard size is drawn once per run from [min, max].
  size_t min_shard_bytes = 256 << 10;
  size_t max_shard_bytes = 2 << 20;
  size_t chunk_bytes = 64 << 10;
  // Share of a shard's chunks rewritten each step (the rest dedup against
  // the previous step).
  double change_fraction = 0.5;
  // Prune each job to max_to_keep after every prune_every-th step; 0: no
  // pruning.
  int max_to_keep = 3;
  int prune_every = 2;
  // Delete the job's oldest acknowledged checkpoint every delete_every-th
  // step; 0: never.
  int delete_every = 7;
  // Job 0 runs a garbage collection every gc_every-th step; 0: never.
  int gc_every = 3;
  // Every copy_every-th step a job copies its newest acknowledged
  // checkpoint to the job NAME-copy on the same server (Client::Copy);
  // 0: never.
  int copy_every = 0;
  // Every abandon_every-th step of a job is declared with one rank more
  // than save it, with a 1 s lease: it stays pending until the server's
  // lease expiry aborts it (and must never be listed). 0: never.
  int abandon_every = 0;
  // Lease of each pending checkpoint, so that those a crash left behind are
  // aborted soon after the restart.
  absl::Duration lease = absl::Seconds(10);
};

// Counts over a run.
struct WorkloadStats {
  std::atomic<int64_t> saves_ok{0};
  std::atomic<int64_t> saves_failed{0};
  // Of those, refused with RESOURCE_EXHAUSTED (a quota or limit).
  std::atomic<int64_t> saves_refused{0};
  std::atomic<int64_t> saves_unknown{0};
  std::atomic<int64_t> prunes{0};
  std::atomic<int64_t> deletes{0};
  std::atomic<int64_t> gcs{0};
  // Collections that deleted nothing because a checkpoint begun before the
  // server started was still pending (GcReport::skipped_tenants): they
  // never reach the sweep.
  std::atomic<int64_t> gcs_skipped{0};
  std::atomic<int64_t> copies{0};
  std::atomic<int64_t> bytes_sent{0};
  std::atomic<int64_t> bytes_saved{0};  // logical bytes of the ok saves
};

class CrashWorkload {
 public:
  // `history` must outlive the workload.
  CrashWorkload(const WorkloadOptions& options, uint64_t seed,
                HistoryRecorder& history);
  ~CrashWorkload();
  CrashWorkload(const CrashWorkload&) = delete;
  CrashWorkload& operator=(const CrashWorkload&) = delete;

  // Job names, "crash/j0" ..., and their copies' ("crash/j0-copy").
  std::vector<std::string> JobNames() const;

  // Runs every job on its own thread through `client` until `stop` is set
  // or the job sees a call end with an unknown outcome (the server is
  // gone); returns when every thread has. Steps continue from the previous
  // cycle's.
  void RunCycle(client::Client& client, const std::atomic<bool>& stop);

  const WorkloadStats& stats() const { return stats_; }

 private:
  struct Job;
  void RunJob(Job& job, client::Client& client, const std::atomic<bool>& stop);
  // Saves every rank of `step` at once; false when some call's outcome is
  // unknown.
  bool SaveStep(Job& job, int64_t step, client::Client& client);
  // Prunes job `name` to max_to_keep; removes what went from `acked`.
  bool Prune(const std::string& name, std::deque<int64_t>& acked,
             client::Client& client);
  bool DeleteOldest(Job& job, client::Client& client);
  bool CollectGarbage(client::Client& client);
  bool CopyNewest(Job& job, client::Client& client);

  const WorkloadOptions options_;
  HistoryRecorder& history_;
  std::vector<std::unique_ptr<Job>> jobs_;
  WorkloadStats stats_;
};

}  // namespace ckpt::reliability
