// FuzzStore: the real RocksDB store, clock and CheckpointService a stateful
// fuzz harness works on. One store per process, in a temp directory (under
// /dev/shm when there is one, where RocksDB's syncs cost little), re-created
// empty once it has grown past a bound, so that a long run neither fills
// the disk nor slows down as the store grows. Inputs stay independent of
// each other by using job names of their own (FreshTenant).
//
// Reopening starts and ends no thread. ASan (clang 14) does not record
// pthread_join, so every ended thread stays in its registry, "finished",
// under its kernel thread id; once the kernel hands that id to a new thread
// (ids wrap at pid_max, 32768 here), LeakSanitizer looks the live thread up
// by id, finds the old entry, skips the thread's stack, registers and TLS,
// and reports what only that thread points to as leaked: glibc's 32-byte
// record of a thread_local destructor (tests/reliability/README.md, the
// sequence harness's leak). So RocksDB opens table files on the calling
// thread (max_file_opening_threads 1), and a second, empty store stays
// open for the process's life: RocksDB runs the periodic tasks of all its
// databases on one timer thread, which it ends when the last database
// closes and starts anew at the next open.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

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

  // The kernel ids of the process's threads (/proc/self/task), ascending:
  // a harness compares them before and after each input, which must leave
  // them as they were (see the top of this file).
  static std::vector<int64_t> ThreadIds();

 private:
  void Open();
  void OpenStore();
  void Close();

  const uint64_t max_bytes_;
  FakeClock clock_;
  // The store that keeps RocksDB's timer thread running (see the top).
  std::unique_ptr<testing::TempDir> keeper_dir_;
  std::unique_ptr<server::RocksDbStore> keeper_;
  std::unique_ptr<testing::TempDir> dir_;
  std::unique_ptr<server::RocksDbStore> store_;
  std::unique_ptr<server::CheckpointService> service_;
  uint64_t calls_ = 0;
  uint64_t tenants_ = 0;
};

}  // namespace ckpt::fuzz
