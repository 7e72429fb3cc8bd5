// The backends of the storage conformance suite (storage_conformance_test.cc).
// A binary that runs the suite links exactly one file that defines
// ConformanceBackends(): the local stores (storage_conformance_test) or the
// RADOS stores (storage_conformance_rados_test, against a Ceph cluster), so
// one source runs as two ctests and the local one needs no cluster.
#pragma once

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "server/storage/chunk_store.h"
#include "server/storage/metadata_store.h"

namespace ckpt::server::conformance {

// Owns one store under test (and whatever it needs) for one case. A backend
// that cannot be set up leaves `chunks` null, which fails the case.
struct StoreUnderTest {
  virtual ~StoreUnderTest() = default;
  ChunkStore* chunks = nullptr;
  MetadataStore* metadata = nullptr;
};

struct Backend {
  std::string name;
  std::function<std::unique_ptr<StoreUnderTest>()> make;
};

// Names the backend in failure messages instead of dumping its bytes.
inline void PrintTo(const Backend& backend, std::ostream* os) {
  *os << backend.name;
}

std::vector<Backend> ConformanceBackends();

}  // namespace ckpt::server::conformance
