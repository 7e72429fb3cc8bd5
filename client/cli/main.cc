// ckpt: the operator CLI of ckpt-server. See `ckpt --help` and
// `ckpt VERB --help`.

#include <cstdlib>
#include <iostream>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "client/cli/commands.h"
#include "client/client.h"

namespace {

constexpr const char* kStepHelp =
    "Checkpoint step (a non-negative integer) or 'latest' (the newest "
    "committed one)";

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
  app.add_flag("--json", output.json,
               "Print machine-readable JSON (stable snake_case keys, exact "
               "numbers) instead of tables");

  ckpt::cli::PutArgs put;
  CLI::App* put_cmd = app.add_subcommand(
      "put",
      "Store files as one rank's shard of a checkpoint: each file becomes a "
      "uint8 tensor named after its base name. The checkpoint commits when "
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
  put_cmd
      ->add_option("--metric", put.metrics,
                   "A metric NAME=VALUE (a number), e.g. val_loss=0.31; "
                   "repeatable")
      ->expected(1)
      ->allow_extra_args(false)  // a later positional is not a value
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  put_cmd->add_option("--tag", put.tags, "A tag KEY=VALUE; repeatable")
      ->expected(1)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  put_cmd->add_option("--time", put.time,
                      "The checkpoint's wall time, RFC 3339 (e.g. "
                      "2024-05-01T12:00:00Z); default: its commit time");

  ckpt::cli::GetArgs get;
  CLI::App* get_cmd = app.add_subcommand(
      "get",
      "Restore one rank's shard of a checkpoint as files in OUTDIR (one file "
      "per tensor, named after the tensor).");
  get_cmd->add_option("JOB", get.job, "Job name, tenant/name")->required();
  get_cmd->add_option("STEP", get.step, kStepHelp)->required();
  get_cmd->add_option("OUTDIR", get.out_dir, "Directory to write (created)")
      ->required();
  get_cmd->add_option("--rank", get.rank, "Rank whose shard to restore")
      ->capture_default_str();

  ckpt::cli::LsArgs ls;
  CLI::App* ls_cmd = app.add_subcommand(
      "ls",
      "List jobs (name, checkpoints, size, latest step), or a job's "
      "committed checkpoints.");
  ls_cmd->add_option("JOB", ls.job, "Job whose checkpoints to list");
  ls_cmd->add_flag("--all", ls.all,
                   "Also list pending and aborted checkpoints, with state");

  ckpt::cli::ShowArgs show;
  CLI::App* show_cmd = app.add_subcommand(
      "show",
      "Show a checkpoint's manifest: tensors per rank with dtype, shape, "
      "box, chunk count and size.");
  show_cmd->add_option("JOB", show.job, "Job name, tenant/name")->required();
  show_cmd->add_option("STEP", show.step, kStepHelp)->required();

  ckpt::cli::RmArgs rm;
  CLI::App* rm_cmd = app.add_subcommand(
      "rm",
      "Delete a committed or aborted checkpoint (its chunks are reclaimed by "
      "garbage collection).");
  rm_cmd->add_option("JOB", rm.job, "Job name, tenant/name")->required();
  rm_cmd->add_option("STEP", rm.step, "Checkpoint step")->required();

  ckpt::cli::StatsArgs stats;
  CLI::App* stats_cmd = app.add_subcommand(
      "stats",
      "Show logical bytes (over committed checkpoints), stored bytes, chunk "
      "count and dedup ratio (logical / stored), for the server or a job.");
  stats_cmd->add_option("JOB", stats.job, "Job (default: the whole server)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  auto client = ckpt::client::Client::Connect(server);
  absl::Status status = client.status();
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
    } else if (*stats_cmd) {
      status = ckpt::cli::RunStats(c, stats, output);
    }
  }
  if (!status.ok()) {
    std::cerr << "ckpt: " << absl::StatusCodeToString(status.code()) << ": "
              << status.message() << std::endl;
    return EXIT_FAILURE;
  }
  return EXIT_SUCCESS;
}
