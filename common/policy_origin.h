// PolicyOrigin: who set a retention policy and when, stored with it (a
// job's own policy in JobRecord, a tenant's default in TenantRecord). The
// rule it serves: an operator's policy is the job's, and a writer's (the
// one a training job passes to BeginCheckpoint) applies only while no
// operator's exists. Pure data.
#pragma once

#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ckpt {

struct PolicyOrigin {
  enum class Source {
    kOperator,       // SetRetentionPolicy (`ckpt policy set`)
    kWriter,         // BeginCheckpoint's retention_policy
    kTenantDefault,  // listings only: the job has none; its tenant's applies
  };
  Source source = Source::kOperator;
  // The principal who set it; empty when unknown (an old record).
  std::string principal;
  // nullopt when unknown (an old record).
  std::optional<absl::Time> time;
  // Not recorded when the policy was set but inferred from the job's
  // events, or assumed to be an operator's when they no longer say.
  bool inferred = false;

  friend bool operator==(const PolicyOrigin&, const PolicyOrigin&) = default;
};

// How many ignored writers' policies a job remembers (the newest).
inline constexpr size_t kMaxIgnoredPolicies = 8;

// "operator", "writer", "tenant default" (the CLI's and JSON's spelling:
// "operator", "writer", "tenant_default").
absl::string_view PolicySourceName(PolicyOrigin::Source source);

// The policy's origin for people: "operator alice at 2026-12-03 10:00:00
// UTC", "writer (inferred from events) bob at ...", "operator (assumed: the
// record predates origins)".
std::string PolicyOriginText(const PolicyOrigin& origin);

}  // namespace ckpt
