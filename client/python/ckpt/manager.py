"""CheckpointManager: PyTorch-style state dicts saved on a ckpt server.

How a state maps to a rank's shard (docs/architecture.md, "Python"):
every dense torch tensor and numpy array of a dtype ckpt stores (float16/
bfloat16/32/64, int8/16/32/64, uint8, bool, complex64/128; numpy uint16/
32/64 as the signed integers of their width) in the nested dicts/lists/
tuples of `state` becomes one tensor entry (dtype and shape preserved;
CUDA tensors are copied to host), named after its path in the nesting
("model/fc.weight", "optimizer/state/0/exp_avg"); a tensor wrapped in
ckpt.Quantized is stored quantized and restored as a plain float32 tensor.
Everything else, with the tree structure (tensors replaced by references
to their entries), is encoded as a typed tree (ckpt/tree.py), stored as
the uint8 tensor `__ckpt_state__`. It holds plain values only and cannot
run code when read; pickle is used only with allow_pickle=True
(docs/security.md, "Safe restore (no pickle)").
"""

import atexit
import os
import pickle
import sys
import threading

import numpy as np

from ckpt import tree
from ckpt._ckpt import (Client, IncrementalSaver, bits_for_expected_restores,
                        set_exit_status_at_finalize)
from ckpt.tree import PickleNotAllowedError, StateFormatError

STATE_TENSOR = "__ckpt_state__"
_PICKLE_FORMAT_VERSION = 1  # the whole tree pickled: read with allow_pickle

_TORCH = None


def _torch():
    """torch, imported on first use (None when it is not installed)."""
    global _TORCH
    if _TORCH is None:
        try:
            import torch
        except ImportError:  # numpy-only users
            torch = False
        _TORCH = torch
    return _TORCH or None


class _TensorRef:
    """Stands for a tensor in the pickled skeleton of format version 1
    (read only with allow_pickle=True). Its module path and fields are part
    of that format: do not rename."""

    __slots__ = ("name", "kind", "dtype", "shape")

    def __init__(self, name, kind, dtype, shape):
        self.name = name  # the tensor entry's name
        self.kind = kind  # "torch" or "numpy"
        self.dtype = dtype  # ckpt dtype name, e.g. "float32", "bfloat16"
        self.shape = shape  # tuple of ints

    def __getstate__(self):
        return (self.name, self.kind, self.dtype, self.shape)

    def __setstate__(self, fields):
        self.name, self.kind, self.dtype, self.shape = fields

    def as_ref(self):
        return tree.TensorRef(self.name, self.kind, self.dtype,
                              tuple(self.shape))


class Quantized:
    """Marks a float32 tensor (torch or numpy) of a state to be saved
    quantized: lossy, opt-in, per tensor (Check-N-Run). Put it in the state
    in place of the tensor:

        manager.save({"emb": ckpt.Quantized(model.emb.weight, bits=4), ...})

    Each row (slice along the first dimension; a tensor of at most one
    dimension is one row) is quantized to `bits` bits, with its own range
    narrowed by a search that lowers the L2 error. The width and the error
    measured over the tensor (max abs, relative L2) are recorded in the
    manifest (`ckpt show`) and in CheckpointManager.last_quantization.
    restore() gives back a plain float32 tensor of the dequantized values.

    bits: 8, 4, 3 or 2 (about 3.6x, 6.4x, 8x and 10.7x smaller on 64
        columns), or "auto": the width for `expected_restores`, the number
        of times this checkpoint's values are expected to be restored into
        training (failures times checkpoints read back). Errors add up over
        restores; "auto" keeps their expected sum within 1/8 of each row's
        range (docs/architecture.md, "Quantized tensors"), and saves the
        tensor losslessly when no width does.
    Quantizing runs at about 15 MB/s per core (2 threads): it suits
    embedding tables saved for capacity, not a hot checkpoint loop.
    """

    __slots__ = ("tensor", "bits")

    def __init__(self, tensor, bits=4, expected_restores=None):
        if bits == "auto":
            if expected_restores is None:
                raise ValueError(
                    'Quantized(bits="auto") needs expected_restores')
            expected = float(expected_restores)
            if not expected >= 0:
                raise ValueError(
                    f"expected_restores must be >= 0, not {expected_restores}")
            bits = bits_for_expected_restores(expected)  # None: lossless
        elif expected_restores is not None:
            raise ValueError('expected_restores goes with bits="auto"')
        elif bits not in (2, 3, 4, 8) or isinstance(bits, bool):
            raise ValueError(f"bits must be 2, 3, 4, 8 or \"auto\", not "
                             f"{bits!r}")
        else:
            bits = int(bits)  # 4.0 or numpy.int64(4) as a plain int
        self.tensor = tensor
        self.bits = bits  # None: saved losslessly

    def __repr__(self):
        return f"Quantized(bits={self.bits!r}, tensor={self.tensor!r})"


def _torch_dtype_names(torch):
    return {
        torch.uint8: "uint8", torch.int8: "int8", torch.int16: "int16",
        torch.int32: "int32", torch.int64: "int64",
        torch.float16: "float16", torch.bfloat16: "bfloat16",
        torch.float32: "float32", torch.float64: "float64",
        torch.bool: "bool", torch.complex64: "complex64",
        torch.complex128: "complex128",
    }


def _key_text(key):
    return key if isinstance(key, str) else repr(key)


class _Flattener:
    """Splits a nested state into (encoded tree, tensors). `copy` makes
    every tensor's host buffer a private copy (async save); otherwise CPU
    tensors' own memory is used and must not change until the save returns.
    Values the typed tree refuses raise TypeError, or are pickled into it
    when `allow_pickle`.

    Copies (async, or of CUDA tensors) go into `reuse[name]`, the previous
    save's host buffer of the same name, when its dtype and shape match:
    copying into memory already touched is several times faster than a
    fresh clone, whose page faults dominate. `buffers` collects this save's
    copies for the next one."""

    def __init__(self, copy, reuse=None, allow_pickle=False):
        self.copy = copy
        self.reuse = reuse or {}
        self.allow_pickle = allow_pickle
        self.buffers = {}
        self.torch = _torch()
        self.tensors = []  # (name, stored dtype, shape, host numpy array)
        self.quantize = {}  # tensor name -> bits
        self._names = set()
        self._by_id = {}  # id(tensor) -> TensorRef: tied tensors stored once
        self._keep_alive = []

    def encode(self, state):
        """The typed tree of `state` (bytes); fills `tensors`."""
        kinds = (np.ndarray, Quantized)
        if self.torch is not None:
            kinds += (self.torch.Tensor,)
        return tree.Encoder(kinds, self._tensor_ref,
                            self.allow_pickle).encode(state)

    def _unique_name(self, path):
        name = "/".join(_key_text(key) for key in path) or "tensor"
        candidate, n = name, 1
        while candidate in self._names or candidate == STATE_TENSOR:
            candidate = f"{name}~{n}"
            n += 1
        self._names.add(candidate)
        return candidate

    def _tensor_ref(self, value, path):
        """The TensorRef of a tensor, array or Quantized of the state, or
        why it cannot be stored as a tensor."""
        if isinstance(value, Quantized):
            return self._quantized(value, path)
        ref = self._by_id.get(id(value))
        if ref is not None:
            return ref
        if isinstance(value, np.ndarray):
            return self._numpy(value, path)
        return self._torch_tensor(value, path)

    def _torch_tensor(self, value, path):
        torch = self.torch
        dtype = _torch_dtype_names(torch).get(value.dtype)
        if value.layout != torch.strided:
            return f"cannot store a {value.layout} torch tensor (store " \
                "its dense form or its index and value tensors)"
        if value.is_quantized:
            return "cannot store a torch quantized tensor (store its " \
                "int_repr(), scale and zero point, or use ckpt.Quantized)"
        if dtype is None:
            return f"cannot store a torch tensor of dtype {value.dtype}"
        name = self._unique_name(path)
        host = value.detach()
        if self.copy or host.device.type != "cpu":
            buffer = self.reuse.get(name)
            if isinstance(buffer, torch.Tensor) and \
                    buffer.dtype == host.dtype and \
                    buffer.shape == host.shape:
                buffer.copy_(host)
            else:
                buffer = host.to("cpu", copy=True, memory_format=(
                    torch.contiguous_format))
            self.buffers[name] = buffer
            host = buffer
        host = host.contiguous().resolve_conj().resolve_neg()
        if dtype == "bfloat16":
            host = host.view(torch.int16)
        self._keep_alive.append(host)
        return self._add(value, name, "torch", dtype, host.numpy())

    def _numpy(self, value, path):
        if type(value) not in (np.ndarray, np.memmap):
            return f"cannot store a {type(value).__module__}." \
                f"{type(value).__qualname__} (a numpy array subclass; " \
                "store np.asarray(value) and what else it holds)"
        dtype = value.dtype.name
        if dtype not in tree.NUMPY_STORED_DTYPE or not value.dtype.isnative:
            return f"cannot store a numpy array of dtype {value.dtype.str}"
        name = self._unique_name(path)
        buffer = self.reuse.get(name) if self.copy else None
        if isinstance(buffer, np.ndarray) and \
                buffer.dtype == value.dtype and buffer.shape == value.shape:
            np.copyto(buffer, value)
            array = buffer
        else:
            array = np.array(value, order="C", copy=self.copy)
        if self.copy:
            self.buffers[name] = array
        stored = tree.NUMPY_STORED_DTYPE[dtype]
        if stored != dtype:  # uint16/32/64 as the signed type of its width
            array = array.view(np.dtype(stored))
        return self._add(value, name, "numpy", dtype, array)

    def _add(self, value, name, kind, dtype, array):
        ref = tree.TensorRef(name, kind, dtype,
                             tuple(int(d) for d in value.shape))
        self._by_id[id(value)] = ref
        self._keep_alive.append(value)
        self.tensors.append((name, ref.stored_dtype, ref.shape, array))
        return ref

    def _quantized(self, value, path):
        inner = value.tensor
        torch = self.torch
        is_torch = torch is not None and isinstance(inner, torch.Tensor)
        if not is_torch and not isinstance(inner, np.ndarray):
            raise ValueError(
                f"ckpt.Quantized at {tree.path_text(path)} holds a "
                f"{type(inner).__name__}, not a torch tensor or numpy array")
        ref = self._tensor_ref(inner, path)
        if value.bits is None or not isinstance(ref, tree.TensorRef):
            return ref
        if ref.dtype != "float32":
            raise ValueError(
                f"ckpt.Quantized at {tree.path_text(path)}: only dense "
                f"float32 tensors are quantized, not {inner.dtype}")
        previous = self.quantize.setdefault(ref.name, value.bits)
        if previous != value.bits:
            raise ValueError(
                f"tensor '{ref.name}' is quantized to both {previous} and "
                f"{value.bits} bits in the state")
        return ref


def _flatten(state, copy, reuse=None, allow_pickle=False):
    """(tensors for Client.save_shard, keep-alive list, host copies made,
    {name: bits} to quantize) for `state`; see _Flattener for `copy`,
    `reuse` and `allow_pickle`."""
    flattener = _Flattener(copy, reuse, allow_pickle)
    blob = flattener.encode(state)
    blob_array = np.frombuffer(blob, dtype=np.uint8)
    tensors = [(STATE_TENSOR, "uint8", [len(blob)], [0], [len(blob)],
                blob_array)]
    for name, dtype, shape, array in flattener.tensors:
        tensors.append((name, dtype, list(shape), [0] * len(shape),
                        list(shape), array))
    return tensors, (flattener._keep_alive, blob), flattener.buffers, \
        flattener.quantize


def _pickled_tree(blob):
    """The skeleton and its [(TensorRef, path)] of a format-1 state blob (a
    pickle: the caller has allowed pickle)."""
    saved = pickle.loads(blob)
    if not isinstance(saved, dict) or \
            saved.get("format") != _PICKLE_FORMAT_VERSION:
        raise StateFormatError(
            "the checkpoint's pickled state is not of format version "
            f"{_PICKLE_FORMAT_VERSION}")
    refs = []

    def collect(node, path):
        if isinstance(node, _TensorRef):
            refs.append((node.as_ref(), path))
        elif isinstance(node, dict):
            for key, item in node.items():
                collect(item, path + (key,))
        elif isinstance(node, (list, tuple)):
            for index, item in enumerate(node):
                collect(item, path + (index,))

    collect(saved["tree"], ())
    return saved["tree"], refs


def _state_tree(entries, allow_pickle):
    """(skeleton, [(TensorRef, path)]) of a shard's `__ckpt_state__`
    entry; pickle runs only when `allow_pickle`."""
    dtype, global_shape, _, _, array = entries[STATE_TENSOR]
    if dtype != "uint8" or len(global_shape) != 1:
        raise StateFormatError(
            f"the checkpoint's {STATE_TENSOR} tensor is {dtype} of shape "
            f"{list(global_shape)}, not a 1-D uint8 tensor")
    blob = array.tobytes()
    if blob.startswith(tree.MAGIC):
        return tree.decode(blob, allow_pickle)
    if tree.looks_like_pickle(blob):
        if not allow_pickle:
            raise PickleNotAllowedError(
                "the checkpoint's state is a pickle (format version "
                f"{_PICKLE_FORMAT_VERSION}, as ckpt wrote it before the typed "
                "tree; or planted), and this manager does not unpickle: "
                + tree.PICKLE_ADVICE)
        return _pickled_tree(blob)
    raise StateFormatError(
        f"the checkpoint's {STATE_TENSOR} is neither a typed tree nor a "
        "pickle: it was not written by ckpt.CheckpointManager")


def _check_refs(refs, entries):
    """StateFormatError unless every reference names a stored tensor entry
    (not the state itself) whose dtype and whole shape it records, the same
    way at each reference."""
    seen = {}
    for ref, path in refs:
        where = f"{tree.path_text(path)} refers to tensor {tree.quote(ref.name)}"
        entry = entries.get(ref.name) if ref.name != STATE_TENSOR else None
        if entry is None:
            raise StateFormatError(
                f"{where}, which the checkpoint's shard does not hold")
        dtype, global_shape, offsets, lengths, _ = entry
        if dtype != ref.stored_dtype:
            raise StateFormatError(
                f"{where} as {ref.stored_dtype}, but it is stored as {dtype}")
        if tuple(global_shape) != ref.shape or \
                tuple(lengths) != ref.shape or any(offsets):
            raise StateFormatError(
                f"{where} of shape {list(ref.shape)}, but it is stored with "
                f"shape {list(global_shape)}, box {list(offsets)} + "
                f"{list(lengths)}")
        fields = (ref.kind, ref.dtype)
        if seen.setdefault(ref.name, fields) != fields:
            raise StateFormatError(
                f"{where} as {ref.kind} {ref.dtype}, elsewhere as "
                f"{seen[ref.name][0]} {seen[ref.name][1]}")


def _unflatten(restored, into=None, allow_pickle=False):
    """The state saved as `restored` (Client.restore_shard's tuples). Where
    `into` has a tensor at the same position, the restored values are copied
    into it and that object is returned in its place. StateFormatError (a
    ValueError) when the stored tree is malformed or names tensors the
    shard lacks; nothing is copied into `into` then."""
    entries = {name: (dtype, global_shape, offsets, lengths, array)
               for name, dtype, global_shape, offsets, lengths, array
               in restored}
    if STATE_TENSOR not in entries:
        raise ValueError(
            f"the shard has no {STATE_TENSOR} tensor: it was not written by "
            "ckpt.CheckpointManager")
    skeleton, refs = _state_tree(entries, allow_pickle)
    _check_refs(refs, entries)  # before anything is copied into `into`
    torch = _torch()
    made = {}

    def tensor(ref):
        if ref.name in made:
            return made[ref.name]
        array = entries[ref.name][4].reshape(ref.shape)
        if ref.kind == "numpy":
            value = array if ref.dtype == ref.stored_dtype else \
                array.view(np.dtype(ref.dtype))
        elif torch is None:
            raise StateFormatError(
                f"tensor {tree.quote(ref.name)} was saved as a torch tensor, "
                "and torch is not installed")
        elif ref.dtype == "bfloat16":  # uint16 elements from the binding
            value = torch.from_numpy(array.view(np.int16)).view(
                torch.bfloat16)
        else:
            value = torch.from_numpy(array)
        made[ref.name] = value
        return value

    def build(node, target):
        if isinstance(target, Quantized):  # restore into its tensor
            target = target.tensor
        if isinstance(node, _TensorRef):  # format 1 (allow_pickle)
            node = node.as_ref()
        if isinstance(node, tree.TensorRef):
            value = tensor(node)
            if torch is not None and isinstance(target, torch.Tensor) and \
                    isinstance(value, torch.Tensor) and \
                    target.shape == value.shape:
                with torch.no_grad():
                    target.copy_(value)
                return target
            if isinstance(target, np.ndarray) and \
                    isinstance(value, np.ndarray) and \
                    target.shape == value.shape and target.flags.writeable:
                np.copyto(target, value)
                return target
            return value
        if isinstance(node, dict):
            out = type(node)() if type(node) is not dict else {}
            for key, item in node.items():
                sub = target.get(key) if isinstance(target, dict) else None
                out[key] = build(item, sub)
            if getattr(node, "__dict__", None):  # a state_dict's _metadata
                out.__dict__.update(node.__dict__)
            return out
        if type(node) in (list, tuple):
            subs = target if isinstance(target, (list, tuple)) and \
                len(target) == len(node) else [None] * len(node)
            items = [build(item, sub) for item, sub in zip(node, subs)]
            return items if type(node) is list else tuple(items)
        return node

    return build(skeleton, into)


def _row_indices(name, rows):
    """`rows` (a 1-D torch tensor, numpy array or sequence of ints) as a
    private int64 numpy array: the caller may change its own afterwards."""
    torch = _torch()
    if torch is not None and isinstance(rows, torch.Tensor):
        rows = rows.detach().cpu().numpy()
    array = np.array(rows, dtype=np.int64, copy=True)
    if array.ndim != 1:
        raise ValueError(
            f"dirty_rows['{name}'] must be a 1-D sequence of row indices, "
            f"not of shape {array.shape}")
    if array.size and array.min() < 0:
        raise ValueError(
            f"dirty_rows['{name}'] holds the negative row index "
            f"{int(array.min())}")
    return array


def _dirty_rows_by_name(dirty_rows, tensors):
    """dirty_rows keyed by the tensor entries' names. A key is an entry's
    name ("model/embedding.weight") or the same path with "." for "/"
    ("model.embedding.weight"); ValueError for a key naming no tensor."""
    names = {tensor[0] for tensor in tensors}
    aliases = {}
    for name in names:
        aliases.setdefault(name.replace("/", "."), []).append(name)
    out = {}
    for key, rows in dirty_rows.items():
        if key in names:
            name = key
        elif len(aliases.get(key, ())) == 1:
            name = aliases[key][0]
        else:
            raise ValueError(
                f"dirty_rows names '{key}', which is no tensor of the state "
                f"(tensor names: {sorted(names - {STATE_TENSOR})})")
        if name == STATE_TENSOR:
            raise ValueError(f"dirty_rows cannot name {STATE_TENSOR}")
        out[name] = _row_indices(key, rows)
    return out


def _policy(max_to_keep, keep_checkpoint_every_n_hours, keep_best):
    """The retention policy dict for Client, or None when no rule is set."""
    if max_to_keep is None and keep_checkpoint_every_n_hours is None and \
            keep_best is None:
        return None
    best = None
    if keep_best is not None:
        if isinstance(keep_best, dict):
            best = (int(keep_best["k"]), str(keep_best["metric"]),
                    str(keep_best.get("mode", "auto")))
        else:
            fields = tuple(keep_best)
            if len(fields) not in (2, 3):
                raise ValueError(
                    "keep_best must be (k, metric[, mode]) or a dict with "
                    "k, metric and optionally mode")
            best = (int(fields[0]), str(fields[1]),
                    str(fields[2]) if len(fields) == 3 else "auto")
    return {
        "max_to_keep": max_to_keep,
        "keep_checkpoint_every_n_hours": keep_checkpoint_every_n_hours,
        "keep_best": best,
    }


def _connect(server, **security):
    """`server` when it is a Client, else a Client connected to that
    "HOST:PORT" with the TLS and token arguments (None: the environment's)."""
    if isinstance(server, Client):
        given = sorted(name for name, value in security.items()
                       if value is not None)
        if given:
            raise ValueError(
                f"{', '.join(given)}: set on the ckpt.Client passed as "
                "server, not on the manager")
        return server
    return Client(server, **security)


class CheckpointManager:
    """Saves and restores one rank's training state of a job, in the manner
    of tf.train.CheckpointManager and Orbax's CheckpointManager.

    server: "HOST:PORT" of a ckpt-server, or a ckpt.Client.
    job: "tenant/name".
    max_to_keep, keep_checkpoint_every_n_hours: TF's semantics.
    keep_best: (k, metric, mode) or {"k", "metric", "mode"}; mode "min",
        "max" or "auto" (by the metric's name, as Keras does).
        The retention arguments, when any is set, become the job's policy on
        the server with every save (the server enforces it at each commit);
        when none is set, the job's stored policy stays.
    checkpoint_interval: save() skips a step fewer than this many steps
        after the last checkpoint (the latest on the server at start), as
        TF's CheckpointManager does.
    rank, world_size: default to torch.distributed's when it is
        initialised, else 0 and 1. A checkpoint becomes visible once all
        world_size ranks have saved their shard of it.
    async_save: save() returns once the state is copied to host memory; the
        upload and commit run on a background thread, one save at a time
        (the next save waits for the previous); errors are raised by the
        next save(), wait() or close().
    incremental: saves every tensor of 2 or more dimensions as a row delta
        (Check-N-Run) when few of its rows changed: only the changed rows
        are uploaded and stored, on top of an earlier checkpoint. The rows
        are found by per-row XXH3 fingerprints against the base (or given
        with save(dirty_rows=...)); a policy writes a new full baseline when
        the delta grows too large (docs/architecture.md, "Incremental
        checkpoints: client"). A new manager starts with full saves.
        Restores apply the deltas; they need no option. Default: False.
    delta_mode: "intermittent" (each delta against the last full baseline;
        a restore reads at most two versions) or "consecutive" (each delta
        against the previous save, at most max_chain_length deep).
    max_delta_fraction: a new baseline is written once a delta reaches this
        fraction of the tensor's full size. In (0, 1]. Default: 0.5.
    max_chain_length: consecutive mode: a baseline after this many deltas.
    allow_pickle: False (the default): everything but tensors is stored as
        a typed tree of plain values (None, bool, int, float, complex, str,
        bytes, list, tuple, dict, OrderedDict, Counter, numpy scalars),
        which cannot run code when restored; save() raises TypeError,
        naming the key, for any other value, and restore() refuses a
        checkpoint holding pickled data (ckpt.PickleNotAllowedError)
        without unpickling anything. True: such values are pickled into the
        tree, and pickled data (including checkpoints written by ckpt
        before the typed tree) is unpickled on restore. Unpickling runs
        whatever code the data names, so True trusts the server and every
        writer of the job as much as your own code (docs/security.md).
    tls_ca, tls_cert, tls_key, tls_server_name, token: how the Client the
        manager makes for a "HOST:PORT" server connects: TLS with the CA
        certificates in the PEM file tls_ca, mutual TLS with the client
        certificate and key files tls_cert and tls_key, a bearer token sent
        on every call (only over TLS or to a loopback address). Each
        defaults to its environment variable (CKPT_TLS_CA, CKPT_TLS_CERT,
        CKPT_TLS_KEY, CKPT_TLS_SERVER_NAME, CKPT_TOKEN); see ckpt.Client.
        Not allowed when server is a ckpt.Client (it is connected already).

    An async save that fails and is never raised by wait(), close() or a
    later save() (the script ends without them) is printed to stderr at
    interpreter exit, and the exit status becomes 1.

    Not thread-safe: use one manager from one thread.
    """

    def __init__(self, server, job, *, max_to_keep=None,
                 keep_checkpoint_every_n_hours=None, keep_best=None,
                 checkpoint_interval=None, rank=None, world_size=None,
                 async_save=False, incremental=False,
                 delta_mode="intermittent", max_delta_fraction=0.5,
                 max_chain_length=8, allow_pickle=False, tls_ca=None,
                 tls_cert=None, tls_key=None, tls_server_name=None,
                 token=None):
        self._client = _connect(server, tls_ca=tls_ca, tls_cert=tls_cert,
                                tls_key=tls_key,
                                tls_server_name=tls_server_name, token=token)
        self._job = job
        self._policy = _policy(max_to_keep, keep_checkpoint_every_n_hours,
                               keep_best)
        if checkpoint_interval is not None and checkpoint_interval < 0:
            raise ValueError("checkpoint_interval must be >= 0")
        self._checkpoint_interval = checkpoint_interval
        if rank is None or world_size is None:
            default_rank, default_world_size = _distributed_rank()
            rank = default_rank if rank is None else rank
            world_size = default_world_size if world_size is None \
                else world_size
        self._rank = int(rank)
        self._world_size = int(world_size)
        self._async = bool(async_save)
        self._allow_pickle = bool(allow_pickle)
        self._last_step = self._client.latest_step(job)
        self._thread = None
        self._error = None  # (error, its _unreported key) of the async save
        self._closed = False
        self._host_buffers = {}  # name -> the last save's host copy
        # Remembers, per tensor, what the next delta is taken against.
        self._saver = IncrementalSaver(
            delta_mode=delta_mode, max_delta_fraction=max_delta_fraction,
            max_chain_length=max_chain_length) if incremental else None
        self._last_plan = None
        self._last_quantization = None

    @property
    def job(self):
        return self._job

    @property
    def rank(self):
        return self._rank

    @property
    def world_size(self):
        return self._world_size

    @property
    def client(self):
        return self._client

    @property
    def latest_step(self):
        """The latest committed step on the server, or None."""
        return self._client.latest_step(self._job)

    def all_steps(self):
        """Committed steps, ascending."""
        return [record["step"] for record in self.checkpoints()]

    def checkpoints(self):
        """Committed checkpoints as dicts (step, metrics, tags, times,
        world_size, logical_bytes, pinned, ...), ascending step."""
        try:
            return self._client.list_checkpoints(self._job)
        except KeyError:  # the job does not exist before its first save
            return []

    @property
    def last_quantization(self):
        """The last completed save's tensors saved quantized (ckpt.Quantized)
        as {name: {"bits", "max_abs_error", "relative_l2_error"}}, the error
        measured over the tensor against the original; None before the
        first save."""
        return self._last_quantization

    @property
    def last_plan(self):
        """incremental only: the last completed save's decision per tensor,
        a list of (name, "full" | "delta", base_step, changed_rows, reason);
        None before the first."""
        return self._last_plan

    def save(self, state, step, metrics=None, dirty_rows=None):
        """Saves this rank's `state` as checkpoint `step`. Returns False
        when checkpoint_interval skips the step, True otherwise (with
        async_save, once the state is copied to host memory).

        dirty_rows (incremental=True only, ValueError otherwise): maps a
        tensor's name, as the manager names it ("model/embedding.weight";
        the dotted path "model.embedding.weight" also works), to the rows
        (indices along its first dimension: a 1-D integer tensor, array or
        list, any order, repeats allowed) changed since the previous save.
        Those tensors are not fingerprinted; the rows listed must include
        every changed row, or the checkpoint restores stale rows. A tensor
        whose base was saved with dirty_rows and that comes without them is
        saved in full (it has no fingerprints to compare with)."""
        self._check_open()
        self._join()
        if dirty_rows and self._saver is None:
            raise ValueError(
                "dirty_rows needs CheckpointManager(..., incremental=True)")
        step = int(step)
        if self._checkpoint_interval is not None and \
                self._last_step is not None and \
                step < self._last_step + self._checkpoint_interval:
            return False
        # The previous save has finished (joined above): its host copies
        # are free to be overwritten.
        tensors, keep_alive, self._host_buffers, quantize = _flatten(
            state, copy=self._async, reuse=self._host_buffers,
            allow_pickle=self._allow_pickle)
        dirty = _dirty_rows_by_name(dirty_rows or {}, tensors)
        kwargs = dict(rank=self._rank, world_size=self._world_size,
                      metrics={k: float(v) for k, v in
                               (metrics or {}).items()},
                      retention_policy=self._policy, quantize=quantize)
        # A failed save takes no checkpoint: checkpoint_interval then counts
        # from the one before again.
        previous_step, self._last_step = self._last_step, step
        if not self._async:
            try:
                self._save_shard(step, tensors, kwargs, dirty)
            except BaseException:
                self._last_step = previous_step
                raise
            return True

        def upload():
            # Planning (fingerprinting) runs here too, on the host copies.
            try:
                self._save_shard(step, tensors, kwargs, dirty)
            except BaseException as error:  # re-raised on the caller's thread
                self._error = (error, _unreported.add(
                    f"ckpt: the async save of step {step} of job "
                    f"'{self._job}' (rank {self._rank}) failed, and no "
                    "wait(), close() or later save() raised it: "
                    f"{_error_type_name(error)}: {error}"))
                self._last_step = previous_step  # no save runs meanwhile

        # The thread's closure holds `tensors` (host copies of every tensor)
        # until it ends; `keep_alive` is not needed past this point.
        del keep_alive
        # Not a daemon: an interpreter exiting without close() still
        # finishes the last save instead of leaving it pending.
        self._thread = threading.Thread(target=upload,
                                        name=f"ckpt-save-{step}")
        self._thread.start()
        return True

    def _save_shard(self, step, tensors, kwargs, dirty):
        if self._saver is None:
            result = self._client.save_shard(self._job, step, tensors,
                                             **kwargs)
        else:
            # On failure the saver forgets its history: the next save is
            # full.
            result = self._client.save_shard(self._job, step, tensors,
                                             saver=self._saver,
                                             dirty_rows=dirty, **kwargs)
            self._last_plan = result["plan"]
        self._last_quantization = result["quantized"]

    def restore(self, step=None, into=None):
        """This rank's state of checkpoint `step` (the latest committed when
        None). With `into` (a state of the same structure), tensors restored
        where `into` holds a tensor of the same shape are copied into it and
        returned in place. KeyError when there is no such checkpoint."""
        self._check_open()
        self._join()
        # With step None the server picks the latest when it reads the
        # manifest, in one call: a checkpoint pruned meanwhile cannot be
        # chosen. Its NOT_FOUND arrives as KeyError.
        restored = self._client.restore_shard(
            self._job, None if step is None else int(step), rank=self._rank)
        return _unflatten(restored, into, self._allow_pickle)

    def restore_or_initialize(self, init_fn):
        """The latest checkpoint's state, or init_fn()'s result when the
        job has none."""
        if self.latest_step is None:
            return init_fn()
        # The latest at restore time, which a save from another process
        # may have made newer than the one just seen.
        return self.restore()

    def wait(self):
        """Waits for the pending async save; raises its error, if any."""
        self._join()

    def close(self):
        """Waits for the pending save (raising its error); idempotent."""
        if self._closed:
            return
        try:
            self._join()
        finally:
            self._closed = True
            self._host_buffers = {}

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:  # do not mask the body's exception with the save's
            try:
                self.close()
            except Exception:
                pass
        return False

    def _check_open(self):
        if self._closed:
            raise ValueError("CheckpointManager is closed")

    def _join(self):
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            (error, key), self._error = self._error, None
            _unreported.discard(key)
            raise error


def _error_type_name(error):
    kind = type(error)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


class _UnreportedFailures:
    """Failed async saves that no call has raised yet. At interpreter exit
    (after the non-daemon save threads have been joined) they are printed
    to stderr and the process's exit status is set to 1: the extension's
    Py_AtExit hook ends the process with it once Python has finalised
    (every atexit handler run, stdio flushed), since an atexit handler
    itself cannot change the status."""

    def __init__(self):
        self._lock = threading.Lock()
        self._messages = {}
        self._next_key = 0

    def add(self, message):
        with self._lock:
            self._next_key += 1
            self._messages[self._next_key] = message
            return self._next_key

    def discard(self, key):
        with self._lock:
            self._messages.pop(key, None)

    def report_at_exit(self):
        with self._lock:
            messages, self._messages = list(self._messages.values()), {}
        if not messages:
            return
        for message in messages:
            print(message, file=sys.stderr)
        print("ckpt: exiting with status 1 because of the failed save(s) "
              "above", file=sys.stderr)
        sys.stderr.flush()
        if not set_exit_status_at_finalize(1):
            # No finalize hook (CPython's table of them is full): end the
            # process now, skipping the atexit handlers still to run.
            sys.stdout.flush()
            os._exit(1)


_unreported = _UnreportedFailures()
atexit.register(_unreported.report_at_exit)


def _distributed_rank():
    torch = _torch()
    if torch is not None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    return 0, 1
