// `ckpt import`: a directory of safetensors files (an export, or another
// tool's) saved as one rank's shard of a checkpoint
// (client/portable/import.h).
#include "client/portable/import.h"

#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cli/args.h"
#include "client/cli/commands.h"
#include "client/cli/format.h"
#include "client/cli/json_output.h"
#include "client/cli/progress.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace ckpt::cli {

absl::Status RunImport(client::Client& client, const ImportArgs& args,
                       const OutputOptions& out) {
  if (args.dir.empty()) {
    return absl::InvalidArgumentError("DIR must not be empty");
  }
  CKPT_ASSIGN_OR_RETURN(const int64_t step, ParseStep(args.step));
  client::portable::ImportOptions options;
  options.rank = args.rank;
  options.world_size = args.world_size;
  CKPT_ASSIGN_OR_RETURN(options.metadata,
                        ParseMetadata(args.metrics, args.tags, ""));
  client::portable::ImportReport report;
  {
    ProgressBar bar;
    options.progress = [&](uint64_t done, uint64_t total) {
      bar.Update("importing", done, total, ProgressUnit::kBytes);
    };
    CKPT_ASSIGN_OR_RETURN(
        report, client::portable::ImportDirectory(client, args.dir, args.job,
                                                  step, options));
  }
  const client::SaveResult& saved = report.saved;
  if (out.json) {
    PrintJson({{"job", report.job},
               {"step", report.step},
               {"dir", args.dir},
               {"rank", report.rank},
               {"world_size", report.world_size},
               {"files", report.files},
               {"tensors", report.tensors},
               {"tensor_bytes", report.tensor_bytes},
               {"metadata_from_json", report.metadata_from_json},
               {"chunks_total", saved.chunks_total},
               {"chunks_sent", saved.chunks_sent},
               {"bytes_sent", saved.bytes_sent},
               {"committed", saved.checkpoint_committed},
               {"checkpoint", RecordJson(saved.checkpoint)}});
    return absl::OkStatus();
  }
  std::cout << "imported " << args.dir << " as " << report.job << " step "
            << report.step << " rank " << report.rank << " of "
            << report.world_size << ": " << report.tensors << " tensor(s), "
            << HumanBytes(report.tensor_bytes) << " from "
            << report.files.size() << " file(s)"
            << (report.metadata_from_json
                    ? ", metadata from ckpt_checkpoint.json"
                    : "")
            << "; sent " << saved.chunks_sent << " of " << saved.chunks_total
            << " chunk(s), " << HumanBytes(saved.bytes_sent) << "\n";
  if (saved.checkpoint_committed) {
    std::cout << "committed step " << report.step << "\n";
  } else {
    std::cout << "step " << report.step
              << " stays pending until every rank is imported ("
              << saved.checkpoint.committed_ranks.size() << " of "
              << report.world_size << ")\n";
  }
  return absl::OkStatus();
}

}  // namespace ckpt::cli
