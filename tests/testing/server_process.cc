#include "tests/testing/server_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string_view>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

extern char** environ;

namespace ckpt::testing {

std::string BuiltBinary(const std::string& relative) {
  const char* dir = std::getenv("CKPT_BUILD_DIR");
  return absl::StrCat(dir != nullptr ? dir : ".", "/", relative);
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(
    const std::string& data_dir, std::vector<std::string> extra_args,
    const std::string& stderr_path, const std::vector<std::string>& extra_env) {
  std::vector<std::string> args = {BuiltBinary("server/rpc/ckpt-server")};
  if (!data_dir.empty()) args.insert(args.end(), {"--data-dir", data_dir});
  if (std::find(extra_args.begin(), extra_args.end(), "--listen") ==
      extra_args.end()) {
    args.insert(args.end(), {"--listen", "127.0.0.1:0"});
  }
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  // The environment: ours, less the variables `extra_env` sets, then those.
  std::vector<std::string> env_strings;
  for (char** var = environ; *var != nullptr; ++var) {
    const std::string_view entry(*var);
    const std::string_view name = entry.substr(0, entry.find('=') + 1);
    const bool replaced = std::any_of(
        extra_env.begin(), extra_env.end(), [&](const std::string& extra) {
          return extra.compare(0, extra.find('=') + 1, name) == 0;
        });
    if (!replaced) env_strings.emplace_back(entry);
  }
  env_strings.insert(env_strings.end(), extra_env.begin(), extra_env.end());
  std::vector<char*> envp;
  envp.reserve(env_strings.size() + 1);
  for (auto& var : env_strings) envp.push_back(var.data());
  envp.push_back(nullptr);

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return absl::InternalError("pipe2 failed");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  if (!stderr_path.empty()) {
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO,
                                     stderr_path.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
  }
  pid_t pid = 0;
  int rc =
      ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipe_fds[1]);
  if (rc != 0) {
    ::close(pipe_fds[0]);
    return absl::InternalError(
        absl::StrCat("cannot start ", args[0], ": ", strerror(rc)));
  }
  auto server = std::make_unique<ServerProcess>(pid, pipe_fds[0]);

  // Read stdout until the "listening on HOST:PORT" line appears.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  std::string out;
  while (absl::Now() < deadline) {
    pollfd pfd{pipe_fds[0], POLLIN, 0};
    int ready = ::poll(&pfd, 1, 200);
    if (ready > 0) {
      char buf[512];
      ssize_t n = ::read(pipe_fds[0], buf, sizeof(buf));
      if (n <= 0) break;  // the server exited
      out.append(buf, static_cast<size_t>(n));
      size_t at = out.find("listening on ");
      size_t eol = at == std::string::npos ? at : out.find('\n', at);
      if (eol != std::string::npos) {
        std::string addr = out.substr(at + 13, eol - at - 13);
        int port = 0;
        if (!absl::SimpleAtoi(addr.substr(addr.rfind(':') + 1), &port)) {
          return absl::InternalError(
              absl::StrCat("cannot parse the port from '", addr, "'"));
        }
        server->port_ = port;
        return server;
      }
    }
  }
  return absl::DeadlineExceededError(
      absl::StrCat("ckpt-server did not report its port; its output: ", out));
}

std::string ServerProcess::address() const {
  return absl::StrCat("127.0.0.1:", port_);
}

absl::StatusOr<int> ServerProcess::Stop() {
  if (pid_ <= 0) return absl::FailedPreconditionError("not running");
  ::kill(pid_, SIGTERM);
  int status = 0;
  pid_t reaped = ::waitpid(pid_, &status, 0);
  pid_ = -1;
  if (reaped < 0) return absl::InternalError("waitpid failed");
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

absl::StatusOr<int> ServerProcess::WaitForExit(absl::Duration timeout) {
  if (pid_ <= 0) return absl::FailedPreconditionError("not running");
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t reaped = ::waitpid(pid_, &status, WNOHANG);
    if (reaped < 0) return absl::InternalError("waitpid failed");
    if (reaped == pid_) {
      pid_ = -1;
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      return 128 + WTERMSIG(status);
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("ckpt-server (pid ", pid_, ") still running after ",
                       absl::FormatDuration(timeout)));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

void ServerProcess::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

absl::Status ServerProcess::Freeze() {
  if (pid_ <= 0 || ::kill(pid_, SIGSTOP) != 0) {
    return absl::FailedPreconditionError("no server process to freeze");
  }
  const std::string tasks = absl::StrCat("/proc/", pid_, "/task");
  for (const absl::Time deadline = absl::Now() + absl::Seconds(10);
       absl::Now() < deadline; absl::SleepFor(absl::Milliseconds(1))) {
    bool all_stopped = true;
    std::error_code error;
    for (const auto& task : std::filesystem::directory_iterator(tasks, error)) {
      // /proc/PID/task/TID/stat: "TID (comm) STATE ..."; comm may hold
      // spaces and parentheses, the state follows the last ')'.
      std::ifstream stat(task.path() / "stat");
      std::string line;
      std::getline(stat, line);
      const size_t end = line.rfind(')');
      if (end == std::string::npos || end + 2 >= line.size() ||
          (line[end + 2] != 'T' && line[end + 2] != 't')) {
        all_stopped = false;
        break;
      }
    }
    if (!error && all_stopped) return absl::OkStatus();
  }
  return absl::DeadlineExceededError(
      absl::StrCat("ckpt-server ", pid_, " did not stop within 10 s"));
}

void ServerProcess::Thaw() {
  if (pid_ > 0) ::kill(pid_, SIGCONT);
}

ServerProcess::~ServerProcess() {
  Kill();
  if (stdout_fd_ >= 0) ::close(stdout_fd_);
}

}  // namespace ckpt::testing
