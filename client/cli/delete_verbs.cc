// `ckpt abort` (a pending checkpoint) and `ckpt rm-job` (every checkpoint of
// a job), built on AbortCheckpoint, ListCheckpoints and DeleteCheckpoint.
#include <algorithm>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cli/args.h"
#include "client/cli/commands.h"
#include "client/cli/json_output.h"
#include "common/status_macros.h"

namespace ckpt::cli {

absl::Status RunAbort(client::Client& client, const AbortArgs& args,
                      const OutputOptions& out) {
  CKPT_ASSIGN_OR_RETURN(int64_t step, ParseStep(args.step));
  CKPT_RETURN_IF_ERROR(client.AbortCheckpoint(args.job, step, args.reason));
  if (out.json) {
    PrintJson({{"job", args.job}, {"step", step}, {"aborted", true}});
  } else {
    std::cout << "aborted " << args.job << " step " << step << "\n";
  }
  return absl::OkStatus();
}

absl::Status RunRmJob(client::Client& client, const RmJobArgs& args,
                      const OutputOptions& out) {
  if (!args.yes) {
    return absl::InvalidArgumentError(
        absl::StrCat("rm-job deletes every checkpoint of ", args.job,
                     "; pass --yes to confirm"));
  }
  CKPT_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> records,
                        client.ListCheckpoints(args.job, true));
  std::vector<int64_t> pinned;
  for (const CheckpointRecord& record : records) {
    if (record.pinned && record.state == CheckpointState::kCommitted) {
      pinned.push_back(record.step);
    }
  }
  if (!pinned.empty() && !args.force) {
    return absl::FailedPreconditionError(absl::StrCat(
        args.job, " has pinned checkpoints (steps ",
        absl::StrJoin(pinned, ", "),
        "); nothing was deleted. Unpin them, or pass --force to delete them "
        "too"));
  }
  std::vector<int64_t> aborted;
  std::vector<int64_t> deleted;
  // An error partway names what was already done: a rerun finishes it.
  const auto partway = [&](const absl::Status& status) {
    if (aborted.empty() && deleted.empty()) return status;
    std::vector<int64_t> done = deleted;
    std::sort(done.begin(), done.end());
    return absl::Status(
        status.code(),
        absl::StrCat(status.message(), " (rm-job had aborted steps [",
                     absl::StrJoin(aborted, ", "), "] and deleted steps [",
                     absl::StrJoin(done, ", "), "] of ", args.job,
                     " before this)"));
  };
  for (CheckpointRecord& record : records) {
    if (record.state != CheckpointState::kPending) continue;
    if (absl::Status status =
            client.AbortCheckpoint(args.job, record.step, "ckpt rm-job");
        !status.ok()) {
      return partway(status);
    }
    record.state = CheckpointState::kAborted;
    aborted.push_back(record.step);
  }
  // Deltas before their bases: the server refuses to delete a base while a
  // checkpoint that uses it exists. Aborted ones hold no bases.
  std::set<int64_t> remaining;
  for (const CheckpointRecord& record : records) remaining.insert(record.step);
  while (!remaining.empty()) {
    std::set<int64_t> needed;
    for (const CheckpointRecord& record : records) {
      if (!remaining.contains(record.step) ||
          record.state == CheckpointState::kAborted) {
        continue;
      }
      needed.insert(record.base_steps.begin(), record.base_steps.end());
    }
    std::vector<int64_t> now;
    for (int64_t step : remaining) {
      if (!needed.contains(step)) now.push_back(step);
    }
    if (now.empty()) {
      return partway(absl::InternalError(
          absl::StrCat("the delta bases of ", args.job, " form a cycle")));
    }
    for (auto it = now.rbegin(); it != now.rend(); ++it) {
      if (absl::Status status =
              client.DeleteCheckpoint(args.job, *it, args.force);
          !status.ok()) {
        return partway(status);
      }
      deleted.push_back(*it);
      remaining.erase(*it);
    }
  }
  std::sort(deleted.begin(), deleted.end());
  // A save that ran meanwhile may have begun or committed a checkpoint the
  // listing above did not hold: said, never reported as a clean sweep.
  CKPT_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> after,
                        client.ListCheckpoints(args.job, true));
  std::vector<int64_t> left;
  for (const CheckpointRecord& record : after) left.push_back(record.step);
  if (out.json) {
    PrintJson({{"job", args.job},
               {"aborted_steps", aborted},
               {"deleted_steps", deleted},
               {"remaining_steps", left}});
  } else {
    std::cout << "deleted " << deleted.size() << " checkpoint"
              << (deleted.size() == 1 ? "" : "s") << " of " << args.job;
    if (!aborted.empty()) {
      std::cout << " (aborted first: " << absl::StrJoin(aborted, ", ") << ")";
    }
    std::cout << "; its chunk space is reclaimed by garbage collection, its "
                 "policy and events stay\n";
  }
  if (!left.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        args.job, " still has checkpoints (steps ", absl::StrJoin(left, ", "),
        "): a save ran while rm-job did; stop it and run rm-job again"));
  }
  return absl::OkStatus();
}

}  // namespace ckpt::cli
