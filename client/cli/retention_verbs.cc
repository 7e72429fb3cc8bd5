// The verbs of the ckpt CLI that decide which checkpoints stay: `policy set`
// and `policy get` (the job's stored retention policy), `pin` and `unpin`,
// `prune` (a one-off or the stored policy, with reasons) and `rm` (one
// checkpoint). Their chunks go at the next `ckpt gc`.
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cli/args.h"
#include "client/cli/commands.h"
#include "client/cli/format.h"
#include "client/cli/json_output.h"
#include "client/cli/resolve_step.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace ckpt::cli {

using nlohmann::json;

absl::Status RunPolicySet(client::Client& client, const PolicySetArgs& args,
                          const OutputOptions& out) {
  if (!args.flags.keep_every.empty()) {
    return absl::InvalidArgumentError(
        "policy set takes --keep-every-n-hours H, not --keep-every");
  }
  CKPT_ASSIGN_OR_RETURN(RetentionPolicy policy,
                        ParsePolicyFlags(args.flags, "--max-to-keep"));
  CKPT_ASSIGN_OR_RETURN(std::vector<int64_t> deleted,
                        client.SetRetentionPolicy(args.job, policy));
  if (out.json) {
    PrintJson({{"job", args.job},
               {"policy", PolicyJson(policy)},
               {"deleted_steps", deleted}});
    return absl::OkStatus();
  }
  std::cout << "policy of " << args.job << ": " << RetentionPolicyText(policy)
            << "\n";
  if (deleted.empty()) {
    std::cout << "applied: nothing to delete\n";
  } else {
    std::cout << "applied: deleted " << deleted.size()
              << " checkpoint(s), steps " << absl::StrJoin(deleted, ", ")
              << "\n";
  }
  return absl::OkStatus();
}

absl::Status RunPolicyGet(client::Client& client, const PolicyGetArgs& args,
                          const OutputOptions& out) {
  CKPT_ASSIGN_OR_RETURN(std::optional<RetentionPolicy> policy,
                        client.GetRetentionPolicy(args.job));
  if (out.json) {
    PrintJson(
        {{"job", args.job},
         {"policy", policy.has_value() ? PolicyJson(*policy) : json(nullptr)}});
    return absl::OkStatus();
  }
  std::cout << "policy of " << args.job << ": "
            << (policy.has_value() ? RetentionPolicyText(*policy)
                                   : std::string("none (keep everything)"))
            << "\n";
  return absl::OkStatus();
}

absl::Status RunPin(client::Client& client, const PinArgs& args,
                    const OutputOptions& out) {
  CKPT_ASSIGN_OR_RETURN(int64_t step, ParseStep(args.step));
  CKPT_ASSIGN_OR_RETURN(CheckpointRecord record,
                        client.PinCheckpoint(args.job, step, args.pinned));
  if (out.json) {
    PrintJson({{"job", args.job}, {"step", step}, {"pinned", record.pinned}});
  } else {
    std::cout << (record.pinned ? "pinned " : "unpinned ") << args.job
              << " step " << step << "\n";
  }
  return absl::OkStatus();
}

absl::Status RunPrune(client::Client& client, const PruneArgs& args,
                      const OutputOptions& out) {
  if (!args.flags.keep_every_n_hours.empty()) {
    return absl::InvalidArgumentError(
        "prune takes --keep-every DURATION (e.g. 6h), not "
        "--keep-every-n-hours");
  }
  std::optional<RetentionPolicy> policy;  // nullopt: the stored one
  if (AnyPolicyFlag(args.flags)) {
    CKPT_ASSIGN_OR_RETURN(policy, ParsePolicyFlags(args.flags, "--keep-last"));
  }
  CKPT_ASSIGN_OR_RETURN(
      std::vector<RetentionDecision> decisions,
      client.PruneCheckpoints(args.job, policy, args.dry_run));
  std::vector<int64_t> deleted;
  for (const auto& decision : decisions) {
    if (!decision.keep) deleted.push_back(decision.step);
  }
  if (out.json) {
    json list = json::array();
    for (const auto& decision : decisions) {
      list.push_back({{"step", decision.step},
                      {"keep", decision.keep},
                      {"action", decision.keep ? "keep" : "delete"},
                      {"reasons", decision.reasons}});
    }
    PrintJson(
        {{"job", args.job},
         {"dry_run", args.dry_run},
         {"policy", policy.has_value() ? PolicyJson(*policy) : json("stored")},
         {"decisions", list},
         {"deleted_steps", deleted}});
    return absl::OkStatus();
  }
  std::vector<std::vector<std::string>> rows;
  rows.reserve(decisions.size());
  for (const auto& decision : decisions) {
    rows.push_back({absl::StrCat(decision.step),
                    decision.keep ? "keep" : "delete",
                    absl::StrJoin(decision.reasons, "; ")});
  }
  PrintTable(std::cout, {"STEP", "ACTION", "REASONS"}, rows);
  std::cout << (args.dry_run ? "dry run: would delete " : "deleted ")
            << deleted.size() << " of " << decisions.size() << " checkpoint(s)"
            << (args.dry_run ? "; nothing was deleted" : "") << "\n";
  return absl::OkStatus();
}

absl::Status RunRm(client::Client& client, const RmArgs& args,
                   const OutputOptions& out) {
  CKPT_ASSIGN_OR_RETURN(int64_t step, ResolveStep(client, args.job, args.step));
  CKPT_RETURN_IF_ERROR(client.DeleteCheckpoint(args.job, step, args.force));
  if (out.json) {
    PrintJson({{"job", args.job}, {"step", step}, {"deleted", true}});
  } else {
    std::cout << "deleted " << args.job << " step " << step
              << " (chunk space is reclaimed by garbage collection)\n";
  }
  return absl::OkStatus();
}

}  // namespace ckpt::cli
