"""ckpt: Python client of the ckpt checkpoint service.

`Client` is the thin binding of the C++ client library (save and restore a
rank's shard of named tensor regions, list checkpoints, retention).

Errors: ValueError for INVALID_ARGUMENT, KeyError for NOT_FOUND, `Error` for
every other status; each carries `.code` (the status code's name, e.g.
"ALREADY_EXISTS") and `.message`.
"""

from ckpt._ckpt import Client, Error

__all__ = ["Client", "Error"]
