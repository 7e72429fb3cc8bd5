// A job's event history as one line per event, "kind@step: detail" (step
// -1 for a job-level event), oldest first: what the event tests compare,
// whichever layer (service, client) read the events. Header-only.
#pragma once

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/event.h"

namespace ckpt::testing {

inline std::vector<std::string> EventLines(
    const std::vector<JobEvent>& events) {
  std::vector<std::string> lines;
  lines.reserve(events.size());
  for (const JobEvent& event : events) {
    lines.push_back(absl::StrCat(EventKindName(event.kind), "@",
                                 event.step.value_or(-1), ": ", event.detail));
  }
  return lines;
}

}  // namespace ckpt::testing
