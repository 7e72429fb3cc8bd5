#include "common/job_scope.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/manifest.h"

namespace ckpt {

absl::StatusOr<JobScope> JobScope::Parse(absl::string_view text) {
  if (text == "*") return All();
  // A prefix is valid when some valid job name starts with it: itself, or,
  // when it ends at a '/', itself followed by a name.
  const bool ends_with_slash = absl::EndsWith(text, "/");
  if (!ValidateJobName(ends_with_slash ? absl::StrCat(text, "x")
                                       : std::string(text))
           .ok()) {
    return absl::InvalidArgumentError(
        "a scope is '*', 'tenant/' (a whole tenant) or 'tenant/prefix' (the "
        "jobs whose names start with it; A-Z a-z 0-9 . _ - and '/')");
  }
  return JobScope(std::string(text));
}

bool JobScope::Covers(absl::string_view job) const {
  return absl::StartsWith(job, prefix_);
}

absl::string_view JobScope::tenant() const {
  return IsAll() ? absl::string_view() : TenantOf(prefix_);
}

bool JobScope::CoversTenant(absl::string_view tenant) const {
  return IsAll() ||
         (prefix_.size() == tenant.size() + 1 &&
          absl::StartsWith(prefix_, tenant) && prefix_.back() == '/');
}

}  // namespace ckpt
