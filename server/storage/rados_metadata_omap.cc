#include "server/storage/rados_metadata_omap.h"

#include <cerrno>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/storage/keys.h"
#include "server/storage/rados_io.h"

namespace ckpt::server::rados_meta {
namespace {

// Entries per omap read: bounded so that one read never asks the OSD for
// more than its per-request limits (osd_max_omap_entries_per_request).
constexpr uint64_t kPage = 1024;
// Jobs whose first page is read ahead in parallel by ScanJobs.
constexpr size_t kReadAhead = 32;

// One asynchronous omap page read; waits for it before freeing what
// librados writes into.
struct PageRead {
  librados::ObjectReadOperation op;
  std::map<std::string, librados::bufferlist> values;
  bool more = false;
  int prval = 0;
  AioCompletionPtr done = NewAioCompletion();
  int rc = 0;  // of aio_operate itself

  ~PageRead() {
    if (rc == 0) done->wait_for_complete();
  }
};

}  // namespace

std::string JobOid(absl::string_view job) { return absl::StrCat("job/", job); }
std::string TenantOid(absl::string_view tenant) {
  return absl::StrCat("tenant/", tenant);
}

std::string HeaderKey(int64_t step) { return CheckpointKey(kHeaderTag, step); }
std::string PendingKey(int64_t step) {
  return CheckpointKey(kPendingTag, step);
}
std::string ShardOmapKey(int64_t step, int32_t rank) {
  return ShardKey(kShardTag, step, rank);
}
std::string EventOmapKey(uint64_t sequence) {
  return EventKey(kEventTag, sequence);
}
std::string TagPrefix(absl::string_view tag) { return JobKeyPrefix(tag); }
std::string StepShardPrefix(int64_t step) {
  return CheckpointKey(kShardTag, step);
}

absl::Status Corrupt(absl::string_view ns, absl::string_view oid,
                     absl::string_view key, const absl::Status& why) {
  return absl::DataLossError(absl::StrCat(
      "corrupt metadata in RADOS object ", ns, "/", oid, ", omap key \"",
      absl::CHexEscape(key), "\": ", why.message()));
}

absl::StatusOr<uint64_t> DecodeLastEvent(absl::string_view ns,
                                         absl::string_view oid,
                                         absl::string_view value) {
  absl::StatusOr<uint64_t> last = DecodeVarint64(value);
  if (last.ok()) return last;
  return Corrupt(ns, oid, kLastEventKey,
                 absl::DataLossError(absl::StrCat("last event sequence: ",
                                                  last.status().message())));
}

absl::StatusOr<std::optional<std::string>> ReadOmapValue(
    librados::IoCtx& io, const std::string& oid, const std::string& key) {
  librados::ObjectReadOperation op;
  std::map<std::string, librados::bufferlist> values;
  int prval = 0;
  op.omap_get_vals_by_keys({key}, &values, &prval);
  const int rc = io.operate(oid, &op, nullptr);
  if (rc == -ENOENT) return std::nullopt;
  CKPT_RETURN_IF_ERROR(RadosStatus(rc < 0 ? rc : prval,
                                   absl::StrCat("reading RADOS object ", oid)));
  auto it = values.find(key);
  if (it == values.end()) return std::nullopt;
  return it->second.to_str();
}

absl::Status ReadOmapRange(
    librados::IoCtx& io, const std::string& oid, const std::string& prefix,
    const std::string& start_after, size_t limit,
    absl::FunctionRef<absl::Status(const std::string& key,
                                   const std::string& value)>
        fn) {
  std::string after = start_after;
  size_t seen = 0;
  bool more = true;
  while (more) {
    const uint64_t page =
        limit == 0 ? kPage : std::min<uint64_t>(kPage, limit - seen);
    librados::ObjectReadOperation op;
    std::map<std::string, librados::bufferlist> values;
    int prval = 0;
    op.omap_get_vals2(after, prefix, page, &values, &more, &prval);
    const int rc = io.operate(oid, &op, nullptr);
    if (rc == -ENOENT) return absl::OkStatus();
    CKPT_RETURN_IF_ERROR(RadosStatus(
        rc < 0 ? rc : prval, absl::StrCat("reading RADOS object ", oid)));
    for (auto& [key, value] : values) {
      CKPT_RETURN_IF_ERROR(fn(key, value.to_str()));
    }
    seen += values.size();
    if (values.empty() || (limit != 0 && seen >= limit)) break;
    after = values.rbegin()->first;
  }
  return absl::OkStatus();
}

absl::Status ReadOmapKeys(librados::IoCtx& io, const std::string& oid,
                          const std::string& start_after,
                          const std::string& end,
                          absl::FunctionRef<void(const std::string& key)> fn) {
  std::string after = start_after;
  bool more = true;
  while (more) {
    librados::ObjectReadOperation op;
    std::set<std::string> keys;
    int prval = 0;
    op.omap_get_keys2(after, kPage, &keys, &more, &prval);
    const int rc = io.operate(oid, &op, nullptr);
    if (rc == -ENOENT) return absl::OkStatus();
    CKPT_RETURN_IF_ERROR(RadosStatus(
        rc < 0 ? rc : prval, absl::StrCat("reading RADOS object ", oid)));
    for (const std::string& key : keys) {
      if (!end.empty() && key >= end) return absl::OkStatus();
      fn(key);
    }
    if (keys.empty()) break;
    after = *keys.rbegin();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ReadIndex(librados::IoCtx& io) {
  std::vector<std::string> jobs;
  std::optional<std::string> bad;
  CKPT_RETURN_IF_ERROR(
      ReadOmapKeys(io, kIndexOid, "", "", [&](const std::string& job) {
        // No job is named so (ValidateBatch): the index was written by
        // something else.
        if (job.empty() || job.find('\0') != std::string::npos) bad = job;
        jobs.push_back(job);
      }));
  if (bad.has_value()) {
    return Corrupt(io.get_namespace(), kIndexOid, *bad,
                   absl::DataLossError("not a job name"));
  }
  return jobs;
}

absl::Status ScanJobs(librados::IoCtx& io, const std::vector<std::string>& jobs,
                      const std::string& prefix,
                      absl::FunctionRef<absl::Status(const std::string& job,
                                                     const std::string& key,
                                                     const std::string& value)>
                          fn) {
  std::deque<std::unique_ptr<PageRead>> in_flight;
  size_t next = 0;
  auto start_next = [&] {
    auto read = std::make_unique<PageRead>();
    read->op.omap_get_vals2("", prefix, kPage, &read->values, &read->more,
                            &read->prval);
    read->rc = io.aio_operate(JobOid(jobs[next]), read->done.get(), &read->op,
                              nullptr);
    in_flight.push_back(std::move(read));
    ++next;
  };
  for (size_t i = 0; i < jobs.size(); ++i) {
    while (next < jobs.size() && next < i + kReadAhead) start_next();
    std::unique_ptr<PageRead> read = std::move(in_flight.front());
    in_flight.pop_front();
    const std::string oid = JobOid(jobs[i]);
    int rc = read->rc;
    if (rc == 0) {
      read->done->wait_for_complete();
      rc = read->done->get_return_value();
    }
    if (rc == -ENOENT) continue;
    CKPT_RETURN_IF_ERROR(RadosStatus(
        rc < 0 ? rc : read->prval, absl::StrCat("reading RADOS object ", oid)));
    for (auto& [key, value] : read->values) {
      CKPT_RETURN_IF_ERROR(fn(jobs[i], key, value.to_str()));
    }
    if (read->more && !read->values.empty()) {
      CKPT_RETURN_IF_ERROR(
          ReadOmapRange(io, oid, prefix, read->values.rbegin()->first, 0,
                        [&](const std::string& key, const std::string& value) {
                          return fn(jobs[i], key, value);
                        }));
    }
  }
  return absl::OkStatus();
}

}  // namespace ckpt::server::rados_meta
