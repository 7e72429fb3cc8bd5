// ckpt-bench-delta's modes beyond its default comparison (--modes): a
// restarted job's first save (delta_restart_mode.cc) and the `ckpt` CLI's
// stateless delta (delta_cli_mode.cc), each on a table alone with a
// fraction of its rows modified, at several table sizes, several rounds.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace ckpt::bench {

struct ModeFlags {
  std::vector<int64_t> sizes_rows;  // table rows, one run per size
  int64_t cols = 64;                // float32 columns per row
  double fraction = 0.01;           // of rows modified between saves
  int rounds = 3;
  std::string base_dir;                     // for servers' data and files
  std::string python = "/usr/bin/python3";  // with torch, for torch.save
  bool quiet = false;                       // --json: no text while running
};

// Mode "restart": per size, a fresh server; a job saves a full baseline
// through SaveIncremental; a fresh IncrementalSaver (the restarted process)
// runs RestoreShardAndSeed; rows change; then, in turns, its
// SaveIncremental (must be a row delta of exactly the changed rows), a
// full SaveShard of the same state into a new tenant, and a fresh saver's
// SaveIncremental without seeding (the behaviour before seeding: a full
// save). Every restore is compared byte for byte. INTERNAL when the
// restarted save is not that delta, the seeding did not use stored
// fingerprints, or restored bytes differ.
absl::StatusOr<nlohmann::json> RunRestartMode(const ModeFlags& flags);

// Mode "cli-stateless": per size, the table as a file; `ckpt put
// --row-bytes` stores it (with fingerprints in one job, --no-fingerprints
// in another); rows change and the file is rewritten; then, in turns,
// `ckpt put --delta-against` into each job (stored fingerprints, and the
// read-back fallback) and torch.save + fsync of the table as one tensor
// (python3 with torch). INTERNAL when a CLI delta is not one of exactly
// the changed rows, the first did not use stored fingerprints, or a
// restore differs.
absl::StatusOr<nlohmann::json> RunCliStatelessMode(const ModeFlags& flags);

}  // namespace ckpt::bench
