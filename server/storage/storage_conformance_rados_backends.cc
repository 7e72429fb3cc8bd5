// The RADOS backends of the storage conformance suite, against the Ceph
// cluster of CKPT_CEPH_CONF (ckpt_ceph_test starts one): RadosChunkStore
// with a MemoryStore for the metadata half, RadosMetadataStore with a
// MemoryStore for the chunk half, and both RADOS stores together as a
// server runs them. Without a cluster every case fails (CephOptionsFromEnv),
// never skips.
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
#include "server/storage/rados_metadata_store.h"
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

// Each case gets its own namespaces under this name, so the fixed tenants
// and jobs the cases use ("acme", "t/j", ...) start empty every time in the
// one shared pool.
std::string FreshCaseName() {
  static std::atomic<int> cases{0};
  return absl::StrCat("conformance-", getpid(), "-", cases++);
}

struct RadosChunksUnderTest : StoreUnderTest {
  RadosChunksUnderTest() {
    if (cluster == nullptr) return;
    RadosChunkStoreOptions options;
    options.namespace_prefix = FreshCaseName() + "/chunks/";
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

// RadosMetadataStore in a RADOS namespace of its own per case (not a pool
// per case: creating one costs a monitor round and PG peering, and the
// store never reads outside its namespace).
struct RadosMetadataUnderTest : StoreUnderTest {
  RadosMetadataUnderTest() {
    if (cluster == nullptr) return;
    RadosMetadataStore::Options options;
    options.name_space = FreshCaseName() + "/meta";
    store = std::make_unique<RadosMetadataStore>(cluster.get(), options);
    chunks = &memory;
    metadata = store.get();
  }
  std::unique_ptr<RadosCluster> cluster = ConnectOrFail();
  std::unique_ptr<RadosMetadataStore> store;
  MemoryStore memory;
};

// Both RADOS stores, as ckpt-server --chunk-store rados:POOL runs them.
struct RadosUnderTest : StoreUnderTest {
  RadosUnderTest() {
    if (chunk_half.store == nullptr || metadata_half.store == nullptr) return;
    chunks = chunk_half.store.get();
    metadata = metadata_half.store.get();
  }
  RadosChunksUnderTest chunk_half;
  RadosMetadataUnderTest metadata_half;
};

}  // namespace

std::vector<Backend> ConformanceBackends() {
  return {
      Backend{"RadosChunks",
              [] { return std::make_unique<RadosChunksUnderTest>(); }},
      Backend{"RadosMetadata",
              [] { return std::make_unique<RadosMetadataUnderTest>(); }},
      Backend{"Rados", [] { return std::make_unique<RadosUnderTest>(); }},
  };
}

}  // namespace ckpt::server::conformance
