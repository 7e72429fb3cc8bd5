"""ckpt: Python client of the ckpt checkpoint service.

    import ckpt
    with ckpt.CheckpointManager("127.0.0.1:7070", "team/model",
                                max_to_keep=3) as manager:
        state = manager.restore_or_initialize(lambda: None)
        ...
        manager.save({"model": model.state_dict(),
                      "optimizer": optimizer.state_dict()}, step)

`Client` is the thin binding of the C++ client library (save and restore a
rank's shard of named tensor regions, list checkpoints, retention);
`CheckpointManager` saves and restores PyTorch-style nested state dicts on it;
`Quantized(tensor, bits=4)` in a state saves that float32 tensor quantized
(lossy, opt-in); `Shard(local, global_shape, offsets)` saves a rank's box
of a global tensor, and `Replicated(tensor)` one every rank holds alike.
`CheckpointManager.restore` restores with any world size (sharded tensors
whole, or a Shard target's region in place), into the caller's tensors
(`into=`, strict by default), only some keys (`keys=`), with
`map_location=` (docs/restore.md). `CheckpointManager.export` writes a
checkpoint as safetensors files or a torch.load-able checkpoint.pt, and
`import_dir(server, path, job, step)` imports such a directory (or another
tool's safetensors files) as a checkpoint (docs/portability.md; `python3 -m
ckpt export|import` from a shell). A state's non-tensor values are stored
as a typed tree that cannot run code on restore; pickle is used only with
`CheckpointManager(..., allow_pickle=True)` (docs/security.md).

Arguments of a wrong type or value raise TypeError or ValueError naming the
argument (ckpt/arguments.py). Errors from the server: ValueError for
INVALID_ARGUMENT, KeyError for NOT_FOUND, `Error` for
every other status; each carries `.code` (the status code's name, e.g.
"ALREADY_EXISTS") and `.message`. A malformed stored state raises
`StateFormatError` (a ValueError); pickled data met without allow_pickle,
`PickleNotAllowedError` (a StateFormatError). A restore whose `into` does not
match the checkpoint raises `StateMismatchError`, one with another world
size that would drop per-rank state `PartialRestoreError` (both ValueErrors;
nothing is written into any target then). An async save whose state needs
more host memory than `staging_bytes` raises `StagingBudgetError` (a
ValueError) before anything is copied or sent.
"""

from ckpt._ckpt import Error
from ckpt.client import Client, RetentionPolicyWarning
from ckpt.manager import (CheckpointManager, Quantized,
                          RetentionPolicyIgnoredWarning)
from ckpt.portable import import_dir
from ckpt.restore import PartialRestoreError, StateMismatchError
from ckpt.staging import StagingBudgetError
from ckpt.state_layout import Replicated, Shard
from ckpt.tree import PickleNotAllowedError, StateFormatError

__all__ = ["CheckpointManager", "Client", "Error", "PartialRestoreError",
           "import_dir",
           "PickleNotAllowedError", "Quantized", "Replicated",
           "RetentionPolicyIgnoredWarning", "RetentionPolicyWarning", "Shard",
           "StagingBudgetError", "StateFormatError", "StateMismatchError"]
