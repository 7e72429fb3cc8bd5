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

namespace {

// The server's warnings (e.g. "keep_best decides nothing: no checkpoint
// has metric M"), one line each on stderr, so that stdout stays the
// result.
void PrintWarnings(const std::vector<std::string>& warnings) {
  for (const std::string& warning : warnings) {
    std::cerr << "warning: " << warning << "\n";
  }
}

// "TENANT/" names a tenant (its default policy); the tenant, else nullopt.
std::optional<std::string> TenantOfTarget(const std::string& target) {
  if (target.size() < 2 || target.back() != '/' ||
      target.find('/') != target.size() - 1) {
    return std::nullopt;
  }
  return target.substr(0, target.size() - 1);
}

// "set by operator alice at 2026-12-03 10:00:00 UTC", or nothing from a
// server older than origins.
std::string OriginLine(const std::optional<PolicyOrigin>& origin) {
  if (!origin.has_value()) return "";
  return absl::StrCat("set by: ", PolicyOriginText(*origin), "\n");
}

absl::Status RunTenantDefaultSet(client::Client& client,
                                 const std::string& tenant,
                                 const RetentionPolicy& policy,
                                 const OutputOptions& out) {
  CKPT_RETURN_IF_ERROR(client.SetTenantDefaultPolicy(tenant, policy));
  if (out.json) {
    PrintJson({{"tenant", tenant}, {"default_policy", PolicyJson(policy)}});
    return absl::OkStatus();
  }
  std::cout << "default policy of tenant " << tenant << ": "
            << RetentionPolicyText(policy)
            << "\napplies to its jobs without an operator's policy of their "
               "own, at their next commit or prune\n";
  return absl::OkStatus();
}

// `policy set JOB --clear` (or TENANT/ --default --clear), then what
// applies now.
absl::Status RunPolicyClear(client::Client& client, const std::string& target,
                            const std::optional<std::string>& tenant,
                            const OutputOptions& out) {
  CKPT_RETURN_IF_ERROR(client.ClearRetentionPolicy(
      tenant.has_value() ? *tenant : target, tenant.has_value()));
  if (tenant.has_value()) {
    if (out.json) {
      PrintJson({{"tenant", *tenant}, {"cleared", true}});
    } else {
      std::cout << "default policy of tenant " << *tenant << ": cleared\n";
    }
    return absl::OkStatus();
  }
  CKPT_ASSIGN_OR_RETURN(client::PolicyInfo now,
                        client.GetRetentionPolicyInfo(target));
  if (out.json) {
    PrintJson({{"job", target},
               {"cleared", true},
               {"policy", now.policy.has_value() ? PolicyJson(*now.policy)
                                                 : json(nullptr)},
               {"origin", PolicyOriginJson(now.origin)}});
    return absl::OkStatus();
  }
  std::cout << "policy of " << target << ": cleared; now applies: "
            << (now.policy.has_value() ? RetentionPolicyText(*now.policy)
                                       : std::string("none (keep everything)"))
            << "\n"
            << OriginLine(now.origin);
  return absl::OkStatus();
}

}  // namespace

absl::Status RunPolicySet(client::Client& client, const PolicySetArgs& args,
                          const OutputOptions& out) {
  const std::optional<std::string> tenant = TenantOfTarget(args.job);
  if (args.tenant_default != tenant.has_value()) {
    return absl::InvalidArgumentError(
        args.tenant_default
            ? absl::StrCat("--default sets a tenant's default policy: name "
                           "the tenant as TENANT/ (e.g. 'research/'), not '",
                           args.job, "'")
            : absl::StrCat("'", args.job,
                           "' names a tenant: add --default to set its "
                           "default policy, or name a job as tenant/name"));
  }
  if (args.clear) {
    if (AnyPolicyFlag(args.flags)) {
      return absl::InvalidArgumentError(
          "--clear removes the policy: give it no policy flags");
    }
    return RunPolicyClear(client, args.job, tenant, out);
  }
  CKPT_ASSIGN_OR_RETURN(RetentionPolicy policy, ParsePolicyFlags(args.flags));
  if (tenant.has_value()) {
    return RunTenantDefaultSet(client, *tenant, policy, out);
  }
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
  const std::optional<std::string> tenant = TenantOfTarget(args.job);
  CKPT_ASSIGN_OR_RETURN(client::PolicyInfo info,
                        tenant.has_value()
                            ? client.GetTenantDefaultPolicy(*tenant)
                            : client.GetRetentionPolicyInfo(args.job));
  const std::optional<RetentionPolicy>& policy = info.policy;
  if (out.json) {
    PrintJson(
        {{tenant.has_value() ? "tenant" : "job",
          tenant.has_value() ? *tenant : args.job},
         {"policy", policy.has_value() ? PolicyJson(*policy) : json(nullptr)},
         {"origin", PolicyOriginJson(info.origin)}});
    return absl::OkStatus();
  }
  std::cout << (tenant.has_value() ? "default policy of tenant " : "policy of ")
            << (tenant.has_value() ? *tenant : args.job) << ": "
            << (policy.has_value() ? RetentionPolicyText(*policy)
                                   : std::string("none (keep everything)"))
            << "\n"
            << OriginLine(info.origin);
  return absl::OkStatus();
}

absl::Status RunPin(client::Client& client, const PinArgs& args,
                    const OutputOptions& out) {
  CKPT_ASSIGN_OR_RETURN(int64_t step, ResolveStep(client, args.job, args.step));
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
