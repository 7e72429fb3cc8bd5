#include "server/storage/rados_lock.h"

#include <sys/time.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <list>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "server/storage/rados_io.h"

namespace ckpt::server {
namespace {

uint64_t RandomU64() {
  thread_local std::mt19937_64 engine(std::random_device{}());
  return engine();
}

timeval LeaseTimeval(absl::Duration d) {
  const int64_t micros = std::max<int64_t>(1, absl::ToInt64Microseconds(d));
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(micros / 1'000'000);
  tv.tv_usec = static_cast<suseconds_t>(micros % 1'000'000);
  return tv;
}

int TryLock(librados::IoCtx& io, const LockRequest& request, uint8_t flags) {
  timeval duration = LeaseTimeval(request.lease);
  return io.lock_exclusive(request.oid, request.name, request.cookie,
                           absl::StrCat("ckpt ", request.what), &duration,
                           flags);
}

void AppendU32(std::string* out, uint32_t value) {
  for (int i = 0; i < 4; ++i)
    out->push_back(static_cast<char>(value >> (8 * i)));
}

void AppendString(std::string* out, absl::string_view s) {
  AppendU32(out, static_cast<uint32_t>(s.size()));
  out->append(s.data(), s.size());
}

}  // namespace

std::string NewLockCookie() {
  return absl::StrFormat("%016x%016x", RandomU64(), RandomU64());
}

absl::Status LockExclusive(librados::IoCtx& io, const LockRequest& request,
                           absl::Time* sent_at) {
  // Real time, whatever `clock` is: the waiting is real sleeping.
  const absl::Time start = absl::Now();
  absl::Duration backoff = absl::Milliseconds(2);
  while (true) {
    *sent_at = request.clock->Now();
    const int rc = TryLock(io, request, 0);
    if (rc == 0) return absl::OkStatus();
    if (rc != -EBUSY) {
      return RadosStatus(
          rc, absl::StrCat("locking ", request.what, " (object ", request.oid,
                           ", lock ", request.name, ")"));
    }
    const absl::Duration waited = absl::Now() - start;
    if (request.wait <= absl::ZeroDuration()) {
      return absl::FailedPreconditionError(absl::StrCat(
          request.what, " is locked by ",
          DescribeLockHolder(io, request.oid, request.name), " (lock ",
          request.name, " on object ", request.oid, ")"));
    }
    if (waited >= request.wait) {
      return absl::UnavailableError(absl::StrCat(
          request.what, " stayed locked by ",
          DescribeLockHolder(io, request.oid, request.name), " for ",
          absl::FormatDuration(waited), " of waiting (lock ", request.name,
          " on object ", request.oid, "); try again later"));
    }
    // Jittered so that waiters on one lock do not retry in step.
    const double jitter = static_cast<double>(RandomU64() % 1000) / 1000.0;
    absl::SleepFor(
        std::min(backoff / 2 + backoff * jitter, request.wait - waited));
    backoff = std::min(backoff * 2, absl::Milliseconds(100));
  }
}

absl::Status RenewLock(librados::IoCtx& io, const LockRequest& request) {
  const int rc = TryLock(io, request, LIBRADOS_LOCK_FLAG_MUST_RENEW);
  if (rc == -ENOENT) {
    return absl::AbortedError(
        absl::StrCat("lost the lock on ", request.what, ": its lease (",
                     absl::FormatDuration(request.lease),
                     ") ran out before renewal; now held by ",
                     DescribeLockHolder(io, request.oid, request.name)));
  }
  return RadosStatus(rc, absl::StrCat("renewing the lock on ", request.what));
}

void Unlock(librados::IoCtx& io, const std::string& oid,
            const std::string& name, const std::string& cookie) {
  const int rc = io.unlock(oid, name, cookie);
  if (rc < 0 && rc != -ENOENT) {
    CKPT_LOG(Warning,
             RadosStatus(rc, absl::StrCat("unlocking ", name, " on ", oid))
                 .message(),
             "; its lease ends by itself");
  }
}

std::string DescribeLockHolder(librados::IoCtx& io, const std::string& oid,
                               const std::string& name) {
  int exclusive = 0;
  std::string tag;
  std::list<librados::locker_t> lockers;
  const int rc = io.list_lockers(oid, name, &exclusive, &tag, &lockers);
  if (rc < 0) {
    return absl::StrCat("an unknown holder (",
                        RadosStatus(rc, "listing lockers").message(), ")");
  }
  if (lockers.empty()) return "nobody now (the holder just let go)";
  return absl::StrJoin(
      lockers, ", ", [](std::string* out, const librados::locker_t& locker) {
        absl::StrAppend(out, locker.client, " at ", locker.address, " (cookie ",
                        locker.cookie, ")");
      });
}

librados::bufferlist EncodeAssertLocked(const std::string& name,
                                        const std::string& cookie) {
  // cls_lock_assert_op: ENCODE_START(1, 1) then name, type (u8,
  // LOCK_EXCLUSIVE = 1), cookie, tag; strings are a u32 LE length + bytes.
  std::string body;
  AppendString(&body, name);
  body.push_back(1);
  AppendString(&body, cookie);
  AppendString(&body, "");
  std::string encoded;
  encoded.push_back(1);  // struct version
  encoded.push_back(1);  // compatible version
  AppendU32(&encoded, static_cast<uint32_t>(body.size()));
  encoded += body;
  librados::bufferlist bl;
  bl.append(encoded.data(), encoded.size());
  return bl;
}

void AddLockFence(librados::ObjectWriteOperation& op, const std::string& name,
                  const std::string& cookie) {
  librados::bufferlist input = EncodeAssertLocked(name, cookie);
  op.exec("lock", "assert_locked", input);
}

}  // namespace ckpt::server
