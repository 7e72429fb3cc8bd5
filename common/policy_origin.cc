#include "common/policy_origin.h"

#include "absl/strings/str_cat.h"

namespace ckpt {

absl::string_view PolicySourceName(PolicyOrigin::Source source) {
  switch (source) {
    case PolicyOrigin::Source::kOperator:
      return "operator";
    case PolicyOrigin::Source::kWriter:
      return "writer";
    case PolicyOrigin::Source::kTenantDefault:
      return "tenant_default";
  }
  return "unknown";
}

std::string PolicyOriginText(const PolicyOrigin& origin) {
  std::string text = origin.source == PolicyOrigin::Source::kTenantDefault
                         ? std::string("tenant default")
                         : std::string(PolicySourceName(origin.source));
  if (origin.inferred) {
    absl::StrAppend(&text, origin.principal.empty() && !origin.time.has_value()
                               ? " (assumed: set before origins were recorded)"
                               : " (inferred from the job's events)");
  }
  if (!origin.principal.empty()) absl::StrAppend(&text, " ", origin.principal);
  if (origin.time.has_value()) {
    absl::StrAppend(&text, " at ",
                    absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", *origin.time,
                                     absl::UTCTimeZone()));
  }
  return text;
}

}  // namespace ckpt
