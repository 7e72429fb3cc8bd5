#include "server/storage/rocksdb_status.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace ckpt::server {
namespace {

absl::StatusCode CodeOf(const rocksdb::Status& status) {
  using Sub = rocksdb::Status::SubCode;
  if (status.IsNotFound()) return absl::StatusCode::kNotFound;
  if (status.IsCorruption()) return absl::StatusCode::kDataLoss;
  if (status.IsIOError()) {
    if (status.IsNoSpace() || status.subcode() == Sub::kSpaceLimit) {
      return absl::StatusCode::kResourceExhausted;
    }
    if (status.IsPathNotFound()) return absl::StatusCode::kNotFound;
    return absl::StatusCode::kUnavailable;
  }
  if (status.IsBusy() || status.IsTimedOut() || status.IsTryAgain() ||
      status.IsShutdownInProgress()) {
    return absl::StatusCode::kUnavailable;
  }
  if (status.IsInvalidArgument()) return absl::StatusCode::kInvalidArgument;
  if (status.IsAborted()) return absl::StatusCode::kAborted;
  if (status.IsNotSupported()) return absl::StatusCode::kUnimplemented;
  return absl::StatusCode::kInternal;
}

// What went wrong, in words that name no file.
absl::string_view KindOf(const rocksdb::Status& status) {
  if (status.IsNotFound()) return "an entry not found";
  if (status.IsCorruption()) return "corruption";
  if (status.IsIOError()) return "an I/O error";
  if (status.IsBusy()) return "a busy resource";
  if (status.IsTimedOut()) return "a timeout";
  if (status.IsTryAgain()) return "a transient failure";
  if (status.IsShutdownInProgress()) return "a shutdown in progress";
  if (status.IsInvalidArgument()) return "an invalid argument";
  if (status.IsAborted()) return "an aborted operation";
  if (status.IsNotSupported()) return "an unsupported operation";
  return "an internal error";
}

}  // namespace

absl::Status FromRocksDb(const rocksdb::Status& status,
                         absl::string_view context) {
  if (status.ok()) return absl::OkStatus();
  const std::string incident = NewIncidentId();
  CKPT_LOG(Error, "storage incident ", incident, ": ", context, ": ",
           status.ToString());
  const absl::StatusCode code = CodeOf(status);
  const std::string what =
      code == absl::StatusCode::kResourceExhausted
          ? "the server's disk is full (no space left for its storage)"
          : absl::StrCat(KindOf(status), " in the server's storage");
  return absl::Status(code,
                      absl::StrCat(context, ": ", what, " (incident ", incident,
                                   "; the server's log has the details)"));
}

}  // namespace ckpt::server
