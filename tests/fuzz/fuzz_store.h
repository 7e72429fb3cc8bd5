// FuzzStore: the real RocksDB store, clock and CheckpointService a stateful
// fuzz harness works on. One store per process, in a temp directory (under
// /dev/shm when there is one, where RocksDB's syncs cost little), re-created
// empty once it has grown past a bound, so that a long run neither fills
// the disk nor slows down as the store grows. Inputs stay independent of
// each other by using job names of their own (FreshTenant).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/clock.h"
#include "server/service/checkpoint_service.h"
#include "server/storage/rocksdb_store.h"
#include "tests/testing/temp_dir.h"

namespace ckpt::fuzz {

class FuzzStore {
 public:
  // Aborts when the store cannot be opened: no harness runs without it.
  explicit FuzzStore(uint64_t max_bytes = uint64_t{64} << 20);
  ~FuzzStore();
  FuzzStore(const FuzzStore&) = delete;
  FuzzStore& operator=(const FuzzStore&) = delete;

  server::RocksDbStore& store() { return *store_; }
  server::CheckpointService& service() { return *service_; }
  FakeClock& clock() { return clock_; }

  // Call before each input: whether the directory has grown past
  // max_bytes (looked at every 64th call), when the harness should
  // Recreate() the store, after stopping whatever holds the service.
  bool Grown();
  // Replaces the store and service with new, empty ones.
  void Recreate();

  // Closes the service and the store and opens both again over the same
  // directory: a restart of the server.
  void Reopen();

  // A tenant name no earlier input of this process used ("f<N>"), so that
  // chunks and jobs of one input never meet another's.
  std::string FreshTenant();

 private:
  void Open();
  void OpenStore();
  void Close();

  const uint64_t max_bytes_;
  FakeClock clock_;
  std::unique_ptr<testing::TempDir> dir_;
  std::unique_ptr<server::RocksDbStore> store_;
  std::unique_ptr<server::CheckpointService> service_;
  uint64_t calls_ = 0;
  uint64_t tenants_ = 0;
};

}  // namespace ckpt::fuzz
