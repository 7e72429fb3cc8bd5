// RocksDbStore: both storage interfaces over one RocksDB database (column
// families per kind, BlobDB for chunk values, synced batches): every
// ChunkStore and MetadataStore read and write over the key layout of
// keys.h. Opening, recovery and space reclaiming live beside it
// (rocksdb_store_impl.h lists the files).
#include "server/storage/rocksdb_store.h"

#include <algorithm>
#include <optional>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/failpoint.h"
#include "common/logging.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/wire_format.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/slice.h"
#include "rocksdb/snapshot.h"
#include "rocksdb/write_batch.h"
#include "server/storage/keys.h"
#include "server/storage/rocksdb_status.h"
#include "server/storage/rocksdb_store_impl.h"

namespace ckpt::server {
using rocksdb_internal::Cf;
using rocksdb_internal::CfHandle;
using rocksdb_internal::kCfNames;
using rocksdb_internal::kChunkIndex;
using rocksdb_internal::kChunks;
using rocksdb_internal::kEvents;
using rocksdb_internal::kJobs;
using rocksdb_internal::kManifests;
using rocksdb_internal::kPending;
using rocksdb_internal::kShards;
using rocksdb_internal::ToSlice;
using rocksdb_internal::ToView;

absl::Status RocksDbStore::Impl::SyncChunks() {
  const uint64_t target = chunk_writes.load(std::memory_order_acquire);
  if (synced_writes.load(std::memory_order_acquire) >= target) {
    return absl::OkStatus();
  }
  absl::MutexLock lock(&sync_mu);
  // A Sync that ran while this one waited may have covered `target`.
  if (synced_writes.load(std::memory_order_acquire) >= target) {
    return absl::OkStatus();
  }
  rocksdb::FlushOptions flush;
  flush.wait = true;
  flush.allow_write_stall = true;
  // Every family, not just `chunks` and `chunk_index`: under atomic_flush
  // RocksDB 7.8 asserts that all families of one flush job share a flush
  // reason, and a manual flush of some of them racing an automatic flush
  // of all of them broke that (an abort after a full disk was freed).
  std::vector<rocksdb::ColumnFamilyHandle*> families;
  for (const CfHandle& handle : handles) families.push_back(handle.get());
  CKPT_FAILPOINT("chunk_flush.before");
  CKPT_RETURN_IF_ERROR(WriteRecovering([&] {
    return FromRocksDb(db->Flush(flush, families), "flushing chunks");
  }));
  // The chunks written so far are on disk; no manifest names them yet.
  CKPT_FAILPOINT("chunk_flush.after");
  synced_writes.store(target, std::memory_order_release);
  return absl::OkStatus();
}

absl::Status RocksDbStore::Impl::WriteChunkBatch(rocksdb::WriteBatch* batch,
                                                 absl::string_view context) {
  rocksdb::WriteOptions write;
  write.disableWAL = true;
  // Counted before the write: a Sync that starts once the write is visible
  // must not take it for flushed (counting a failed write costs one flush).
  chunk_writes.fetch_add(1, std::memory_order_release);
  return WriteRecovering(
      [&] { return FromRocksDb(db->Write(write, batch), context); });
}

absl::StatusOr<uint64_t> RocksDbStore::Impl::LastEventSequence(
    absl::string_view job) {
  uint64_t last = 0;
  CKPT_RETURN_IF_ERROR(ReverseScan(
      kEvents, JobKeyPrefix(job), 1,
      [&](absl::string_view key, absl::string_view) -> absl::Status {
        CKPT_ASSIGN_OR_RETURN(last, DecodeEventSequence(job, key));
        return absl::OkStatus();
      }));
  return last;
}

absl::StatusOr<std::optional<std::string>> RocksDbStore::Impl::GetValue(
    Cf which, absl::string_view key, const rocksdb::Snapshot* snapshot) {
  rocksdb::ReadOptions read;
  read.snapshot = snapshot;
  rocksdb::PinnableSlice value;
  rocksdb::Status status = db->Get(read, cf(which), ToSlice(key), &value);
  if (status.IsNotFound()) return std::nullopt;
  CKPT_RETURN_IF_ERROR(
      FromRocksDb(status, absl::StrCat("reading ", kCfNames[which])));
  return value.ToString();
}

absl::Status RocksDbStore::Impl::RemoveDeletedFiles() {
  std::vector<uint64_t> numbers;
  {
    absl::MutexLock lock(&deleted_files_mu);
    numbers.swap(deleted_files);
  }
  if (numbers.empty()) return absl::OkStatus();
  // Every deletion taken above was written before this flush begins.
  absl::Status status = SyncChunks();
  for (size_t i = 0; status.ok() && i < numbers.size(); ++i) {
    status = files->Remove(numbers[i]);
    if (status.ok()) numbers[i] = 0;  // done
  }
  if (!status.ok()) {
    // Kept for the next call (or, after a crash, the scan at open).
    absl::MutexLock lock(&deleted_files_mu);
    for (uint64_t number : numbers) {
      if (number != 0) deleted_files.push_back(number);
    }
  }
  return status;
}

absl::StatusOr<std::string> RocksDbStore::Impl::ReadChunkBytes(
    absl::string_view key, const ChunkIndexValue& index, const ChunkId& id) {
  if (index.file_number.has_value()) {
    absl::StatusOr<std::string> bytes =
        files->Read(*index.file_number, index.size);
    if (!absl::IsNotFound(bytes.status())) return bytes;
    // Deleted (and its file removed) since the index was read, or lost.
    CKPT_ASSIGN_OR_RETURN(std::optional<std::string> now,
                          GetValue(kChunkIndex, key, nullptr));
    if (!now.has_value()) {
      return absl::NotFoundError(
          absl::StrCat("chunk ", id.ShortHex(), " not found"));
    }
    CKPT_ASSIGN_OR_RETURN(ChunkIndexValue current, DecodeChunkIndexValue(*now));
    if (current.file_number != index.file_number) {
      return ReadChunkBytes(key, current, id);
    }
    return absl::DataLossError(absl::StrCat(
        "chunk ", id.ToHex(), " is lost: its file (", *index.file_number,
        ") is missing from the server's data directory"));
  }
  rocksdb::PinnableSlice value;
  rocksdb::ReadOptions read;
  // Debian's RocksDB computes CRC32C in software (no SSE4.2 build), slower
  // than the checks every reader of a chunk makes anyway; skip it.
  read.verify_checksums = false;
  rocksdb::Status status = db->Get(read, cf(kChunks), ToSlice(key), &value);
  if (status.IsNotFound()) {
    return absl::NotFoundError(
        absl::StrCat("chunk ", id.ShortHex(), " not found"));
  }
  CKPT_RETURN_IF_ERROR(
      FromRocksDb(status, absl::StrCat("reading chunk ", id.ShortHex())));
  // The one copy: from the pinned block or blob into the result.
  return std::string(value.data(), value.size());
}

absl::StatusOr<bool> RocksDbStore::Put(absl::string_view tenant,
                                       const ChunkId& id,
                                       absl::string_view bytes) {
  CKPT_RETURN_IF_ERROR(ValidateTenant(tenant));
  const std::string key = ChunkKey(tenant, id);
  const ChunkChecksum checksum = ComputeChunkChecksum(bytes);
  bool complete_staged = false;
  {
    absl::MutexLock lock(&impl_->ChunkLock(id));
    if (impl_->FindStaged(key).has_value()) return false;
    CKPT_ASSIGN_OR_RETURN(std::optional<std::string> existing,
                          impl_->GetValue(kChunkIndex, key, nullptr));
    if (existing.has_value()) return false;
    const std::string what = absl::StrCat("writing chunk ", id.ShortHex());
    // Its own size either way: in a file now, or in a memtable to flush.
    CKPT_RETURN_IF_ERROR(
        impl_->CheckRoom(what, impl_->MemtableBytes() + bytes.size()));
    if (bytes.size() >= impl_->file_chunk_min_bytes) {
      // Indexed once its file is durable (rocksdb_store_staged.cc).
      CKPT_ASSIGN_OR_RETURN(complete_staged,
                            impl_->StageFileChunk(key, id, bytes, checksum));
    } else {
      rocksdb::WriteBatch batch;
      CKPT_RETURN_IF_ERROR(FromRocksDb(
          batch.Put(impl_->cf(kChunks), ToSlice(key), ToSlice(bytes)),
          "batching chunk"));
      CKPT_RETURN_IF_ERROR(FromRocksDb(
          batch.Put(impl_->cf(kChunkIndex), ToSlice(key),
                    ToSlice(EncodeChunkIndexValue(bytes.size(), checksum))),
          "batching chunk"));
      CKPT_FAILPOINT("chunk_put.before");
      CKPT_RETURN_IF_ERROR(impl_->WriteChunkBatch(&batch, what));
      // In the memtable only (no WAL for chunks): a crash loses it unless a
      // flush (chunk_flush) ran since.
      CKPT_FAILPOINT("chunk_put.after");
    }
  }
  if (complete_staged) {
    // This chunk is stored either way; a chunk the batch drops (its file
    // not durable) fails the commit that names it.
    if (absl::Status completed = impl_->CompleteStaged(); !completed.ok()) {
      CKPT_LOG(Warning, "completing staged chunks: ", completed.ToString());
    }
  }
  return true;
}

absl::StatusOr<std::string> RocksDbStore::Impl::ReadChunk(
    absl::string_view tenant, const ChunkId& id, ChunkIndexValue* index) {
  if (!ValidateTenant(tenant).ok()) return ChunkNotFound(tenant, id);
  const std::string key = ChunkKey(tenant, id);
  // Staged first: a chunk leaves the staged set only after it is indexed.
  if (std::optional<StagedChunk> chunk = FindStaged(key); chunk.has_value()) {
    *index = chunk->index;
    absl::StatusOr<std::string> bytes =
        files->Read(*index->file_number, index->size);
    // NOT_FOUND: deleted since; look in the index like any other.
    if (!absl::IsNotFound(bytes.status())) return bytes;
  }
  CKPT_ASSIGN_OR_RETURN(std::optional<std::string> index_value,
                        GetValue(kChunkIndex, key, nullptr));
  if (!index_value.has_value()) return ChunkNotFound(tenant, id);
  CKPT_ASSIGN_OR_RETURN(*index, DecodeChunkIndexValue(*index_value));
  absl::StatusOr<std::string> bytes = ReadChunkBytes(key, *index, id);
  if (absl::IsNotFound(bytes.status())) return ChunkNotFound(tenant, id);
  return bytes;
}

absl::StatusOr<std::string> RocksDbStore::Get(absl::string_view tenant,
                                              const ChunkId& id) {
  ChunkIndexValue index;
  return impl_->ReadChunk(tenant, id, &index);
}

absl::Status RocksDbStore::ReadVerified(
    absl::string_view tenant, const ChunkId& id,
    absl::FunctionRef<absl::Status(absl::string_view bytes)> consume) {
  CKPT_ASSIGN_OR_RETURN(const std::string bytes, ReadVerifiedBytes(tenant, id));
  return consume(bytes);
}

absl::StatusOr<std::string> RocksDbStore::ReadVerifiedBytes(
    absl::string_view tenant, const ChunkId& id) {
  ChunkIndexValue index;
  absl::StatusOr<std::string> read = impl_->ReadChunk(tenant, id, &index);
  if (absl::IsDataLoss(read.status())) {
    return absl::DataLossError(absl::StrCat(
        "chunk ", id.ToHex(), " is corrupt: ", read.status().message()));
  }
  CKPT_RETURN_IF_ERROR(read.status());
  const absl::string_view bytes = *read;
  if (index.checksum.has_value()) {
    if (bytes.size() != index.size ||
        ComputeChunkChecksum(bytes) != *index.checksum) {
      return absl::DataLossError(absl::StrCat(
          "chunk ", id.ToHex(), " is corrupt: its ", bytes.size(),
          " stored bytes do not match the checksum recorded when it was "
          "stored"));
    }
  } else if (const ChunkId actual = Sha256(bytes); actual != id) {
    return absl::DataLossError(
        absl::StrCat("chunk ", id.ToHex(),
                     " is corrupt: its stored bytes hash to ", actual.ToHex()));
  }
  return read;
}

absl::StatusOr<std::vector<std::optional<uint64_t>>> RocksDbStore::Impl::Sizes(
    absl::string_view tenant, absl::Span<const ChunkId> ids,
    bool include_staged) {
  std::vector<std::optional<uint64_t>> sizes(ids.size());
  if (ids.empty() || !ValidateTenant(tenant).ok()) return sizes;
  // Staged first: a chunk leaves the staged set only after it is indexed.
  if (include_staged) {
    absl::MutexLock lock(&staged_mu);
    if (!staged.empty()) {
      for (size_t i = 0; i < ids.size(); ++i) {
        auto it = staged.find(ChunkKey(tenant, ids[i]));
        if (it != staged.end()) sizes[i] = it->second.index.size;
      }
    }
  }
  std::vector<std::string> keys;
  std::vector<rocksdb::Slice> slices;
  keys.reserve(ids.size());
  slices.reserve(ids.size());
  for (const ChunkId& id : ids) {
    keys.push_back(ChunkKey(tenant, id));
    slices.push_back(ToSlice(keys.back()));
  }
  std::vector<rocksdb::PinnableSlice> values(ids.size());
  std::vector<rocksdb::Status> statuses(ids.size());
  db->MultiGet(rocksdb::ReadOptions(), cf(kChunkIndex), ids.size(),
               slices.data(), values.data(), statuses.data());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (statuses[i].IsNotFound() || sizes[i].has_value()) continue;
    CKPT_RETURN_IF_ERROR(FromRocksDb(statuses[i], "looking up chunks"));
    CKPT_ASSIGN_OR_RETURN(ChunkIndexValue index,
                          DecodeChunkIndexValue(ToView(values[i])));
    sizes[i] = index.size;
  }
  return sizes;
}

absl::StatusOr<std::vector<std::optional<uint64_t>>> RocksDbStore::Sizes(
    absl::string_view tenant, absl::Span<const ChunkId> ids) {
  return impl_->Sizes(tenant, ids, /*include_staged=*/true);
}

absl::StatusOr<std::vector<std::optional<uint64_t>>> RocksDbStore::DurableSizes(
    absl::string_view tenant, absl::Span<const ChunkId> ids) {
  return impl_->Sizes(tenant, ids, /*include_staged=*/false);
}

absl::Status RocksDbStore::Delete(absl::string_view tenant, const ChunkId& id) {
  if (!ValidateTenant(tenant).ok()) return absl::OkStatus();
  const std::string key = ChunkKey(tenant, id);
  absl::MutexLock lock(&impl_->ChunkLock(id));
  // Never indexed: its file can go at once.
  if (impl_->DropStaged(key)) return absl::OkStatus();
  CKPT_ASSIGN_OR_RETURN(std::optional<std::string> index_value,
                        impl_->GetValue(kChunkIndex, key, nullptr));
  if (!index_value.has_value()) return absl::OkStatus();
  // A corrupt index entry is deleted all the same (its file, if any, is
  // then removed by the scan at the next open).
  absl::StatusOr<ChunkIndexValue> index = DecodeChunkIndexValue(*index_value);
  rocksdb::WriteBatch batch;
  CKPT_RETURN_IF_ERROR(FromRocksDb(
      batch.Delete(impl_->cf(kChunks), ToSlice(key)), "batching delete"));
  CKPT_RETURN_IF_ERROR(FromRocksDb(
      batch.Delete(impl_->cf(kChunkIndex), ToSlice(key)), "batching delete"));
  CKPT_RETURN_IF_ERROR(impl_->WriteChunkBatch(
      &batch, absl::StrCat("deleting chunk ", id.ShortHex())));
  if (index.ok() && index->file_number.has_value()) {
    absl::MutexLock files_lock(&impl_->deleted_files_mu);
    impl_->deleted_files.push_back(*index->file_number);
  }
  return absl::OkStatus();
}

absl::Status RocksDbStore::Sync() {
  absl::Status completed = impl_->CompleteStaged();
  absl::Status synced = impl_->SyncChunks();
  return completed.ok() ? synced : completed;
}

absl::StatusOr<ChunkStore::Usage> RocksDbStore::GetUsage(
    absl::string_view tenant) {
  // Staged chunks count once indexed.
  CKPT_RETURN_IF_ERROR(impl_->CompleteStaged());
  Usage usage;
  CKPT_RETURN_IF_ERROR(impl_->Scan(
      kChunkIndex, ChunkKeyPrefix(tenant), nullptr,
      [&](absl::string_view, absl::string_view value) -> absl::Status {
        CKPT_ASSIGN_OR_RETURN(ChunkIndexValue index,
                              DecodeChunkIndexValue(value));
        ++usage.chunk_count;
        usage.bytes += index.size;
        return absl::OkStatus();
      }));
  return usage;
}

absl::Status RocksDbStore::ForEach(
    absl::string_view tenant,
    absl::FunctionRef<absl::Status(absl::string_view tenant, const ChunkId& id,
                                   uint64_t size)>
        fn) {
  CKPT_RETURN_IF_ERROR(impl_->CompleteStaged());
  return impl_->Scan(
      kChunkIndex, ChunkKeyPrefix(tenant), nullptr,
      [&](absl::string_view key, absl::string_view value) -> absl::Status {
        CKPT_ASSIGN_OR_RETURN(DecodedChunkKey decoded, DecodeChunkKey(key));
        CKPT_ASSIGN_OR_RETURN(ChunkIndexValue index,
                              DecodeChunkIndexValue(value));
        return fn(decoded.tenant, decoded.id, index.size);
      });
}

absl::StatusOr<std::optional<JobRecord>> RocksDbStore::GetJob(
    absl::string_view job) {
  CKPT_ASSIGN_OR_RETURN(std::optional<std::string> value,
                        impl_->GetValue(kJobs, job, nullptr));
  if (!value.has_value()) return std::nullopt;
  return DecodeJobRecord(*value);
}

absl::StatusOr<std::vector<JobRecord>> RocksDbStore::ListJobs() {
  std::vector<JobRecord> jobs;
  CKPT_RETURN_IF_ERROR(impl_->Scan(
      kJobs, "", nullptr,
      [&](absl::string_view, absl::string_view value) -> absl::Status {
        CKPT_ASSIGN_OR_RETURN(JobRecord job, DecodeJobRecord(value));
        jobs.push_back(std::move(job));
        return absl::OkStatus();
      }));
  return jobs;
}

absl::StatusOr<std::optional<TenantRecord>> RocksDbStore::GetTenant(
    absl::string_view tenant) {
  CKPT_ASSIGN_OR_RETURN(
      std::optional<std::string> value,
      impl_->GetValue(rocksdb_internal::kTenants, tenant, nullptr));
  if (!value.has_value()) return std::nullopt;
  return DecodeTenantRecord(*value);
}

absl::StatusOr<CheckpointRecord> RocksDbStore::GetCheckpoint(
    absl::string_view job, int64_t step) {
  if (step < 0) return CheckpointNotFound(job, step);
  const std::string key = CheckpointKey(job, step);
  rocksdb::ManagedSnapshot snapshot(impl_->db.get());
  for (Cf which : {kManifests, kPending}) {
    CKPT_ASSIGN_OR_RETURN(std::optional<std::string> value,
                          impl_->GetValue(which, key, snapshot.snapshot()));
    if (value.has_value()) return DecodeCheckpointRecord(*value);
  }
  return CheckpointNotFound(job, step);
}

absl::StatusOr<std::vector<CheckpointRecord>> RocksDbStore::ListCheckpoints(
    absl::string_view job) {
  std::vector<CheckpointRecord> records;
  rocksdb::ManagedSnapshot snapshot(impl_->db.get());
  for (Cf which : {kManifests, kPending}) {
    CKPT_RETURN_IF_ERROR(impl_->Scan(
        which, JobKeyPrefix(job), snapshot.snapshot(),
        [&](absl::string_view, absl::string_view value) -> absl::Status {
          CKPT_ASSIGN_OR_RETURN(CheckpointRecord record,
                                DecodeCheckpointRecord(value));
          records.push_back(std::move(record));
          return absl::OkStatus();
        }));
  }
  // Each family is in step order; Apply keeps a step in at most one.
  std::stable_sort(records.begin(), records.end(),
                   [](const CheckpointRecord& a, const CheckpointRecord& b) {
                     return a.step < b.step;
                   });
  return records;
}

absl::StatusOr<std::vector<CheckpointRecord>> RocksDbStore::ListPending() {
  std::vector<CheckpointRecord> records;
  CKPT_RETURN_IF_ERROR(impl_->Scan(
      kPending, "", nullptr,
      [&](absl::string_view, absl::string_view value) -> absl::Status {
        CKPT_ASSIGN_OR_RETURN(CheckpointRecord record,
                              DecodeCheckpointRecord(value));
        if (record.state == CheckpointState::kPending) {
          records.push_back(std::move(record));
        }
        return absl::OkStatus();
      }));
  return records;
}

absl::StatusOr<std::vector<ShardManifest>> RocksDbStore::GetShards(
    absl::string_view job, int64_t step) {
  std::vector<ShardManifest> shards;
  if (step < 0) return shards;
  CKPT_RETURN_IF_ERROR(impl_->Scan(
      kShards, CheckpointKey(job, step), nullptr,
      [&](absl::string_view, absl::string_view value) -> absl::Status {
        CKPT_ASSIGN_OR_RETURN(ShardManifest shard, DecodeShard(value));
        shards.push_back(std::move(shard));
        return absl::OkStatus();
      }));
  return shards;
}

absl::Status RocksDbStore::ForEachShard(
    absl::FunctionRef<absl::Status(absl::string_view job, int64_t step,
                                   const ShardManifest& shard)>
        fn) {
  // An iterator reads the implicit snapshot of its creation.
  return impl_->Scan(
      kShards, "", nullptr,
      [&](absl::string_view key, absl::string_view value) -> absl::Status {
        CKPT_ASSIGN_OR_RETURN(DecodedShardKey decoded, DecodeShardKey(key));
        CKPT_ASSIGN_OR_RETURN(ShardManifest shard, DecodeShard(value));
        return fn(decoded.job, decoded.step, shard);
      });
}

absl::StatusOr<std::vector<JobEvent>> RocksDbStore::ListEvents(
    absl::string_view job, size_t limit) {
  std::vector<JobEvent> events;
  CKPT_RETURN_IF_ERROR(impl_->ReverseScan(
      kEvents, JobKeyPrefix(job), limit,
      [&](absl::string_view, absl::string_view value) -> absl::Status {
        CKPT_ASSIGN_OR_RETURN(JobEvent event, DecodeJobEvent(value));
        events.push_back(std::move(event));
        return absl::OkStatus();
      }));
  std::reverse(events.begin(), events.end());
  return events;
}

absl::Status RocksDbStore::Apply(const MetadataBatch& batch) {
  CKPT_RETURN_IF_ERROR(ValidateBatch(batch));
  if (batch.empty()) return absl::OkStatus();
  const bool appends_events = std::any_of(
      batch.ops().begin(), batch.ops().end(), [](const MetadataBatch::Op& op) {
        return std::holds_alternative<MetadataBatch::AppendEventOp>(op);
      });
  std::optional<absl::MutexLock> events_lock;
  if (appends_events) events_lock.emplace(&impl_->events_mu);
  EventSequencer sequencer;
  auto last_stored = [this](absl::string_view job) {
    return impl_->LastEventSequence(job);
  };
  rocksdb::WriteBatch write_batch;
  auto put = [&](Cf which, absl::string_view key, absl::string_view value) {
    return FromRocksDb(
        write_batch.Put(impl_->cf(which), ToSlice(key), ToSlice(value)),
        "batching metadata");
  };
  auto del = [&](Cf which, absl::string_view key) {
    return FromRocksDb(write_batch.Delete(impl_->cf(which), ToSlice(key)),
                       "batching metadata");
  };
  for (const MetadataBatch::Op& op : batch.ops()) {
    if (const auto* put_job = std::get_if<MetadataBatch::PutJobOp>(&op)) {
      CKPT_RETURN_IF_ERROR(
          put(kJobs, put_job->job.name, EncodeJobRecord(put_job->job)));
    } else if (const auto* put_tenant =
                   std::get_if<MetadataBatch::PutTenantOp>(&op)) {
      CKPT_RETURN_IF_ERROR(put(rocksdb_internal::kTenants,
                               put_tenant->tenant.name,
                               EncodeTenantRecord(put_tenant->tenant)));
    } else if (const auto* put_checkpoint =
                   std::get_if<MetadataBatch::PutCheckpointOp>(&op)) {
      const CheckpointRecord& record = put_checkpoint->record;
      const std::string key = CheckpointKey(record.job, record.step);
      const bool committed = record.state == CheckpointState::kCommitted;
      CKPT_RETURN_IF_ERROR(put(committed ? kManifests : kPending, key,
                               EncodeCheckpointRecord(record)));
      CKPT_RETURN_IF_ERROR(del(committed ? kPending : kManifests, key));
    } else if (const auto* del_checkpoint =
                   std::get_if<MetadataBatch::DeleteCheckpointOp>(&op)) {
      const std::string key =
          CheckpointKey(del_checkpoint->job, del_checkpoint->step);
      CKPT_RETURN_IF_ERROR(del(kManifests, key));
      CKPT_RETURN_IF_ERROR(del(kPending, key));
      // A range delete also covers shards put earlier in this same batch.
      CKPT_RETURN_IF_ERROR(
          FromRocksDb(write_batch.DeleteRange(impl_->cf(kShards), ToSlice(key),
                                              ToSlice(PrefixSuccessor(key))),
                      "batching metadata"));
    } else if (const auto* append =
                   std::get_if<MetadataBatch::AppendEventOp>(&op)) {
      JobEvent event = append->event;
      CKPT_ASSIGN_OR_RETURN(event.sequence,
                            sequencer.Next(event.job, last_stored));
      CKPT_RETURN_IF_ERROR(put(kEvents, EventKey(event.job, event.sequence),
                               EncodeJobEvent(event)));
    } else {
      const auto& put_shard = std::get<MetadataBatch::PutShardOp>(op);
      CKPT_RETURN_IF_ERROR(
          put(kShards,
              ShardKey(put_shard.job, put_shard.step, put_shard.shard.rank),
              EncodeShard(put_shard.shard)));
    }
  }
  // After the puts, so the range also covers events put by this batch.
  for (const EventSequencer::Trim& trim : sequencer.Trims()) {
    CKPT_RETURN_IF_ERROR(FromRocksDb(
        write_batch.DeleteRange(impl_->cf(kEvents),
                                ToSlice(JobKeyPrefix(trim.job)),
                                ToSlice(EventKey(trim.job, trim.keep_from))),
        "batching metadata"));
  }
  CKPT_RETURN_IF_ERROR(impl_->CheckRoom("writing metadata batch"));
  rocksdb::WriteOptions write;
  write.sync = true;
  return impl_->WriteRecovering([&] {
    return FromRocksDb(impl_->db->Write(write, &write_batch),
                       "writing metadata batch");
  });
}

std::optional<uint64_t> RocksDbStore::IntProperty(
    const std::string& name) const {
  uint64_t value = 0;
  if (!impl_->db->GetIntProperty(name, &value)) return std::nullopt;
  return value;
}

}  // namespace ckpt::server
