// RadosCluster against a real single-host Ceph cluster (run under
// tests/ceph/ceph_cluster.py --run, which sets CKPT_CEPH_*).
#include "server/storage/rados_cluster.h"

#include <cstdlib>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/ceph_env.h"

namespace ckpt::server {
namespace {

using ::testing::HasSubstr;

TEST(RadosClusterTest, ConnectsAndNamesItsClient) {
  RadosOptions options = testing::CephOptionsFromEnv();
  auto cluster = RadosCluster::Connect(options);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  EXPECT_THAT((*cluster)->ClientName(), HasSubstr("client."));
}

TEST(RadosClusterTest, MissingPoolIsNotFoundNamingIt) {
  RadosOptions options = testing::CephOptionsFromEnv();
  options.pool = "no-such-pool";
  auto cluster = RadosCluster::Connect(options);
  ASSERT_TRUE(absl::IsNotFound(cluster.status())) << cluster.status();
  EXPECT_THAT(cluster.status().message(), HasSubstr("no-such-pool"));
}

TEST(RadosClusterTest, UnknownUserIsRefused) {
  RadosOptions options = testing::CephOptionsFromEnv();
  options.user = "nobody";
  options.connect_timeout = absl::Seconds(3);
  auto cluster = RadosCluster::Connect(options);
  ASSERT_FALSE(cluster.ok());
  EXPECT_THAT(cluster.status().message(), HasSubstr("client.nobody"));
}

TEST(RadosClusterTest, MissingConfIsAnError) {
  RadosOptions options = testing::CephOptionsFromEnv();
  options.conf_path = "/nonexistent/ceph.conf";
  auto cluster = RadosCluster::Connect(options);
  ASSERT_FALSE(cluster.ok());
  EXPECT_THAT(cluster.status().message(), HasSubstr("/nonexistent/ceph.conf"));
}

}  // namespace
}  // namespace ckpt::server
