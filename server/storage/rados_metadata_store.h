// RadosMetadataStore: the MetadataStore on a Ceph RADOS pool, shared by
// every server that uses the pool, with cluster-wide leased locks (cls_lock)
// and fencing: a write from a server whose lock lapsed is refused.
//
// Layout (RADOS namespace Options::name_space, "meta" by default):
//   job/<name>     omap: "j" job record, "c\0"+step header, "p\0"+step copy
//                  of a pending header, "s\0"+step+rank shard, "e\0"+seq
//                  event, "n" last event sequence (steps, ranks and
//                  sequences big-endian as in keys.h, so omap order is
//                  step/rank/sequence order). Lock "ckpt.job".
//   tenant/<name>  omap: "t" tenant record. Lock "ckpt.tenant".
//   jobs           omap keys: every job name ever written (ListJobs' index).
//   lock/gc        only the lock "ckpt.gc" (LockCollection).
// docs/architecture.md ("Metadata on Ceph RADOS") explains the costs.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "server/storage/metadata_store.h"
#include "server/storage/rados_cluster.h"

namespace ckpt::server {

// Thread-safe. A batch's ops on one object are one atomic RADOS write; a
// batch that touches several objects (several jobs, or a job and a tenant;
// the service never sends one) is applied object by object in the order
// each object first appears, so an error after the first object leaves the
// objects before it applied.
//
// Every write to a job or tenant object carries, in the same RADOS op, the
// check that this process holds the object's lock (cls_lock assert_locked).
// When this process holds it (LockJob / LockTenant), Apply uses that lock;
// when it does not, Apply takes the lock for the write and releases it
// after, so writes from all servers are serialized and fenced either way.
//
// ForEachShard does not read one snapshot: it reads job by job, page by
// page. A shard that exists for the whole scan is seen; one added or
// removed during the scan may or may not be. Garbage collection tolerates
// that (MarkUsed before a commit, and a chunk hold far above a job lease).
class RadosMetadataStore final : public MetadataStore {
 public:
  struct Options {
    // How long a job, tenant or collection lock lasts unless renewed (only
    // the collection lock is renewed, every lease/3). A server that stalls
    // longer loses its job lock, and its next Apply is refused.
    // Default: 15 s.
    absl::Duration lock_lease = absl::Seconds(15);
    // How long LockJob, LockTenant and Apply wait for another holder before
    // UNAVAILABLE. Must exceed lock_lease, so that the lock of a crashed
    // holder is taken over instead of refused; a smaller value is raised
    // to lock_lease + 1 s. Default: 20 s.
    absl::Duration lock_wait = absl::Seconds(20);
    // The time Lease::Check judges lease expiry by. Lock waits and
    // renewal periods are real time whatever it is (they sleep), so a
    // FakeClock never makes a wait endless. Default: the real clock.
    Clock* clock = nullptr;
    // The RADOS namespace of every object above. Tests give each case its
    // own. Default: "meta".
    std::string name_space = "meta";
  };

  // REQUIRES: `cluster` outlives the store, and the store outlives every
  // Lease it hands out.
  RadosMetadataStore(RadosCluster* cluster, Options options);
  ~RadosMetadataStore() override;
  RadosMetadataStore(const RadosMetadataStore&) = delete;
  RadosMetadataStore& operator=(const RadosMetadataStore&) = delete;

  bool IsShared() const override { return true; }
  absl::StatusOr<std::unique_ptr<Lease>> LockJob(
      absl::string_view job) override;
  absl::StatusOr<std::unique_ptr<Lease>> LockTenant(
      absl::string_view tenant) override;
  absl::StatusOr<std::unique_ptr<Lease>> LockCollection() override;

  absl::StatusOr<std::optional<JobRecord>> GetJob(
      absl::string_view job) override;
  // Reads the index, then every job object's record in parallel; a name
  // whose object holds no job record (only checkpoints, or only a lock) is
  // skipped.
  absl::StatusOr<std::vector<JobRecord>> ListJobs() override;
  absl::StatusOr<std::optional<TenantRecord>> GetTenant(
      absl::string_view tenant) override;
  absl::StatusOr<CheckpointRecord> GetCheckpoint(absl::string_view job,
                                                 int64_t step) override;
  absl::StatusOr<std::vector<CheckpointRecord>> ListCheckpoints(
      absl::string_view job) override;
  // One omap read per job of the pending copies ("p\0" keys), in parallel.
  absl::StatusOr<std::vector<CheckpointRecord>> ListPending() override;
  absl::StatusOr<std::vector<ShardManifest>> GetShards(absl::string_view job,
                                                       int64_t step) override;
  absl::Status ForEachShard(
      absl::FunctionRef<absl::Status(absl::string_view job, int64_t step,
                                     const ShardManifest& shard)>
          fn) override;
  absl::StatusOr<std::vector<JobEvent>> ListEvents(absl::string_view job,
                                                   size_t limit) override;
  absl::Status Apply(const MetadataBatch& batch) override;

  // The object (namespace/name) whose lock LockJob(job) takes: for
  // messages and tests.
  std::string JobObject(absl::string_view job) const;

 private:
  class ObjectLease;
  struct ObjectGroup;
  struct LockSpec {
    std::string oid;
    std::string lock_name;
    std::string what;  // "job t/j", for messages
  };

  absl::StatusOr<std::unique_ptr<ObjectLease>> Acquire(const LockSpec& spec,
                                                       bool wait, bool renew);
  // The cookie of this process's lock on `oid`, if it holds one.
  // Threads of this process locking one object queue here first, so only
  // the head of the queue polls the cluster lock (and waits on a local
  // mutex, not on backoff). UNAVAILABLE after lock_wait.
  absl::Status TakeTurn(const std::string& oid, absl::string_view what);
  void EndTurn(const std::string& oid);
  // LockJob/LockTenant: the turn, then the cluster lock, registered.
  absl::StatusOr<std::unique_ptr<Lease>> LockRegistered(std::string oid,
                                                        const char* lock_name,
                                                        std::string what);
  std::optional<std::string> HeldCookie(const std::string& oid);
  void Forget(const std::string& oid, const std::string& cookie);
  absl::Status EnsureIndexed(absl::string_view job);
  absl::Status ApplyToObject(const ObjectGroup& group);

  RadosCluster* const cluster_;
  const Options options_;

  absl::Mutex mu_;
  // Objects this process holds locked (LockJob, LockTenant), and with what
  // cookie: Apply's fence names it.
  std::map<std::string, std::string> held_ ABSL_GUARDED_BY(mu_);
  // Jobs this process has written to the index.
  std::set<std::string, std::less<>> indexed_ ABSL_GUARDED_BY(mu_);
  // One writer per object in this process: Apply reads (the last event
  // sequence, shard keys) before it writes, and threads sharing one
  // held lock must not interleave there.
  struct Writer {
    absl::Mutex mu;
    int users = 0;
  };
  std::map<std::string, std::unique_ptr<Writer>> writers_ ABSL_GUARDED_BY(mu_);
  // TakeTurn's queues, per object, while anyone is in one.
  std::map<std::string, std::unique_ptr<Writer>> turns_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ckpt::server
