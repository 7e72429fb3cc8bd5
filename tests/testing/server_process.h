// ServerProcess: runs the real `ckpt-server` binary on a free loopback port
// over a RocksDB directory, for integration tests. Stops it by PID.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/testing/temp_dir.h"

namespace ckpt::testing {

// Path of a binary built by this project: $CKPT_BUILD_DIR/<relative>.
std::string BuiltBinary(const std::string& relative);

class ServerProcess {
 public:
  // Starts `ckpt-server --data-dir data_dir --listen 127.0.0.1:0 extra...`
  // (without --data-dir when data_dir is empty, e.g. for a server whose
  // store is in RADOS; without that --listen when `extra_args` has one)
  // and waits (up to 30 s) for its "listening on" line. Its log (stderr)
  // goes to the test's stderr, or is appended to `stderr_path` when set.
  // `extra_env` ("NAME=VALUE" each) is added to the test's environment,
  // replacing a variable of the same name (e.g. CKPT_FAILPOINT).
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(
      const std::string& data_dir, std::vector<std::string> extra_args = {},
      const std::string& stderr_path = "",
      const std::vector<std::string>& extra_env = {});
  ServerProcess(pid_t pid, int stdout_fd) : pid_(pid), stdout_fd_(stdout_fd) {}
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) =
      delete;  // Kill()s if still running.

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string address() const;

  // SIGTERM and wait for exit; returns the exit status (0 = clean).
  absl::StatusOr<int> Stop();
  // SIGKILL and reap: a crash.
  void Kill();
  // SIGSTOP, then waits (up to 10 s) until every thread of the server is
  // stopped: kill() returns before they are, and a thread not yet stopped
  // could still answer a call the test expects to stall.
  absl::Status Freeze();
  // SIGCONT.
  void Thaw();
  // Waits up to `timeout` for the server to exit by itself (e.g. a crash)
  // and reaps it: its exit code, or 128 + the signal that ended it.
  // DEADLINE_EXCEEDED, leaving it running, when it is still up.
  absl::StatusOr<int> WaitForExit(absl::Duration timeout);

 private:
  pid_t pid_;
  int port_ = 0;
  int stdout_fd_;
};

}  // namespace ckpt::testing
