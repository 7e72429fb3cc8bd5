#include "server/storage/rocksdb_status.h"

#include "absl/strings/str_cat.h"

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

}  // namespace

absl::Status FromRocksDb(const rocksdb::Status& status,
                         absl::string_view context) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(CodeOf(status),
                      absl::StrCat(context, ": ", status.ToString()));
}

}  // namespace ckpt::server
