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
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace ckpt::cli {

using nlohmann::json;

namespace {

// The server's warnings (e.g. "keep_best decides nothing: no checkpoint
// has metric M"), one line each on stderr, so that stdout stays the
// result.
void PrintWarnings(const std::vector<std::string>& warnings) {
  for (const std::string& warning : warnings) {
    std::cerr << "warning: " << warning << "\n";
  }
}

}  // namespace

absl::Status RunPolicySet(client::Client& client, const PolicySetArgs& args,
                          const OutputOptions& out) {
  CKPT_ASSIGN_OR_RETURN(RetentionPolicy policy, ParsePolicyFlags(args.flags));
  std::vector<std::string> warnings;
  CKPT_ASSIGN_OR_RETURN(std::vector<int64_t> deleted,
                        client.SetRetentionPolicy(args.job, policy, &warnings));
  if (out.json) {
    PrintJson({{"job", args.job},
               {"policy", PolicyJson(policy)},
               {"deleted_steps", deleted},
               {"warnings", warnings}});
    return absl::OkStatus();
  }
  PrintWarnings(warnings);
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
  std::optional<RetentionPolicy> policy;  // nullopt: the stored one
  if (AnyPolicyFlag(args.flags)) {
    CKPT_ASSIGN_OR_RETURN(policy, ParsePolicyFlags(args.flags));
  }
  std::vector<std::string> warnings;
  CKPT_ASSIGN_OR_RETURN(
      std::vector<RetentionDecision> decisions,
      client.PruneCheckpoints(args.job, policy, args.dry_run, &warnings));
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
         {"deleted_steps", deleted},
         {"warnings", warnings}});
    return absl::OkStatus();
  }
  PrintWarnings(warnings);
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
  CKPT_ASSIGN_OR_RETURN(int64_t step, ParseStep(args.step));
  CKPT_RETURN_IF_ERROR(client.DeleteCheckpoint(args.job, step));
  if (out.json) {
    PrintJson({{"job", args.job}, {"step", step}, {"deleted", true}});
  } else {
    std::cout << "deleted " << args.job << " step " << step
              << " (chunk space is reclaimed by garbage collection)\n";
  }
  return absl::OkStatus();
}

}  // namespace ckpt::cli
