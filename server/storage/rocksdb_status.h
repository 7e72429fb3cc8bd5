// The one conversion point from rocksdb::Status to absl::Status. Internal
// to server/storage: only .cc files include it, so no user of the stores
// sees a RocksDB header.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "rocksdb/status.h"

namespace ckpt::server {

// OK for OK. Otherwise a status whose message is "<context>: <rocksdb
// message>" and whose code follows the project's conventions:
//   NotFound                         -> NOT_FOUND
//   Corruption                       -> DATA_LOSS
//   IOError(NoSpace | SpaceLimit)    -> RESOURCE_EXHAUSTED
//   IOError(PathNotFound)            -> NOT_FOUND
//   other IOError, Busy, TimedOut,
//   TryAgain, ShutdownInProgress     -> UNAVAILABLE (may succeed on retry)
//   InvalidArgument                  -> INVALID_ARGUMENT
//   Aborted                          -> ABORTED
//   NotSupported                     -> UNIMPLEMENTED
//   anything else                    -> INTERNAL
absl::Status FromRocksDb(const rocksdb::Status& status,
                         absl::string_view context);

}  // namespace ckpt::server
