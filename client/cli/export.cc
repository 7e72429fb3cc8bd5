// `ckpt export`: a checkpoint as portable files in DIR. safetensors is
// written here (client/portable/export.h); torch by the Python package,
// which this verb runs in its place (ExecTorchExport).
#include "client/portable/export.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
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
namespace {

using nlohmann::json;

// The Python interpreter --format torch runs when CKPT_PYTHON is unset.
constexpr char kDefaultPython[] = "python3";

// Run as `python -c kTorchBootstrap export JOB ...`: `python -m ckpt export
// JOB ...`, with a message saying how to get the package when it is
// missing instead of a bare "No module named ckpt".
constexpr char kTorchBootstrap[] = R"py(import importlib.util, runpy, sys
def fail(why):
    sys.stderr.write("ckpt: FAILED_PRECONDITION: ckpt export --format torch "
        "runs the ckpt Python package (python3 -m ckpt export), but " + why +
        ". Build the package (client/python) and put its directory on "
        "PYTHONPATH, with torch installed, or set CKPT_PYTHON to a Python "
        "that has both; --format safetensors needs neither\n")
    sys.exit(1)
try:
    found = importlib.util.find_spec("ckpt") is not None
    main = found and importlib.util.find_spec("ckpt.__main__") is not None
except Exception as error:
    fail(sys.executable + " cannot import it (" + repr(error) + ")")
if not found:
    fail(sys.executable + " has no package named ckpt")
if not main:
    fail("the ckpt package of " + sys.executable + " has no command line "
         "(ckpt/__main__.py); it is older than torch exports")
runpy.run_module("ckpt", run_name="__main__", alter_sys=True)
)py";

// --rank/--world-size/--full as ExportOptions' layout fields.
absl::Status ApplyLayoutFlags(const ExportArgs& args,
                              client::portable::ExportOptions* options) {
  if (args.rank.has_value() != args.world_size.has_value()) {
    return absl::InvalidArgumentError(
        "--rank and --world-size go together (rank R of M); without them "
        "the export is --full");
  }
  if (args.rank.has_value() && args.full) {
    return absl::InvalidArgumentError(
        "--full exports every tensor whole; --rank R --world-size M exports "
        "one rank's part: give one or the other");
  }
  options->full = !args.rank.has_value();
  if (!options->full) {
    if (*args.world_size < 1 || *args.rank < 0 ||
        *args.rank >= *args.world_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("--rank ", *args.rank, " is outside --world-size ",
                       *args.world_size, " (ranks are 0..M-1)"));
    }
    options->rank = *args.rank;
    options->world_size = *args.world_size;
  }
  return absl::OkStatus();
}

void SetEnv(const char* name, const std::string& value) {
  if (!value.empty()) ::setenv(name, value.c_str(), 1);
}

}  // namespace

absl::Status RunExport(client::Client& client, const ExportArgs& args,
                       const OutputOptions& out) {
  if (args.format != "safetensors") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--format '", args.format, "' is not a format: safetensors or torch"));
  }
  if (args.dir.empty()) {
    return absl::InvalidArgumentError("DIR must not be empty");
  }
  client::portable::ExportOptions options;
  CKPT_RETURN_IF_ERROR(ApplyLayoutFlags(args, &options));
  if (!args.max_file_size.empty()) {
    CKPT_ASSIGN_OR_RETURN(options.max_file_bytes,
                          ParseByteSize("--max-file-size", args.max_file_size));
  }
  CKPT_ASSIGN_OR_RETURN(std::optional<int64_t> step,
                        ParseStepOrLatest(args.step));
  CKPT_ASSIGN_OR_RETURN(Checkpoint checkpoint,
                        client.GetManifest(args.job, step));
  client::portable::ExportReport report;
  {
    ProgressBar bar;
    CKPT_ASSIGN_OR_RETURN(report, client::portable::ExportCheckpoint(
                                      client, checkpoint, args.dir, options,
                                      [&](uint64_t done, uint64_t total) {
                                        bar.Update("exporting", done, total,
                                                   ProgressUnit::kBytes);
                                      }));
  }
  if (out.json) {
    PrintJson({{"job", report.job},
               {"step", report.step},
               {"dir", args.dir},
               {"format", "safetensors"},
               {"full", options.full},
               {"rank", options.full ? json(nullptr) : json(options.rank)},
               {"world_size",
                options.full ? json(nullptr) : json(options.world_size)},
               {"files", report.files},
               {"tensors", report.tensors},
               {"tensor_bytes", report.tensor_bytes}});
    return absl::OkStatus();
  }
  std::cout << "exported " << report.job << " step " << report.step;
  if (options.full) {
    std::cout << " whole (" << checkpoint.record.world_size << " rank(s))";
  } else {
    std::cout << " rank " << options.rank << " of " << options.world_size;
  }
  std::cout << " to " << args.dir << ": " << report.tensors << " tensor(s), "
            << HumanBytes(report.tensor_bytes) << " in " << report.files.size()
            << " file(s)\n";
  std::vector<std::vector<std::string>> rows;
  for (const std::string& file : report.files) rows.push_back({file});
  PrintTable(std::cout, {"FILE"}, rows);
  return absl::OkStatus();
}

absl::Status ExecTorchExport(const ExportArgs& args, const std::string& server,
                             const client::SecuritySettings& security,
                             const OutputOptions& out) {
  client::portable::ExportOptions layout;
  CKPT_RETURN_IF_ERROR(ApplyLayoutFlags(args, &layout));
  if (!args.max_file_size.empty()) {
    return absl::InvalidArgumentError(
        "--max-file-size splits safetensors files; it does not apply to "
        "--format torch");
  }
  if (args.dir.empty()) {
    return absl::InvalidArgumentError("DIR must not be empty");
  }
  CKPT_RETURN_IF_ERROR(ParseStepOrLatest(args.step).status());
  // The TLS files and the token go through the environment, which other
  // users cannot read, never through the command line, which they can.
  std::string token = security.token;
  if (!security.token_file.empty()) {
    CKPT_ASSIGN_OR_RETURN(
        token, client::ReadTokenFile(security.token_file, "--token-file"));
  }
  SetEnv(client::kTlsCaEnv, security.tls_ca_file);
  SetEnv(client::kTlsCertEnv, security.tls_cert_file);
  SetEnv(client::kTlsKeyEnv, security.tls_key_file);
  SetEnv(client::kTlsServerNameEnv, security.tls_server_name);
  SetEnv(client::kTokenEnv, token);

  const char* configured = std::getenv("CKPT_PYTHON");
  const std::string python = configured != nullptr && configured[0] != '\0'
                                 ? configured
                                 : kDefaultPython;
  std::vector<std::string> words = {
      python,   "-c",       kTorchBootstrap, "export",   args.job, args.step,
      args.dir, "--format", "torch",         "--server", server};
  if (layout.full) {
    words.push_back("--full");
  } else {
    for (std::string word :
         {std::string("--rank"), absl::StrCat(layout.rank),
          std::string("--world-size"), absl::StrCat(layout.world_size)}) {
      words.push_back(std::move(word));
    }
  }
  if (out.json) words.push_back("--json");
  std::vector<char*> argv;
  for (std::string& word : words) argv.push_back(word.data());
  argv.push_back(nullptr);
  std::cout.flush();
  ::execvp(python.c_str(), argv.data());
  return absl::FailedPreconditionError(absl::StrCat(
      "ckpt export --format torch runs the ckpt Python package (python3 -m "
      "ckpt export), but '",
      python, "' could not be run: ", std::strerror(errno),
      ". Install Python 3 with torch and the ckpt package (client/python, "
      "its directory on PYTHONPATH), or set CKPT_PYTHON to such a Python; "
      "--format safetensors needs neither"));
}

}  // namespace ckpt::cli
