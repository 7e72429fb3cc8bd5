// CheckpointService, deciding what a job keeps: SetRetentionPolicy,
// GetRetentionPolicy, PinCheckpoint, SetCheckpointTags (tags are what
// keep-tag rules keep by), Prune, DeleteCheckpoint, and Decide /
// DecideAndDelete, which BeginCheckpoint and CommitShard (lifecycle.cc)
// also use to apply the policy in their own batch.
//
// DeleteCheckpoint lives here rather than with the lifecycle: like Prune
// and PinCheckpoint it acts on checkpoints that are no longer being saved
// (committed or aborted; a pending one is refused), and it upholds the rule
// retention upholds, that a checkpoint stays while another one's deltas
// need it (CheckpointRecord::base_steps).
//
// Locking: SetRetentionPolicy, PinCheckpoint, SetCheckpointTags, Prune (a
// dry run too) and
// DeleteCheckpoint hold lifecycle_mu_ for the whole of their
// read-decide-write, so a decision is applied to the store it was made on;
// DecideAndDelete requires it (Decide is pure). GetRetentionPolicy only
// reads and takes no lock.
#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/failpoint.h"
#include "common/logging.h"
#include "common/quote.h"
#include "common/status_macros.h"
#include "common/tags.h"
#include "server/service/checkpoint_service.h"
#include "server/service/job_events.h"
#include "server/service/service_internal.h"

namespace ckpt::server {

using internal::DeletedSteps;
using internal::Describe;
using internal::ValidateStep;

namespace {

// The committed checkpoint (job, step) that PinCheckpoint and
// SetCheckpointTags change: NOT_FOUND when absent or aborted,
// FAILED_PRECONDITION "... is pending; only committed ones can be <done>".
absl::StatusOr<CheckpointRecord> CommittedRecord(MetadataStore& metadata,
                                                 absl::string_view job,
                                                 int64_t step,
                                                 absl::string_view done) {
  absl::StatusOr<CheckpointRecord> record = metadata.GetCheckpoint(job, step);
  if (absl::IsNotFound(record.status()) ||
      (record.ok() && record->state == CheckpointState::kAborted)) {
    return absl::NotFoundError(
        absl::StrCat("job '", job, "' has no committed checkpoint ", step));
  }
  CKPT_RETURN_IF_ERROR(record.status());
  if (record->state == CheckpointState::kPending) {
    return absl::FailedPreconditionError(absl::StrCat(
        Describe(job, step), " is pending; only committed ones can be ", done));
  }
  return record;
}

}  // namespace

absl::StatusOr<std::vector<RetentionDecision>> CheckpointService::Decide(
    const JobRecord& job, const RetentionPolicy& policy,
    const std::vector<CheckpointRecord>& records, absl::Time now,
    std::vector<std::string>* warnings) {
  std::vector<RetentionInput> inputs;
  // A pending checkpoint whose committed ranks use a base needs it kept.
  std::map<int64_t, std::vector<int64_t>> pending_bases;
  for (const auto& record : records) {
    if (record.state == CheckpointState::kPending &&
        !record.base_steps.empty()) {
      pending_bases[record.step] = record.base_steps;
    }
    if (record.state != CheckpointState::kCommitted) continue;
    inputs.push_back(ToRetentionInput(record, record.pinned));
  }
  if (warnings != nullptr) *warnings = RetentionWarnings(policy, inputs);
  return EvaluateRetention(policy, std::move(inputs), job.first_checkpoint_time,
                           pending_bases, now);
}

absl::StatusOr<std::vector<RetentionDecision>>
CheckpointService::DecideAndDelete(const JobRecord& job,
                                   const RetentionPolicy& policy,
                                   MetadataBatch* batch,
                                   std::vector<std::string>* warnings) {
  CKPT_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> records,
                        metadata_->ListCheckpoints(job.name));
  CKPT_ASSIGN_OR_RETURN(std::vector<RetentionDecision> decisions,
                        Decide(job, policy, records, clock_->Now(), warnings));
  for (int64_t step : DeletedSteps(decisions)) {
    batch->DeleteCheckpoint(job.name, step);
  }
  return decisions;
}

absl::StatusOr<AppliedPolicy> CheckpointService::ApplicablePolicy(
    JobRecord* job, bool* origin_filled) {
  if (origin_filled != nullptr) *origin_filled = false;
  if (job->retention_policy.has_value() && !job->policy_origin.has_value()) {
    CKPT_ASSIGN_OR_RETURN(std::vector<JobEvent> events,
                          metadata_->ListEvents(job->name, kMaxEventsPerJob));
    job->policy_origin = InferPolicyOrigin(*job->retention_policy, events);
    if (origin_filled != nullptr) *origin_filled = true;
  }
  CKPT_ASSIGN_OR_RETURN(std::optional<TenantRecord> tenant,
                        metadata_->GetTenant(TenantOf(job->name)));
  return PolicyThatApplies(*job, tenant);
}

absl::StatusOr<std::vector<int64_t>> CheckpointService::SetRetentionPolicy(
    absl::string_view job, const RetentionPolicy& policy, const Actor& actor,
    std::vector<std::string>* warnings) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  CKPT_RETURN_IF_ERROR(ValidateRetentionPolicy(policy));
  CKPT_ASSIGN_OR_RETURN(auto job_lock, metadata_->LockJob(job));
  absl::MutexLock lock(&lifecycle_mu_);
  const absl::Time now = clock_->Now();
  CKPT_ASSIGN_OR_RETURN(std::optional<JobRecord> stored,
                        metadata_->GetJob(job));
  // An operator may set the policy before the job's first save.
  JobRecord record = stored.has_value() ? *std::move(stored)
                                        : MakeJobRecord(std::string(job), now);
  bool origin_filled = false;
  CKPT_RETURN_IF_ERROR(ApplicablePolicy(&record, &origin_filled).status());
  MetadataBatch batch;
  const bool operators_already =
      record.retention_policy == policy && record.policy_origin.has_value() &&
      record.policy_origin->source == PolicyOrigin::Source::kOperator;
  if (!operators_already) {
    batch.AppendEvent(PolicySetEvent(job, policy, now, actor.principal, ""));
    record.retention_policy = policy;
    record.policy_origin =
        PolicyOrigin{PolicyOrigin::Source::kOperator, actor.principal, now,
                     /*inferred=*/false};
    // A writer's policy ignored before may be ignored for another reason
    // now: report it again.
    record.ignored_policy_digests.clear();
  }
  if (!stored.has_value() || !operators_already || origin_filled) {
    batch.PutJob(record);
  }
  CKPT_ASSIGN_OR_RETURN(std::vector<RetentionDecision> decisions,
                        DecideAndDelete(record, policy, &batch, warnings));
  AppendPrunedEvents(job, "retention as the policy was set", policy, decisions,
                     now, actor.principal, &batch);
  CKPT_RETURN_IF_ERROR(metadata_->Apply(batch));
  LogDeletions(job, "new retention policy", actor.principal, decisions);
  return DeletedSteps(decisions);
}

absl::StatusOr<AppliedPolicy> CheckpointService::GetRetentionPolicy(
    absl::string_view job) {
  CKPT_ASSIGN_OR_RETURN(JobRecord record, GetJobRecord(job));
  return ApplicablePolicy(&record);
}

absl::Status CheckpointService::SetTenantDefaultPolicy(
    absl::string_view tenant, const RetentionPolicy& policy,
    const Actor& actor) {
  CKPT_RETURN_IF_ERROR(ValidateTenantName(tenant));
  CKPT_RETURN_IF_ERROR(ValidateRetentionPolicy(policy));
  CKPT_ASSIGN_OR_RETURN(auto tenant_lock, metadata_->LockTenant(tenant));
  absl::MutexLock lock(&lifecycle_mu_);
  CKPT_ASSIGN_OR_RETURN(std::optional<TenantRecord> record,
                        metadata_->GetTenant(tenant));
  if (!record.has_value()) {
    record.emplace();
    record->name = std::string(tenant);
  }
  if (record->default_policy == policy) return absl::OkStatus();
  record->default_policy = policy;
  record->default_policy_origin =
      PolicyOrigin{PolicyOrigin::Source::kOperator, actor.principal,
                   clock_->Now(), /*inferred=*/false};
  MetadataBatch batch;
  batch.PutTenant(*record);
  CKPT_RETURN_IF_ERROR(metadata_->Apply(batch));
  CKPT_EVENT(Info, "tenant default policy set", {"tenant", tenant},
             {"policy", RetentionPolicyText(policy)},
             {"principal", actor.principal});
  return absl::OkStatus();
}

absl::Status CheckpointService::ClearRetentionPolicy(absl::string_view job,
                                                     const Actor& actor) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  CKPT_ASSIGN_OR_RETURN(auto job_lock, metadata_->LockJob(job));
  absl::MutexLock lock(&lifecycle_mu_);
  CKPT_ASSIGN_OR_RETURN(JobRecord record, GetJobRecord(job));
  if (!record.retention_policy.has_value()) return absl::OkStatus();
  record.retention_policy.reset();
  record.policy_origin.reset();
  record.ignored_policy_digests.clear();
  MetadataBatch batch;
  batch.PutJob(record);
  batch.AppendEvent(PolicyClearedEvent(job, clock_->Now(), actor.principal));
  CKPT_RETURN_IF_ERROR(metadata_->Apply(batch));
  CKPT_LOG(Info, "retention policy of ", job, " cleared by ", actor.principal);
  return absl::OkStatus();
}

absl::Status CheckpointService::ClearTenantDefaultPolicy(
    absl::string_view tenant, const Actor& actor) {
  CKPT_RETURN_IF_ERROR(ValidateTenantName(tenant));
  CKPT_ASSIGN_OR_RETURN(auto tenant_lock, metadata_->LockTenant(tenant));
  absl::MutexLock lock(&lifecycle_mu_);
  CKPT_ASSIGN_OR_RETURN(std::optional<TenantRecord> record,
                        metadata_->GetTenant(tenant));
  if (!record.has_value() || !record->default_policy.has_value()) {
    return absl::OkStatus();
  }
  record->default_policy.reset();
  record->default_policy_origin.reset();
  MetadataBatch batch;
  batch.PutTenant(*record);
  CKPT_RETURN_IF_ERROR(metadata_->Apply(batch));
  CKPT_EVENT(Info, "tenant default policy cleared", {"tenant", tenant},
             {"principal", actor.principal});
  return absl::OkStatus();
}

absl::StatusOr<AppliedPolicy> CheckpointService::GetTenantDefaultPolicy(
    absl::string_view tenant) {
  CKPT_RETURN_IF_ERROR(ValidateTenantName(tenant));
  CKPT_ASSIGN_OR_RETURN(std::optional<TenantRecord> record,
                        metadata_->GetTenant(tenant));
  JobRecord no_policy;  // a job of its own without one
  return PolicyThatApplies(no_policy, record);
}

absl::StatusOr<CheckpointRecord> CheckpointService::PinCheckpoint(
    absl::string_view job, int64_t step, bool pinned, const Actor& actor) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  CKPT_RETURN_IF_ERROR(ValidateStep(step));
  CKPT_ASSIGN_OR_RETURN(auto job_lock, metadata_->LockJob(job));
  absl::MutexLock lock(&lifecycle_mu_);
  CKPT_ASSIGN_OR_RETURN(
      CheckpointRecord record,
      CommittedRecord(*metadata_, job, step, pinned ? "pinned" : "unpinned"));
  if (record.pinned != pinned) {
    record.pinned = pinned;
    MetadataBatch batch;
    batch.PutCheckpoint(record);
    batch.AppendEvent(
        PinEvent(job, step, clock_->Now(), actor.principal, pinned));
    CKPT_RETURN_IF_ERROR(metadata_->Apply(batch));
    CKPT_LOG(Info, pinned ? "pinned " : "unpinned ", Describe(job, step),
             " by ", actor.principal);
  }
  return record;
}

absl::StatusOr<CheckpointRecord> CheckpointService::SetCheckpointTags(
    absl::string_view job, int64_t step, const Tags& set,
    const std::vector<std::string>& remove, const Actor& actor) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  CKPT_RETURN_IF_ERROR(ValidateStep(step));
  for (const auto& [name, value] : set) {
    CKPT_RETURN_IF_ERROR(ValidateTagName(name));
    CKPT_RETURN_IF_ERROR(ValidateTagValue(name, value));
  }
  for (const std::string& name : remove) {
    // Only bounded: any tag a checkpoint carries can be removed, also one
    // stored before today's rules on names.
    if (name.empty() || name.size() > kMaxTagNameBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("a tag name to remove must be 1-", kMaxTagNameBytes,
                       " bytes, got ", QuoteTruncated(name)));
    }
    if (set.contains(name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tag ", QuoteTruncated(name), " is both set and removed"));
    }
  }
  CKPT_ASSIGN_OR_RETURN(auto job_lock, metadata_->LockJob(job));
  absl::MutexLock lock(&lifecycle_mu_);
  CKPT_ASSIGN_OR_RETURN(CheckpointRecord record,
                        CommittedRecord(*metadata_, job, step, "tagged"));
  Tags& tags = record.metadata.tags;
  std::vector<std::string> changes;
  for (const auto& [name, value] : set) {
    const auto found = tags.find(name);
    if (found != tags.end() && found->second == value) continue;
    if (found != tags.end() && !actor.may_delete_history) {
      // Another value may be what a keep-tag rule protects it by.
      return absl::PermissionDeniedError(
          absl::StrCat("SetCheckpointTags: ", actor.principal,
                       " may add tags but not change tag ",
                       QuoteTruncated(name), " (that needs the admin role)"));
    }
    changes.push_back(value.empty() ? absl::StrCat("+", name)
                                    : absl::StrCat("+", name, "=", value));
  }
  for (const std::string& name : remove) {
    if (tags.contains(name)) changes.push_back(absl::StrCat("-", name));
  }
  if (changes.empty()) return record;
  const size_t count_before = tags.size();
  const size_t bytes_before = TagBytes(tags);
  for (const auto& [name, value] : set) tags[name] = value;
  for (const std::string& name : remove) tags.erase(name);
  // A change that shrinks the tags is always taken, so that tags over the
  // limits (stored before them) can be trimmed; one that grows them must
  // end within them.
  if (tags.size() > count_before || TagBytes(tags) > bytes_before) {
    CKPT_RETURN_IF_ERROR(ValidateTags(tags));
  }
  MetadataBatch batch;
  batch.PutCheckpoint(record);
  batch.AppendEvent(MakeEvent(job, step, clock_->Now(), actor.principal,
                              EventKind::kTagsChanged,
                              absl::StrJoin(changes, " ")));
  CKPT_RETURN_IF_ERROR(metadata_->Apply(batch));
  CKPT_LOG(Info, "tags of ", Describe(job, step), " changed by ",
           actor.principal, ": ",
           EscapeControlBytes(absl::StrJoin(changes, " ")));
  return record;
}

absl::StatusOr<std::vector<RetentionDecision>> CheckpointService::Prune(
    absl::string_view job, const std::optional<RetentionPolicy>& policy,
    bool dry_run, const Actor& actor, std::vector<std::string>* warnings) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  if (policy.has_value())
    CKPT_RETURN_IF_ERROR(ValidateRetentionPolicy(*policy));
  CKPT_ASSIGN_OR_RETURN(auto job_lock, metadata_->LockJob(job));
  absl::MutexLock lock(&lifecycle_mu_);
  CKPT_ASSIGN_OR_RETURN(JobRecord record, GetJobRecord(job));
  RetentionPolicy effective = RetentionPolicy{};
  if (policy.has_value()) {
    effective = *policy;
  } else {
    CKPT_ASSIGN_OR_RETURN(AppliedPolicy applied, ApplicablePolicy(&record));
    effective = applied.policy.value_or(RetentionPolicy{});
  }
  MetadataBatch batch;
  CKPT_ASSIGN_OR_RETURN(std::vector<RetentionDecision> decisions,
                        DecideAndDelete(record, effective, &batch, warnings));
  if (!dry_run && !batch.empty()) {
    AppendPrunedEvents(job,
                       policy.has_value() ? "prune with a one-off policy"
                                          : "prune with the stored policy",
                       effective, decisions, clock_->Now(), actor.principal,
                       &batch);
    CKPT_FAILPOINT("retention_delete.before");
    CKPT_RETURN_IF_ERROR(metadata_->Apply(batch));
    CKPT_FAILPOINT("retention_delete.after");
    LogDeletions(job, "prune", actor.principal, decisions);
  }
  return decisions;
}

absl::Status CheckpointService::DeleteCheckpoint(absl::string_view job,
                                                 int64_t step,
                                                 const Actor& actor,
                                                 bool force) {
  CKPT_RETURN_IF_ERROR(ValidateJobName(job));
  CKPT_RETURN_IF_ERROR(ValidateStep(step));
  CKPT_ASSIGN_OR_RETURN(auto job_lock, metadata_->LockJob(job));
  absl::MutexLock lock(&lifecycle_mu_);
  absl::StatusOr<CheckpointRecord> record = metadata_->GetCheckpoint(job, step);
  if (absl::IsNotFound(record.status())) {
    return absl::NotFoundError(
        absl::StrCat("job '", job, "' has no checkpoint ", step));
  }
  CKPT_RETURN_IF_ERROR(record.status());
  if (record->state == CheckpointState::kPending) {
    return absl::FailedPreconditionError(absl::StrCat(
        Describe(job, step), " is pending; abort it instead (ckpt abort ", job,
        " ", step, ")"));
  }
  // An aborted record's `pinned` only said it would have committed pinned.
  const bool pinned =
      record->pinned && record->state == CheckpointState::kCommitted;
  if (pinned && !force) {
    return absl::FailedPreconditionError(absl::StrCat(
        Describe(job, step),
        " is pinned; unpin it first, or override the pin with force (ckpt rm "
        "--force)"));
  }
  // Deltas cannot be restored without their base.
  CKPT_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> records,
                        metadata_->ListCheckpoints(job));
  std::vector<std::string> dependents;
  for (const CheckpointRecord& other : records) {
    if (other.state == CheckpointState::kAborted ||
        !std::binary_search(other.base_steps.begin(), other.base_steps.end(),
                            step)) {
      continue;
    }
    dependents.push_back(absl::StrCat(
        other.step,
        other.state == CheckpointState::kPending ? " (pending)" : ""));
  }
  if (!dependents.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("step ", step, " of job ", job, " is the base of ",
                     dependents.size() == 1 ? "step " : "steps ",
                     absl::StrJoin(dependents, ", "),
                     " (row deltas against it); delete those first"));
  }
  MetadataBatch batch;
  batch.DeleteCheckpoint(std::string(job), step);
  batch.AppendEvent(DeletedEvent(job, step, clock_->Now(), actor.principal,
                                 record->state, pinned));
  CKPT_RETURN_IF_ERROR(metadata_->Apply(batch));
  CKPT_LOG(Info, "deleted ", Describe(job, step), " by ", actor.principal);
  return absl::OkStatus();
}

}  // namespace ckpt::server
