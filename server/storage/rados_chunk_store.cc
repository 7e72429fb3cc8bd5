#include "server/storage/rados_chunk_store.h"

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <deque>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/chunking.h"
#include "common/status_macros.h"
#include "server/storage/keys.h"
#include "server/storage/rados_io.h"

namespace ckpt::server {
namespace {

constexpr char kSumXattr[] = "ckpt.sum";
constexpr char kUsedXattr[] = "ckpt.used";
// Objects per page of a listing, and chunks ForEach stats per batch before
// calling back.
constexpr size_t kListPage = 1024;
constexpr size_t kForEachBatch = 1024;
// Put retries when the chunk it found present is deleted before its mark.
constexpr int kPutAttempts = 3;

// ckpt.used is the time of the last recorded use in microseconds since the
// Unix epoch, as 20 zero-padded decimal digits: text, because the guard
// compares it as text parsed to a number. What librados'
// ObjectWriteOperation::cmpxattr does, measured on the fixture (Ceph
// 16.2.15):
//  - cmpxattr(name, op, uint64_t v) passes when `v OP stored` holds, with
//    stored = strtoull(xattr, 10): "100" and "00000000000000000100" are both
//    100, and an absent, empty or non-numeric ("abc") xattr is 0;
//  - cmpxattr(name, op, bufferlist v) passes when `v OP stored` holds
//    bytewise (memcmp order; absent is ""), so "2" > "100": unusable for
//    numbers of different widths;
//  - a failed comparison fails the whole operation with -ECANCELED and
//    applies none of it; a missing object fails it with -ENOENT.
// DeleteIfUnusedSince therefore sends cmpxattr(ckpt.used, GT, cutoff) +
// remove: the object goes only when cutoff > used. A missing or garbled mark
// counts as "never used", so an unreferenced chunk with one is collectable;
// every MarkUsed rewrites the whole mark.
uint64_t MicrosSinceEpoch(absl::Time t) {
  if (t <= absl::UnixEpoch()) return 0;
  return static_cast<uint64_t>(absl::ToUnixMicros(t));
}

librados::bufferlist BufferOf(absl::string_view bytes) {
  librados::bufferlist bl;
  bl.append(bytes.data(), bytes.size());
  return bl;
}

librados::bufferlist UsedMark(absl::Time now) {
  return BufferOf(absl::StrFormat("%020u", MicrosSinceEpoch(now)));
}

// "RADOS <op> of chunk <short id> of tenant <tenant> (pool <pool>)".
std::string What(absl::string_view op, absl::string_view tenant,
                 const ChunkId& id, const RadosCluster& cluster) {
  return absl::StrCat("RADOS ", op, " of chunk ", id.ShortHex(), " of tenant ",
                      tenant, " (pool ", cluster.options().pool, ")");
}

// Chunk objects are named by the id's 64 lowercase hex digits; anything else
// in a chunk namespace is not ours and is reported, never skipped.
absl::StatusOr<ChunkId> ChunkIdOfObject(absl::string_view name,
                                        absl::string_view ns,
                                        absl::string_view pool) {
  const bool lower_hex =
      name.size() == 2 * ChunkId::kSize &&
      std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
      });
  if (lower_hex) {
    absl::StatusOr<ChunkId> id = ChunkId::FromHex(name);
    if (id.ok()) return id;
  }
  return absl::DataLossError(absl::StrCat(
      "object \"", absl::CHexEscape(name), "\" in chunk namespace \"",
      absl::CHexEscape(ns), "\" of pool ", pool,
      " is not a chunk: chunk objects are named by 64 lowercase hex digits"));
}

// One asynchronous operation of RunAio and what must outlive it.
struct AioSlot {
  size_t index = 0;
  AioCompletionPtr completion = NewAioCompletion();
  librados::ObjectWriteOperation write;
};

// Starts operation i with start(slot) (slot.index == i) for each i in
// [0, n), at most `window` at a time, and hands each one's return value to
// finish(i, rc) on this thread. Waits for every started operation before
// returning, even after an error (their outputs live in the caller's
// frame); returns the first error.
absl::Status RunAio(size_t n, size_t window,
                    absl::FunctionRef<int(AioSlot& slot)> start,
                    absl::FunctionRef<absl::Status(size_t i, int rc)> finish) {
  std::deque<std::unique_ptr<AioSlot>> in_flight;
  absl::Status first_error;
  const auto record = [&](size_t i, int rc) {
    absl::Status status = finish(i, rc);
    if (first_error.ok()) first_error = std::move(status);
  };
  const auto complete_oldest = [&] {
    std::unique_ptr<AioSlot> slot = std::move(in_flight.front());
    in_flight.pop_front();
    const int waited = slot->completion->wait_for_complete();
    record(slot->index,
           waited < 0 ? waited : slot->completion->get_return_value());
  };
  for (size_t i = 0; i < n && first_error.ok(); ++i) {
    if (in_flight.size() >= std::max<size_t>(window, 1)) complete_oldest();
    auto slot = std::make_unique<AioSlot>();
    slot->index = i;
    if (const int rc = start(*slot); rc < 0) {
      record(i, rc);
      continue;
    }
    in_flight.push_back(std::move(slot));
  }
  while (!in_flight.empty()) complete_oldest();
  return first_error;
}

}  // namespace

RadosChunkStore::RadosChunkStore(RadosCluster* cluster, Clock* clock,
                                 RadosChunkStoreOptions options)
    : cluster_(cluster), clock_(clock), options_(std::move(options)) {}

std::string RadosChunkStore::NamespaceOf(absl::string_view tenant) const {
  return absl::StrCat(options_.namespace_prefix, tenant);
}

absl::StatusOr<bool> RadosChunkStore::Put(absl::string_view tenant,
                                          const ChunkId& id,
                                          absl::string_view bytes) {
  CKPT_RETURN_IF_ERROR(ValidateTenant(tenant));
  if (bytes.size() > kMaxChunkBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chunk ", id.ShortHex(), " of tenant ", tenant, " is ", bytes.size(),
        " bytes, more than the largest chunk (", kMaxChunkBytes, " bytes)"));
  }
  librados::IoCtx io = IoCtxIn(*cluster_, NamespaceOf(tenant));
  const std::string oid = id.ToHex();
  const librados::bufferlist sum =
      BufferOf(EncodeChunkChecksum(ComputeChunkChecksum(bytes)));
  for (int attempt = 0; attempt < kPutAttempts; ++attempt) {
    // All or nothing: no reader ever sees a chunk without its bytes or sum.
    librados::ObjectWriteOperation op;
    op.create(/*exclusive=*/true);
    op.write_full(BufferOf(bytes));
    op.setxattr(kSumXattr, sum);
    op.setxattr(kUsedXattr, UsedMark(clock_->Now()));
    const int rc = io.operate(oid, &op);
    if (rc >= 0) return true;
    if (rc != -EEXIST)
      return RadosStatus(rc, What("put", tenant, id, *cluster_));
    CKPT_ASSIGN_OR_RETURN(std::vector<bool> present, MarkUsed(tenant, {id}));
    if (present[0]) return false;
  }
  return absl::AbortedError(absl::StrCat(
      What("put", tenant, id, *cluster_), ": deleted ", kPutAttempts,
      " times between finding it present and marking it used"));
}

absl::StatusOr<std::string> RadosChunkStore::Get(absl::string_view tenant,
                                                 const ChunkId& id) {
  if (!ValidateTenant(tenant).ok()) return ChunkNotFound(tenant, id);
  librados::IoCtx io = IoCtxIn(*cluster_, NamespaceOf(tenant));
  librados::bufferlist data;
  const int rc = io.read(id.ToHex(), data, /*len=whole object*/ 0, 0);
  if (rc == -ENOENT) return ChunkNotFound(tenant, id);
  if (rc < 0) return RadosStatus(rc, What("read", tenant, id, *cluster_));
  return data.to_str();
}

absl::Status RadosChunkStore::ReadVerified(
    absl::string_view tenant, const ChunkId& id,
    absl::FunctionRef<absl::Status(absl::string_view bytes)> consume) {
  if (!ValidateTenant(tenant).ok()) return ChunkNotFound(tenant, id);
  librados::IoCtx io = IoCtxIn(*cluster_, NamespaceOf(tenant));
  // The sum and the bytes in one operation: one round trip, one snapshot.
  librados::ObjectReadOperation op;
  librados::bufferlist sum;
  librados::bufferlist data;
  int sum_rc = 0;
  int data_rc = 0;
  op.getxattr(kSumXattr, &sum, &sum_rc);
  op.read(0, /*len=whole object*/ 0, &data, &data_rc);
  const int rc = io.operate(id.ToHex(), &op, nullptr);
  if (rc == -ENOENT) return ChunkNotFound(tenant, id);
  const std::string chunk =
      absl::StrCat("chunk ", id.ShortHex(), " of tenant ", tenant, " (pool ",
                   cluster_->options().pool, ")");
  if (rc == -ENODATA) {
    return absl::DataLossError(absl::StrCat(
        chunk, " has no checksum: its xattr ", kSumXattr, " is missing"));
  }
  if (rc < 0) return RadosStatus(rc, What("read", tenant, id, *cluster_));
  absl::StatusOr<ChunkChecksum> recorded = DecodeChunkChecksum(sum.to_str());
  if (!recorded.ok()) {
    return absl::DataLossError(absl::StrCat(chunk, ": xattr ", kSumXattr, ": ",
                                            recorded.status().message()));
  }
  const absl::string_view bytes(data.length() == 0 ? "" : data.c_str(),
                                data.length());
  if (ComputeChunkChecksum(bytes) != *recorded) {
    return absl::DataLossError(
        absl::StrCat(chunk, " is corrupt: its ", bytes.size(),
                     " stored bytes do not match the checksum recorded when "
                     "it was stored"));
  }
  return consume(bytes);
}

absl::StatusOr<std::vector<std::optional<uint64_t>>> RadosChunkStore::Sizes(
    absl::string_view tenant, absl::Span<const ChunkId> ids) {
  std::vector<std::optional<uint64_t>> sizes(ids.size());
  if (!ValidateTenant(tenant).ok() || ids.empty()) return sizes;
  librados::IoCtx io = IoCtxIn(*cluster_, NamespaceOf(tenant));
  std::vector<uint64_t> stat_sizes(ids.size());
  std::vector<time_t> stat_mtimes(ids.size());
  CKPT_RETURN_IF_ERROR(RunAio(
      ids.size(), options_.max_in_flight,
      [&](AioSlot& slot) {
        const size_t i = slot.index;
        return io.aio_stat(ids[i].ToHex(), slot.completion.get(),
                           &stat_sizes[i], &stat_mtimes[i]);
      },
      [&](size_t i, int rc) {
        if (rc == -ENOENT) return absl::OkStatus();
        if (rc < 0)
          return RadosStatus(rc, What("stat", tenant, ids[i], *cluster_));
        sizes[i] = stat_sizes[i];
        return absl::OkStatus();
      }));
  return sizes;
}

absl::Status RadosChunkStore::Delete(absl::string_view tenant,
                                     const ChunkId& id) {
  if (!ValidateTenant(tenant).ok()) return absl::OkStatus();
  librados::IoCtx io = IoCtxIn(*cluster_, NamespaceOf(tenant));
  const int rc = io.remove(id.ToHex());
  if (rc == -ENOENT) return absl::OkStatus();
  return RadosStatus(rc, What("remove", tenant, id, *cluster_));
}

absl::StatusOr<std::vector<bool>> RadosChunkStore::MarkUsed(
    absl::string_view tenant, absl::Span<const ChunkId> ids) {
  std::vector<bool> present(ids.size(), false);
  if (!ValidateTenant(tenant).ok() || ids.empty()) return present;
  librados::IoCtx io = IoCtxIn(*cluster_, NamespaceOf(tenant));
  const librados::bufferlist mark = UsedMark(clock_->Now());
  CKPT_RETURN_IF_ERROR(RunAio(
      ids.size(), options_.max_in_flight,
      [&](AioSlot& slot) {
        // assert_exists: a mark never recreates a chunk GC just removed.
        slot.write.assert_exists();
        slot.write.setxattr(kUsedXattr, mark);
        return io.aio_operate(ids[slot.index].ToHex(), slot.completion.get(),
                              &slot.write);
      },
      [&](size_t i, int rc) {
        if (rc == -ENOENT) return absl::OkStatus();
        if (rc < 0) {
          return RadosStatus(rc, What("mark used", tenant, ids[i], *cluster_));
        }
        present[i] = true;
        return absl::OkStatus();
      }));
  return present;
}

absl::StatusOr<bool> RadosChunkStore::DeleteIfUnusedSince(
    absl::string_view tenant, const ChunkId& id, absl::Time cutoff) {
  if (!ValidateTenant(tenant).ok()) return false;
  librados::IoCtx io = IoCtxIn(*cluster_, NamespaceOf(tenant));
  // The OSD runs both steps under the object's lock: a MarkUsed lands wholly
  // before (the compare fails) or after (it finds no object).
  librados::ObjectWriteOperation op;
  op.cmpxattr(kUsedXattr, LIBRADOS_CMPXATTR_OP_GT, MicrosSinceEpoch(cutoff));
  op.remove();
  const int rc = io.operate(id.ToHex(), &op);
  if (rc >= 0) return true;
  if (rc == -ECANCELED || rc == -ENOENT) return false;  // used, or gone
  return RadosStatus(rc, What("guarded remove", tenant, id, *cluster_));
}

absl::Status RadosChunkStore::Sync() {
  // RADOS acknowledges a write once every replica has it durably.
  return absl::OkStatus();
}

absl::StatusOr<RadosChunkStore::Listing> RadosChunkStore::List(
    absl::string_view tenant) {
  Listing listing;
  const bool all = tenant.empty();
  if (!all && !ValidateTenant(tenant).ok()) return listing;
  const std::string& prefix = options_.namespace_prefix;
  const std::string& pool = cluster_->options().pool;
  librados::IoCtx io = IoCtxIn(
      *cluster_, all ? std::string(LIBRADOS_ALL_NSPACES) : NamespaceOf(tenant));
  const std::string where =
      all ? absl::StrCat("chunk namespaces ", prefix, "* of pool ", pool)
          : absl::StrCat("namespace ", NamespaceOf(tenant), " of pool ", pool);
  // Reassigned by emplace, never by operator=: librados 16's
  // ObjectCursor::operator= leaks the cursor it replaces (LeakSanitizer).
  std::optional<librados::ObjectCursor> cursor;
  cursor.emplace(io.object_list_begin());
  const librados::ObjectCursor end = io.object_list_end();
  while (!io.object_list_is_end(*cursor)) {
    std::vector<librados::ObjectItem> items;
    librados::ObjectCursor next;
    const int rc = io.object_list(*cursor, end, kListPage,
                                  librados::bufferlist(), &items, &next);
    if (rc < 0) return RadosStatus(rc, absl::StrCat("listing ", where));
    for (const librados::ObjectItem& item : items) {
      // Other data in the pool (the metadata's namespace) is not ours.
      if (all && !absl::StartsWith(item.nspace, prefix)) continue;
      const std::string ns = all ? item.nspace : NamespaceOf(tenant);
      CKPT_ASSIGN_OR_RETURN(ChunkId id, ChunkIdOfObject(item.oid, ns, pool));
      const absl::string_view owner =
          absl::string_view(ns).substr(prefix.size());
      if (owner.empty()) {
        return absl::DataLossError(
            absl::StrCat("chunk ", id.ShortHex(), " in namespace \"", ns,
                         "\" of pool ", pool, " names no tenant"));
      }
      listing[std::string(owner)].push_back(id);
    }
    cursor.emplace(next);
  }
  for (auto& [owner, ids] : listing) std::sort(ids.begin(), ids.end());
  return listing;
}

absl::Status RadosChunkStore::ForEach(
    absl::string_view tenant,
    absl::FunctionRef<absl::Status(absl::string_view tenant, const ChunkId& id,
                                   uint64_t size)>
        fn) {
  CKPT_ASSIGN_OR_RETURN(Listing listing, List(tenant));
  for (const auto& [owner, ids] : listing) {
    for (size_t start = 0; start < ids.size(); start += kForEachBatch) {
      const absl::Span<const ChunkId> batch =
          absl::MakeConstSpan(ids).subspan(start, kForEachBatch);
      CKPT_ASSIGN_OR_RETURN(std::vector<std::optional<uint64_t>> sizes,
                            Sizes(owner, batch));
      for (size_t i = 0; i < batch.size(); ++i) {
        if (sizes[i].has_value()) {
          CKPT_RETURN_IF_ERROR(fn(owner, batch[i], *sizes[i]));
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ChunkStore::Usage> RadosChunkStore::GetUsage(
    absl::string_view tenant) {
  Usage usage;
  CKPT_RETURN_IF_ERROR(
      ForEach(tenant, [&](absl::string_view, const ChunkId&, uint64_t size) {
        ++usage.chunk_count;
        usage.bytes += size;
        return absl::OkStatus();
      }));
  return usage;
}

absl::StatusOr<ChunkStore::DiskUsage> RadosChunkStore::ReclaimSpace() {
  CKPT_ASSIGN_OR_RETURN(Usage usage, GetUsage(""));
  return DiskUsage{usage.bytes, usage.bytes};
}

}  // namespace ckpt::server
