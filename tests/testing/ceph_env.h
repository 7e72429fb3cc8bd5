// The Ceph cluster a test runs against, from the CKPT_CEPH_* variables that
// tests/ceph/ceph_cluster.py --run sets.
#pragma once

#include <cstdlib>
#include <string>

#include "gtest/gtest.h"
#include "server/storage/rados_cluster.h"

namespace ckpt::server::testing {

// RadosOptions for the test cluster; a test failure (not a skip) when the
// test was started without one.
inline RadosOptions CephOptionsFromEnv() {
  RadosOptions options;
  const char* conf = std::getenv("CKPT_CEPH_CONF");
  if (conf == nullptr) {
    ADD_FAILURE() << "CKPT_CEPH_CONF is not set: run this test through ctest "
                     "or /usr/bin/python3 tests/ceph/ceph_cluster.py --run -- "
                     "BINARY";
    return options;
  }
  options.conf_path = conf;
  const char* pool = std::getenv("CKPT_CEPH_POOL");
  options.pool = pool != nullptr ? pool : "ckpt";
  const char* user = std::getenv("CKPT_CEPH_USER");
  if (user != nullptr) options.user = user;
  const char* keyring = std::getenv("CKPT_CEPH_KEYRING");
  if (keyring != nullptr) options.keyring = keyring;
  options.connect_timeout = absl::Seconds(15);
  options.op_timeout = absl::Seconds(30);
  return options;
}

}  // namespace ckpt::server::testing
