// The stores storage_conformance_test.cc runs its suite against: each
// backend owns one store (and whatever it needs) for one case. Test code
// only, included by that one file.
#pragma once

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "server/storage/fault_injecting_store.h"
#include "server/storage/memory_store.h"
#include "server/storage/rocksdb_store.h"
#include "server/storage/store_wrappers.h"
#include "tests/testing/rados_metadata_env.h"
#include "tests/testing/store_test_util.h"

namespace ckpt::server::conformance {

using ::ckpt::server::testing::MakeTempDir;
using ::ckpt::server::testing::TempDir;

// Owns one store under test (and whatever it needs) for one case.
struct StoreUnderTest {
  virtual ~StoreUnderTest() = default;
  ChunkStore* chunks = nullptr;
  MetadataStore* metadata = nullptr;
};

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

// RadosMetadataStore in a RADOS namespace of its own per case (no pool per
// case: creating one costs a monitor round and PG peering, and the store
// never reads outside its namespace), with a MemoryStore as the chunk half.
// Without a Ceph cluster (CKPT_CEPH_CONF unset) every case fails.
struct RadosMetadataUnderTest : StoreUnderTest {
  RadosMetadataUnderTest() {
    chunks = &memory;
    metadata = server.store.get();
  }
  MemoryStore memory;
  testing::RadosMetadataServer server =
      testing::ConnectRadosMetadata(testing::UniqueMetaNamespace());
};

struct Backend {
  std::string name;
  std::function<std::unique_ptr<StoreUnderTest>()> make;
};

// Names the backend in failure messages instead of dumping its bytes.
inline void PrintTo(const Backend& backend, std::ostream* os) {
  *os << backend.name;
}

// Every backend; those needing a Ceph cluster have "Rados" in their name
// (the local suite filters them out, the Ceph one runs only them).
inline std::vector<Backend> AllBackends() {
  return {
      Backend{"Memory", [] { return std::make_unique<MemoryUnderTest>(); }},
      Backend{"RocksDb", [] { return std::make_unique<RocksDbUnderTest>(); }},
      Backend{"FaultInjecting",
              [] { return std::make_unique<FaultInjectingUnderTest>(); }},
      Backend{"WrappedRocksDb",
              [] { return std::make_unique<WrappedRocksDbUnderTest>(); }},
      Backend{"RadosMetadata",
              [] { return std::make_unique<RadosMetadataUnderTest>(); }},
  };
}

}  // namespace ckpt::server::conformance
