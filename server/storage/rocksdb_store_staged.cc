// RocksDbStore: staged chunk files. A large chunk's Put writes its file and
// returns without waiting for the disk (the file's writeback started); the
// chunk is then "staged": visible to reads and existence checks, but not in
// the index. CompleteStaged syncs the staged files in one batch (by then
// mostly written back), fsyncs their directories, and only then writes their
// index entries, so no index entry ever names a file that is not durable.
// Sync() completes every staged chunk before it flushes. A chunk whose file
// could not be synced is dropped; commit checks its chunks after Sync()
// against DurableSizes, which leaves staged chunks out, so it fails instead
// of naming a chunk a sync may still lose.
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/failpoint.h"
#include "common/logging.h"
#include "rocksdb/write_batch.h"
#include "server/storage/rocksdb_store_impl.h"

namespace ckpt::server {
using rocksdb_internal::kChunkIndex;
using rocksdb_internal::ToSlice;

absl::StatusOr<bool> RocksDbStore::Impl::StageFileChunk(
    const std::string& key, const ChunkId& id, absl::string_view bytes,
    const ChunkChecksum& checksum) {
  CKPT_ASSIGN_OR_RETURN(const uint64_t number, files->Write(bytes));
  StagedChunk chunk{id, ChunkIndexValue{bytes.size(), checksum, number}};
  // Counted as a chunk write, so the next Sync does not skip its flush.
  chunk_writes.fetch_add(1, std::memory_order_release);
  absl::MutexLock lock(&staged_mu);
  staged[key] = std::move(chunk);
  return staged.size() >= kMaxStagedChunks;
}

std::optional<RocksDbStore::Impl::StagedChunk> RocksDbStore::Impl::FindStaged(
    const std::string& key) {
  absl::MutexLock lock(&staged_mu);
  auto it = staged.find(key);
  if (it == staged.end()) return std::nullopt;
  return it->second;
}

bool RocksDbStore::Impl::DropStaged(const std::string& key) {
  std::optional<uint64_t> number;
  {
    absl::MutexLock lock(&staged_mu);
    auto it = staged.find(key);
    if (it == staged.end()) return false;
    number = it->second.index.file_number;
    staged.erase(it);
  }
  if (absl::Status removed = files->Remove(*number); !removed.ok()) {
    // Never indexed: the scan at the next open removes it.
    CKPT_LOG(Warning, "removing an unindexed chunk file: ", removed.ToString());
  }
  return true;
}

absl::Status RocksDbStore::Impl::CompleteStaged() {
  absl::MutexLock completing(&complete_mu);
  std::vector<std::pair<std::string, StagedChunk>> batch;
  {
    absl::MutexLock lock(&staged_mu);
    if (staged.empty()) return absl::OkStatus();
    batch.assign(staged.begin(), staged.end());
  }
  std::vector<uint64_t> numbers;
  numbers.reserve(batch.size());
  for (const auto& [key, chunk] : batch) {
    numbers.push_back(*chunk.index.file_number);
  }
  const std::vector<absl::Status> synced = files->Sync(numbers);
  absl::Status first_error;
  for (size_t i = 0; i < batch.size(); ++i) {
    const std::string& key = batch[i].first;
    const StagedChunk& chunk = batch[i].second;
    // Under the chunk's lock, so a Delete either dropped it before (then it
    // is not indexed here) or comes after its index entry.
    absl::MutexLock chunk_lock(&ChunkLock(chunk.id));
    {
      absl::MutexLock lock(&staged_mu);
      auto it = staged.find(key);
      if (it == staged.end() ||
          it->second.index.file_number != chunk.index.file_number) {
        continue;  // deleted meanwhile
      }
    }
    absl::Status status = synced[i];
    if (status.ok()) {
      rocksdb::WriteBatch write;
      status =
          FromRocksDb(write.Put(cf(kChunkIndex), ToSlice(key),
                                ToSlice(EncodeChunkIndexValue(
                                    chunk.index.size, *chunk.index.checksum,
                                    chunk.index.file_number))),
                      "batching chunk");
      CKPT_FAILPOINT("chunk_put.before");
      if (status.ok()) {
        status = WriteChunkBatch(
            &write, absl::StrCat("indexing chunk ", chunk.id.ShortHex()));
      }
      // In the memtable only (no WAL for chunks): a crash loses it unless a
      // flush (chunk_flush) ran since; its file is then removed at open.
      CKPT_FAILPOINT("chunk_put.after");
    }
    if (!status.ok()) {
      CKPT_LOG(Error, "chunk ", chunk.id.ShortHex(),
               " is dropped, its file not durable: ", status.ToString());
      DropStaged(key);
      if (first_error.ok()) first_error = status;
      continue;
    }
    absl::MutexLock lock(&staged_mu);
    staged.erase(key);
  }
  return first_error;
}

}  // namespace ckpt::server
