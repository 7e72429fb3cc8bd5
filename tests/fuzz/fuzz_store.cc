#include "tests/fuzz/fuzz_store.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace ckpt::fuzz {
namespace {

[[noreturn]] void Die(const absl::Status& status) {
  std::fprintf(stderr, "fuzz store: %s\n", status.ToString().c_str());
  std::abort();
}

// A temp directory under $CKPT_FUZZ_DIR, else /dev/shm, else $TMPDIR.
std::unique_ptr<testing::TempDir> FreshDir() {
  std::error_code error;
  const char* base = std::getenv("CKPT_FUZZ_DIR");
  std::string prefix = "ckpt-fuzz";
  if (base != nullptr && base[0] == '/') {
    prefix = absl::StrCat(base, "/ckpt-fuzz");
  } else if (std::filesystem::is_directory("/dev/shm", error)) {
    prefix = "/dev/shm/ckpt-fuzz";
  }
  absl::StatusOr<std::unique_ptr<testing::TempDir>> dir =
      testing::TempDir::Create(prefix);
  if (!dir.ok()) Die(dir.status());
  return *std::move(dir);
}

std::unique_ptr<server::RocksDbStore> OpenAt(const std::string& dir) {
  server::RocksDbStoreOptions options;
  // Small: a fuzz input stores kilobytes, and libFuzzer watches the RSS.
  options.chunk_write_buffer_size = 4 << 20;
  options.block_cache_bytes = 4 << 20;
  options.blob_file_size = 8 << 20;
  options.max_background_jobs = 2;
  options.direct_io = false;             // tmpfs has no O_DIRECT
  options.max_file_opening_threads = 1;  // no thread per open (fuzz_store.h)
  absl::StatusOr<std::unique_ptr<server::RocksDbStore>> store =
      server::RocksDbStore::Open(absl::StrCat(dir, "/db"), options);
  if (!store.ok()) Die(store.status());
  return *std::move(store);
}

uint64_t DirectoryBytes(const std::string& dir) {
  uint64_t total = 0;
  std::error_code error;
  for (const auto& entry :
       std::filesystem::recursive_directory_iterator(dir, error)) {
    if (entry.is_regular_file(error)) total += entry.file_size(error);
  }
  return total;
}

}  // namespace

FuzzStore::FuzzStore(uint64_t max_bytes) : max_bytes_(max_bytes) {
  // Every GC and refused call logs a line: millions of them in a run.
  SetMinLogLevel(LogLevel::kError);
  // First, so that RocksDB's threads (its timer, its flush and compaction
  // pools) start with it, once.
  keeper_dir_ = FreshDir();
  keeper_ = OpenAt(keeper_dir_->path());
  Open();
}

FuzzStore::~FuzzStore() {
  Close();
  keeper_.reset();
  keeper_dir_.reset();
}

void FuzzStore::Open() {
  dir_ = FreshDir();
  OpenStore();
}

void FuzzStore::OpenStore() {
  store_ = OpenAt(dir_->path());
  service_ = std::make_unique<server::CheckpointService>(store_.get(),
                                                         store_.get(), &clock_);
}

void FuzzStore::Close() {
  service_.reset();
  store_.reset();
  dir_.reset();
}

void FuzzStore::Reopen() {
  service_.reset();
  store_.reset();
  OpenStore();
}

bool FuzzStore::Grown() {
  if (++calls_ % 64 != 0) return false;
  return DirectoryBytes(dir_->path()) > max_bytes_;
}

void FuzzStore::Recreate() {
  Close();
  Open();
}

std::string FuzzStore::FreshTenant() { return absl::StrCat("f", tenants_++); }

std::vector<int64_t> FuzzStore::ThreadIds() {
  std::vector<int64_t> ids;
  std::error_code error;
  for (const auto& entry :
       std::filesystem::directory_iterator("/proc/self/task", error)) {
    int64_t id = 0;
    if (absl::SimpleAtoi(entry.path().filename().string(), &id)) {
      ids.push_back(id);
    }
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

}  // namespace ckpt::fuzz
