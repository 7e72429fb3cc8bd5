// The ckpt CLI's shell completion and man page, generated from its CLI11
// definition (every verb, option and help text as `--help` shows them), so
// that neither can go stale: `ckpt completion bash` and `ckpt man` print
// them, and the build installs them (client/CMakeLists.txt).
#pragma once

#include <string>

#include "CLI/CLI.hpp"

namespace ckpt::cli {

// A bash completion script for `ckpt`: verbs (and policy's sub-verbs),
// each verb's options and the global ones; after an option that takes a
// value, its choices when it has a fixed set, else files.
std::string BashCompletion(const CLI::App& app);

// ckpt(1) in roff (man -l): name, synopsis, global options, every verb with
// its arguments and options, exit status, environment. `version` goes in
// the footer.
std::string ManPage(const CLI::App& app, const std::string& version);

}  // namespace ckpt::cli
