// A RadosMetadataStore on the test Ceph cluster (ceph_env.h), each in a
// RADOS namespace of its own so that cases and runs never see each other's
// objects.
#pragma once

#include <memory>
#include <random>
#include <string>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "server/storage/rados_cluster.h"
#include "server/storage/rados_metadata_store.h"
#include "tests/testing/ceph_env.h"

namespace ckpt::server::testing {

// A fresh namespace name: "meta-test-" and 16 random hex digits.
inline std::string UniqueMetaNamespace() {
  std::random_device random;
  return absl::StrFormat("meta-test-%08x%08x", random(), random());
}

// One server's view: its own connection (its own client id, as another
// server process would have) and a store over it.
struct RadosMetadataServer {
  std::unique_ptr<RadosCluster> cluster;
  std::unique_ptr<RadosMetadataStore> store;
};

// Connects to the test cluster; a test failure (store null) when it cannot.
inline RadosMetadataServer ConnectRadosMetadata(
    const std::string& name_space, RadosMetadataStore::Options options = {}) {
  RadosMetadataServer server;
  auto cluster = RadosCluster::Connect(CephOptionsFromEnv());
  if (!cluster.ok()) {
    ADD_FAILURE() << "connecting to the test Ceph cluster: "
                  << cluster.status();
    return server;
  }
  server.cluster = std::move(cluster).value();
  options.name_space = name_space;
  server.store = std::make_unique<RadosMetadataStore>(server.cluster.get(),
                                                      std::move(options));
  return server;
}

}  // namespace ckpt::server::testing
