// `ckpt tag` and `ckpt untag`: a committed checkpoint's tags, through
// SetCheckpointTags, checked against common/tags.h before anything is sent.
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cli/commands.h"
#include "client/cli/format.h"
#include "client/cli/json_output.h"
#include "client/cli/resolve_step.h"
#include "common/status_macros.h"
#include "common/tags.h"

namespace ckpt::cli {

absl::Status RunTag(client::Client& client, const TagArgs& args,
                    const OutputOptions& out) {
  Tags set;
  std::vector<std::string> remove;
  for (const std::string& text : args.tags) {
    if (args.remove) {
      CKPT_RETURN_IF_ERROR(ValidateTagName(text));
      remove.push_back(text);
    } else {
      CKPT_ASSIGN_OR_RETURN(auto tag, ParseTag(text));
      set[tag.first] = tag.second;
    }
  }
  CKPT_ASSIGN_OR_RETURN(int64_t step, ResolveStep(client, args.job, args.step));
  CKPT_ASSIGN_OR_RETURN(CheckpointRecord record,
                        client.SetCheckpointTags(args.job, step, set, remove));
  if (out.json) {
    PrintJson({{"job", args.job},
               {"step", step},
               {"tags", MetadataJson(record.metadata)["tags"]}});
  } else {
    std::cout << args.job << " step " << step << " tags "
              << FormatTags(record.metadata.tags) << "\n";
  }
  return absl::OkStatus();
}

}  // namespace ckpt::cli
