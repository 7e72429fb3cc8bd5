// The one conversion point from rocksdb::Status to absl::Status. Internal
// to server/storage: only .cc files include it, so no user of the stores
// sees a RocksDB header.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "rocksdb/status.h"

namespace ckpt::server {

// OK for OK. Otherwise logs "<context>: <rocksdb message>" (which may name
// the database's files) with a new incident id, and returns a status whose
// message is "<context>: <kind of failure> in the server's storage
// (incident <id>; ...)": RocksDB's text never reaches a client, so no file
// path does, and an operator finds the full text by the id. The code follows
// the project's conventions:
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
