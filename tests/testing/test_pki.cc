#include "tests/testing/test_pki.h"

#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace ckpt::testing {

absl::StatusOr<TestPki> TestPki::Create(const std::string& dir) {
  const std::string command =
      absl::StrCat("bash '", CKPT_TEST_PKI_SCRIPT, "' '", dir, "'");
  const int status = std::system(command.c_str());
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat(
        "make_test_pki.sh failed (is openssl installed?): ", command));
  }
  return TestPki(dir);
}

const TestPki& TestPki::Shared() {
  static const TestPki* const pki = [] {
    static absl::StatusOr<std::unique_ptr<TempDir>> dir =
        TempDir::Create("ckpt-pki");
    if (!dir.ok()) {
      ADD_FAILURE() << dir.status();
      std::abort();
    }
    absl::StatusOr<TestPki> made = Create((*dir)->path() + "/pki");
    if (!made.ok()) {
      ADD_FAILURE() << made.status();
      std::abort();
    }
    return new TestPki(*std::move(made));
  }();
  return *pki;
}

std::string TestPki::Path(const std::string& name) const {
  return absl::StrCat(dir_, "/", name);
}

std::string TestPki::Pem(const std::string& name) const {
  std::ifstream in(Path(name), std::ios::binary);
  std::string text{std::istreambuf_iterator<char>(in),
                   std::istreambuf_iterator<char>()};
  EXPECT_FALSE(text.empty()) << "cannot read " << Path(name);
  return text;
}

std::vector<std::string> TestPki::ServerFlags(bool mutual) const {
  std::vector<std::string> flags = {"--tls-cert", Path("server.pem"),
                                    "--tls-key", Path("server.key")};
  if (mutual) {
    flags.push_back("--tls-client-ca");
    flags.push_back(Path("ca.pem"));
  }
  return flags;
}

}  // namespace ckpt::testing
