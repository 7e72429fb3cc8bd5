// ckpt: the operator CLI of ckpt-server. See `ckpt --help` and
// `ckpt VERB --help`.
//
// Past 600 lines because it is one job, the CLI11 wiring: every verb's
// flags and help text, parsed into the Args structs the verbs take
// (commands.h); what the verbs do is in their own files.

#include <cstdlib>
#include <iostream>
#include <string>
#include <tuple>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cli/commands.h"
#include "client/cli/errors.h"
#include "client/cli/shell_docs.h"
#include "client/client.h"
#include "client/security_settings.h"

namespace {

constexpr const char* kStepHelp =
    "Checkpoint step (a non-negative integer) or 'latest' (the newest "
    "committed one)";

constexpr const char* kModeHelp =
    "Direction of --metric: min, max or auto (default; loss-like names "
    "minimise, acc-like maximise, anything else is an error)";

// The retention flags, the same for `policy set` and `prune`; the names
// after the first are the old ones, kept as aliases.
void AddPolicyFlags(CLI::App* cmd, ckpt::cli::PolicyFlags* flags) {
  cmd->add_option("--keep-last,--max-to-keep", flags->max_to_keep,
                  "Keep the N most recent checkpoints (tf.train."
                  "CheckpointManager max_to_keep)")
      ->type_name("N");
  cmd->add_option("--keep-every,--keep-every-n-hours", flags->keep_every,
                  "Also preserve one checkpoint per DURATION (30m, 6h, 1d, "
                  "2w, 1h30m; a plain number is hours) as they leave the "
                  "--keep-last window (needs --keep-last)")
      ->type_name("DURATION");
  cmd->add_option("--keep-within", flags->keep_within,
                  "Keep every checkpoint less than DURATION (30m, 6h, 1d, 2w) "
                  "older than the newest checkpoint (restic's --keep-within)")
      ->type_name("DURATION");
  for (auto [name, count, unit] :
       {std::tuple("--keep-hourly", &flags->keep_hourly, "hours"),
        std::tuple("--keep-daily", &flags->keep_daily, "days"),
        std::tuple("--keep-weekly", &flags->keep_weekly, "ISO weeks"),
        std::tuple("--keep-monthly", &flags->keep_monthly, "months")}) {
    cmd->add_option(name, *count,
                    std::string("Keep the newest checkpoint of each of the N "
                                "newest ") +
                        unit + " (UTC) that have one (restic's " + name + ")")
        ->type_name("N");
  }
  cmd->add_option("--keep-tag", flags->keep_tags,
                  "Never delete a checkpoint carrying tag TAG (a tag name, as "
                  "`put --tag TAG=VALUE` sets); repeatable")
      ->type_name("TAG")
      ->expected(1)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd->add_option("--keep-best", flags->keep_best,
                  "Keep the K best checkpoints by --metric (a checkpoint "
                  "without the metric is kept; when none has it, this rule "
                  "decides nothing and a warning says so)")
      ->type_name("K");
  cmd->add_option("--metric", flags->metric, "Metric name for --keep-best")
      ->type_name("NAME");
  cmd->add_option("--mode", flags->mode, kModeHelp)->type_name("MODE");
}

// A repeatable NAME=VALUE option: one value per use, so that a later
// positional argument is never taken as one.
void AddAssignments(CLI::App* cmd, const std::string& name,
                    std::vector<std::string>* values, const std::string& help) {
  cmd->add_option(name, *values, help)
      ->expected(1)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
}

// Whether --json is among the arguments: parse errors are reported before
// CLI11 has set any flag.
bool JsonRequested(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") break;
    if (arg == "--json") return true;
  }
  return false;
}

// The words that are neither options nor option values, in order: the
// verb as typed first (and policy's sub-verb after it); empty when there
// is none. Options are looked up on `app` (the global ones).
std::vector<std::string> TypedWords(CLI::App& app, int argc, char** argv) {
  std::vector<std::string> words;
  for (int i = 1; i < argc && words.size() < 2; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") {
      if (i + 1 < argc) words.push_back(argv[i + 1]);
      break;
    }
    if (arg.empty() || arg[0] != '-') {
      words.push_back(arg);
      continue;
    }
    if (arg.find('=') != std::string::npos) continue;
    const CLI::Option* option = app.get_option_no_throw(arg);
    if (option != nullptr && option->get_items_expected_min() > 0) ++i;
  }
  return words;
}

// The names of `app`'s subcommands, in the order --help lists them.
std::vector<std::string> SubcommandNames(const CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::App* sub : app.get_subcommands({})) {
    names.push_back(sub->get_name());
  }
  return names;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "ckpt: store, list, inspect and restore training checkpoints on a "
      "ckpt-server."};
  // Global flags are accepted after the verb too.
  app.fallthrough();
  app.require_subcommand(1);

  std::string server = "127.0.0.1:7070";
  ckpt::cli::OutputOptions output;
  app.add_option("--server", server,
                 "ckpt-server address HOST:PORT (default: $CKPT_SERVER, "
                 "else 127.0.0.1:7070)")
      ->envname("CKPT_SERVER");
  ckpt::client::SecuritySettings security;
  app.add_option("--tls-ca", security.tls_ca_file,
                 "Connect with TLS, trusting the server certificates issued "
                 "by the CA certificates in this PEM file (the system bundle, "
                 "e.g. /etc/ssl/certs/ca-certificates.crt, for a public CA). "
                 "Default: $CKPT_TLS_CA; neither: plaintext")
      ->envname(ckpt::client::kTlsCaEnv);
  app.add_option("--tls-cert", security.tls_cert_file,
                 "Mutual TLS: present this PEM client certificate (chain) "
                 "when the server asks; needs --tls-key and --tls-ca. "
                 "Default: $CKPT_TLS_CERT")
      ->envname(ckpt::client::kTlsCertEnv);
  app.add_option("--tls-key", security.tls_key_file,
                 "The unencrypted PEM private key of --tls-cert. Default: "
                 "$CKPT_TLS_KEY")
      ->envname(ckpt::client::kTlsKeyEnv);
  app.add_option("--tls-server-name", security.tls_server_name,
                 "Check the server certificate against this name instead of "
                 "the host of --server (for a certificate that does not name "
                 "the address dialled). Default: $CKPT_TLS_SERVER_NAME")
      ->envname(ckpt::client::kTlsServerNameEnv);
  app.add_option("--token-file", security.token_file,
                 "Authenticate with the bearer token in this file (trailing "
                 "newline ignored), sent on every call. Default: the token "
                 "itself in $CKPT_TOKEN. A token is sent only over TLS or to "
                 "a loopback address, and never printed");
  app.add_flag("--json", output.json,
               "Print machine-readable JSON (stable snake_case keys, exact "
               "numbers) instead of tables, and errors as one line of JSON "
               "on stderr: {\"code\": \"NOT_FOUND\", \"message\": \"...\"}");
  app.set_version_flag("--version", "ckpt " CKPT_VERSION,
                       "Print the version (ckpt X.Y.Z) and exit");

  ckpt::cli::PutArgs put;
  CLI::App* put_cmd = app.add_subcommand(
      "put",
      "Store files as one rank's shard of a checkpoint: each file becomes a "
      "uint8 tensor (float32 with --quantize-bits) named after its base name. "
      "The checkpoint commits when "
      "all --world-size ranks have put their shard.");
  put_cmd->add_option("JOB", put.job, "Job name, tenant/name")->required();
  put_cmd->add_option("STEP", put.step, "Checkpoint step (>= 0)")->required();
  put_cmd->add_option("FILE", put.files, "Files to store (read via mmap)")
      ->required();
  put_cmd->add_option("--rank", put.rank, "This shard's rank, 0..N-1")
      ->capture_default_str();
  put_cmd
      ->add_option("--world-size", put.world_size,
                   "Number of ranks N that write this checkpoint")
      ->capture_default_str();
  AddAssignments(put_cmd, "--metric", &put.metrics,
                 "A metric NAME=VALUE (a number), e.g. val_loss=0.31; "
                 "repeatable");
  AddAssignments(put_cmd, "--tag", &put.tags, "A tag KEY=VALUE; repeatable");
  put_cmd
      ->add_option("--row-bytes", put.row_bytes,
                   "Store each file as a uint8 matrix of rows of N bytes (its "
                   "size a multiple of N) instead of a flat array: the rows "
                   "are what --delta-against saves (default 0: flat)")
      ->check(CLI::NonNegativeNumber);
  put_cmd->add_option(
      "--delta-against", put.delta_against,
      "Save each file as a row delta (Check-N-Run) against the tensor of the "
      "same name and shape in this older committed checkpoint of JOB: only "
      "the rows that differ from it are stored, found by comparing row "
      "fingerprints with those stored with the base (16 bytes a row; a base "
      "saved without them is read back instead, and --json says so). Files "
      "it lacks are saved in full. Needs --row-bytes as the base was saved "
      "with");
  put_cmd->add_flag(
      "--no-fingerprints", put.no_fingerprints,
      "Do not store the files' row fingerprints (16 bytes a row, stored by "
      "default with --row-bytes unless --quantize-bits): a later "
      "--delta-against this checkpoint then reads it back whole");
  AddAssignments(
      put_cmd, "--dirty-rows", &put.dirty_rows,
      "NAME=ROWS or NAME=@FILE with --delta-against: the delta of the file "
      "put as tensor NAME holds exactly ROWS (e.g. 3,17,100-199: indices "
      "and inclusive ranges, any order, repeats allowed; empty for none), "
      "without reading the base back. @FILE reads them from FILE, for lists "
      "too long for an argument: a 1-D .npy of integers (any int or uint "
      "dtype), else text with one index or range A-B per line (blank lines "
      "and lines starting with # ignored). The list is trusted: every row "
      "not in it is restored from the base, so a wrong list silently brings "
      "back stale rows. Files without one are compared by fingerprints; "
      "repeatable, once per NAME");
  put_cmd->add_option(
      "--quantize-bits", put.quantize_bits,
      "Store each file as float32 (little-endian, its size a multiple of 4; "
      "rows of --row-bytes, a multiple of 4, else one row) quantized row-wise "
      "to 2, 3, 4 or 8 bits (lossy): the checkpoint records each file's "
      "measured error and `get` writes the dequantized float32 values. "
      "Always saved in full, so not with --delta-against");
  put_cmd->add_option("--time", put.time,
                      "The checkpoint's wall time, RFC 3339 (e.g. "
                      "2024-05-01T12:00:00Z); default: its commit time");

  ckpt::cli::GetArgs get;
  CLI::App* get_cmd = app.add_subcommand(
      "get",
      "Restore a checkpoint as files in OUTDIR, one per tensor at the path "
      "its name spells: a name with '/' (PyTorch's model/0.weight) becomes "
      "nested directories. Names that would leave OUTDIR (an absolute path, "
      "a '..', '.' or empty segment) or two tensors on one path are refused "
      "before anything is fetched, and no link inside OUTDIR is followed. "
      "Files are written under temporary names and renamed into place only "
      "once all are written and the restore is recorded in the job's "
      "events, so a get that fails writes no file and records no restore. "
      "Without --full: the tensors --rank saved (its own box of a sharded "
      "tensor).");
  get_cmd->add_option("JOB", get.job, "Job name, tenant/name")->required();
  get_cmd
      ->add_option("STEP", get.step,
                   "Checkpoint step (a non-negative integer), 'latest' (the "
                   "newest committed one), or 'best' (the best committed one "
                   "by --metric)")
      ->required();
  get_cmd->add_option("OUTDIR", get.out_dir, "Directory to write (created)")
      ->required();
  CLI::Option* rank_flag =
      get_cmd->add_option("--rank", get.rank, "Rank whose shard to restore")
          ->capture_default_str();
  get_cmd
      ->add_flag(
          "--full", get.full,
          "Write every tensor whole instead of one rank's shard: a sharded "
          "tensor (some rank saved part of it) assembled from all ranks' "
          "boxes; a tensor every rank saved whole once when all copies are "
          "equal (replicated), else each rank's copy as rank-N/NAME (per-rank "
          "state such as a data loader's position). Recorded as rank 0's "
          "restore")
      ->excludes(rank_flag);
  get_cmd->add_option("--metric", get.metric,
                      "With STEP 'best': the metric to rank checkpoints by "
                      "(a NaN value is never best; ties go to the older)");
  get_cmd->add_option("--mode", get.mode, kModeHelp);

  ckpt::cli::LsArgs ls;
  CLI::App* ls_cmd = app.add_subcommand(
      "ls",
      "List jobs (name, checkpoints, size, latest step), or a job's "
      "committed checkpoints: kind (full, or delta with its base steps), "
      "size, bytes added by the save, unique bytes, pin, tags, metrics.");
  ls_cmd->add_option("JOB", ls.job, "Job whose checkpoints to list");
  ls_cmd->add_flag("--all", ls.all,
                   "Also list pending and aborted checkpoints, with state");
  ls_cmd
      ->add_option("--tag", ls.tags,
                   "Only checkpoints with this tag: KEY (any value) or "
                   "KEY=VALUE; repeatable, all must match")
      ->expected(1)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  ls_cmd->add_option("--sort", ls.sort,
                     "List JOB's checkpoints best first by this metric (as "
                     "`get JOB best` picks): ranked ones (ties older first), "
                     "then those whose value is NaN, then those without it");
  ls_cmd->add_option("--mode", ls.mode,
                     "Direction of --sort: min, max or auto (default; "
                     "loss-like names minimise, acc-like maximise, anything "
                     "else is an error)");

  ckpt::cli::ShowArgs show;
  CLI::App* show_cmd = app.add_subcommand(
      "show",
      "Show a checkpoint's manifest: its kind, base steps and bytes added, "
      "then tensors per rank with dtype, shape, box, kind (full or delta) "
      "and base step, chunk count, size and stored bytes.");
  show_cmd->add_option("JOB", show.job, "Job name, tenant/name")->required();
  show_cmd->add_option("STEP", show.step, kStepHelp)->required();

  ckpt::cli::RmArgs rm;
  CLI::App* rm_cmd = app.add_subcommand(
      "rm",
      "Delete a committed or aborted checkpoint (its chunks are reclaimed by "
      "garbage collection). A pinned one is refused unless --force; a "
      "pending one must be aborted (ckpt abort), and the base of another "
      "checkpoint's deltas deleted after it.");
  rm_cmd->add_option("JOB", rm.job, "Job name, tenant/name")->required();
  rm_cmd->add_option("STEP", rm.step, kStepHelp)->required();
  rm_cmd->add_flag("--force", rm.force,
                   "Delete a pinned checkpoint too: the pin is overridden, "
                   "and its `deleted` event says so");

  ckpt::cli::AbortArgs abort_args;
  CLI::App* abort_cmd = app.add_subcommand(
      "abort",
      "Abort a pending checkpoint (a save that will not complete): it "
      "becomes aborted, its uploaded shards are dropped, and `rm` may then "
      "delete its record.");
  abort_cmd->add_option("JOB", abort_args.job, "Job name, tenant/name")
      ->required();
  abort_cmd->add_option("STEP", abort_args.step, "Checkpoint step")->required();
  abort_cmd->add_option("--reason", abort_args.reason,
                        "Why, kept in the checkpoint and its `aborted` event "
                        "(default: \"aborted by client\")");

  ckpt::cli::RmJobArgs rm_job;
  CLI::App* rm_job_cmd = app.add_subcommand(
      "rm-job",
      "Delete every checkpoint of JOB: pending ones are aborted first, then "
      "all are deleted, deltas before their bases (chunks are reclaimed by "
      "garbage collection). The job's policy and events stay. Needs --yes; "
      "refused, with nothing deleted, while checkpoints are pinned unless "
      "--force.");
  rm_job_cmd->add_option("JOB", rm_job.job, "Job name, tenant/name")
      ->required();
  rm_job_cmd->add_flag("--yes", rm_job.yes,
                       "Confirm: without it nothing is deleted");
  rm_job_cmd->add_flag("--force", rm_job.force,
                       "Delete pinned checkpoints too (their pins are "
                       "overridden, as with rm --force)");

  ckpt::cli::StatsArgs stats;
  CLI::App* stats_cmd = app.add_subcommand(
      "stats",
      "Show logical bytes (over committed checkpoints), stored bytes, chunk "
      "count and dedup ratio (logical / stored), for the server or a job. "
      "A job's stored bytes are the distinct chunks its committed "
      "checkpoints reference, split into its own and those shared with "
      "other jobs of its tenant (which deleting the job would not free); "
      "computing them reads every manifest of the tenant. The tenant row "
      "shows what the tenant stores in all.");
  stats_cmd->add_option("JOB", stats.job, "Job (default: the whole server)");

  CLI::App* policy_cmd = app.add_subcommand(
      "policy",
      "Show or set a job's retention policy, which the server enforces at "
      "every commit. Rules combine by union: a checkpoint is deleted only "
      "when no rule keeps it; pinned and the newest are always kept.");
  policy_cmd->require_subcommand(1);
  ckpt::cli::PolicySetArgs policy_set;
  CLI::App* policy_set_cmd = policy_cmd->add_subcommand(
      "set",
      "Store JOB's retention policy, an operator's, and apply it at once (no "
      "flags: keep everything); a job that has not saved yet is created with "
      "it. Prints what it deleted. An operator's policy wins over the one a "
      "training job passes (CheckpointManager(max_to_keep=...)), which the "
      "server then ignores with a warning. With --default, TENANT/ instead: "
      "the tenant's default policy, for its jobs without an operator's "
      "policy of their own, applied at their next commit or prune (needs an "
      "admin over the whole tenant).");
  policy_set_cmd
      ->add_option("JOB", policy_set.job,
                   "Job name, tenant/name; or TENANT/ with --default")
      ->required();
  policy_set_cmd->add_flag(
      "--default", policy_set.tenant_default,
      "Set the default policy of tenant TENANT/ (written with its trailing "
      "slash) instead of a job's");
  policy_set_cmd->add_flag(
      "--clear", policy_set.clear,
      "Remove JOB's own policy (with --default, the tenant's default) "
      "instead of setting one: its tenant's default then applies, if any, "
      "and a training job's may be set again. Deletes nothing now.");
  AddPolicyFlags(policy_set_cmd, &policy_set.flags);
  ckpt::cli::PolicyGetArgs policy_get;
  CLI::App* policy_get_cmd = policy_cmd->add_subcommand(
      "get",
      "Show the retention policy that applies to JOB (its own, or its "
      "tenant's default) and who set it (operator or writer, principal, "
      "time); TENANT/ shows the tenant's default.");
  policy_get_cmd
      ->add_option("JOB", policy_get.job, "Job name, tenant/name; or TENANT/")
      ->required();

  ckpt::cli::PinArgs pin;
  CLI::App* pin_cmd = app.add_subcommand(
      "pin",
      "Pin a committed checkpoint: retention and prune never delete it.");
  pin_cmd->add_option("JOB", pin.job, "Job name, tenant/name")->required();
  pin_cmd->add_option("STEP", pin.step, kStepHelp)->required();
  ckpt::cli::PinArgs unpin;
  unpin.pinned = false;
  CLI::App* unpin_cmd = app.add_subcommand(
      "unpin",
      "Unpin a checkpoint; the next commit or prune may then delete it.");
  unpin_cmd->add_option("JOB", unpin.job, "Job name, tenant/name")->required();
  unpin_cmd->add_option("STEP", unpin.step, kStepHelp)->required();

  ckpt::cli::TagArgs tag;
  CLI::App* tag_cmd = app.add_subcommand(
      "tag",
      "Add tags to a committed checkpoint, or replace their values: each TAG "
      "is KEY or KEY=VALUE (KEY: 1-256 bytes of UTF-8, no control "
      "characters, no '='; VALUE: at most 4096 bytes of UTF-8, no control "
      "characters; a checkpoint's tags: at most 256, 16 KiB in all). Prints "
      "the checkpoint's tags. "
      "Changing a tag's value, like removing one, needs the admin role.");
  tag_cmd->add_option("JOB", tag.job, "Job name, tenant/name")->required();
  tag_cmd->add_option("STEP", tag.step, kStepHelp)->required();
  tag_cmd->add_option("TAG", tag.tags, "KEY or KEY=VALUE; one or more")
      ->required();
  ckpt::cli::TagArgs untag;
  untag.remove = true;
  CLI::App* untag_cmd = app.add_subcommand(
      "untag",
      "Remove tags (by KEY) from a committed checkpoint; absent ones are "
      "ignored. Prints the checkpoint's tags. Needs the admin role: a "
      "keep-tag retention rule may then delete it.");
  untag_cmd->add_option("JOB", untag.job, "Job name, tenant/name")->required();
  untag_cmd->add_option("STEP", untag.step, kStepHelp)->required();
  untag_cmd->add_option("KEY", untag.tags, "Tag names; one or more")
      ->required();

  ckpt::cli::PruneArgs prune;
  CLI::App* prune_cmd = app.add_subcommand(
      "prune",
      "Apply a one-off retention policy given by the flags, or the job's "
      "stored one when none is given, and print every committed checkpoint "
      "with keep/delete and the reasons. --dry-run deletes nothing; its "
      "decisions are what the real run deletes.");
  prune_cmd->add_option("JOB", prune.job, "Job name, tenant/name")->required();
  AddPolicyFlags(prune_cmd, &prune.flags);
  prune_cmd->add_flag("--dry-run", prune.dry_run,
                      "Print the decisions without deleting anything");

  ckpt::cli::GcArgs gc;
  CLI::App* gc_cmd = app.add_subcommand(
      "gc",
      "Garbage-collect: delete the chunks no committed or pending checkpoint "
      "references (deleting a checkpoint only removes its manifest) and "
      "return their disk space. Safe while saves run. When a referenced "
      "chunk is missing it deletes nothing, names the damaged checkpoints "
      "and exits non-zero.");
  gc_cmd->add_flag("--dry-run", gc.dry_run,
                   "Report what would be deleted without deleting anything");
  CLI::Option* gc_hold_option = gc_cmd->add_option(
      "--hold-seconds", gc.hold_seconds,
      "For this collection, hold the chunks saves uploaded but have not "
      "committed yet for N seconds instead of the server's "
      "--chunk-hold-seconds (default 1800); 0 collects them however recent. "
      "From 0 to the server's hold. For an operator who knows no save is "
      "running: a save in flight whose chunks it deletes fails its commit "
      "and must upload them again (no committed or pending checkpoint loses "
      "data).");

  ckpt::cli::VerifyArgs verify;
  CLI::App* verify_cmd = app.add_subcommand(
      "verify",
      "Check that every chunk the committed checkpoints reference is stored "
      "with the size their manifests record (problems 'missing', "
      "'size-mismatch') and, with --read-data, that its bytes match its "
      "SHA-256 ('corrupt'). Names each damaged chunk and every checkpoint "
      "that references it; exits 1 when "
      "anything is damaged. Pending checkpoints are skipped (and counted). "
      "Shows a progress bar on stderr when it is a terminal.");
  verify_cmd->add_option("JOB", verify.job,
                         "Job to verify, tenant/name (default: every job)");
  verify_cmd->add_option("STEP", verify.step,
                         "Only this checkpoint of JOB: a step or 'latest' "
                         "(default: all of JOB's committed checkpoints)");
  verify_cmd->add_flag("--read-data", verify.read_data,
                       "Also read every chunk and compare its bytes with "
                       "its hash (reads all stored data; slow)");
  verify_cmd->add_option(
      "--read-data-subset", verify.read_data_subset,
      "Read only part of the chunks; implies --read-data. As restic's: n/t "
      "(1 <= n <= t, e.g. 1/5) reads part n of t; a chunk's part is fixed "
      "by its hash, so runs with n = 1..t together read every chunk once. "
      "x% (0 < x <= 100, e.g. 10%) reads a random part of t = floor(100/x), "
      "at least x% of the chunks; a size (e.g. 500M, 2G) a random part of t "
      "= stored bytes / size, about that much of the job's stored chunks "
      "(the server's without JOB). The report names the part read");
  ckpt::cli::EventsArgs events;
  CLI::App* events_cmd = app.add_subcommand(
      "events",
      "Show a job's event history, kept by the server, oldest first: "
      "committed, aborted (with the reason, e.g. lease expiry), deleted "
      "(ckpt rm), pruned (with what triggered it, the policy and why no rule "
      "kept it), pinned, unpinned, restored (with the rank), policy_set, "
      "policy_ignored (a writer's policy the server ignored because an "
      "operator's applies), tags_changed (+KEY=VALUE added, -KEY removed) and "
      "copied (ckpt copy: 'from SERVER JOB@STEP' with the commit of a copy "
      "on its target, 'to SERVER JOB@STEP' on its source), "
      "each with the principal who made it (BY; 'anonymous' on a server "
      "without tokens, 'ckpt-server' for its own work). Each job keeps its "
      "newest 10000 events; deleting a checkpoint keeps "
      "its events.");
  events_cmd->add_option("JOB", events.job, "Job name, tenant/name")
      ->required();
  events_cmd
      ->add_option("--limit", events.limit,
                   "Show only the newest N events (0: every kept event)")
      ->capture_default_str();

  ckpt::cli::DiffArgs diff;
  CLI::App* diff_cmd = app.add_subcommand(
      "diff",
      "Show what checkpoint STEP_B of a job changed relative to STEP_A, as "
      "restic diff does, from the two manifests (no tensor bytes are read). "
      "Per tensor and rank: same, changed, added or removed; for a changed "
      "one, the dtype, global shape, box and kind (full, delta on a step, "
      "quantized) on each side (A -> B), CHUNKS the chunks that differ of "
      "B's (at the same position when both are laid out alike, else B's "
      "chunks A's entry lacks), ROWS the rows a row delta of B replaces of "
      "the tensor's rows when it is taken against STEP_A (against another "
      "step: its rows 'vs' that step), NEW the bytes of its chunks STEP_A "
      "references nowhere. Then the metrics and tags that differ, the "
      "writers' times, and the bytes B added over A: B's distinct chunks A "
      "does not reference. Both checkpoints must be committed. With the "
      "global --json: one object with both checkpoints' headers (a, b), "
      "the tensors (each side's dtype, shape, box, kind, sizes and delta "
      "rows; chunks_differing, rows_changed, new_bytes), metrics, tags, "
      "writer_time, chunks_added, bytes_added and a summary of counts.");
  diff_cmd->add_option("JOB", diff.job, "Job name, tenant/name")->required();
  diff_cmd->add_option("STEP_A", diff.step_a, kStepHelp)->required();
  diff_cmd->add_option("STEP_B", diff.step_b, kStepHelp)->required();
  diff_cmd->add_flag("--all", diff.all,
                     "Also list the tensors that are the same (by default "
                     "only those that changed, were added or were removed)");

  ckpt::cli::CopyArgs copy;
  CLI::App* copy_cmd = app.add_subcommand(
      "copy",
      "Copy JOB's committed checkpoints from the server --from to the "
      "server --to, through this process: manifests, metrics, tags, writer "
      "times (the original commit time when the writer gave none), pins, "
      "delta bases (copied first, also when not asked for) and quantized "
      "tensors, and the job's retention policy when the target job has "
      "none. Only the chunks the target lacks are sent (it checks every "
      "chunk's hash). A checkpoint appears on the target only once all of "
      "it has arrived; an interrupted copy leaves it pending there, and a "
      "rerun sends only what is still missing. A step the target already "
      "holds is skipped when it is the same checkpoint and refused, before "
      "anything is sent, when it is another. The global --server is not "
      "used; the global --tls-* and --token-file flags ($CKPT_TOKEN) apply "
      "to both servers, the --to-* flags ($CKPT_TO_TOKEN) replace them for "
      "the target. Shows a progress bar on stderr when it is a terminal.");
  copy_cmd->add_option("JOB", copy.job, "Job to copy, tenant/name")->required();
  CLI::Option* copy_steps = copy_cmd->add_option(
      "--steps", copy.steps,
      "Copy these steps, separated by commas (e.g. 100,200), with the delta "
      "bases they need");
  CLI::Option* copy_latest = copy_cmd->add_flag(
      "--latest", copy.latest,
      "Copy only the newest committed checkpoint (with its delta bases)");
  bool copy_all = false;
  CLI::Option* copy_all_flag = copy_cmd->add_flag(
      "--all", copy_all, "Copy every committed checkpoint (the default)");
  copy_steps->excludes(copy_latest)->excludes(copy_all_flag);
  copy_latest->excludes(copy_all_flag);
  copy_cmd->add_option("--from", copy.from, "Source server address HOST:PORT")
      ->required();
  copy_cmd->add_option("--to", copy.to, "Target server address HOST:PORT")
      ->required();
  copy_cmd->add_option("--to-job", copy.to_job,
                       "Name of the job on the target (default: JOB); steps "
                       "keep their numbers");
  copy_cmd->add_flag("--no-policy", copy.no_policy,
                     "Do not set the source job's retention policy on the "
                     "target job (setting it needs an admin token there)");
  copy_cmd->add_flag("--dry-run", copy.dry_run,
                     "Show what would be copied and sent (checkpoints, "
                     "chunks, bytes) without changing anything");
  copy_cmd->add_option(
      "--limit-rate", copy.limit_rate,
      "Send at most this many bytes per second, e.g. 500K or 20M (K, M, G: "
      "KiB, MiB, GiB), to share a link");
  copy_cmd->add_option(
      "--stall-timeout", copy.stall_timeout,
      "Stop with DEADLINE_EXCEEDED when the source sends no chunk, or the "
      "target takes no upload data, for this long, e.g. 30s or 5m (default "
      "2m); the target's pending checkpoint is then no longer renewed, and "
      "a rerun resumes");
  std::string to_tls_ca, to_tls_cert, to_tls_key, to_tls_server_name,
      to_token_file;
  CLI::Option* to_tls_ca_flag = copy_cmd->add_option(
      "--to-tls-ca", to_tls_ca,
      "For the target: trust the server certificates issued by these CA "
      "certificates (PEM) instead of --tls-ca's; '' for a plaintext target");
  CLI::Option* to_tls_cert_flag = copy_cmd->add_option(
      "--to-tls-cert", to_tls_cert,
      "For the target: the mutual TLS client certificate (PEM), instead of "
      "--tls-cert's; '' for none");
  CLI::Option* to_tls_key_flag =
      copy_cmd->add_option("--to-tls-key", to_tls_key,
                           "For the target: the private key of --to-tls-cert");
  CLI::Option* to_tls_server_name_flag = copy_cmd->add_option(
      "--to-tls-server-name", to_tls_server_name,
      "For the target: the name to check its certificate against, instead "
      "of --tls-server-name's");
  CLI::Option* to_token_file_flag = copy_cmd->add_option(
      "--to-token-file", to_token_file,
      "For the target: the bearer token in this file, instead of "
      "--token-file's or $CKPT_TOKEN ('' for none). Default: the token "
      "itself in $CKPT_TO_TOKEN, else the global one");

  ckpt::cli::ExportArgs export_args;
  CLI::App* export_cmd = app.add_subcommand(
      "export",
      "Write a checkpoint as portable files into DIR (created; an existing "
      "file is never overwritten, and a DIR already holding *.safetensors, "
      "model.safetensors.index.json or ckpt_checkpoint.json is refused): "
      "safetensors files of whole tensors (delta chains applied, quantized "
      "tensors dequantized; names, dtypes, shapes and bytes as saved; "
      "complex tensors as float ones with a trailing dimension of 2, listed "
      "in the files' metadata), split with model.safetensors.index.json "
      "past --max-file-size, and ckpt_checkpoint.json (job, step, metadata, "
      "metrics, tags, layout, quantization records). Tensors are streamed "
      "slab by slab; the files appear only once all are complete, and the "
      "export is recorded as a restore in the job's events. See "
      "docs/portability.md.");
  export_cmd->add_option("JOB", export_args.job, "Job name, tenant/name")
      ->required();
  export_cmd->add_option("STEP", export_args.step, kStepHelp)->required();
  export_cmd->add_option("DIR", export_args.dir, "Directory to write")
      ->required();
  export_cmd
      ->add_option("--format", export_args.format,
                   "safetensors (written by ckpt), or torch: a .pt file "
                   "torch.load opens as the state dict the Python client "
                   "saved, written by the ckpt Python package (runs "
                   "$CKPT_PYTHON, default python3, -m ckpt export with the "
                   "same arguments; TLS files and token passed in the "
                   "CKPT_TLS_* and CKPT_TOKEN environment variables)")
      ->check(CLI::IsMember({"safetensors", "torch"}))
      ->capture_default_str();
  CLI::Option* export_rank = export_cmd->add_option(
      "--rank", export_args.rank,
      "Export only the part rank R of --world-size M owns: sharded tensors "
      "split evenly along dimension 0 (as torch.chunk), tensors every rank "
      "saved alike whole, per-rank tensors from rank R of the checkpoint "
      "(an error listing them when it has no rank R)");
  CLI::Option* export_world =
      export_cmd->add_option("--world-size", export_args.world_size,
                             "The number of ranks M for --rank");
  export_cmd
      ->add_flag("--full", export_args.full,
                 "Every tensor whole (the default): a sharded tensor "
                 "assembled from all ranks' boxes; a tensor every rank saved "
                 "whole once when all copies are equal, else each rank's "
                 "copy as rank-N/NAME. Recorded as rank 0's restore")
      ->excludes(export_rank)
      ->excludes(export_world);
  export_cmd->add_option(
      "--max-file-size", export_args.max_file_size,
      "Largest tensor data per safetensors file, e.g. 5G or 500M (K, M, G, "
      "T: powers of 1024; default 5G): more tensors go to "
      "model-0000i-of-0000n.safetensors files listed by "
      "model.safetensors.index.json, as Hugging Face does; a larger tensor "
      "gets a file of its own");

  ckpt::cli::ImportArgs import_args;
  CLI::App* import_cmd = app.add_subcommand(
      "import",
      "Store a directory of safetensors files as one rank's shard of "
      "checkpoint STEP of JOB: an export (its ckpt_checkpoint.json gives "
      "metadata, metrics, tags and, for a rank export, the rank and its "
      "boxes) or another tool's files (e.g. a Hugging Face model directory "
      "with model.safetensors.index.json, else every *.safetensors in DIR) "
      "as whole tensors of rank 0 of 1. Every file is checked whole first: "
      "a header that lies (offsets out of range or overlapping, a dtype and "
      "byte count that disagree, a header longer than the file, names not "
      "UTF-8, a name twice), an index naming a file outside DIR or a tensor "
      "its file lacks, a symbolic link, or a dtype ckpt lacks (U16, U32, "
      "U64, F8) is refused naming the file and the field, and then nothing "
      "is stored.");
  import_cmd->add_option("DIR", import_args.dir, "Directory to read")
      ->required();
  import_cmd->add_option("JOB", import_args.job, "Job name, tenant/name")
      ->required();
  import_cmd->add_option("STEP", import_args.step, "Checkpoint step (>= 0)")
      ->required();
  import_cmd->add_option("--rank", import_args.rank,
                         "This directory's rank (default: the rank of a rank "
                         "export's ckpt_checkpoint.json, else 0)");
  import_cmd->add_option("--world-size", import_args.world_size,
                         "Ranks N of the checkpoint; it commits when all N "
                         "are stored (default: the export's, else 1)");
  AddAssignments(import_cmd, "--metric", &import_args.metrics,
                 "A metric NAME=VALUE (a number), over the JSON file's; "
                 "repeatable");
  AddAssignments(import_cmd, "--tag", &import_args.tags,
                 "A tag KEY=VALUE, over the JSON file's; repeatable");

  std::string completion_shell;
  CLI::App* completion_cmd = app.add_subcommand(
      "completion",
      "Print a shell completion script, generated from this CLI's "
      "definition: `source <(ckpt completion bash)`, or install it as "
      "/usr/share/bash-completion/completions/ckpt (cmake --install does). "
      "Needs no server.");
  completion_cmd->add_option("SHELL", completion_shell, "The shell: bash")
      ->required()
      ->check(CLI::IsMember({"bash"}));
  CLI::App* man_cmd = app.add_subcommand(
      "man",
      "Print this CLI's man page (roff, generated from its definition: the "
      "same text as --help), e.g. `ckpt man | man -l -`; cmake --install "
      "installs it as ckpt(1). Needs no server.");

  const std::vector<std::string> verbs = SubcommandNames(app);
  output.json = JsonRequested(argc, argv);
  // Words CLI11 would report as a bare "A subcommand is required" or an
  // unexpected argument are named here, with the verbs a user may mean.
  const std::vector<std::string> typed = TypedWords(app, argc, argv);
  if (!typed.empty()) {
    absl::Status known = ckpt::cli::CheckVerb(typed[0], verbs);
    if (!known.ok()) return ckpt::cli::ReportError(known, output);
    if (typed[0] == "policy" && typed.size() > 1) {
      known = ckpt::cli::CheckVerb(absl::StrCat("policy ", typed[1]),
                                   {"policy get", "policy set"});
      if (!known.ok()) return ckpt::cli::ReportError(known, output);
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version (exit code 0) print as CLI11 prints them.
    if (e.get_exit_code() == 0) return app.exit(e);
    std::string message = e.what();
    if (typed.empty() || (typed[0] == "policy" && typed.size() == 1)) {
      const std::vector<std::string> choices =
          typed.empty() ? verbs : std::vector<std::string>{"get", "set"};
      message =
          absl::StrCat("a command is required; the commands are: ",
                       absl::StrJoin(choices, ", "),
                       typed.empty() ? " (ckpt --help describes them)"
                                     : " (ckpt policy --help describes them)");
    }
    const std::string help_hint =
        typed.empty() ? "run 'ckpt --help'"
                      : absl::StrCat("run 'ckpt ",
                                     typed[0] == "policy" && typed.size() > 1
                                         ? absl::StrCat("policy ", typed[1])
                                         : typed[0],
                                     " --help'");
    return ckpt::cli::ReportUsageError(message, e.get_exit_code(), output,
                                       help_hint);
  }

  if (*completion_cmd) {
    std::cout << ckpt::cli::BashCompletion(app);
    return EXIT_SUCCESS;
  }
  if (*man_cmd) {
    std::cout << ckpt::cli::ManPage(app, "ckpt " CKPT_VERSION);
    return EXIT_SUCCESS;
  }
  // The token itself, never a command-line argument (which other users can
  // read in the process list); --token-file wins over it.
  if (const char* token = std::getenv(ckpt::client::kTokenEnv)) {
    security.token = token;
  }
  const ckpt::client::SecurityNames security_names = {
      .tls_ca = "--tls-ca (or $CKPT_TLS_CA)",
      .tls_cert = "--tls-cert (or $CKPT_TLS_CERT)",
      .tls_key = "--tls-key (or $CKPT_TLS_KEY)",
      .tls_server_name = "--tls-server-name (or $CKPT_TLS_SERVER_NAME)",
      .token_file = "--token-file"};
  if (*copy_cmd) {
    // Two servers, neither of them --server: copy connects to both itself.
    copy.security = security;
    copy.security_names = security_names;
    ckpt::client::SecurityOverrides& to = copy.target_overrides;
    if (to_tls_ca_flag->count() > 0) to.tls_ca_file = to_tls_ca;
    if (to_tls_cert_flag->count() > 0) to.tls_cert_file = to_tls_cert;
    if (to_tls_key_flag->count() > 0) to.tls_key_file = to_tls_key;
    if (to_tls_server_name_flag->count() > 0) {
      to.tls_server_name = to_tls_server_name;
    }
    if (to_token_file_flag->count() > 0) to.token_file = to_token_file;
    if (const char* token = std::getenv(ckpt::client::kTargetTokenEnv)) {
      to.token = token;
    }
    const absl::Status copied = ckpt::cli::RunCopy(copy, output);
    if (copied.ok()) return EXIT_SUCCESS;
    return ckpt::cli::ReportError(copied, output);
  }
  if (*export_cmd && export_args.format == "torch") {
    // The Python package writes it, in this process's place.
    return ckpt::cli::ReportError(
        ckpt::cli::ExecTorchExport(export_args, server, security, output),
        output);
  }
  ckpt::client::ConnectOptions connect;
  absl::Status status =
      ckpt::client::ApplySecuritySettings(security, security_names, &connect);
  absl::StatusOr<std::unique_ptr<ckpt::client::Client>> client =
      status.ok()
          ? ckpt::client::Client::Connect(server, connect)
          : absl::StatusOr<std::unique_ptr<ckpt::client::Client>>(status);
  status = client.status();
  if (status.ok()) {
    ckpt::client::Client& c = **client;
    if (*put_cmd) {
      status = ckpt::cli::RunPut(c, put, output);
    } else if (*get_cmd) {
      status = ckpt::cli::RunGet(c, get, output);
    } else if (*ls_cmd) {
      status = ckpt::cli::RunLs(c, ls, output);
    } else if (*show_cmd) {
      status = ckpt::cli::RunShow(c, show, output);
    } else if (*rm_cmd) {
      status = ckpt::cli::RunRm(c, rm, output);
    } else if (*abort_cmd) {
      status = ckpt::cli::RunAbort(c, abort_args, output);
    } else if (*rm_job_cmd) {
      status = ckpt::cli::RunRmJob(c, rm_job, output);
    } else if (*stats_cmd) {
      status = ckpt::cli::RunStats(c, stats, output);
    } else if (*policy_set_cmd) {
      status = ckpt::cli::RunPolicySet(c, policy_set, output);
    } else if (*policy_get_cmd) {
      status = ckpt::cli::RunPolicyGet(c, policy_get, output);
    } else if (*pin_cmd) {
      status = ckpt::cli::RunPin(c, pin, output);
    } else if (*unpin_cmd) {
      status = ckpt::cli::RunPin(c, unpin, output);
    } else if (*tag_cmd) {
      status = ckpt::cli::RunTag(c, tag, output);
    } else if (*untag_cmd) {
      status = ckpt::cli::RunTag(c, untag, output);
    } else if (*prune_cmd) {
      status = ckpt::cli::RunPrune(c, prune, output);
    } else if (*gc_cmd) {
      gc.hold_seconds_given = gc_hold_option->count() > 0;
      status = ckpt::cli::RunGc(c, gc, output);
    } else if (*verify_cmd) {
      status = ckpt::cli::RunVerify(c, verify, output);
    } else if (*events_cmd) {
      status = ckpt::cli::RunEvents(c, events, output);
    } else if (*diff_cmd) {
      status = ckpt::cli::RunDiff(c, diff, output);
    } else if (*export_cmd) {
      status = ckpt::cli::RunExport(c, export_args, output);
    } else if (*import_cmd) {
      status = ckpt::cli::RunImport(c, import_args, output);
    }
  }
  if (!status.ok()) {
    std::string hint;
    if (status.code() == absl::StatusCode::kUnavailable) {
      // gRPC reports a refused TLS handshake only as a closed socket.
      hint = absl::StrCat(
          "is ckpt-server running at ", server,
          connect.tls_ca_pem.empty()
              ? ", and without TLS (else pass --tls-ca)?"
              : ", with TLS, a certificate from --tls-ca naming that host "
                "and, for mutual TLS, --tls-cert and --tls-key?");
    }
    return ckpt::cli::ReportError(status, output, hint);
  }
  return EXIT_SUCCESS;
}
