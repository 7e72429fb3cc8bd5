#include "server/service/policy_owner.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/retention.h"
#include "common/sha256.h"

namespace ckpt::server {

namespace {

// What PolicySetEvent appends to a policy set by BeginCheckpoint.
constexpr absl::string_view kFromBeginMarker =
    " (from BeginCheckpoint of step ";

}  // namespace

AppliedPolicy PolicyThatApplies(const JobRecord& job,
                                const std::optional<TenantRecord>& tenant) {
  AppliedPolicy own;
  if (job.retention_policy.has_value()) {
    own.policy = job.retention_policy;
    own.origin = job.policy_origin.value_or(PolicyOrigin{});
    if (own.OwnedByOperator()) return own;
  }
  if (tenant.has_value() && tenant->default_policy.has_value()) {
    AppliedPolicy fallback;
    fallback.policy = tenant->default_policy;
    fallback.origin = tenant->default_policy_origin.value_or(PolicyOrigin{});
    fallback.origin->source = PolicyOrigin::Source::kTenantDefault;
    return fallback;
  }
  return own;
}

WriterPolicyOutcome DecideWriterPolicy(const AppliedPolicy& applied,
                                       const RetentionPolicy& passed,
                                       const Actor& actor) {
  WriterPolicyOutcome outcome;
  if (applied.policy == passed) {
    // Nothing changes. Applying it at once is what a policy passed to
    // Begin always did, for a caller that may delete history; an
    // append-only writer's Begin must never delete anything.
    outcome.apply = actor.may_delete_history;
    return outcome;
  }
  const std::string passed_text = RetentionPolicyText(passed);
  if (applied.OwnedByOperator()) {
    const PolicyOrigin& origin = *applied.origin;
    const bool tenant_default =
        origin.source == PolicyOrigin::Source::kTenantDefault;
    outcome.ignored = absl::StrCat(
        "the retention policy passed (", passed_text,
        ") was ignored: the job's policy is ",
        tenant_default ? "its tenant's default" : "an operator's", " (",
        RetentionPolicyText(*applied.policy), "; set by ",
        PolicyOriginText(origin),
        "), and a writer's policy applies only while no operator's exists; "
        "`ckpt policy get JOB` shows it, `ckpt policy set JOB` changes it");
    return outcome;
  }
  if (!actor.may_delete_history) {
    outcome.ignored = absl::StrCat(
        "the retention policy passed (", passed_text,
        ") was ignored: principal '", actor.principal,
        "' is append-only (role writer) and may not set one; an admin sets "
        "it with `ckpt policy set JOB`");
    return outcome;
  }
  outcome.store = true;
  outcome.apply = true;
  return outcome;
}

PolicyOrigin InferPolicyOrigin(const RetentionPolicy& policy,
                               const std::vector<JobEvent>& events) {
  PolicyOrigin origin;
  origin.inferred = true;
  const std::string text = RetentionPolicyText(policy);
  for (auto it = events.rbegin(); it != events.rend(); ++it) {
    if (it->kind != EventKind::kPolicySet) continue;
    // Only the newest policy_set tells; an older one set another policy.
    const bool names_it =
        it->detail == text ||
        absl::StartsWith(it->detail, absl::StrCat(text, " ("));
    if (!names_it) break;
    origin.source = absl::StrContains(it->detail, kFromBeginMarker)
                        ? PolicyOrigin::Source::kWriter
                        : PolicyOrigin::Source::kOperator;
    origin.principal = it->principal;
    origin.time = it->time;
    break;
  }
  return origin;
}

std::string IgnoredPolicyDigest(const RetentionPolicy& policy) {
  return std::string(Sha256(RetentionPolicyText(policy)).bytes().substr(0, 16));
}

bool RememberIgnoredPolicy(const std::string& digest, JobRecord* job) {
  std::vector<std::string>& seen = job->ignored_policy_digests;
  if (std::find(seen.begin(), seen.end(), digest) != seen.end()) return false;
  seen.push_back(digest);
  if (seen.size() > kMaxIgnoredPolicies) {
    seen.erase(seen.begin(),
               seen.begin() + static_cast<std::ptrdiff_t>(seen.size() -
                                                          kMaxIgnoredPolicies));
  }
  return true;
}

}  // namespace ckpt::server
