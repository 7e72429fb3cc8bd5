// The verbs of the ckpt CLI. Each runs against a connected Client (copy
// against two, which it connects itself), prints to stdout (a table for
// people, or JSON with stable snake_case keys) and returns the first error,
// which main prints as "ckpt: CODE: message". Each Run* is defined in its
// group's file: put.cc, get.cc, inspect.cc (ls, show, stats, events),
// retention_verbs.cc (policy, pin, unpin, prune, rm), tag_verbs.cc (tag,
// untag), delete_verbs.cc (abort, rm-job), maintenance.cc (gc,
// verify), diff.cc (diff), copy.cc (copy), export.cc and
// import.cc.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "client/cli/args.h"
#include "client/client.h"
#include "client/security_settings.h"

namespace ckpt::cli {

struct OutputOptions {
  bool json = false;
};

struct PutArgs {
  std::string job;
  std::string step;
  std::vector<std::string> files;
  int32_t rank = 0;
  int32_t world_size = 1;
  std::vector<std::string> metrics;  // NAME=VALUE
  std::vector<std::string> tags;     // KEY=VALUE
  std::string time;                  // RFC 3339; empty: none
  // > 0: each file is a matrix of rows this long in bytes (its size a
  // multiple of it), the rows a delta replaces or quantization scales; 0: a
  // 1-D tensor.
  int64_t row_bytes = 0;
  // Set: each file with a same-named tensor of the same shape in this
  // checkpoint (of any rank) is saved as a row delta against it, holding
  // the rows that differ; the others are saved in full.
  std::optional<int64_t> delta_against;
  // NAME=ROWS, repeatable (with delta_against): the delta of the file whose
  // tensor is NAME holds exactly ROWS (indices and inclusive ranges A-B,
  // comma-separated, any order, repeats allowed, empty for none), trusted
  // without reading the base back. NAME=@FILE reads them from FILE (a .npy
  // or text; client/cli/row_list_file.h).
  std::vector<std::string> dirty_rows;
  // Set: each file is float32 (little-endian; rows of row_bytes, or one
  // row) saved quantized to this many bits (2, 3, 4 or 8), in full.
  std::optional<int> quantize_bits;
  // With row_bytes (and not quantize_bits), each file's row fingerprints
  // are stored with it, so that a later --delta-against this checkpoint
  // reads 16 bytes a row instead of the rows; true skips that.
  bool no_fingerprints = false;
};
absl::Status RunPut(client::Client& client, const PutArgs& args,
                    const OutputOptions& out);

struct GetArgs {
  std::string job;
  std::string step;  // a step, "latest" or "best" (with metric)
  std::string out_dir;
  int32_t rank = 0;
  // Every tensor whole: sharded ones assembled from all ranks' boxes,
  // per-rank ones once, or under rank-N/ when the ranks' bytes differ.
  bool full = false;
  std::string metric;  // for step "best"
  std::string mode;    // min, max or auto (empty: auto)
};
absl::Status RunGet(client::Client& client, const GetArgs& args,
                    const OutputOptions& out);

struct ExportArgs {
  std::string job;
  std::string step;  // a step or "latest"
  std::string dir;
  std::string format = "safetensors";  // or "torch"
  // Both or neither; neither: --full (the default).
  std::optional<int32_t> rank;
  std::optional<int32_t> world_size;
  bool full = false;
  std::string max_file_size;  // ParseByteSize; empty: the default (5 GiB)
};
// `export --format safetensors`: ExportCheckpoint (client/portable/
// export.h) into DIR, with a progress bar on stderr when it is a terminal.
absl::Status RunExport(client::Client& client, const ExportArgs& args,
                       const OutputOptions& out);
// `export --format torch`, which the Python package writes: replaces this
// process with `$CKPT_PYTHON -m ckpt export JOB STEP DIR --format torch
// --server ADDR [--full | --rank R --world-size M] [--json]` (python3 when
// CKPT_PYTHON is unset), its TLS files and token passed in the CKPT_TLS_*
// and CKPT_TOKEN environment variables (never on the command line). Needs
// no connection. Returns only when that cannot run: FAILED_PRECONDITION
// saying how to get the package.
absl::Status ExecTorchExport(const ExportArgs& args, const std::string& server,
                             const client::SecuritySettings& security,
                             const OutputOptions& out);

struct ImportArgs {
  std::string dir;
  std::string job;
  std::string step;
  std::optional<int32_t> rank;        // default: the JSON file's, else 0
  std::optional<int32_t> world_size;  // default: the JSON file's, else 1
  std::vector<std::string> metrics;   // NAME=VALUE, over the JSON file's
  std::vector<std::string> tags;      // KEY=VALUE, over the JSON file's
};
// ImportDirectory (client/portable/import.h) of DIR as (JOB, STEP).
absl::Status RunImport(client::Client& client, const ImportArgs& args,
                       const OutputOptions& out);

struct LsArgs {
  std::string job;  // empty: list jobs
  bool all = false;
  // Only the checkpoints matching every one (common/tags.h MatchesTag:
  // KEY, or KEY=VALUE).
  std::vector<std::string> tags;
  // Non-empty: the checkpoints best first by this metric (common/
  // best_checkpoint.h), under `mode` (min, max or auto; empty: auto).
  std::string sort;
  std::string mode;
};
absl::Status RunLs(client::Client& client, const LsArgs& args,
                   const OutputOptions& out);

struct ShowArgs {
  std::string job;
  std::string step;  // a step or "latest"
};
absl::Status RunShow(client::Client& client, const ShowArgs& args,
                     const OutputOptions& out);

struct RmArgs {
  std::string job;
  std::string step;    // a step or "latest"
  bool force = false;  // override a pin
};
absl::Status RunRm(client::Client& client, const RmArgs& args,
                   const OutputOptions& out);

struct AbortArgs {
  std::string job;
  std::string step;
  std::string reason;  // empty: the server's ("aborted by client")
};
// `abort` (delete_verbs.cc): a pending checkpoint becomes aborted.
absl::Status RunAbort(client::Client& client, const AbortArgs& args,
                      const OutputOptions& out);

struct RmJobArgs {
  std::string job;
  bool yes = false;    // the confirmation; without it nothing is done
  bool force = false;  // also delete pinned checkpoints
};
// `rm-job` (delete_verbs.cc): aborts the job's pending checkpoints, then
// deletes all of them, deltas before their bases. Refuses without --yes,
// and, before deleting anything, when some are pinned and not --force.
// The job's record (policy, events) stays: there is no RPC that deletes a
// job.
absl::Status RunRmJob(client::Client& client, const RmJobArgs& args,
                      const OutputOptions& out);

struct StatsArgs {
  std::string job;  // empty: whole server
};
absl::Status RunStats(client::Client& client, const StatsArgs& args,
                      const OutputOptions& out);

struct PolicySetArgs {
  std::string job;              // or TENANT/ with tenant_default
  PolicyFlags flags;            // none given: a policy that keeps everything
  bool tenant_default = false;  // --default
  bool clear = false;           // --clear
};
absl::Status RunPolicySet(client::Client& client, const PolicySetArgs& args,
                          const OutputOptions& out);

struct PolicyGetArgs {
  std::string job;  // or TENANT/: the tenant's default
};
absl::Status RunPolicyGet(client::Client& client, const PolicyGetArgs& args,
                          const OutputOptions& out);

struct PinArgs {
  std::string job;
  std::string step;
  bool pinned = true;  // false: unpin
};
absl::Status RunPin(client::Client& client, const PinArgs& args,
                    const OutputOptions& out);

struct TagArgs {
  std::string job;
  std::string step;               // a step or "latest"
  std::vector<std::string> tags;  // tag: KEY or KEY=VALUE; untag: KEY
  bool remove = false;            // untag
};
// `tag` and `untag` (tag_verbs.cc): SetCheckpointTags, then prints the
// checkpoint's tags.
absl::Status RunTag(client::Client& client, const TagArgs& args,
                    const OutputOptions& out);

struct PruneArgs {
  std::string job;
  PolicyFlags flags;  // none given: the job's stored policy
  bool dry_run = false;
};
absl::Status RunPrune(client::Client& client, const PruneArgs& args,
                      const OutputOptions& out);

struct GcArgs {
  bool dry_run = false;
  // Whole seconds, as given (checked by RunGc, ranged by the server),
  // when hold_seconds_given; else the server's hold window.
  std::string hold_seconds;
  bool hold_seconds_given = false;
};
// DATA_LOSS (after printing the report) when checkpoints reference missing
// chunks: the collection then deleted nothing.
absl::Status RunGc(client::Client& client, const GcArgs& args,
                   const OutputOptions& out);

struct VerifyArgs {
  std::string job;   // empty: every job
  std::string step;  // empty: every checkpoint of job; a step or "latest"
  bool read_data = false;
  std::string read_data_subset;  // "n/t"; empty: every chunk
};
// Prints the report; DATA_LOSS (so a non-zero exit) when anything is
// damaged. A progress bar goes to stderr when it is a terminal.
absl::Status RunVerify(client::Client& client, const VerifyArgs& args,
                       const OutputOptions& out);

struct EventsArgs {
  std::string job;
  int limit = 0;  // the newest N events; 0: every kept event
};
absl::Status RunEvents(client::Client& client, const EventsArgs& args,
                       const OutputOptions& out);

struct DiffArgs {
  std::string job;
  std::string step_a;  // a step or "latest"
  std::string step_b;
  bool all = false;  // also list the tensors that are the same
};
// Compares two committed checkpoints of a job from their manifests
// (common/checkpoint_diff.h); NOT_FOUND when either is not committed.
absl::Status RunDiff(client::Client& client, const DiffArgs& args,
                     const OutputOptions& out);

struct CopyArgs {
  std::string job;
  // Which checkpoints: --steps as typed (empty: not given), --latest, or
  // every committed one (--all, the default).
  std::string steps;
  bool latest = false;
  std::string from;    // source address
  std::string to;      // target address
  std::string to_job;  // empty: job
  bool no_policy = false;
  bool dry_run = false;
  std::string limit_rate;     // as typed; empty: no limit
  std::string stall_timeout;  // as typed; empty: the default (2m)
  // The global TLS and token settings (both servers) and how they are
  // spelt, and the --to-* ones ($CKPT_TO_TOKEN) that replace them for the
  // target.
  client::SecuritySettings security;
  client::SecurityNames security_names;
  client::SecurityOverrides target_overrides;
};
// Copies checkpoints from --from to --to (client/copy.h), with a progress
// bar on stderr when it is a terminal, then prints the report. When the
// source's policy could not be set on the target, the report is printed
// and that error returned (the checkpoints were copied).
absl::Status RunCopy(const CopyArgs& args, const OutputOptions& out);

}  // namespace ckpt::cli
