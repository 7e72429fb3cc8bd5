// The RADOS backends of the storage conformance suite, against the Ceph
// cluster of CKPT_CEPH_CONF (ckpt_ceph_test starts one): RadosChunkStore
// with a MemoryStore for the metadata half. Without a cluster every case
// fails (CephOptionsFromEnv), never skips.
#include <unistd.h>

#include <atomic>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "gtest/gtest.h"
#include "server/storage/memory_store.h"
#include "server/storage/rados_chunk_store.h"
#include "server/storage/rados_cluster.h"
#include "server/storage/storage_conformance.h"
#include "tests/testing/ceph_env.h"

namespace ckpt::server::conformance {
namespace {

// A connection per case, like a server's; nullptr (a failed case) without
// a cluster.
std::unique_ptr<RadosCluster> ConnectOrFail() {
  auto cluster = RadosCluster::Connect(testing::CephOptionsFromEnv());
  EXPECT_TRUE(cluster.ok()) << cluster.status();
  return cluster.ok() ? std::move(cluster).value() : nullptr;
}

// Each case gets its own namespace prefix, so the fixed tenants the cases
// use ("acme", ...) start empty every time in the one shared pool.
std::string FreshNamespacePrefix() {
  static std::atomic<int> cases{0};
  return absl::StrCat("conformance-", getpid(), "-", cases++, "/chunks/");
}

struct RadosChunksUnderTest : StoreUnderTest {
  RadosChunksUnderTest() {
    if (cluster == nullptr) return;
    RadosChunkStoreOptions options;
    options.namespace_prefix = FreshNamespacePrefix();
    store = std::make_unique<RadosChunkStore>(cluster.get(), RealClock::Get(),
                                              options);
    chunks = store.get();
    metadata = &memory;
  }
  ~RadosChunksUnderTest() override {
    // Frees the OSD's memory (memstore) for the next cases.
    if (store == nullptr) return;
    (void)store->ForEach(
        "", [&](absl::string_view tenant, const ChunkId& id, uint64_t) {
          return store->Delete(tenant, id);
        });
  }
  std::unique_ptr<RadosCluster> cluster = ConnectOrFail();
  std::unique_ptr<RadosChunkStore> store;
  MemoryStore memory;
};

}  // namespace

std::vector<Backend> ConformanceBackends() {
  return {
      Backend{"RadosChunks",
              [] { return std::make_unique<RadosChunksUnderTest>(); }},
  };
}

}  // namespace ckpt::server::conformance
