// `ckpt copy`: copies a job's checkpoints from one server to another
// through this process (client/copy.h), connecting to both itself (the
// global --server is not used), and prints what it copied.
#include <algorithm>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cli/args.h"
#include "client/cli/commands.h"
#include "client/cli/format.h"
#include "client/cli/json_output.h"
#include "client/cli/progress.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace ckpt::cli {
namespace {

using nlohmann::json;
using Outcome = client::CopiedCheckpoint::Outcome;

absl::string_view OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kCopied:
      return "copied";
    case Outcome::kAlreadyThere:
      return "already_there";
    case Outcome::kWouldCopy:
      return "would_copy";
  }
  return "unknown";
}

// "full", "delta on 100", each "(as a base)" when not asked for.
std::string KindText(const client::CopiedCheckpoint& entry) {
  std::string kind =
      entry.base_steps.empty()
          ? "full"
          : absl::StrCat("delta on ", FormatSteps(entry.base_steps));
  if (entry.as_delta_base) absl::StrAppend(&kind, " (as a base)");
  return kind;
}

json ReportJson(const CopyArgs& args, const client::CopyReport& report) {
  json checkpoints = json::array();
  for (const client::CopiedCheckpoint& entry : report.checkpoints) {
    checkpoints.push_back({{"step", entry.step},
                           {"outcome", OutcomeName(entry.outcome)},
                           {"as_delta_base", entry.as_delta_base},
                           {"base_steps", entry.base_steps},
                           {"pinned", entry.pinned},
                           {"logical_bytes", entry.logical_bytes},
                           {"chunks_referenced", entry.chunks_referenced},
                           {"bytes_referenced", entry.bytes_referenced},
                           {"chunks_sent", entry.chunks_sent},
                           {"bytes_sent", entry.bytes_sent}});
  }
  auto policy = [](const std::optional<RetentionPolicy>& value) {
    return value.has_value() ? PolicyJson(*value) : json(nullptr);
  };
  return {{"from", args.from},
          {"to", args.to},
          {"source_job", report.source_job},
          {"target_job", report.target_job},
          {"dry_run", args.dry_run},
          {"checkpoints", checkpoints},
          {"chunks_sent", report.chunks_sent},
          {"bytes_sent", report.bytes_sent},
          {"policy_set", policy(report.policy_set)},
          {"policy_would_set", policy(report.policy_would_set)},
          {"policy_error", report.policy_error.ok()
                               ? json(nullptr)
                               : json(report.policy_error.ToString())},
          {"pruned_on_target", report.pruned_on_target},
          {"source_report_error", report.source_report_error.empty()
                                      ? json(nullptr)
                                      : json(report.source_report_error)}};
}

void PrintReport(const CopyArgs& args, const client::CopyReport& report) {
  std::cout << (args.dry_run ? "dry run: copy " : "copy ") << report.source_job
            << " from " << args.from << " to " << args.to;
  if (report.target_job != report.source_job) {
    std::cout << " as " << report.target_job;
  }
  std::cout << "\n";
  if (report.checkpoints.empty()) {
    std::cout << "nothing to copy: the source job has no committed "
                 "checkpoint\n";
    return;
  }
  std::vector<std::vector<std::string>> rows;
  for (const client::CopiedCheckpoint& entry : report.checkpoints) {
    std::string outcome(OutcomeName(entry.outcome));
    std::replace(outcome.begin(), outcome.end(), '_', ' ');
    rows.push_back(
        {absl::StrCat(entry.step), KindText(entry), outcome,
         entry.pinned ? "pinned" : "-",
         absl::StrCat(entry.chunks_sent, " / ", entry.chunks_referenced),
         absl::StrCat(HumanBytes(entry.bytes_sent), " / ",
                      HumanBytes(entry.bytes_referenced))});
  }
  PrintTable(std::cout,
             {"STEP", "KIND", "OUTCOME", "PIN",
              args.dry_run ? "CHUNKS TO SEND" : "CHUNKS SENT",
              args.dry_run ? "BYTES TO SEND" : "BYTES SENT"},
             rows);
  std::cout << (args.dry_run ? "would send " : "sent ") << report.chunks_sent
            << " chunk(s), " << HumanBytes(report.bytes_sent)
            << (args.dry_run ? "; nothing was changed" : "") << "\n";
  if (report.policy_set.has_value()) {
    std::cout << "retention policy set on the target: "
              << RetentionPolicyText(*report.policy_set) << "\n";
  }
  if (report.policy_would_set.has_value()) {
    std::cout << "would set the retention policy on the target: "
              << RetentionPolicyText(*report.policy_would_set) << "\n";
  }
  if (!report.pruned_on_target.empty()) {
    std::cout << "deleted on the target by its retention: steps "
              << absl::StrJoin(report.pruned_on_target, ", ") << "\n";
  }
}

absl::Status WithPrefix(absl::string_view prefix, const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(prefix, status.message()));
}

absl::StatusOr<client::ConnectOptions> ConnectOptionsFor(
    const client::SecuritySettings& settings,
    const client::SecurityNames& names) {
  client::ConnectOptions options;
  CKPT_RETURN_IF_ERROR(
      client::ApplySecuritySettings(settings, names, &options));
  return options;
}

// The policy could not be set: what the user can do about it.
absl::Status PolicyAdvice(const absl::Status& error) {
  return absl::Status(
      error.code(),
      absl::StrCat(
          error.message(), ". The checkpoints were copied; ",
          absl::IsPermissionDenied(error)
              ? "setting a policy needs the admin role on the target job: "
                "rerun with an admin token for the target (--to-token-file "
                "or $CKPT_TO_TOKEN) to set it, "
              : "rerun to set it, ",
          "or with --no-policy to leave the target job without one (nothing "
          "is sent again either way)"));
}

}  // namespace

absl::Status RunCopy(const CopyArgs& args, const OutputOptions& out) {
  client::CopyRequest request;
  request.job = args.job;
  request.target_job = args.to_job;
  if (!args.steps.empty()) {
    CKPT_ASSIGN_OR_RETURN(request.steps, ParseStepList(args.steps));
  }
  request.latest = args.latest;
  request.copy_policy = !args.no_policy;
  request.dry_run = args.dry_run;
  request.source_label = args.from;
  request.target_label = args.to;
  if (!args.limit_rate.empty()) {
    CKPT_ASSIGN_OR_RETURN(request.max_bytes_per_second,
                          ParseByteRate("--limit-rate", args.limit_rate));
  }
  if (!args.stall_timeout.empty()) {
    CKPT_ASSIGN_OR_RETURN(
        request.source_stall_timeout,
        ParseDurationFlag("--stall-timeout", args.stall_timeout));
  }

  CKPT_ASSIGN_OR_RETURN(client::ConnectOptions source_options,
                        ConnectOptionsFor(args.security, args.security_names));
  // A setting the target takes from the global flags is spelt as both.
  const client::SecurityNames& global = args.security_names;
  const client::SecurityNames inherited = {
      .tls_ca = absl::StrCat("--to-tls-ca (or ", global.tls_ca, ")"),
      .tls_cert = absl::StrCat("--to-tls-cert (or ", global.tls_cert, ")"),
      .tls_key = absl::StrCat("--to-tls-key (or ", global.tls_key, ")"),
      .tls_server_name = absl::StrCat("--to-tls-server-name (or ",
                                      global.tls_server_name, ")"),
      .token_file =
          absl::StrCat("--to-token-file (or ", global.token_file, ")")};
  const client::OverriddenSettings target = client::ApplyOverrides(
      args.security, inherited, args.target_overrides,
      {.tls_ca = "--to-tls-ca",
       .tls_cert = "--to-tls-cert",
       .tls_key = "--to-tls-key",
       .tls_server_name = "--to-tls-server-name",
       .token_file = "--to-token-file (or $CKPT_TO_TOKEN)"});
  CKPT_ASSIGN_OR_RETURN(client::ConnectOptions target_options,
                        ConnectOptionsFor(target.settings, target.names));
  // The source's reads end on their own too (the transport's bound), and
  // so does an upload the target stops taking.
  source_options.stream_stall_timeout = request.source_stall_timeout;
  target_options.stream_stall_timeout = request.source_stall_timeout;
  absl::StatusOr<std::unique_ptr<client::Client>> source =
      client::Client::Connect(args.from, source_options);
  CKPT_RETURN_IF_ERROR(WithPrefix("--from: ", source.status()));
  absl::StatusOr<std::unique_ptr<client::Client>> target_client =
      client::Client::Connect(args.to, target_options);
  CKPT_RETURN_IF_ERROR(WithPrefix("--to: ", target_client.status()));

  ProgressBar bar;
  client::CopyProgressFn progress;
  if (!args.dry_run) {
    progress = [&bar](const client::CopyProgress& p) {
      bar.Update(p.checkpoint_index < p.checkpoint_count
                     ? absl::StrCat("copying step ", p.step, " (",
                                    p.checkpoint_index + 1, "/",
                                    p.checkpoint_count, ")")
                     : std::string("copying"),
                 p.bytes_done, p.bytes_total, ProgressUnit::kBytes);
    };
  }
  absl::StatusOr<client::CopyReport> report =
      client::Client::Copy(**source, **target_client, request, progress);
  bar.Clear();
  CKPT_RETURN_IF_ERROR(report.status());
  if (out.json) {
    PrintJson(ReportJson(args, *report));
  } else {
    PrintReport(args, *report);
  }
  if (!report->source_report_error.empty()) {
    std::cerr << "ckpt: warning: the source's event log does not record the "
                 "copy: "
              << report->source_report_error << std::endl;
  }
  if (!report->policy_error.ok()) return PolicyAdvice(report->policy_error);
  return absl::OkStatus();
}

}  // namespace ckpt::cli
