"""How a state maps to a rank's tensors and back: the nested dicts, lists
and tuples of a state are split into tensor entries (named by their path)
and a typed tree of everything else with references to those entries
(ckpt/tree.py), stored as the uint8 tensor `__ckpt_state__`; restoring
checks every reference and rebuilds the state. Pickle only with
allow_pickle=True (docs/security.md, "Safe restore (no pickle)").
Used by CheckpointManager (ckpt/manager.py).
"""

import pickle

import numpy as np

from ckpt import tree
from ckpt._ckpt import Client, bits_for_expected_restores
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
