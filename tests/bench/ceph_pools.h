// The Ceph test cluster as a benchmark sees it: where it is (the CKPT_CEPH_*
// variables tests/ceph/ceph_cluster.py --run sets), the ckpt-server flags
// that put a server on one of its pools, and pools made and dropped with
// the `ceph` CLI (ceph-common), so that the benchmark needs no librados.
// Header-only.
#pragma once

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/bench/process_cpu.h"

extern char** environ;

namespace ckpt::bench {

struct CephAccess {
  std::string conf;
  std::string user;     // cephx name without "client."
  std::string keyring;  // empty: the conf's

  // From CKPT_CEPH_CONF, CKPT_CEPH_USER (default admin), CKPT_CEPH_KEYRING;
  // FAILED_PRECONDITION saying how to start a cluster when there is none.
  static absl::StatusOr<CephAccess> FromEnv() {
    const char* conf = std::getenv("CKPT_CEPH_CONF");
    if (conf == nullptr || *conf == '\0') {
      return absl::FailedPreconditionError(
          "CKPT_CEPH_CONF is not set: run the benchmark inside a throwaway "
          "cluster, /usr/bin/python3 tests/ceph/ceph_cluster.py --run -- "
          "BENCHMARK ARGS...");
    }
    CephAccess access;
    access.conf = conf;
    const char* user = std::getenv("CKPT_CEPH_USER");
    access.user = user != nullptr && *user != '\0' ? user : "admin";
    const char* keyring = std::getenv("CKPT_CEPH_KEYRING");
    if (keyring != nullptr) access.keyring = keyring;
    return access;
  }

  // The OSD of tests/ceph/ceph_cluster.py's cluster: its pid file is
  // run/osd.0.pid beside the conf. 0 for any other cluster.
  pid_t TestOsdPid() const {
    const size_t slash = conf.rfind('/');
    if (slash == std::string::npos) return 0;
    return PidFromFile(conf.substr(0, slash) + "/run/osd.0.pid");
  }

  // The ckpt-server flags that keep its chunks and metadata in `pool`.
  std::vector<std::string> ServerFlags(const std::string& pool) const {
    std::vector<std::string> flags = {"--chunk-store", "rados:" + pool,
                                      "--ceph-conf",   conf,
                                      "--ceph-user",   user};
    if (!keyring.empty())
      flags.insert(flags.end(), {"--ceph-keyring", keyring});
    return flags;
  }

  // Runs `ceph ARGS...` as this user, its output appended to `log_path`;
  // INTERNAL with the command and the end of its output when it fails.
  absl::Status Ceph(std::vector<std::string> args,
                    const std::string& log_path) const {
    std::vector<std::string> argv = {"ceph", "-c", conf, "--id", user};
    if (!keyring.empty()) argv.insert(argv.end(), {"--keyring", keyring});
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> c_argv;
    for (std::string& arg : argv) c_argv.push_back(arg.data());
    c_argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    pid_t pid = 0;
    const int rc =
        ::posix_spawnp(&pid, "ceph", &actions, nullptr, c_argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    const std::string command = absl::StrJoin(argv, " ");
    if (rc != 0) {
      return absl::InternalError(
          absl::StrCat("cannot start `", command, "`: ", std::strerror(rc),
                       " (the Debian package ceph-common has it)"));
    }
    int status = 0;
    if (::waitpid(pid, &status, 0) < 0) {
      return absl::InternalError(
          absl::StrCat("waitpid for `", command, "`: ", std::strerror(errno)));
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
    std::stringstream log;
    log << std::ifstream(log_path).rdbuf();
    const std::string text = log.str();
    return absl::InternalError(
        absl::StrCat("`", command, "` failed (wait status ", status,
                     "); the end of ", log_path, ": ",
                     text.substr(text.size() > 600 ? text.size() - 600 : 0)));
  }

  absl::Status CreatePool(const std::string& pool, int pg_num,
                          const std::string& log_path) const {
    const std::string pgs = absl::StrCat(pg_num);
    return Ceph({"osd", "pool", "create", pool, pgs, pgs}, log_path);
  }

  // Drops `pool` and every object in it (memstore gives its RAM back).
  absl::Status DeletePool(const std::string& pool,
                          const std::string& log_path) const {
    return Ceph(
        {"osd", "pool", "delete", pool, pool, "--yes-i-really-really-mean-it"},
        log_path);
  }
};

}  // namespace ckpt::bench
