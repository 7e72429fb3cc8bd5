// `ckpt get`: one rank's shard of a checkpoint restored as files, one per
// tensor, named after the tensor.
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cli/args.h"
#include "client/cli/commands.h"
#include "client/cli/format.h"
#include "client/cli/json_output.h"
#include "client/cli/local_files.h"
#include "client/cli/progress.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace ckpt::cli {

using nlohmann::json;

absl::Status RunGet(client::Client& client, const GetArgs& args,
                    const OutputOptions& out) {
  CKPT_ASSIGN_OR_RETURN(std::optional<int64_t> step,
                        ParseStepOrLatest(args.step));
  // Fetched for the rank it restores: the server records the restore.
  CKPT_ASSIGN_OR_RETURN(Checkpoint checkpoint,
                        client.GetManifest(args.job, step, args.rank));
  // Check every name before fetching or writing anything.
  for (const ShardManifest& shard : checkpoint.shards) {
    if (shard.rank != args.rank) continue;
    for (const TensorEntry& entry : shard.tensors) {
      CKPT_RETURN_IF_ERROR(CheckSafeFileName(entry.name));
    }
  }
  std::vector<client::RestoredTensor> tensors;
  {
    ProgressBar bar;
    CKPT_ASSIGN_OR_RETURN(
        tensors, client.RestoreShard(checkpoint, args.rank,
                                     [&](uint64_t done, uint64_t total) {
                                       bar.Update("restoring", done, total,
                                                  ProgressUnit::kBytes);
                                     }));
  }
  std::error_code error;
  std::filesystem::create_directories(args.out_dir, error);
  if (error) {
    return absl::ErrnoToStatus(
        error.value(), absl::StrCat("cannot create '", args.out_dir, "'"));
  }
  json files = json::array();
  std::vector<std::vector<std::string>> rows;
  uint64_t total = 0;
  for (const client::RestoredTensor& tensor : tensors) {
    const std::string path =
        (std::filesystem::path(args.out_dir) / tensor.entry.name).string();
    CKPT_RETURN_IF_ERROR(WriteFile(
        path, absl::string_view(tensor.bytes.data(), tensor.bytes.size())));
    total += tensor.bytes.size();
    files.push_back({{"name", tensor.entry.name},
                     {"path", path},
                     {"bytes", tensor.bytes.size()}});
    rows.push_back({path, HumanBytes(tensor.bytes.size())});
  }
  if (out.json) {
    PrintJson({{"job", args.job},
               {"step", checkpoint.record.step},
               {"rank", args.rank},
               {"bytes", total},
               {"files", files}});
    return absl::OkStatus();
  }
  std::cout << "restored " << args.job << " step " << checkpoint.record.step
            << " rank " << args.rank << ": " << tensors.size() << " file(s), "
            << HumanBytes(total) << "\n";
  PrintTable(std::cout, {"FILE", "SIZE"}, rows);
  return absl::OkStatus();
}

}  // namespace ckpt::cli
