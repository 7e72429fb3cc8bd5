// Runs a program a benchmark times as a whole (the `ckpt` CLI, a python3
// helper): argv as given, no shell, its output kept in files. Header-only.
#pragma once

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

extern char** environ;

namespace ckpt::bench {

// Runs argv[0] (a path) with `argv` and waits for it; its stdout goes to
// `out_path` and its stderr to `out_path`.err. Returns its stdout. INTERNAL
// naming the command, its wait status and the end of its stderr when it
// cannot start or does not exit 0.
inline absl::StatusOr<std::string> RunChild(std::vector<std::string> argv,
                                            const std::string& out_path) {
  const std::string err_path = out_path + ".err";
  std::vector<char*> c_argv;
  for (std::string& arg : argv) c_argv.push_back(arg.data());
  c_argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = 0;
  const int rc =
      ::posix_spawn(&pid, c_argv[0], &actions, nullptr, c_argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  // Long arguments (a script given with -c) are cut in the message.
  std::vector<std::string> shown;
  for (const std::string& arg : argv) {
    shown.push_back(arg.size() > 80 ? arg.substr(0, 77) + "..." : arg);
  }
  const std::string command = absl::StrJoin(shown, " ");
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("cannot start `", command, "`: ", std::strerror(rc)));
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) < 0) {
    return absl::InternalError(
        absl::StrCat("waitpid for `", command, "`: ", std::strerror(errno)));
  }
  std::stringstream out;
  out << std::ifstream(out_path).rdbuf();
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return out.str();
  std::stringstream err;
  err << std::ifstream(err_path).rdbuf();
  const std::string text = err.str();
  return absl::InternalError(absl::StrCat(
      "`", command, "` failed (wait status ", status,
      "): ", text.substr(text.size() > 800 ? text.size() - 800 : 0)));
}

}  // namespace ckpt::bench
