// StallingProxy: tests/integration/stalling_proxy.py run in front of a real
// ckpt-server: it forwards every call but stalls the first stream of one
// kind (its mode: "read", "upload", "finish" or "verify"; the script says
// what each does) while it answers keepalive pings. Killed by PID when
// destroyed.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"

namespace ckpt::testing {

class StallingProxy {
 public:
  // Starts the proxy in front of `upstream` (HOST:PORT) and waits (up to
  // 30 s) for its port; `dir` holds its port file.
  static absl::StatusOr<std::unique_ptr<StallingProxy>> Start(
      const std::string& upstream, const std::string& dir,
      const std::string& mode);
  StallingProxy(pid_t pid, std::string address)
      : pid_(pid), address_(std::move(address)) {}
  ~StallingProxy();  // SIGKILL and reap
  StallingProxy(const StallingProxy&) = delete;
  StallingProxy& operator=(const StallingProxy&) = delete;

  const std::string& address() const { return address_; }

 private:
  const pid_t pid_;
  const std::string address_;
};

}  // namespace ckpt::testing
