// The local backends of the storage conformance suite: MemoryStore,
// RocksDbStore, a FaultInjectingStore with no faults armed, and RocksDbStore
// behind the plain forwarding wrappers (both of which must be transparent).
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "server/storage/fault_injecting_store.h"
#include "server/storage/memory_store.h"
#include "server/storage/rocksdb_store.h"
#include "server/storage/storage_conformance.h"
#include "server/storage/store_wrappers.h"
#include "tests/testing/store_test_util.h"

namespace ckpt::server::conformance {
namespace {

using ::ckpt::server::testing::MakeTempDir;
using ::ckpt::server::testing::TempDir;

struct MemoryUnderTest : StoreUnderTest {
  MemoryUnderTest() {
    chunks = &store;
    metadata = &store;
  }
  MemoryStore store;
};

struct RocksDbUnderTest : StoreUnderTest {
  RocksDbUnderTest() {
    auto opened = RocksDbStore::Open(dir->path() + "/db");
    EXPECT_TRUE(opened.ok()) << opened.status();
    if (opened.ok()) store = std::move(opened).value();
    chunks = store.get();
    metadata = store.get();
  }
  // Declared first: removed after the store closes.
  std::unique_ptr<TempDir> dir = MakeTempDir();
  std::unique_ptr<RocksDbStore> store;
};

struct FaultInjectingUnderTest : StoreUnderTest {
  FaultInjectingUnderTest() {
    chunks = &store;
    metadata = &store;
  }
  MemoryStore wrapped;
  FaultInjectingStore store{&wrapped, &wrapped};
};

// Every call through ChunkStoreWrapper / MetadataStoreWrapper reaches the
// wrapped store: a wrapper that overrides nothing behaves as its target.
struct WrappedRocksDbUnderTest : StoreUnderTest {
  WrappedRocksDbUnderTest() {
    chunks = &chunk_wrapper;
    metadata = &metadata_wrapper;
  }
  RocksDbUnderTest wrapped;
  ChunkStoreWrapper chunk_wrapper{wrapped.chunks};
  MetadataStoreWrapper metadata_wrapper{wrapped.metadata};
};

}  // namespace

std::vector<Backend> ConformanceBackends() {
  return {
      Backend{"Memory", [] { return std::make_unique<MemoryUnderTest>(); }},
      Backend{"RocksDb", [] { return std::make_unique<RocksDbUnderTest>(); }},
      Backend{"FaultInjecting",
              [] { return std::make_unique<FaultInjectingUnderTest>(); }},
      Backend{"WrappedRocksDb",
              [] { return std::make_unique<WrappedRocksDbUnderTest>(); }},
  };
}

}  // namespace ckpt::server::conformance
