// RadosMetadataStore's omap keys and reads, shared by its write path
// (rados_metadata_store.cc) and read path (rados_metadata_reads.cc).
// Include only from .cc files (it exposes librados).
#pragma once

#include <cstdint>
#include <optional>
#include <rados/librados.hpp>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ckpt::server::rados_meta {

inline constexpr char kIndexOid[] = "jobs";
inline constexpr char kCollectionOid[] = "lock/gc";
inline constexpr char kJobLock[] = "ckpt.job";
inline constexpr char kTenantLock[] = "ckpt.tenant";
inline constexpr char kCollectionLock[] = "ckpt.gc";

std::string JobOid(absl::string_view job);
std::string TenantOid(absl::string_view tenant);

// Keys of a job object's omap (see rados_metadata_store.h). The tagged
// ones reuse keys.h's encodings with the tag in place of the job name.
inline constexpr char kJobKey[] = "j";
inline constexpr char kLastEventKey[] = "n";
inline constexpr char kTenantKey[] = "t";
inline constexpr char kHeaderTag[] = "c";
inline constexpr char kPendingTag[] = "p";
inline constexpr char kShardTag[] = "s";
inline constexpr char kEventTag[] = "e";
std::string HeaderKey(int64_t step);
std::string PendingKey(int64_t step);
std::string ShardOmapKey(int64_t step, int32_t rank);
std::string EventOmapKey(uint64_t sequence);
// Prefix of every key tagged `tag` ("c\0" ...), and of one step's shards.
std::string TagPrefix(absl::string_view tag);
std::string StepShardPrefix(int64_t step);

// DATA_LOSS for a key or value of `oid` that does not decode.
absl::Status Corrupt(absl::string_view ns, absl::string_view oid,
                     absl::string_view key, const absl::Status& why);

// The value of kLastEventKey; DATA_LOSS naming the object and key when it
// is not one varint.
absl::StatusOr<uint64_t> DecodeLastEvent(absl::string_view ns,
                                         absl::string_view oid,
                                         absl::string_view value);

// The value of one omap key; nullopt when the key or the object is absent.
absl::StatusOr<std::optional<std::string>> ReadOmapValue(
    librados::IoCtx& io, const std::string& oid, const std::string& key);

// Calls fn(key, value) for each key starting with `prefix` that sorts
// after `start_after`, in key order, at most `limit` (0: all), reading a
// page at a time; nothing when the object is absent.
absl::Status ReadOmapRange(
    librados::IoCtx& io, const std::string& oid, const std::string& prefix,
    const std::string& start_after, size_t limit,
    absl::FunctionRef<absl::Status(const std::string& key,
                                   const std::string& value)>
        fn);

// Calls fn(key) for each key in (start_after, end), without values.
absl::Status ReadOmapKeys(librados::IoCtx& io, const std::string& oid,
                          const std::string& start_after,
                          const std::string& end,
                          absl::FunctionRef<void(const std::string& key)> fn);

// Every job name in the index, ascending.
absl::StatusOr<std::vector<std::string>> ReadIndex(librados::IoCtx& io);

// ReadOmapRange(prefix) over the objects of `jobs`, job by job in the
// given order, calling fn(job, key, value); the first page of several
// jobs ahead is read in parallel. Objects that are absent are skipped.
absl::Status ScanJobs(librados::IoCtx& io, const std::vector<std::string>& jobs,
                      const std::string& prefix,
                      absl::FunctionRef<absl::Status(const std::string& job,
                                                     const std::string& key,
                                                     const std::string& value)>
                          fn);

}  // namespace ckpt::server::rados_meta
