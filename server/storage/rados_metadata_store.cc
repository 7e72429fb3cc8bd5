// RadosMetadataStore's locks (leases, renewal, the per-process map of held
// cookies) and its write path: Apply as one fenced omap write per object.
#include "server/storage/rados_metadata_store.h"

#include <algorithm>
#include <cerrno>
#include <thread>
#include <utility>
#include <variant>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/wire_format.h"
#include "server/storage/keys.h"
#include "server/storage/rados_io.h"
#include "server/storage/rados_lock.h"
#include "server/storage/rados_metadata_omap.h"

namespace ckpt::server {
using namespace rados_meta;  // NOLINT(google-build-using-namespace)

// One cls_lock held by this process. A collection lease renews itself in
// a thread; a job or tenant lease is not renewed, so a holder that stalls
// past it loses it (and the fence then refuses its writes).
class RadosMetadataStore::ObjectLease final : public MetadataStore::Lease {
 public:
  ObjectLease(RadosMetadataStore* store, librados::IoCtx io,
              LockRequest request, absl::Time acquired, bool renew)
      : store_(store),
        io_(std::move(io)),
        request_(std::move(request)),
        renewed_at_(acquired) {
    if (renew) renewer_ = std::thread([this] { RenewUntilStopped(); });
  }

  ~ObjectLease() override {
    if (renewer_.joinable()) {
      {
        absl::MutexLock lock(&mu_);
        stop_ = true;
      }
      renewer_.join();
    }
    if (registered_) store_->Forget(request_.oid, request_.cookie);
    Unlock(io_, request_.oid, request_.name, request_.cookie);
    if (registered_) store_->EndTurn(request_.oid);
  }

  absl::Status Check() const override {
    absl::MutexLock lock(&mu_);
    if (!lost_.ok()) return lost_;
    const absl::Time expiry = renewed_at_ + request_.lease;
    if (request_.clock->Now() >= expiry) {
      return absl::AbortedError(absl::StrCat(
          "the lock on ", request_.what, " (", request_.name,
          ") is lost: its lease ran out at ", absl::FormatTime(expiry),
          "; another server may hold it now"));
    }
    return absl::OkStatus();
  }

  const std::string& cookie() const { return request_.cookie; }
  void set_registered() { registered_ = true; }

 private:
  void RenewUntilStopped() {
    const absl::Duration period = request_.lease / 3;
    mu_.Lock();
    while (!mu_.AwaitWithTimeout(absl::Condition(&stop_), period)) {
      mu_.Unlock();
      const absl::Time sent = request_.clock->Now();
      absl::Status renewed = RenewLock(io_, request_);
      mu_.Lock();
      if (renewed.ok()) {
        renewed_at_ = sent;
      } else if (absl::IsAborted(renewed)) {
        lost_ = renewed;
        CKPT_LOG(Warning, renewed.message());
        break;
      } else {
        // Transient (a slow OSD): the next renewal may still be in time;
        // Check() reports the loss once the lease has run out.
        CKPT_LOG(Warning, renewed.message());
      }
    }
    mu_.Unlock();
  }

  RadosMetadataStore* const store_;
  librados::IoCtx io_;  // its own copy: the renewal thread uses it
  const LockRequest request_;
  bool registered_ = false;
  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time renewed_at_ ABSL_GUARDED_BY(mu_);
  absl::Status lost_ ABSL_GUARDED_BY(mu_);
  std::thread renewer_;
};

// The ops of one batch on one object.
struct RadosMetadataStore::ObjectGroup {
  bool is_job = true;
  std::string name;
  std::vector<const MetadataBatch::Op*> ops;
};

namespace {

Clock* ClockOrReal(Clock* clock) {
  return clock != nullptr ? clock : RealClock::Get();
}

RadosMetadataStore::Options Normalized(RadosMetadataStore::Options options) {
  options.clock = ClockOrReal(options.clock);
  if (options.lock_wait <= options.lock_lease) {
    options.lock_wait = options.lock_lease + absl::Seconds(1);
  }
  return options;
}

// The omap changes of one object, ops folded in order: a later put of a
// key overrides an earlier removal and the other way round.
struct Mutation {
  std::map<std::string, std::string> put;
  std::set<std::string> remove;

  void Put(std::string key, std::string value) {
    remove.erase(key);
    put.insert_or_assign(std::move(key), std::move(value));
  }
  void Remove(const std::string& key) {
    put.erase(key);
    remove.insert(key);
  }
  // Removes what this batch put in [begin, end).
  void RemovePut(const std::string& begin, const std::string& end) {
    for (auto it = put.lower_bound(begin);
         it != put.end() && it->first < end;) {
      remove.insert(it->first);
      it = put.erase(it);
    }
  }
};

// The object an op changes: (is a job, name).
std::pair<bool, std::string> ObjectOf(const MetadataBatch::Op& op) {
  return std::visit(
      [](const auto& o) -> std::pair<bool, std::string> {
        using T = std::decay_t<decltype(o)>;
        if constexpr (std::is_same_v<T, MetadataBatch::PutJobOp>) {
          return {true, o.job.name};
        } else if constexpr (std::is_same_v<T,
                                            MetadataBatch::PutCheckpointOp>) {
          return {true, o.record.job};
        } else if constexpr (std::is_same_v<T, MetadataBatch::AppendEventOp>) {
          return {true, o.event.job};
        } else if constexpr (std::is_same_v<T, MetadataBatch::PutTenantOp>) {
          return {false, o.tenant.name};
        } else {
          return {true, o.job};  // DeleteCheckpointOp, PutShardOp
        }
      },
      op);
}

// Folds a job object's ops into one Mutation, reading what it must: the
// last event sequence, the shard keys of deleted checkpoints and the
// events that trimming drops. REQUIRES: the object's lock is held.
absl::StatusOr<Mutation> JobMutation(
    librados::IoCtx& io, absl::string_view ns, const std::string& oid,
    const std::vector<const MetadataBatch::Op*>& ops) {
  Mutation mutation;
  EventSequencer sequencer;
  auto last_stored = [&](absl::string_view) -> absl::StatusOr<uint64_t> {
    CKPT_ASSIGN_OR_RETURN(std::optional<std::string> value,
                          ReadOmapValue(io, oid, kLastEventKey));
    if (!value.has_value()) return 0;
    return DecodeLastEvent(ns, oid, *value);
  };
  std::optional<uint64_t> last_event;
  for (const MetadataBatch::Op* op : ops) {
    if (const auto* put_job = std::get_if<MetadataBatch::PutJobOp>(op)) {
      mutation.Put(kJobKey, EncodeJobRecord(put_job->job));
    } else if (const auto* put_checkpoint =
                   std::get_if<MetadataBatch::PutCheckpointOp>(op)) {
      const CheckpointRecord& record = put_checkpoint->record;
      std::string value = EncodeCheckpointRecord(record);
      if (record.state == CheckpointState::kPending) {
        mutation.Put(PendingKey(record.step), value);
      } else {
        mutation.Remove(PendingKey(record.step));
      }
      mutation.Put(HeaderKey(record.step), std::move(value));
    } else if (const auto* del =
                   std::get_if<MetadataBatch::DeleteCheckpointOp>(op)) {
      mutation.Remove(HeaderKey(del->step));
      mutation.Remove(PendingKey(del->step));
      const std::string prefix = StepShardPrefix(del->step);
      const std::string end = PrefixSuccessor(prefix);
      mutation.RemovePut(prefix, end);
      CKPT_RETURN_IF_ERROR(ReadOmapKeys(
          io, oid, prefix, end,
          [&](const std::string& key) { mutation.remove.insert(key); }));
    } else if (const auto* put_shard =
                   std::get_if<MetadataBatch::PutShardOp>(op)) {
      mutation.Put(ShardOmapKey(put_shard->step, put_shard->shard.rank),
                   EncodeShard(put_shard->shard));
    } else if (const auto* append =
                   std::get_if<MetadataBatch::AppendEventOp>(op)) {
      JobEvent event = append->event;
      CKPT_ASSIGN_OR_RETURN(event.sequence,
                            sequencer.Next(event.job, last_stored));
      last_event = event.sequence;
      mutation.Put(EventOmapKey(event.sequence), EncodeJobEvent(event));
    }
  }
  if (last_event.has_value()) {
    mutation.Put(kLastEventKey, EncodeVarint64(*last_event));
  }
  for (const EventSequencer::Trim& trim : sequencer.Trims()) {
    const std::string begin = EventOmapKey(0);  // below every sequence
    const std::string end = EventOmapKey(trim.keep_from);
    mutation.RemovePut(begin, end);
    CKPT_RETURN_IF_ERROR(ReadOmapKeys(
        io, oid, begin, end,
        [&](const std::string& key) { mutation.remove.insert(key); }));
  }
  return mutation;
}

}  // namespace

RadosMetadataStore::RadosMetadataStore(RadosCluster* cluster, Options options)
    : cluster_(cluster), options_(Normalized(std::move(options))) {}

RadosMetadataStore::~RadosMetadataStore() = default;

std::string RadosMetadataStore::JobObject(absl::string_view job) const {
  return absl::StrCat(options_.name_space, "/", JobOid(job));
}

absl::StatusOr<std::unique_ptr<RadosMetadataStore::ObjectLease>>
RadosMetadataStore::Acquire(const LockSpec& spec, bool wait, bool renew) {
  LockRequest request{spec.oid,
                      spec.lock_name,
                      NewLockCookie(),
                      spec.what,
                      options_.lock_lease,
                      wait ? options_.lock_wait : absl::ZeroDuration(),
                      options_.clock};
  librados::IoCtx io = IoCtxIn(*cluster_, options_.name_space);
  absl::Time sent;
  CKPT_RETURN_IF_ERROR(LockExclusive(io, request, &sent));
  return std::make_unique<ObjectLease>(this, std::move(io), std::move(request),
                                       sent, renew);
}

absl::Status RadosMetadataStore::TakeTurn(const std::string& oid,
                                          absl::string_view what) {
  Writer* turn;
  {
    absl::MutexLock lock(&mu_);
    std::unique_ptr<Writer>& slot = turns_[oid];
    if (slot == nullptr) slot = std::make_unique<Writer>();
    ++slot->users;
    turn = slot.get();
  }
  if (turn->mu.LockWhenWithTimeout(absl::Condition::kTrue,
                                   options_.lock_wait)) {
    return absl::OkStatus();
  }
  turn->mu.Unlock();  // LockWhenWithTimeout holds it either way
  {
    absl::MutexLock lock(&mu_);
    if (--turn->users == 0) turns_.erase(oid);
  }
  return absl::UnavailableError(
      absl::StrCat("gave up after ", absl::FormatDuration(options_.lock_wait),
                   " waiting for this server's other change of ", what));
}

void RadosMetadataStore::EndTurn(const std::string& oid) {
  absl::MutexLock lock(&mu_);
  auto it = turns_.find(oid);
  if (it == turns_.end()) return;
  it->second->mu.Unlock();
  if (--it->second->users == 0) turns_.erase(it);
}

absl::StatusOr<std::unique_ptr<MetadataStore::Lease>>
RadosMetadataStore::LockRegistered(std::string oid, const char* lock_name,
                                   std::string what) {
  CKPT_RETURN_IF_ERROR(TakeTurn(oid, what));
  absl::StatusOr<std::unique_ptr<ObjectLease>> lease =
      Acquire({oid, lock_name, what}, true, false);
  if (!lease.ok()) {
    EndTurn(oid);
    return lease.status();
  }
  absl::MutexLock lock(&mu_);
  held_.insert_or_assign(oid, (*lease)->cookie());
  (*lease)->set_registered();
  return std::move(lease).value();
}

absl::StatusOr<std::unique_ptr<MetadataStore::Lease>>
RadosMetadataStore::LockJob(absl::string_view job) {
  if (job.empty()) return absl::InvalidArgumentError("empty job name");
  return LockRegistered(JobOid(job), kJobLock, absl::StrCat("job ", job));
}

absl::StatusOr<std::unique_ptr<MetadataStore::Lease>>
RadosMetadataStore::LockTenant(absl::string_view tenant) {
  if (tenant.empty()) return absl::InvalidArgumentError("empty tenant name");
  return LockRegistered(TenantOid(tenant), kTenantLock,
                        absl::StrCat("tenant ", tenant));
}

absl::StatusOr<std::unique_ptr<MetadataStore::Lease>>
RadosMetadataStore::LockCollection() {
  CKPT_ASSIGN_OR_RETURN(
      std::unique_ptr<ObjectLease> lease,
      Acquire({kCollectionOid, kCollectionLock, "garbage collection"}, false,
              true));
  return lease;
}

std::optional<std::string> RadosMetadataStore::HeldCookie(
    const std::string& oid) {
  absl::MutexLock lock(&mu_);
  auto it = held_.find(oid);
  if (it == held_.end()) return std::nullopt;
  return it->second;
}

void RadosMetadataStore::Forget(const std::string& oid,
                                const std::string& cookie) {
  absl::MutexLock lock(&mu_);
  auto it = held_.find(oid);
  if (it != held_.end() && it->second == cookie) held_.erase(it);
}

absl::Status RadosMetadataStore::EnsureIndexed(absl::string_view job) {
  {
    absl::MutexLock lock(&mu_);
    if (indexed_.contains(job)) return absl::OkStatus();
  }
  // Idempotent, so racing writers (here or on other servers) agree.
  librados::IoCtx io = IoCtxIn(*cluster_, options_.name_space);
  std::map<std::string, librados::bufferlist> entry{{std::string(job), {}}};
  CKPT_RETURN_IF_ERROR(
      RadosStatus(io.omap_set(kIndexOid, entry),
                  absl::StrCat("adding job ", job, " to the index")));
  absl::MutexLock lock(&mu_);
  indexed_.insert(std::string(job));
  return absl::OkStatus();
}

absl::Status RadosMetadataStore::Apply(const MetadataBatch& batch) {
  CKPT_RETURN_IF_ERROR(ValidateBatch(batch));
  std::vector<ObjectGroup> groups;
  for (const MetadataBatch::Op& op : batch.ops()) {
    auto [is_job, name] = ObjectOf(op);
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) {
      return g.is_job == is_job && g.name == name;
    });
    if (it == groups.end()) {
      groups.push_back(ObjectGroup{is_job, std::move(name), {}});
      it = groups.end() - 1;
    }
    it->ops.push_back(&op);
  }
  for (const ObjectGroup& group : groups) {
    CKPT_RETURN_IF_ERROR(ApplyToObject(group));
  }
  return absl::OkStatus();
}

absl::Status RadosMetadataStore::ApplyToObject(const ObjectGroup& group) {
  const LockSpec spec = group.is_job
                            ? LockSpec{JobOid(group.name), kJobLock,
                                       absl::StrCat("job ", group.name)}
                            : LockSpec{TenantOid(group.name), kTenantLock,
                                       absl::StrCat("tenant ", group.name)};
  // One writer per object in this process (see writers_).
  Writer* writer;
  {
    absl::MutexLock lock(&mu_);
    std::unique_ptr<Writer>& slot = writers_[spec.oid];
    if (slot == nullptr) slot = std::make_unique<Writer>();
    writer = slot.get();
    ++writer->users;
  }
  writer->mu.Lock();
  absl::Cleanup release = [&] {
    writer->mu.Unlock();
    absl::MutexLock lock(&mu_);
    if (--writer->users == 0) writers_.erase(spec.oid);
  };

  if (group.is_job) CKPT_RETURN_IF_ERROR(EnsureIndexed(group.name));
  // This process's lock on the object, or one taken for this write alone.
  std::unique_ptr<ObjectLease> own;
  std::string cookie;
  if (std::optional<std::string> held = HeldCookie(spec.oid)) {
    cookie = *std::move(held);
  } else {
    CKPT_ASSIGN_OR_RETURN(own, Acquire(spec, true, false));
    cookie = own->cookie();
  }
  librados::IoCtx io = IoCtxIn(*cluster_, options_.name_space);
  Mutation mutation;
  if (group.is_job) {
    CKPT_ASSIGN_OR_RETURN(
        mutation, JobMutation(io, options_.name_space, spec.oid, group.ops));
  } else {
    for (const MetadataBatch::Op* op : group.ops) {
      mutation.Put(
          kTenantKey,
          EncodeTenantRecord(std::get<MetadataBatch::PutTenantOp>(*op).tenant));
    }
  }
  librados::ObjectWriteOperation op;
  AddLockFence(op, spec.lock_name, cookie);
  if (!mutation.remove.empty()) op.omap_rm_keys(mutation.remove);
  if (!mutation.put.empty()) {
    std::map<std::string, librados::bufferlist> values;
    for (auto& [key, value] : mutation.put) {
      values[key].append(value.data(), value.size());
    }
    op.omap_set(values);
  }
  const int rc = io.operate(spec.oid, &op);
  if (rc == -EBUSY || rc == -ENOENT) {
    return absl::AbortedError(absl::StrCat(
        "writing ", spec.what, ": this server's lock ", spec.lock_name,
        " on RADOS object ", options_.name_space, "/", spec.oid,
        " was lost (its lease ran out, or another server took it); nothing "
        "was written. Now held by ",
        DescribeLockHolder(io, spec.oid, spec.lock_name)));
  }
  return RadosStatus(rc,
                     absl::StrCat("writing ", spec.what, " to RADOS object ",
                                  options_.name_space, "/", spec.oid));
}

}  // namespace ckpt::server
