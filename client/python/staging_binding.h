// ckpt._ckpt's binding of client/parallel_copy.h: copy_buffers, the
// multi-threaded fill of the staging pool an async save copies its tensors
// into (ckpt/staging.py).
#ifndef CKPT_CLIENT_PYTHON_STAGING_BINDING_H_
#define CKPT_CLIENT_PYTHON_STAGING_BINDING_H_

#include <pybind11/pybind11.h>

namespace ckpt::client {

// Adds copy_buffers and copy_threads to `module`.
void RegisterStaging(pybind11::module_& module);

}  // namespace ckpt::client

#endif  // CKPT_CLIENT_PYTHON_STAGING_BINDING_H_
