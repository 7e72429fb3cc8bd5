// RealServerTest: the fixture of integration tests that drive the real
// ckpt-server binary, over RocksDB in a fresh temporary directory, through
// the client library.
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "common/manifest.h"
#include "gtest/gtest.h"
#include "tests/testing/client_tensors.h"
#include "tests/testing/server_process.h"
#include "tests/testing/temp_dir.h"

namespace ckpt::testing {

inline std::string ReadWholeFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// What a run of the `ckpt` CLI printed, and its exit code (-1: no exit).
struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs the real `ckpt` CLI with `args`, and `env` (NAME=VALUE ...,
// shell-quoted) added to its environment; its output goes through files
// in `dir`.
inline CommandResult RunCkpt(const std::string& dir, const std::string& args,
                             const std::string& env = "") {
  const std::string out = dir + "/cli.out";
  const std::string err = dir + "/cli.err";
  const std::string command =
      absl::StrCat("env ", env, " ", BuiltBinary("client/ckpt"), " ", args,
                   " >", out, " 2>", err);
  const int status = std::system(command.c_str());
  CommandResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result.out = ReadWholeFile(out);
  result.err = ReadWholeFile(err);
  return result;
}

class RealServerTest : public ::testing::Test {
 protected:
  // Creates the data directory; starting the server is up to the test.
  void SetUp() override {
    auto dir = TempDir::Create("ckpt-it");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *std::move(dir);
  }

  // Starts ckpt-server on db_path() with `extra` flags and connects client_.
  void StartServer(std::vector<std::string> extra = {}) {
    auto server = ServerProcess::Start(db_path(), std::move(extra));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    auto client = client::Client::Connect(
        server_->address(), {.connect_timeout = absl::Seconds(10)});
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }

  // A server the test left running must shut down cleanly: a crash, or a
  // sanitizer report in it (the asan and tsan builds halt on the first),
  // fails the test that ran it instead of passing unseen.
  void TearDown() override {
    client_.reset();
    if (server_ != nullptr && server_->pid() > 0) {
      absl::StatusOr<int> code = server_->Stop();
      ASSERT_TRUE(code.ok()) << code.status();
      EXPECT_EQ(*code, 0) << "ckpt-server did not shut down cleanly (a crash "
                             "or a sanitizer report; see its output above)";
    }
  }

  // Stops the server (it must exit cleanly), e.g. to change its data dir.
  void StopServer() {
    client_.reset();
    auto stopped = server_->Stop();
    ASSERT_TRUE(stopped.ok()) << stopped.status();
    ASSERT_EQ(*stopped, 0);
    server_.reset();
  }

  std::string db_path() const { return dir_->path() + "/db"; }

  // Rank 0's tensors of (job, step), restored by a new client through
  // shared memory or by streaming; empty (and a test failure) on error.
  std::vector<client::RestoredTensor> RestoreRankZero(const std::string& job,
                                                      int64_t step,
                                                      bool shared_memory) {
    auto client = client::Client::Connect(
        server_->address(), {.shared_memory_restore = shared_memory});
    EXPECT_TRUE(client.ok()) << client.status();
    if (!client.ok()) return {};
    auto restored = (*client)->RestoreShard(job, step, 0);
    EXPECT_TRUE(restored.ok()) << restored.status();
    if (!restored.ok()) return {};
    return *std::move(restored);
  }

  // Runs the real `ckpt` CLI against the server (or `server`), with `env`
  // (NAME=VALUE ..., shell-quoted) added to its environment.
  CommandResult Ckpt(const std::string& args, const std::string& env = "",
                     const std::string& server = "") {
    return RunCkpt(
        dir_->path(),
        absl::StrCat("--server ", server.empty() ? server_->address() : server,
                     " ", args),
        env);
  }

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<client::Client> client_;
};

}  // namespace ckpt::testing
