// RocksDbStore's chunk files (chunk_files.h): which chunks go to files, how
// their files are removed only after a durable delete, what a damaged or
// missing file reads as, and the files a crash leaves behind.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/env.h"
#include "rocksdb/file_system.h"
#include "server/storage/rocksdb_store.h"
#include "tests/testing/power_loss_fs.h"
#include "tests/testing/store_test_util.h"

namespace ckpt::server {
namespace {

using ::ckpt::server::testing::IdOf;
using ::ckpt::server::testing::MakeTempDir;
using ::ckpt::server::testing::TempDir;
using ::testing::HasSubstr;

class ChunkFilesTest : public ::testing::Test {
 protected:
  std::string db_path() const { return dir_->path() + "/db"; }
  std::string files_root() const { return db_path() + "/chunk_files"; }

  void Open() {
    store_.reset();
    auto store = RocksDbStore::Open(db_path());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  // The chunk files on disk, by path.
  std::vector<std::filesystem::path> Files() const {
    std::vector<std::filesystem::path> files;
    for (const auto& entry :
         std::filesystem::recursive_directory_iterator(files_root())) {
      if (entry.is_regular_file()) files.push_back(entry.path());
    }
    return files;
  }

  static std::string Bytes(size_t size, char fill) {
    std::string bytes(size, fill);
    bytes[size / 2] = static_cast<char>(size);  // differs by size too
    return bytes;
  }

  std::unique_ptr<TempDir> dir_ = MakeTempDir();
  std::unique_ptr<RocksDbStore> store_;
};

TEST_F(ChunkFilesTest, ChunksOfAMebibyteOrMoreLiveInFilesSmallerOnesDoNot) {
  Open();
  const std::string large = Bytes(1 << 20, 'L');
  const std::string small = Bytes((1 << 20) - 1, 's');
  ASSERT_TRUE(store_->Put("acme", IdOf(large), large).ok());
  ASSERT_TRUE(store_->Put("acme", IdOf(small), small).ok());
  ASSERT_EQ(Files().size(), 1u);
  EXPECT_EQ(std::filesystem::file_size(Files()[0]), large.size());
  ASSERT_TRUE(store_->Sync().ok());
  Open();
  for (const std::string* bytes : {&large, &small}) {
    auto got = store_->Get("acme", IdOf(*bytes));
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, *bytes);
    std::string seen;
    ASSERT_TRUE(store_
                    ->ReadVerified("acme", IdOf(*bytes),
                                   [&](absl::string_view b) {
                                     seen = std::string(b);
                                     return absl::OkStatus();
                                   })
                    .ok());
    EXPECT_EQ(seen, *bytes);
  }
  auto usage = store_->GetUsage("acme");
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->chunk_count, 2u);
  EXPECT_EQ(usage->bytes, large.size() + small.size());
  // The same bytes again are not new and write no second file.
  auto again = store_->Put("acme", IdOf(large), large);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(*again);
  EXPECT_EQ(Files().size(), 1u);
  // Another tenant's copy is a chunk (and a file) of its own.
  ASSERT_TRUE(store_->Put("other", IdOf(large), large).ok());
  EXPECT_EQ(Files().size(), 2u);
}

TEST_F(ChunkFilesTest, ADeletedChunksFileGoesOnlyOnceTheDeleteIsDurable) {
  Open();
  const std::string bytes = Bytes(2 << 20, 'd');
  ASSERT_TRUE(store_->Put("acme", IdOf(bytes), bytes).ok());
  ASSERT_TRUE(store_->Sync().ok());
  ASSERT_TRUE(store_->Delete("acme", IdOf(bytes)).ok());
  EXPECT_TRUE(absl::IsNotFound(store_->Get("acme", IdOf(bytes)).status()));
  // Still on disk: a crash now would bring the index entry back.
  EXPECT_EQ(Files().size(), 1u);
  auto reclaimed = store_->ReclaimSpace();
  ASSERT_TRUE(reclaimed.ok()) << reclaimed.status();
  EXPECT_TRUE(Files().empty());
  EXPECT_GE(reclaimed->bytes_before - reclaimed->bytes_after, bytes.size());
  Open();
  EXPECT_TRUE(absl::IsNotFound(store_->Get("acme", IdOf(bytes)).status()));
}

TEST_F(ChunkFilesTest, APutAfterADeleteGetsAFileOfItsOwn) {
  Open();
  const std::string bytes = Bytes(1 << 20, 'r');
  ASSERT_TRUE(store_->Put("acme", IdOf(bytes), bytes).ok());
  ASSERT_TRUE(store_->Sync().ok());
  ASSERT_TRUE(store_->Delete("acme", IdOf(bytes)).ok());
  auto put = store_->Put("acme", IdOf(bytes), bytes);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_TRUE(*put);
  EXPECT_EQ(Files().size(), 2u);
  // Removing the deleted chunk's file leaves the new one.
  ASSERT_TRUE(store_->ReclaimSpace().ok());
  EXPECT_EQ(Files().size(), 1u);
  Open();
  auto got = store_->Get("acme", IdOf(bytes));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, bytes);
}

TEST_F(ChunkFilesTest, FilesNoIndexEntryNamesAreRemovedAtOpen) {
  Open();
  const std::string kept = Bytes(1 << 20, 'k');
  ASSERT_TRUE(store_->Put("acme", IdOf(kept), kept).ok());
  ASSERT_TRUE(store_->Sync().ok());
  store_.reset();
  // As a crash leaves them: a file whose index entry was never flushed (a
  // number above every other), and one whose delete was.
  for (const char* name : {"ff/00000000000100ff", "07/0000000000000007"}) {
    std::ofstream(files_root() + "/" + name) << "orphan";
  }
  std::ofstream(files_root() + "/07/notes.txt") << "not ckpt's";
  Open();
  EXPECT_FALSE(std::filesystem::exists(files_root() + "/ff/00000000000100ff"));
  EXPECT_FALSE(std::filesystem::exists(files_root() + "/07/0000000000000007"));
  // A name ckpt never writes is left alone.
  EXPECT_TRUE(std::filesystem::exists(files_root() + "/07/notes.txt"));
  std::filesystem::remove(files_root() + "/07/notes.txt");
  auto got = store_->Get("acme", IdOf(kept));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, kept);
  // New files are numbered above the orphan's, so none reuses a name.
  const std::string next = Bytes(1 << 20, 'n');
  ASSERT_TRUE(store_->Put("acme", IdOf(next), next).ok());
  EXPECT_TRUE(std::filesystem::exists(files_root() + "/00/0000000000010100"));
}

TEST_F(ChunkFilesTest, ADamagedOrMissingFileIsDataLossNamingTheChunk) {
  Open();
  const std::string flipped = Bytes(1 << 20, 'f');
  const std::string cut = Bytes(1 << 20, 'c');
  const std::string gone = Bytes(1 << 20, 'g');
  const std::string fine = Bytes(1 << 20, 'o');
  // A new store numbers its files from 1, in the order of the Puts.
  std::vector<std::string> paths;
  for (const std::string* bytes : {&flipped, &cut, &gone, &fine}) {
    ASSERT_TRUE(store_->Put("acme", IdOf(*bytes), *bytes).ok());
    paths.push_back(absl::StrFormat("%s/%02x/%016x", files_root(),
                                    paths.size() + 1, paths.size() + 1));
    ASSERT_TRUE(std::filesystem::exists(paths.back())) << paths.back();
  }
  ASSERT_TRUE(store_->Sync().ok());
  {
    std::fstream file(paths[0], std::ios::in | std::ios::out);
    file.seekp(4096);
    file.put('\x5a');
  }
  std::filesystem::resize_file(paths[1], 1000);
  std::filesystem::remove(paths[2]);
  auto read = [&](const std::string& bytes) {
    return store_->ReadVerified("acme", IdOf(bytes), [](absl::string_view) {
      return absl::OkStatus();
    });
  };
  for (const std::string* bytes : {&flipped, &cut, &gone}) {
    absl::Status status = read(*bytes);
    EXPECT_TRUE(absl::IsDataLoss(status)) << status;
    EXPECT_THAT(status.message(), HasSubstr(IdOf(*bytes).ToHex()));
    // The same check where the bytes are handed over (ReadChunks answers).
    absl::Status handed =
        store_->ReadVerifiedBytes("acme", IdOf(*bytes)).status();
    EXPECT_EQ(handed, status);
  }
  EXPECT_THAT(read(gone).message(), HasSubstr("is missing"));
  EXPECT_THAT(read(cut).message(), HasSubstr("holds 1000 bytes"));
  EXPECT_TRUE(absl::IsDataLoss(store_->Get("acme", IdOf(cut)).status()));
  EXPECT_TRUE(read(fine).ok());
  absl::StatusOr<std::string> fine_bytes =
      store_->ReadVerifiedBytes("acme", IdOf(fine));
  ASSERT_TRUE(fine_bytes.ok()) << fine_bytes.status();
  EXPECT_TRUE(*fine_bytes == fine);
  // The index still lists them (verify reports them) until deleted.
  auto contains = store_->Contains("acme", {IdOf(gone)});
  ASSERT_TRUE(contains.ok());
  EXPECT_TRUE((*contains)[0]);
  ASSERT_TRUE(store_->Delete("acme", IdOf(gone)).ok());
  EXPECT_TRUE(store_->ReclaimSpace().ok());  // its file is already gone
}

TEST_F(ChunkFilesTest, AStagedChunkIsStoredBeforeSyncAndADeleteDropsItsFile) {
  Open();
  const std::string bytes = Bytes(2 << 20, 'p');
  ASSERT_TRUE(store_->Put("acme", IdOf(bytes), bytes).ok());
  // Not synced, not indexed yet: still a stored chunk to every reader.
  auto sizes = store_->Sizes("acme", {IdOf(bytes)});
  ASSERT_TRUE(sizes.ok());
  EXPECT_EQ((*sizes)[0], bytes.size());
  auto again = store_->Put("acme", IdOf(bytes), bytes);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(*again);
  auto got = store_->Get("acme", IdOf(bytes));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, bytes);
  EXPECT_TRUE(
      store_
          ->ReadVerified("acme", IdOf(bytes),
                         [](absl::string_view) { return absl::OkStatus(); })
          .ok());
  // Never indexed, so its file goes at once.
  ASSERT_TRUE(store_->Delete("acme", IdOf(bytes)).ok());
  EXPECT_TRUE(Files().empty());
  EXPECT_TRUE(absl::IsNotFound(store_->Get("acme", IdOf(bytes)).status()));
  ASSERT_TRUE(store_->Sync().ok());
  auto usage = store_->GetUsage("acme");
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->chunk_count, 0u);
}

TEST_F(ChunkFilesTest, ManyStagedChunksAreIndexedWithoutASync) {
  Open();
  // Past the staging bound, a Put indexes the staged chunks itself; a
  // clean close indexes the rest.
  std::vector<std::string> chunks;
  for (int i = 0; i < 70; ++i) {
    chunks.push_back(Bytes((1 << 20) + i, static_cast<char>('a' + i % 26)));
    ASSERT_TRUE(store_->Put("acme", IdOf(chunks.back()), chunks.back()).ok());
  }
  Open();
  for (const std::string& bytes : chunks) {
    auto got = store_->Get("acme", IdOf(bytes));
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, bytes);
  }
  EXPECT_EQ(Files().size(), chunks.size());
}

// A file that cannot be made durable is never indexed: Sync fails, and the
// chunk is gone, so a commit (which checks its chunks after Sync) refuses.
TEST_F(ChunkFilesTest, AChunkWhoseFileCannotBeSyncedIsDroppedAndSyncFails) {
  auto fs = std::make_shared<ckpt::testing::PowerLossFs>(
      rocksdb::FileSystem::Default());
  RocksDbStoreOptions options;
  options.env = rocksdb::NewCompositeEnv(fs);
  options.resume_timeout = absl::Milliseconds(100);
  auto store = RocksDbStore::Open(db_path(), options);
  ASSERT_TRUE(store.ok()) << store.status();
  const std::string kept = Bytes(1 << 20, 'k');
  const std::string lost = Bytes(1 << 20, 'l');
  ASSERT_TRUE((*store)->Put("acme", IdOf(kept), kept).ok());
  ASSERT_TRUE((*store)->Sync().ok());
  ASSERT_TRUE((*store)->Put("acme", IdOf(lost), lost).ok());
  fs->Crash();
  EXPECT_FALSE((*store)->Sync().ok());
  auto contains = (*store)->Contains("acme", {IdOf(kept), IdOf(lost)});
  ASSERT_TRUE(contains.ok());
  EXPECT_EQ(*contains, (std::vector<bool>{true, false}));
  store->reset();
  ASSERT_TRUE(fs->RestoreAfterCrash().ok());
  auto reopened = RocksDbStore::Open(db_path(), options);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  auto got = (*reopened)->Get("acme", IdOf(kept));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, kept);
  EXPECT_TRUE(absl::IsNotFound((*reopened)->Get("acme", IdOf(lost)).status()));
  EXPECT_EQ(Files().size(), 1u);
}

// Fails the Sync of chunk files while `fail` is set.
class FailChunkSyncFs final : public rocksdb::FileSystemWrapper {
 public:
  explicit FailChunkSyncFs(const std::shared_ptr<rocksdb::FileSystem>& base)
      : FileSystemWrapper(base) {}
  const char* Name() const override { return "FailChunkSyncFs"; }
  rocksdb::IOStatus NewWritableFile(
      const std::string& name, const rocksdb::FileOptions& options,
      std::unique_ptr<rocksdb::FSWritableFile>* result,
      rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus status =
        target()->NewWritableFile(name, options, result, dbg);
    if (status.ok() && name.find("/chunk_files/") != std::string::npos) {
      *result = std::make_unique<File>(std::move(*result), &fail);
    }
    return status;
  }
  std::atomic<bool> fail{false};

 private:
  class File final : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile> file, std::atomic<bool>* fail)
        : FSWritableFileOwnerWrapper(std::move(file)), fail_(fail) {}
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
      if (fail_->load()) return rocksdb::IOStatus::IOError("injected EIO");
      return target()->Sync(options, dbg);
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options,
                            rocksdb::IODebugContext* dbg) override {
      return Sync(options, dbg);
    }

   private:
    std::atomic<bool>* fail_;
  };
};

// A commit runs Sync() and then checks its chunks. A chunk dropped by a
// failed sync and stored again since by another save of the same bytes is
// staged, not durable: Sizes shows it (dedup), DurableSizes, which the
// commit checks, does not until a Sync made it durable. (Found in review:
// with Sizes, the commit passed and a power cut lost the chunk.)
TEST_F(ChunkFilesTest, AChunkStoredAgainAfterADropIsNotDurableUntilSynced) {
  auto power = std::make_shared<ckpt::testing::PowerLossFs>(
      rocksdb::FileSystem::Default());
  auto fs = std::make_shared<FailChunkSyncFs>(power);
  RocksDbStoreOptions options;
  options.env = rocksdb::NewCompositeEnv(fs);
  options.resume_timeout = absl::Milliseconds(100);
  auto store = RocksDbStore::Open(db_path(), options);
  ASSERT_TRUE(store.ok()) << store.status();
  const std::string x = Bytes(1 << 20, 'x');
  ASSERT_TRUE((*store)->Put("acme", IdOf(x), x).ok());
  fs->fail = true;
  EXPECT_FALSE((*store)->Sync().ok());  // X is dropped
  fs->fail = false;
  ASSERT_TRUE((*store)->Sync().ok());  // a commit's Sync: nothing staged
  auto again = (*store)->Put("acme", IdOf(x), x);  // another save
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(*again);
  auto sizes = (*store)->Sizes("acme", {IdOf(x)});
  ASSERT_TRUE(sizes.ok());
  EXPECT_EQ((*sizes)[0], x.size());
  auto durable = (*store)->DurableSizes("acme", {IdOf(x)});
  ASSERT_TRUE(durable.ok());
  EXPECT_FALSE((*durable)[0].has_value()) << "the commit would name it";
  // One more Sync (what the commit does on a miss) makes it durable.
  ASSERT_TRUE((*store)->Sync().ok());
  durable = (*store)->DurableSizes("acme", {IdOf(x)});
  ASSERT_TRUE(durable.ok());
  EXPECT_EQ((*durable)[0], x.size());
  power->Crash();
  store->reset();
  ASSERT_TRUE(power->RestoreAfterCrash().ok());
  auto reopened = RocksDbStore::Open(db_path(), options);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  auto got = (*reopened)->Get("acme", IdOf(x));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, x);
}

TEST_F(ChunkFilesTest, ConcurrentPutsOfLargeChunksAllLand) {
  Open();
  constexpr int kThreads = 4;
  constexpr int kPerThread = 6;
  std::vector<std::thread> threads;
  std::vector<absl::Status> results(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread && results[t].ok(); ++i) {
        const std::string bytes =
            Bytes((1 << 20) + t * kPerThread + i, static_cast<char>('a' + t));
        // Every thread also puts one chunk all the others put.
        const std::string shared = Bytes(3 << 20, 'S');
        for (const std::string* b : {&bytes, &shared}) {
          absl::StatusOr<bool> put = store_->Put("acme", IdOf(*b), *b);
          if (!put.ok()) results[t] = put.status();
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const absl::Status& result : results) ASSERT_TRUE(result.ok()) << result;
  ASSERT_TRUE(store_->Sync().ok());
  EXPECT_EQ(Files().size(), size_t{kThreads * kPerThread + 1});
  Open();
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      const std::string bytes =
          Bytes((1 << 20) + t * kPerThread + i, static_cast<char>('a' + t));
      auto got = store_->Get("acme", IdOf(bytes));
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(*got, bytes);
    }
  }
}

}  // namespace
}  // namespace ckpt::server
