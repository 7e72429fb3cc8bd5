// ckpt._ckpt's binding of common/best_checkpoint.h, the ranking rules that
// CheckpointManager.best_step() and save_best_only share with keep-best
// retention, `ckpt get JOB best` and `ckpt ls --sort`.
#ifndef CKPT_CLIENT_PYTHON_BEST_CHECKPOINT_BINDING_H_
#define CKPT_CLIENT_PYTHON_BEST_CHECKPOINT_BINDING_H_

#include <pybind11/pybind11.h>

namespace ckpt::client {

// Adds best_checkpoint, improves_on and resolve_metric_mode to `module`.
void RegisterBestCheckpoint(pybind11::module_& module);

}  // namespace ckpt::client

#endif  // CKPT_CLIENT_PYTHON_BEST_CHECKPOINT_BINDING_H_
