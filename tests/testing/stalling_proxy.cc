#include "tests/testing/stalling_proxy.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace ckpt::testing {

absl::StatusOr<std::unique_ptr<StallingProxy>> StallingProxy::Start(
    const std::string& upstream, const std::string& dir,
    const std::string& mode) {
  const std::string port_file = absl::StrCat(dir, "/stalling-proxy-", mode);
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    execl(CKPT_PYTHON, CKPT_PYTHON, CKPT_STALLING_PROXY, upstream.c_str(),
          port_file.c_str(), mode.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  std::string port;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(30);
       port.empty() && absl::Now() < deadline;
       absl::SleepFor(absl::Milliseconds(50))) {
    std::ifstream(port_file) >> port;
  }
  auto proxy =
      std::make_unique<StallingProxy>(pid, absl::StrCat("127.0.0.1:", port));
  if (port.empty()) {
    return absl::DeadlineExceededError(
        "the stalling proxy wrote no port within 30 s");
  }
  return proxy;
}

StallingProxy::~StallingProxy() {
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
}

}  // namespace ckpt::testing
