// TestPki: throwaway CAs and certificates for TLS tests, made with openssl
// by make_test_pki.sh (see its top for the files) in a directory the test
// owns. Server certificates name 127.0.0.1, ::1 and localhost.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace ckpt::testing {

class TestPki {
 public:
  // Runs make_test_pki.sh into `dir` (created).
  static absl::StatusOr<TestPki> Create(const std::string& dir);
  // One set for the whole test program, made on first use in a temporary
  // directory removed at exit; a failure fails the test and aborts.
  static const TestPki& Shared();

  // The path of file `name` ("ca.pem", "server.key", ...).
  std::string Path(const std::string& name) const;
  // Its contents; empty (and a test failure) when it cannot be read.
  std::string Pem(const std::string& name) const;

  // ckpt-server flags for TLS with server.pem, plus mTLS against ca.pem
  // when `mutual`.
  std::vector<std::string> ServerFlags(bool mutual) const;

 private:
  explicit TestPki(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

}  // namespace ckpt::testing
