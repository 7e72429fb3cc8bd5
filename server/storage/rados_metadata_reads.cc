// RadosMetadataStore's reads: single omap keys, omap ranges of one job
// object, and scans over every indexed job (ListJobs, ListPending,
// ForEachShard). Every key and value read back is checked: what does not
// decode, or decodes to a record of another job or step, is DATA_LOSS
// naming the object and key.
#include <algorithm>
#include <utility>

#include "common/status_macros.h"
#include "common/wire_format.h"
#include "server/storage/keys.h"
#include "server/storage/rados_io.h"
#include "server/storage/rados_metadata_omap.h"
#include "server/storage/rados_metadata_store.h"

namespace ckpt::server {
using namespace rados_meta;  // NOLINT(google-build-using-namespace)

namespace {

// A header value under header or pending key `key` of `job`.
absl::StatusOr<CheckpointRecord> DecodeHeader(absl::string_view ns,
                                              absl::string_view job,
                                              absl::string_view tag,
                                              const std::string& key,
                                              const std::string& value) {
  const std::string oid = JobOid(job);
  auto step = DecodeEventSequence(tag, key);  // same layout: tag\0 + 8 bytes
  if (!step.ok()) {
    return Corrupt(ns, oid, key,
                   absl::DataLossError(absl::StrCat(
                       "malformed checkpoint key of ", key.size(), " bytes")));
  }
  auto record = DecodeCheckpointRecord(value);
  if (!record.ok()) return Corrupt(ns, oid, key, record.status());
  if (record->job != job || static_cast<uint64_t>(record->step) != *step) {
    return Corrupt(
        ns, oid, key,
        absl::DataLossError(absl::StrCat("holds the header of ", record->job,
                                         " step ", record->step)));
  }
  return std::move(record).value();
}

struct ShardEntry {
  int64_t step = 0;
  ShardManifest shard;
};

// A shard entry of `job`: its key must be a shard key whose rank is the
// value's.
absl::StatusOr<ShardEntry> DecodeShardEntry(absl::string_view ns,
                                            absl::string_view job,
                                            const std::string& key,
                                            const std::string& value) {
  const std::string oid = JobOid(job);
  auto decoded = DecodeShardKey(key);
  if (!decoded.ok()) return Corrupt(ns, oid, key, decoded.status());
  auto shard = DecodeShard(value);
  if (!shard.ok()) return Corrupt(ns, oid, key, shard.status());
  if (decoded->job != kShardTag || decoded->rank != shard->rank) {
    return Corrupt(ns, oid, key,
                   absl::DataLossError(
                       absl::StrCat("holds the shard of rank ", shard->rank)));
  }
  return ShardEntry{decoded->step, std::move(shard).value()};
}

}  // namespace

absl::StatusOr<std::optional<JobRecord>> RadosMetadataStore::GetJob(
    absl::string_view job) {
  librados::IoCtx io = IoCtxIn(*cluster_, options_.name_space);
  const std::string oid = JobOid(job);
  CKPT_ASSIGN_OR_RETURN(std::optional<std::string> value,
                        ReadOmapValue(io, oid, kJobKey));
  if (!value.has_value()) return std::nullopt;
  auto record = DecodeJobRecord(*value);
  if (!record.ok()) {
    return Corrupt(options_.name_space, oid, kJobKey, record.status());
  }
  if (record->name != job) {
    return Corrupt(options_.name_space, oid, kJobKey,
                   absl::DataLossError(
                       absl::StrCat("holds the record of job ", record->name)));
  }
  return std::move(record).value();
}

absl::StatusOr<std::vector<JobRecord>> RadosMetadataStore::ListJobs() {
  librados::IoCtx io = IoCtxIn(*cluster_, options_.name_space);
  CKPT_ASSIGN_OR_RETURN(std::vector<std::string> names, ReadIndex(io));
  std::vector<JobRecord> jobs;
  CKPT_RETURN_IF_ERROR(ScanJobs(
      io, names, kJobKey,
      [&](const std::string& job, const std::string& key,
          const std::string& value) -> absl::Status {
        if (key != kJobKey) return absl::OkStatus();  // "j" is a prefix only
        auto record = DecodeJobRecord(value);
        if (!record.ok() || record->name != job) {
          return Corrupt(options_.name_space, JobOid(job), key,
                         record.ok()
                             ? absl::DataLossError(absl::StrCat(
                                   "holds the record of job ", record->name))
                             : record.status());
        }
        jobs.push_back(std::move(record).value());
        return absl::OkStatus();
      }));
  return jobs;
}

absl::StatusOr<std::optional<TenantRecord>> RadosMetadataStore::GetTenant(
    absl::string_view tenant) {
  librados::IoCtx io = IoCtxIn(*cluster_, options_.name_space);
  const std::string oid = TenantOid(tenant);
  CKPT_ASSIGN_OR_RETURN(std::optional<std::string> value,
                        ReadOmapValue(io, oid, kTenantKey));
  if (!value.has_value()) return std::nullopt;
  auto record = DecodeTenantRecord(*value);
  if (!record.ok() || record->name != tenant) {
    return Corrupt(options_.name_space, oid, kTenantKey,
                   record.ok()
                       ? absl::DataLossError(absl::StrCat(
                             "holds the record of tenant ", record->name))
                       : record.status());
  }
  return std::move(record).value();
}

absl::StatusOr<CheckpointRecord> RadosMetadataStore::GetCheckpoint(
    absl::string_view job, int64_t step) {
  if (step < 0) return CheckpointNotFound(job, step);
  librados::IoCtx io = IoCtxIn(*cluster_, options_.name_space);
  const std::string key = HeaderKey(step);
  CKPT_ASSIGN_OR_RETURN(std::optional<std::string> value,
                        ReadOmapValue(io, JobOid(job), key));
  if (!value.has_value()) return CheckpointNotFound(job, step);
  return DecodeHeader(options_.name_space, job, kHeaderTag, key, *value);
}

absl::StatusOr<std::vector<CheckpointRecord>>
RadosMetadataStore::ListCheckpoints(absl::string_view job) {
  librados::IoCtx io = IoCtxIn(*cluster_, options_.name_space);
  std::vector<CheckpointRecord> records;
  CKPT_RETURN_IF_ERROR(ReadOmapRange(
      io, JobOid(job), TagPrefix(kHeaderTag), "", 0,
      [&](const std::string& key, const std::string& value) -> absl::Status {
        CKPT_ASSIGN_OR_RETURN(
            CheckpointRecord record,
            DecodeHeader(options_.name_space, job, kHeaderTag, key, value));
        records.push_back(std::move(record));
        return absl::OkStatus();
      }));
  return records;
}

absl::StatusOr<std::vector<CheckpointRecord>>
RadosMetadataStore::ListPending() {
  librados::IoCtx io = IoCtxIn(*cluster_, options_.name_space);
  CKPT_ASSIGN_OR_RETURN(std::vector<std::string> names, ReadIndex(io));
  std::vector<CheckpointRecord> records;
  CKPT_RETURN_IF_ERROR(ScanJobs(
      io, names, TagPrefix(kPendingTag),
      [&](const std::string& job, const std::string& key,
          const std::string& value) -> absl::Status {
        CKPT_ASSIGN_OR_RETURN(
            CheckpointRecord record,
            DecodeHeader(options_.name_space, job, kPendingTag, key, value));
        if (record.state == CheckpointState::kPending) {
          records.push_back(std::move(record));
        }
        return absl::OkStatus();
      }));
  return records;
}

absl::StatusOr<std::vector<ShardManifest>> RadosMetadataStore::GetShards(
    absl::string_view job, int64_t step) {
  std::vector<ShardManifest> shards;
  if (step < 0) return shards;
  librados::IoCtx io = IoCtxIn(*cluster_, options_.name_space);
  CKPT_RETURN_IF_ERROR(ReadOmapRange(
      io, JobOid(job), StepShardPrefix(step), "", 0,
      [&](const std::string& key, const std::string& value) -> absl::Status {
        CKPT_ASSIGN_OR_RETURN(
            ShardEntry entry,
            DecodeShardEntry(options_.name_space, job, key, value));
        shards.push_back(std::move(entry.shard));
        return absl::OkStatus();
      }));
  return shards;
}

absl::Status RadosMetadataStore::ForEachShard(
    absl::FunctionRef<absl::Status(absl::string_view job, int64_t step,
                                   const ShardManifest& shard)>
        fn) {
  librados::IoCtx io = IoCtxIn(*cluster_, options_.name_space);
  CKPT_ASSIGN_OR_RETURN(std::vector<std::string> names, ReadIndex(io));
  return ScanJobs(io, names, TagPrefix(kShardTag),
                  [&](const std::string& job, const std::string& key,
                      const std::string& value) -> absl::Status {
                    CKPT_ASSIGN_OR_RETURN(
                        ShardEntry entry,
                        DecodeShardEntry(options_.name_space, job, key, value));
                    return fn(job, entry.step, entry.shard);
                  });
}

absl::StatusOr<std::vector<JobEvent>> RadosMetadataStore::ListEvents(
    absl::string_view job, size_t limit) {
  std::vector<JobEvent> events;
  librados::IoCtx io = IoCtxIn(*cluster_, options_.name_space);
  const std::string oid = JobOid(job);
  CKPT_ASSIGN_OR_RETURN(std::optional<std::string> last_value,
                        ReadOmapValue(io, oid, kLastEventKey));
  if (!last_value.has_value() || limit == 0) return events;
  CKPT_ASSIGN_OR_RETURN(const uint64_t last,
                        DecodeLastEvent(options_.name_space, oid, *last_value));
  // Sequences are consecutive (trimming drops the oldest), so the newest
  // `limit` are those after last - limit.
  const uint64_t after = last > limit ? last - limit : 0;
  CKPT_RETURN_IF_ERROR(ReadOmapRange(
      io, oid, TagPrefix(kEventTag), EventOmapKey(after), limit,
      [&](const std::string& key, const std::string& value) -> absl::Status {
        auto sequence = DecodeEventSequence(kEventTag, key);
        auto event = DecodeJobEvent(value);
        if (!sequence.ok() || !event.ok() || event->sequence != *sequence ||
            event->job != job) {
          return Corrupt(options_.name_space, oid, key,
                         !sequence.ok() ? sequence.status()
                         : !event.ok()  ? event.status()
                                        : absl::DataLossError(absl::StrCat(
                                              "holds event ", event->sequence,
                                              " of job ", event->job)));
        }
        events.push_back(std::move(event).value());
        return absl::OkStatus();
      }));
  return events;
}

}  // namespace ckpt::server
