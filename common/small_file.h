// Reading a small configuration file whole (a token file, a PEM file, a
// client's token) without the ways std::ifstream fails badly on a path a
// user got wrong: libstdc++ throws (and the process aborts) on reading a
// directory, and a FIFO blocks the reader forever, which on a SIGHUP reload
// would hang the server's reload thread. Pure apart from reading the file.
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"

namespace ckpt {

// The contents of the regular file at `path`, at most `max_bytes` long.
// On error the message is only the reason, without the path (the caller
// names the file or flag): NOT_FOUND "no such file", PERMISSION_DENIED
// "permission denied", FAILED_PRECONDITION "is a directory" or "is not a
// regular file", OUT_OF_RANGE "larger than N bytes", else the errno text.
absl::StatusOr<std::string> ReadSmallRegularFile(const std::string& path,
                                                 size_t max_bytes);

}  // namespace ckpt
