// Who owns a job's retention policy: which policy applies to a job (an
// operator's of its own, else its tenant's default, else a writer's), what
// a writer's policy passed to BeginCheckpoint does, and how a record older
// than origins gets one. Issue 17: a training job's
// CheckpointManager(max_to_keep=1) must not silently replace the policy an
// operator set. Pure: no store, no lock.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/event.h"
#include "common/manifest.h"
#include "common/policy_origin.h"
#include "common/retention_policy.h"
#include "server/service/actor.h"

namespace ckpt::server {

// The policy that applies to a job, and who set it.
struct AppliedPolicy {
  std::optional<RetentionPolicy> policy;  // nullopt: keep everything
  // Set with policy; source kTenantDefault when it is the tenant's default.
  std::optional<PolicyOrigin> origin;

  // An operator's: a writer's policy does not replace it.
  bool OwnedByOperator() const {
    return origin.has_value() &&
           origin->source != PolicyOrigin::Source::kWriter;
  }
};

// The job's own policy when an operator set it, else the tenant's default
// when it has one, else the job's own writer's policy, else none. A job
// policy without an origin counts as an operator's.
AppliedPolicy PolicyThatApplies(const JobRecord& job,
                                const std::optional<TenantRecord>& tenant);

// What BeginCheckpoint does with the policy a writer passed.
struct WriterPolicyOutcome {
  // Becomes the job's own policy (origin: a writer).
  bool store = false;
  // Applied at once, in the Begin's batch: only for a caller that may
  // delete history, and only when the policy passed is the one that
  // applies after the call.
  bool apply = false;
  // Non-empty when ignored: why, for the writer (the response, Python's
  // warning) and the `policy_ignored` event.
  std::string ignored;
};
WriterPolicyOutcome DecideWriterPolicy(const AppliedPolicy& applied,
                                       const RetentionPolicy& passed,
                                       const Actor& actor);

// The origin of a policy stored before origins were, from the job's events
// (oldest first): the newest `policy_set` event, when it names this very
// policy (a writer's when it came from BeginCheckpoint); else an
// operator's, assumed. Always `inferred`.
PolicyOrigin InferPolicyOrigin(const RetentionPolicy& policy,
                               const std::vector<JobEvent>& events);

// 16 bytes that tell retention policies apart: a SHA-256 prefix of their
// RetentionPolicyText, which names every rule (events show it), so two
// policies with the same text are one for the people reading it too.
std::string IgnoredPolicyDigest(const RetentionPolicy& policy);

// Remembers `digest` among the job's reported ignored policies (the newest
// kMaxIgnoredPolicies). False when it was already there: no new event.
bool RememberIgnoredPolicy(const std::string& digest, JobRecord* job);

}  // namespace ckpt::server
