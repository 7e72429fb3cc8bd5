// JobScope: the set of jobs a principal may name, as its token file line
// gives it: every job ("*"), a whole tenant ("tenant/"), or the jobs whose
// names start with a prefix ("tenant/prefix"). A scope other than "*" always
// lies inside one tenant, so it never covers another tenant's jobs. Pure
// value type: no I/O.
#pragma once

#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ckpt {

class JobScope {
 public:
  // Every job of every tenant.
  static JobScope All() { return JobScope(""); }

  // "*", "tenant/" or "tenant/prefix", where the prefix is the start of a
  // valid job name (ValidateJobName); INVALID_ARGUMENT otherwise.
  static absl::StatusOr<JobScope> Parse(absl::string_view text);

  bool IsAll() const { return prefix_.empty(); }
  // Whether `job` is in the scope: a plain prefix test on the name, so the
  // answer never depends on whether the job exists. "alice/exp1" covers
  // "alice/exp1", "alice/exp1/b" and "alice/exp10".
  bool Covers(absl::string_view job) const;
  // The tenant the scope lies in; empty for All().
  absl::string_view tenant() const;
  // Whether the scope covers every job of `tenant`.
  bool CoversTenant(absl::string_view tenant) const;

  // "*" or the prefix, as Parse takes it.
  std::string ToString() const { return IsAll() ? "*" : prefix_; }

  friend bool operator==(const JobScope&, const JobScope&) = default;

 private:
  explicit JobScope(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string prefix_;  // empty: every job
};

}  // namespace ckpt
