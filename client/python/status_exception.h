// How ckpt._ckpt's bindings raise a non-OK absl::Status in Python:
// ValueError (INVALID_ARGUMENT), KeyError (NOT_FOUND) or ckpt.Error
// (everything else), each carrying `.code` (the status code's name) and
// `.message`. Defined in py_common.cc; ckpt_module.cc creates ckpt.Error
// and hands it to SetErrorType (py_common.h).
#ifndef CKPT_CLIENT_PYTHON_STATUS_EXCEPTION_H_
#define CKPT_CLIENT_PYTHON_STATUS_EXCEPTION_H_

#include "absl/status/status.h"

namespace ckpt::client {

// REQUIRES: !status.ok(), the GIL held. Sets the Python exception and throws
// pybind11::error_already_set.
[[noreturn]] void ThrowStatus(const absl::Status& status);

}  // namespace ckpt::client

#endif  // CKPT_CLIENT_PYTHON_STATUS_EXCEPTION_H_
